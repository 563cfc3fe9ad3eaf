//! Checking a model's weights against the hash the hub registered (the hash itself is
//! defined in `market_protocol::weights`), with a progress bar, for files on disk or in
//! memory alike.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::files::{Bytes, ModelFiles, Source};
use crate::{Error, Result};

pub use market_protocol::weights::weight_files as files;

pub(crate) fn weight_files(path: &Path) -> Result<Vec<PathBuf>> {
    files(path).map_err(|e| Error::io(path, e))
}

/// How a loader learns the weights' hash, which receipts commit to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sha256 {
    /// Hash the files.
    Compute,
    /// Hash the files and refuse them unless the hash is this one.
    Expect([u8; 32]),
    /// Hashed by the caller before (the runner's check against the hub, or its decryption
    /// of sealed weights), while the files were as `stamp` says: the files, gigabytes
    /// perhaps, are not read twice, and files replaced or rewritten since are refused.
    Known { sha256: [u8; 32], stamp: Stamp },
}

/// Each weights file's length and modification time: taken before hashing and compared
/// before loading, so a file swapped or rewritten in between is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp(Vec<(PathBuf, u64, Option<std::time::SystemTime>)>);

impl Stamp {
    /// The stamp of a model path's weight files.
    pub fn of(path: &Path) -> Result<Self> {
        weight_files(path)?
            .into_iter()
            .map(|file| {
                let meta = std::fs::metadata(&file).map_err(|e| Error::io(&file, e))?;
                Ok((file, meta.len(), meta.modified().ok()))
            })
            .collect::<Result<_>>()
            .map(Self)
    }

    /// The stamp of weight files in memory: their names and lengths, as they cannot change
    /// once held (a stamp of other files, on disk or in memory, is refused all the same).
    pub fn of_files(files: &ModelFiles) -> Result<Self> {
        Ok(Self(
            Source::Memory(files)
                .weights()?
                .into_iter()
                .map(|(name, bytes)| (PathBuf::from(name), bytes.len() as u64, None))
                .collect(),
        ))
    }
}

/// The weights' hash of `source` as `sha256` says to learn it.
pub fn check(source: &Source<'_>, sha256: Sha256) -> Result<[u8; 32]> {
    let expected = match sha256 {
        Sha256::Known { sha256, stamp } => {
            let now = match source {
                Source::Path(path) => Stamp::of(path)?,
                Source::Memory(files) => Stamp::of_files(files)?,
            };
            return if now == stamp {
                Ok(sha256)
            } else {
                Err(Error::WeightsChanged(source.describe()))
            };
        }
        Sha256::Expect(hash) => Some(hash),
        Sha256::Compute => None,
    };
    let (bar, progress) = market_report::progress::bytes_callback("hashing");
    let actual = match source {
        Source::Path(path) => market_protocol::weights::weights_sha256(path, progress)
            .map_err(|e| Error::io(path, e))?,
        Source::Memory(_) => sha256_in_memory(&source.weights()?, progress),
    };
    bar.finish_and_clear();
    match expected {
        Some(expected) if expected != actual => Err(Error::HashMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        }),
        _ => Ok(actual),
    }
}

/// The weights' hash of weight files held in memory, by name in byte order: each file's
/// sha256, combined as `market_protocol::weights` defines for files on disk.
fn sha256_in_memory(weights: &[(String, Bytes)], mut progress: impl FnMut(u64, u64)) -> [u8; 32] {
    // Hashed in slices so the bar moves on a multi-gigabyte file.
    const SLICE: usize = 1 << 20;
    let total = weights.iter().map(|(_, bytes)| bytes.len() as u64).sum();
    let mut done = 0u64;
    let digests: Vec<(&str, [u8; 32])> = weights
        .iter()
        .map(|(name, bytes)| {
            let mut hasher = sha2::Sha256::new();
            for slice in bytes.chunks(SLICE) {
                hasher.update(slice);
                done += slice.len() as u64;
                progress(done, total);
            }
            (name.as_str(), hasher.finalize().into())
        })
        .collect();
    market_protocol::weights::weights_sha256_of_digests(digests)
}

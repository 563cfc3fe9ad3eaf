//! Checking a model's weights against the hash the hub registered (the hash itself is
//! defined in `market_protocol::weights`), with a progress bar.

use std::path::{Path, PathBuf};

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
    /// Hashed by the caller before (the runner's check against the hub), while the files
    /// were as `stamp` says: the files, gigabytes perhaps, are not read twice, and files
    /// replaced or rewritten since are refused.
    Known { sha256: [u8; 32], stamp: Stamp },
}

/// Each weights file's length and modification time: taken before hashing and compared
/// before loading, so a file swapped or rewritten in between is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp(Vec<(PathBuf, u64, Option<std::time::SystemTime>)>);

impl Stamp {
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
}

/// The weights' hash of `path` as `sha256` says to learn it.
pub fn check(path: &Path, sha256: Sha256) -> Result<[u8; 32]> {
    let expected = match sha256 {
        Sha256::Known { sha256, stamp } => {
            return if Stamp::of(path)? == stamp {
                Ok(sha256)
            } else {
                Err(Error::WeightsChanged(path.display().to_string()))
            };
        }
        Sha256::Expect(hash) => Some(hash),
        Sha256::Compute => None,
    };
    let (bar, progress) = market_report::progress::bytes_callback("hashing");
    let actual =
        market_protocol::weights::weights_sha256(path, progress).map_err(|e| Error::io(path, e))?;
    bar.finish_and_clear();
    match expected {
        Some(expected) if expected != actual => Err(Error::HashMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        }),
        _ => Ok(actual),
    }
}

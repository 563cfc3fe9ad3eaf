//! Checking a model's weights against the hash the hub registered (the hash itself is
//! defined in `market_protocol::weights`), with a progress bar.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub use market_protocol::weights::weight_files as files;

pub(crate) fn weight_files(path: &Path) -> Result<Vec<PathBuf>> {
    files(path).map_err(|e| Error::io(path, e))
}

/// The weights' hash of `path`, refused when it differs from `expected`.
pub fn check(path: &Path, expected: Option<[u8; 32]>) -> Result<[u8; 32]> {
    let total: u64 = weight_files(path)?
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = crate::progress::bytes("hashing", total);
    let actual = market_protocol::weights::weights_sha256(path, |done, _| bar.set_position(done))
        .map_err(|e| Error::io(path, e))?;
    bar.finish_and_clear();
    match expected {
        Some(expected) if expected != actual => Err(Error::HashMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        }),
        _ => Ok(actual),
    }
}

//! The operator's token for `GET /v1/runner/status` and `POST /v1/runner/settle`, which
//! show who pays this runner and start transactions. Answering loopback peers only is not
//! enough: behind a reverse proxy on the same machine every request comes from loopback.
//! So `serve` writes a fresh random token to `<data-dir>/operator.token` (mode 0600) at
//! each start, and `status` / `settle --runner-url` read it from `--data-dir` and send it
//! as a bearer token: whoever can read the runner's data may operate it, no one else.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use subtle::ConstantTimeEq;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("operator.token")
}

/// A new token, written (owner-only) where the CLI finds it; replaces any older one.
pub fn create(data_dir: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(data_dir)?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    // Written beside and renamed over: a reader never sees half a token.
    let fresh = data_dir.join("operator.token.new");
    let _ = std::fs::remove_file(&fresh);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&fresh)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&fresh, path(data_dir))?;
    Ok(token)
}

/// The token of the `serve` that uses `data_dir`.
pub fn read(data_dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path(data_dir))?.trim().to_owned())
}

/// Whether `presented` is `expected`, in time independent of where they differ.
pub fn matches(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

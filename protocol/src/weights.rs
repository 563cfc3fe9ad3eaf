//! The weights' hash that a model version registers on the hub and that the runner checks
//! before serving. Defined once here so the registry, the runner and operators' shell
//! commands agree:
//!
//! * the weight files are the `*.gguf` and `*.safetensors` files of the model (a file path
//!   names just that file; a directory means every such file directly inside it);
//! * one weight file: its plain sha256, what `sha256sum model.safetensors` prints;
//! * several (sharded safetensors): the sha256 of `sha256sum`'s own output for them in
//!   byte order of their names, `"<hex>  <name>\n"` per file, i.e.
//!   `sha256sum *.safetensors | LC_ALL=C sort -k2 | sha256sum`.
//!
//! Configuration and tokenizer files are not part of it: the version registers the
//! tokenizer's hash separately.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Is this file a weight file?
pub fn is_weight_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("gguf" | "safetensors")
    )
}

/// The weight files of a model path, sorted by file name.
pub fn weight_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_file() && is_weight_file(&p) {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no .gguf or .safetensors file in {}", path.display()),
        ));
    }
    Ok(files)
}

/// The weights' hash of a model path. `progress` is called with the bytes hashed so far
/// and the total, so callers can draw a progress bar.
pub fn weights_sha256(path: &Path, mut progress: impl FnMut(u64, u64)) -> io::Result<[u8; 32]> {
    let files = weight_files(path)?;
    let total = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()))
        .sum::<io::Result<u64>>()?;
    let mut done = 0u64;
    let mut digests = Vec::with_capacity(files.len());
    for file in &files {
        let mut hasher = Sha256::new();
        let mut reader = File::open(file)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            done += n as u64;
            progress(done, total);
        }
        digests.push(<[u8; 32]>::from(hasher.finalize()));
    }
    Ok(weights_sha256_of_digests(files.iter().zip(digests).map(
        |(file, digest)| {
            (
                file.file_name().unwrap_or_default().to_string_lossy(),
                digest,
            )
        },
    )))
}

/// The weights' hash from each weight file's name and sha256, given in byte order of names:
/// the one definition behind [`weights_sha256`] (files on disk) and sealed models (files
/// decrypted into memory). One file is its own digest; several hash their `sha256sum`
/// listing. With no file at all, the hash of an empty listing.
pub fn weights_sha256_of_digests<N: AsRef<str>>(
    files: impl IntoIterator<Item = (N, [u8; 32])>,
) -> [u8; 32] {
    let mut files = files.into_iter();
    let first = files.next();
    let second = files.next();
    if let (Some((_, one)), None) = (&first, &second) {
        return *one;
    }
    let mut listing = Sha256::new();
    for (name, digest) in first.into_iter().chain(second).chain(files) {
        listing.update(format!("{}  {}\n", to_hex(&digest), name.as_ref()));
    }
    listing.finalize().into()
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    #[test]
    fn one_file_is_its_plain_sha256_and_shards_hash_the_sorted_listing() {
        let dir = std::env::temp_dir().join(format!("weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), b"{}").unwrap();
        std::fs::write(dir.join("model-00002-of-00002.safetensors"), b"second").unwrap();
        let single = weights_sha256(&dir, |_, _| {}).unwrap();
        assert_eq!(
            single,
            sha(b"second"),
            "one weight file hashes as sha256sum does"
        );

        std::fs::write(dir.join("model-00001-of-00002.safetensors"), b"first").unwrap();
        let listing = format!(
            "{}  model-00001-of-00002.safetensors\n{}  model-00002-of-00002.safetensors\n",
            to_hex(&sha(b"first")),
            to_hex(&sha(b"second"))
        );
        let mut seen = 0;
        let sharded = weights_sha256(&dir, |done, total| {
            assert!(done <= total);
            seen = done;
        })
        .unwrap();
        assert_eq!(seen, 11, "progress reaches every byte");
        assert_eq!(sharded, sha(listing.as_bytes()));
        assert_eq!(
            weights_sha256_of_digests([
                ("model-00001-of-00002.safetensors", sha(b"first")),
                ("model-00002-of-00002.safetensors", sha(b"second")),
            ]),
            sharded,
            "files in memory hash as files on disk"
        );

        std::fs::write(dir.join("model-00001-of-00002.safetensors"), b"First").unwrap();
        assert_ne!(
            weights_sha256(&dir, |_, _| {}).unwrap(),
            sharded,
            "any byte counts"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(weights_sha256(&dir, |_, _| {}).is_err());
    }
}

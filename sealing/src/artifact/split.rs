//! Splitting the decrypted byte stream back into the files the header lists.

use market_protocol::weights::{is_weight_file, weights_sha256_of_digests};
use sha2::{Digest, Sha256};

use super::header::FileEntry;
use super::{ModelFile, Unsealed};

/// Receives the model's bytes in order and fills each file in turn, hashing the weight files
/// as they pass, so the weights hash costs no second read.
pub(super) struct Split<'h> {
    entries: &'h [FileEntry],
    files: Vec<ModelFile>,
    /// Bytes the file being filled still lacks.
    left: u64,
    /// Hashes the file being filled, if it is a weight file.
    hasher: Option<Sha256>,
    digests: Vec<(&'h str, [u8; 32])>,
}

impl<'h> Split<'h> {
    pub fn new(entries: &'h [FileEntry]) -> Self {
        Self {
            entries,
            files: Vec::with_capacity(entries.len()),
            left: 0,
            hasher: None,
            digests: Vec::new(),
        }
    }

    /// The caller writes exactly the header's total, since chunk lengths come from it.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            while self.left == 0 {
                self.next_file();
            }
            let take = data
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            let (now, rest) = data.split_at(take);
            let file = self.files.last_mut().expect("a file is open");
            file.bytes.extend_from_slice(now);
            if let Some(hasher) = &mut self.hasher {
                hasher.update(now);
            }
            self.left -= take as u64;
            data = rest;
        }
    }

    pub fn finish(mut self) -> Unsealed {
        // Empty files at the end receive no bytes but exist all the same.
        while self.files.len() < self.entries.len() {
            self.next_file();
        }
        self.close_file();
        Unsealed {
            files: self.files,
            weights_sha256: weights_sha256_of_digests(self.digests),
        }
    }

    fn next_file(&mut self) {
        /// Past this, a file's buffer grows as its bytes arrive.
        const MAX_CAPACITY_HINT: u64 = 1 << 30;
        self.close_file();
        let entry = &self.entries[self.files.len()];
        self.files.push(ModelFile {
            name: entry.name.clone(),
            // Only a capacity hint, and bounded: the size is authentic by now (chunk 0
            // passed), but an owner's header could still name 2^47 bytes, and an
            // allocation that large aborts the runner instead of failing at the short
            // artifact.
            bytes: Vec::with_capacity(
                usize::try_from(entry.size.min(MAX_CAPACITY_HINT)).unwrap_or(0),
            ),
        });
        self.hasher = is_weight_file(entry.name.as_ref()).then(Sha256::new);
        self.left = entry.size;
    }

    fn close_file(&mut self) {
        if let Some(hasher) = self.hasher.take() {
            let name = &self.entries[self.files.len() - 1].name;
            self.digests.push((name, hasher.finalize().into()));
        }
    }
}

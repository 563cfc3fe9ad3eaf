//! Sealing a model into an encrypted artifact, and unsealing it into memory. The format is
//! described in the crate documentation; its `header` module owns the byte layout.

mod header;
mod split;

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use market_protocol::weights::{is_weight_file, weights_sha256_of_digests};
use rand_core::RngCore;
use sha2::{Digest, Sha256};

pub use header::{CHUNK_SIZE, MAGIC, MAX_HEADER_LEN, NONCE_PREFIX_LEN, SCHEME, TAG_LEN, VERSION};

use crate::{ContentKey, Error, Result};
use header::{FileEntry, Header};
use split::Split;

/// What the registry records of a sealed model version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedInfo {
    /// sha256 of the whole artifact, header included: what `sha256sum model.sealed` prints.
    pub ciphertext_sha256: [u8; 32],
    pub ciphertext_size: u64,
    /// The plaintext weights hash, as `market_protocol::weights::weights_sha256` defines it.
    pub weights_sha256: [u8; 32],
}

/// One file of an unsealed model, in memory only.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// As the engine's in-memory loader takes files.
impl From<ModelFile> for (String, Vec<u8>) {
    fn from(file: ModelFile) -> Self {
        (file.name, file.bytes)
    }
}

impl fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelFile({}, {} bytes)", self.name, self.bytes.len())
    }
}

/// A model decrypted into memory, with the weights hash computed while decrypting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsealed {
    /// Every file of the model, in byte order of names.
    pub files: Vec<ModelFile>,
    pub weights_sha256: [u8; 32],
}

impl Unsealed {
    /// The model, if its weights are the ones the hub registered: a runner serves nothing
    /// else, since its receipts commit to that hash.
    pub fn check_weights(self, expected: &[u8; 32]) -> Result<Self> {
        if &self.weights_sha256 == expected {
            Ok(self)
        } else {
            Err(Error::WeightsMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(self.weights_sha256),
            })
        }
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bytes.as_slice())
    }
}

/// Seals the model at `path` (a `.gguf` or `.safetensors` file, or a directory: every file
/// directly inside it) under `key` into `out`. Reads one file and one chunk at a time, so
/// memory stays at a chunk whatever the model's size.
pub fn seal(path: &Path, key: &ContentKey, mut out: impl Write) -> Result<SealedInfo> {
    seal_into(path, key, &mut out)
}

// `seal` and `unseal` forward to code that is not generic, so the ciphers are instantiated,
// and optimized, in this crate rather than in each caller.
fn seal_into(path: &Path, key: &ContentKey, out: &mut dyn Write) -> Result<SealedInfo> {
    let sources = model_files(path)?;
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    crate::os_rng().fill_bytes(&mut nonce_prefix);
    let header = Header::new(
        nonce_prefix,
        sources.iter().map(|(_, e)| e.clone()).collect(),
    );
    header.validate()?;
    let header_bytes = header.to_bytes();

    let mut out = HashingWriter::new(out);
    out.write_all(&header_bytes)?;
    let mut chunks = ChunkWriter::new(key, &header, &header_bytes, out);
    let mut digests = Vec::new();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    for (path, entry) in &sources {
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut hasher = is_weight_file(path).then(Sha256::new);
        let mut left = entry.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want]).map_err(io)?;
            if n == 0 {
                return Err(changed(entry));
            }
            let read = &buf[..n];
            if let Some(hasher) = &mut hasher {
                hasher.update(read);
            }
            chunks.write(read)?;
            left -= n as u64;
        }
        // A file that grew since its size went into the header would be sealed cut short.
        if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
            return Err(changed(entry));
        }
        if let Some(hasher) = hasher {
            digests.push((entry.name.as_str(), <[u8; 32]>::from(hasher.finalize())));
        }
    }
    let (ciphertext_sha256, ciphertext_size) = chunks.finish()?.finish()?;
    Ok(SealedInfo {
        ciphertext_sha256,
        ciphertext_size,
        weights_sha256: weights_sha256_of_digests(digests),
    })
}

/// Decrypts a sealed artifact into memory, chunk by chunk, refusing it at the first chunk
/// that fails authentication, and if it is cut short or runs on after its last chunk.
/// Nothing is written anywhere; the caller still checks the weights hash
/// ([`Unsealed::check_weights`]).
pub fn unseal(mut reader: impl Read, key: &ContentKey) -> Result<Unsealed> {
    unseal_from(&mut reader, key)
}

fn unseal_from(reader: &mut dyn Read, key: &ContentKey) -> Result<Unsealed> {
    let (header, header_bytes) = Header::read(reader)?;
    let mut stream = DecryptorBE32::<XChaCha20Poly1305>::new(
        key.as_bytes().into(),
        (&header.nonce_prefix).into(),
    );
    let chunks = header.chunks();
    let last = chunks - 1;
    let associated_data = |index| if index == 0 { &header_bytes[..] } else { &[] };
    let mut chunk = Vec::with_capacity(CHUNK_SIZE as usize + TAG_LEN);
    // File buffers are allocated as data arrives, so only after chunk 0 has authenticated
    // the sizes they come from.
    let mut files = Split::new(&header.files);
    for index in 0..last {
        read_chunk(reader, &mut chunk, &header, index)?;
        stream
            .decrypt_next_in_place(associated_data(index), &mut chunk)
            .map_err(|_| Error::Tampered { chunk: index })?;
        files.write(&chunk);
    }
    read_chunk(reader, &mut chunk, &header, last)?;
    stream
        .decrypt_last_in_place(associated_data(last), &mut chunk)
        .map_err(|_| Error::Tampered { chunk: last })?;
    files.write(&chunk);
    if reader.read(&mut [0u8; 1]).map_err(Error::Artifact)? != 0 {
        return Err(Error::TrailingData);
    }
    Ok(files.finish())
}

/// The files `path` seals, in byte order of names, with their sizes.
fn model_files(path: &Path) -> Result<Vec<(PathBuf, FileEntry)>> {
    let not_a_model = |reason: &str| Error::NotAModel {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let paths = if path.is_file() {
        if !is_weight_file(path) {
            return Err(not_a_model("a model file ends in .gguf or .safetensors"));
        }
        vec![path.to_owned()]
    } else {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let path = entry.map_err(io)?.path();
            // Like `market_protocol::weights`, a link to a file counts (Hugging Face's
            // cache links every file of a snapshot to a blob).
            if path.is_file() {
                paths.push(path);
            }
        }
        if !paths.iter().any(|p| is_weight_file(p)) {
            return Err(not_a_model("no .gguf or .safetensors file in it"));
        }
        paths
    };
    let mut files = paths
        .into_iter()
        .map(|path| {
            let Some(name) = path.file_name().and_then(OsStr::to_str).map(str::to_owned) else {
                return Err(Error::NotAModel {
                    path,
                    reason: "its name is not UTF-8".to_owned(),
                });
            };
            let size = path
                .metadata()
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            Ok((path, FileEntry { name, size }))
        })
        .collect::<Result<Vec<_>>>()?;
    files.sort_by(|(_, a), (_, b)| a.name.cmp(&b.name));
    Ok(files)
}

fn changed(entry: &FileEntry) -> Error {
    Error::FileChanged {
        name: entry.name.clone(),
        expected: entry.size,
    }
}

/// Reads chunk `index`'s ciphertext, whose length the header fixes.
fn read_chunk(
    reader: &mut dyn Read,
    chunk: &mut Vec<u8>,
    header: &Header,
    index: u32,
) -> Result<()> {
    chunk.resize(header.chunk_len(index) + TAG_LEN, 0);
    reader.read_exact(chunk).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Truncated {
            chunk: index,
            chunks: header.chunks(),
        },
        _ => Error::Artifact(e),
    })
}

/// Cuts the model's bytes into chunks, encrypting and writing each as soon as it is full.
struct ChunkWriter<'h, 'w> {
    stream: EncryptorBE32<XChaCha20Poly1305>,
    header_bytes: &'h [u8],
    chunk: Vec<u8>,
    /// Model bytes not yet written: a full chunk is the last one when none remain, and it
    /// must wait for `finish` to be sealed with the last-chunk flag.
    unwritten: u64,
    sealed: u32,
    out: HashingWriter<'w>,
}

impl<'h, 'w> ChunkWriter<'h, 'w> {
    fn new(
        key: &ContentKey,
        header: &Header,
        header_bytes: &'h [u8],
        out: HashingWriter<'w>,
    ) -> Self {
        Self {
            stream: EncryptorBE32::new(key.as_bytes().into(), (&header.nonce_prefix).into()),
            header_bytes,
            chunk: Vec::with_capacity(CHUNK_SIZE as usize + TAG_LEN),
            unwritten: header.total(),
            sealed: 0,
            out,
        }
    }

    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let take = data.len().min(CHUNK_SIZE as usize - self.chunk.len());
            let (now, rest) = data.split_at(take);
            self.chunk.extend_from_slice(now);
            self.unwritten -= take as u64;
            data = rest;
            if self.chunk.len() == CHUNK_SIZE as usize && self.unwritten > 0 {
                let associated_data = self.associated_data();
                self.stream
                    .encrypt_next_in_place(associated_data, &mut self.chunk)
                    .expect("the header's check keeps the chunk count within the STREAM counter");
                self.out.write_all(&self.chunk)?;
                self.chunk.clear();
                self.sealed += 1;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<HashingWriter<'w>> {
        let associated_data = self.associated_data();
        self.stream
            .encrypt_last_in_place(associated_data, &mut self.chunk)
            .expect("XChaCha20-Poly1305 encrypts any chunk of at most 64 KiB");
        self.out.write_all(&self.chunk)?;
        Ok(self.out)
    }

    /// The header is the first chunk's associated data: see the crate documentation.
    fn associated_data(&self) -> &'h [u8] {
        if self.sealed == 0 {
            self.header_bytes
        } else {
            &[]
        }
    }
}

/// Writes the artifact, hashing and counting it on the way.
struct HashingWriter<'w> {
    inner: &'w mut dyn Write,
    sha256: Sha256,
    len: u64,
}

impl<'w> HashingWriter<'w> {
    fn new(inner: &'w mut dyn Write) -> Self {
        Self {
            inner,
            sha256: Sha256::new(),
            len: 0,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).map_err(Error::Artifact)?;
        self.sha256.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The artifact's sha256 and length, once the writer has handed every byte on.
    fn finish(self) -> Result<([u8; 32], u64)> {
        self.inner.flush().map_err(Error::Artifact)?;
        Ok((self.sha256.finalize().into(), self.len))
    }
}

//! The artifact's header: its byte layout (see the crate documentation), the checks every
//! header passes before a byte is decrypted, and the chunk plan it implies.

use std::io::{self, Read};

use borsh::{BorshDeserialize, BorshSerialize};
use market_protocol::weights::is_weight_file;

use crate::{Error, Result};

/// The artifact's first bytes.
pub const MAGIC: [u8; 8] = *b"mkt.seal";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// The only scheme so far: XChaCha20-Poly1305 in STREAM with a 32-bit big-endian counter.
pub const SCHEME: &str = "xchacha20poly1305-stream-be32";
/// Plaintext bytes per chunk. Fixed rather than chosen per artifact, so a header cannot make
/// the reader allocate an arbitrary buffer; 64 KiB as in age, where per-chunk costs are lost
/// in the noise.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Bytes of the STREAM nonce prefix: the 24-byte `XChaCha20` nonce less the 4-byte counter and
/// the last-chunk flag byte.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Poly1305 tag bytes after each chunk's plaintext.
pub const TAG_LEN: usize = 16;
/// Longest header body. It is read before anything is authenticated, so it is bounded; 1 MiB
/// holds a table of thousands of files.
pub const MAX_HEADER_LEN: u32 = 1 << 20;
/// Longest file name, as on common file systems.
const MAX_NAME_LEN: usize = 255;
/// Magic, version and body length.
const PREFIX_LEN: usize = 8 + 2 + 4;

#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileEntry {
    pub name: String,
    pub size: u64,
}

#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub scheme: String,
    pub chunk_size: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    pub files: Vec<FileEntry>,
}

impl Header {
    pub fn new(nonce_prefix: [u8; NONCE_PREFIX_LEN], files: Vec<FileEntry>) -> Self {
        Self {
            scheme: SCHEME.to_owned(),
            chunk_size: CHUNK_SIZE,
            nonce_prefix,
            files,
        }
    }

    /// The header's bytes as written, which are also the first chunk's associated data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = borsh::to_vec(self).expect("writing to a Vec");
        let len = u32::try_from(body.len()).expect("validated headers are at most 1 MiB");
        let mut bytes = Vec::with_capacity(PREFIX_LEN + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Reads and checks a header, returning it with its exact bytes.
    pub fn read(reader: &mut dyn Read) -> Result<(Self, Vec<u8>)> {
        let mut bytes = vec![0u8; PREFIX_LEN];
        read_header_bytes(reader, &mut bytes)?;
        let magic: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
        if magic != MAGIC {
            return Err(Error::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let len = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes"));
        if len > MAX_HEADER_LEN {
            return Err(Error::BadHeader(format!(
                "its body is {len} bytes, more than the {MAX_HEADER_LEN} allowed"
            )));
        }
        bytes.resize(PREFIX_LEN + usize::try_from(len).expect("at most 1 MiB"), 0);
        read_header_bytes(reader, &mut bytes[PREFIX_LEN..])?;
        let header: Self = borsh::from_slice(&bytes[PREFIX_LEN..])
            .map_err(|e| Error::BadHeader(format!("its body does not decode: {e}")))?;
        header.validate()?;
        Ok((header, bytes))
    }

    /// The checks both sides make: the one scheme and chunk size, plain file names in
    /// strictly increasing byte order (the order the weights hash lists them in, and no name
    /// twice), at least one weight file, and a total the STREAM counter can cover.
    pub fn validate(&self) -> Result<()> {
        if self.scheme != SCHEME {
            return Err(Error::UnsupportedScheme {
                found: self.scheme.clone(),
                supported: SCHEME,
            });
        }
        if self.chunk_size != CHUNK_SIZE {
            return Err(Error::UnsupportedChunkSize {
                found: self.chunk_size,
                supported: CHUNK_SIZE,
            });
        }
        for (i, file) in self.files.iter().enumerate() {
            check_name(&file.name)?;
            if let Some(previous) = i.checked_sub(1).map(|p| &self.files[p].name) {
                if previous.as_bytes() >= file.name.as_bytes() {
                    return Err(Error::BadHeader(format!(
                        "file `{}` comes after `{previous}`: names must be unique and in byte order",
                        file.name
                    )));
                }
            }
        }
        if !self.files.iter().any(|f| is_weight_file(f.name.as_ref())) {
            return Err(Error::BadHeader(
                "no .gguf or .safetensors file among its files".to_owned(),
            ));
        }
        let total = self
            .files
            .iter()
            .try_fold(0u64, |total, f| total.checked_add(f.size))
            .ok_or_else(|| Error::BadHeader("its file sizes overflow 64 bits".to_owned()))?;
        // The last counter value is reserved by STREAM for nothing after it.
        if total.div_ceil(u64::from(CHUNK_SIZE)) >= u64::from(u32::MAX) {
            return Err(Error::BadHeader(format!(
                "{total} bytes need more chunks than the 32-bit STREAM counter allows"
            )));
        }
        Ok(())
    }

    /// Plaintext bytes of the whole model.
    pub fn total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Number of chunks: at least one, since the last chunk always exists to carry the
    /// last-chunk flag, even for a model of 0 bytes.
    pub fn chunks(&self) -> u32 {
        let chunks = self.total().div_ceil(u64::from(CHUNK_SIZE)).max(1);
        u32::try_from(chunks).expect("validated against the STREAM counter")
    }

    /// Plaintext bytes of chunk `index`: every chunk is full but the last.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = u64::from(index) * u64::from(CHUNK_SIZE);
        let len = self
            .total()
            .saturating_sub(start)
            .min(u64::from(CHUNK_SIZE));
        usize::try_from(len).expect("at most CHUNK_SIZE")
    }
}

fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(Error::BadHeader(format!(
            "file name {name:?} is not a plain name of 1 to {MAX_NAME_LEN} bytes"
        )))
    }
}

fn read_header_bytes(reader: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::BadHeader("the artifact ends inside it".to_owned()),
        _ => Error::Artifact(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::new(
            [7; NONCE_PREFIX_LEN],
            vec![
                FileEntry {
                    name: "config.json".to_owned(),
                    size: 2,
                },
                FileEntry {
                    name: "model.safetensors".to_owned(),
                    size: u64::from(CHUNK_SIZE) + 1,
                },
            ],
        )
    }

    /// Pins the layout: a change to it must change this vector, and the format version.
    #[test]
    fn header_bytes_are_pinned() {
        let expected = concat!(
            "6d6b742e7365616c",                       // magic "mkt.seal"
            "0100",                                   // version 1
            "70000000",                               // body: 112 bytes
            "1d000000",                               // scheme: 29 bytes
            "786368616368613230706f6c7931333035",     // "xchacha20poly1305"
            "2d73747265616d2d62653332",               // "-stream-be32"
            "00000100",                               // chunk size 65536
            "07070707070707070707070707070707070707", // nonce prefix
            "02000000",                               // 2 files
            "0b000000",                               // name: 11 bytes
            "636f6e6669672e6a736f6e",                 // "config.json"
            "0200000000000000",                       // size 2
            "11000000",                               // name: 17 bytes
            "6d6f64656c2e7361666574656e736f7273",     // "model.safetensors"
            "0100010000000000",                       // size 65537
        );
        let bytes = header().to_bytes();
        assert_eq!(hex::encode(&bytes), expected);
        let (read, read_bytes) = Header::read(&mut bytes.as_slice()).unwrap();
        assert_eq!((read, read_bytes), (header(), bytes));
    }

    #[test]
    fn chunk_plan_covers_every_byte_and_always_has_a_last_chunk() {
        let h = header();
        assert_eq!(h.chunks(), 2);
        assert_eq!(h.chunk_len(0), 65536);
        assert_eq!(h.chunk_len(1), 3);
        let mut empty = h.clone();
        empty.files[1].size = 0;
        empty.files[0].size = 0;
        assert_eq!((empty.chunks(), empty.chunk_len(0)), (1, 0));
        let mut exact = h;
        exact.files[0].size = 0;
        exact.files[1].size = 2 * u64::from(CHUNK_SIZE);
        assert_eq!(
            exact.chunks(),
            2,
            "a full last chunk, not an extra empty one"
        );
        assert_eq!(exact.chunk_len(1), 65536);
    }

    #[test]
    fn validate_refuses_names_out_of_order_and_models_without_weights() {
        let mut h = header();
        h.files.swap(0, 1);
        assert!(matches!(h.validate(), Err(Error::BadHeader(m)) if m.contains("byte order")));
        let mut h = header();
        h.files[1].name = "../model.safetensors".to_owned();
        assert!(matches!(h.validate(), Err(Error::BadHeader(m)) if m.contains("plain name")));
        let mut h = header();
        h.files.truncate(1);
        assert!(matches!(h.validate(), Err(Error::BadHeader(m)) if m.contains(".gguf")));
        let mut h = header();
        h.files[1].size = u64::MAX;
        assert!(matches!(h.validate(), Err(Error::BadHeader(m)) if m.contains("overflow")));
    }
}

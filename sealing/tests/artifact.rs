//! Sealing and unsealing real files with real crypto: round trips at every chunk edge, and
//! one refusal per way an artifact can be altered (see the crate documentation for the
//! format these tests cut into).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use market_protocol::weights::weights_sha256;
use market_sealing::artifact::{CHUNK_SIZE, TAG_LEN};
use market_sealing::{seal, unseal, ContentKey, Error, ModelFile, SealedInfo};
use sha2::{Digest, Sha256};

const CHUNK: usize = CHUNK_SIZE as usize;
const SEALED_CHUNK: usize = CHUNK + TAG_LEN;

/// A directory under the system's temp dir, unique to this process and call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("market-sealing-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes that differ from file to file and from chunk to chunk (xorshift64).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn sealed(path: &Path, key: &ContentKey) -> (Vec<u8>, SealedInfo) {
    let mut artifact = Vec::new();
    let info = seal(path, key, &mut artifact).unwrap();
    (artifact, info)
}

fn header_len(artifact: &[u8]) -> usize {
    14 + u32::from_le_bytes(artifact[10..14].try_into().unwrap()) as usize
}

fn chunk_start(artifact: &[u8], index: usize) -> usize {
    header_len(artifact) + index * SEALED_CHUNK
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// The model the refusal tests alter: three files of 0 bytes, exactly one chunk, and three
/// chunks and a remainder, so 5 chunks in all and the last one short.
struct Model {
    _dir: TempDir,
    key: ContentKey,
    artifact: Vec<u8>,
}

const SHARD_1: &str = "model-00001-of-00002.safetensors";
const SHARD_2: &str = "model-00002-of-00002.safetensors";
const SHARD_2_LEN: usize = 3 * CHUNK + 1000;

fn model() -> Model {
    let dir = TempDir::new("model");
    dir.write("config.json", b"");
    dir.write(SHARD_1, &bytes(CHUNK, 1));
    dir.write(SHARD_2, &bytes(SHARD_2_LEN, 2));
    let key = ContentKey::generate();
    let (artifact, _) = sealed(&dir.0, &key);
    Model {
        _dir: dir,
        key,
        artifact,
    }
}

#[test]
fn a_single_file_round_trips_at_every_chunk_edge() {
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7] {
        let dir = TempDir::new("single");
        let data = bytes(len, len as u64);
        let path = dir.write("model.gguf", &data);
        let key = ContentKey::generate();
        let (artifact, info) = sealed(&path, &key);

        let chunks = len.div_ceil(CHUNK).max(1);
        assert_eq!(
            artifact.len(),
            header_len(&artifact) + len + chunks * TAG_LEN,
            "{len} bytes: every chunk is its plaintext and a tag, no padding"
        );
        assert_eq!(info.ciphertext_size, artifact.len() as u64);
        assert_eq!(
            info.ciphertext_sha256,
            <[u8; 32]>::from(Sha256::digest(&artifact))
        );
        let expected = weights_sha256(&path, |_, _| {}).unwrap();
        assert_eq!(
            info.weights_sha256, expected,
            "{len} bytes: hash as registered"
        );

        let unsealed = unseal(artifact.as_slice(), &key).unwrap();
        assert_eq!(
            unsealed.files,
            [ModelFile {
                name: "model.gguf".to_owned(),
                bytes: data
            }]
        );
        assert_eq!(unsealed.weights_sha256, expected);
    }
}

#[test]
fn a_directory_round_trips_every_file_directly_inside_in_name_order() {
    let dir = TempDir::new("dir");
    let shard_1 = bytes(CHUNK, 1);
    let shard_2 = bytes(SHARD_2_LEN, 2);
    // Written out of order; the artifact lists them in byte order of names.
    dir.write(SHARD_2, &shard_2);
    dir.write("config.json", b"");
    dir.write(SHARD_1, &shard_1);
    std::fs::create_dir(dir.0.join("sub")).unwrap();
    dir.write("sub/ignored.safetensors", b"not directly inside");
    let key = ContentKey::generate();
    let (artifact, info) = sealed(&dir.0, &key);
    let expected = weights_sha256(&dir.0, |_, _| {}).unwrap();
    assert_eq!(info.weights_sha256, expected, "the shards' listing hash");

    let unsealed = unseal(artifact.as_slice(), &key).unwrap();
    let names: Vec<_> = unsealed.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", SHARD_1, SHARD_2]);
    assert_eq!(unsealed.file("config.json"), Some(&b""[..]));
    assert_eq!(unsealed.file(SHARD_1), Some(shard_1.as_slice()));
    assert_eq!(unsealed.file(SHARD_2), Some(shard_2.as_slice()));
    assert_eq!(unsealed.weights_sha256, expected);

    let unsealed = unsealed.check_weights(&expected).unwrap();
    let mut other = expected;
    other[31] ^= 1;
    assert!(matches!(
        unsealed.check_weights(&other),
        Err(Error::WeightsMismatch { expected, actual })
            if expected == hex::encode(other) && actual == hex::encode(weights_sha256(&dir.0, |_, _| {}).unwrap())
    ));
}

#[test]
fn only_models_are_sealed() {
    let dir = TempDir::new("not-a-model");
    let notes = dir.write("notes.txt", b"hello");
    let key = ContentKey::generate();
    for path in [notes.as_path(), dir.0.as_path()] {
        assert!(
            matches!(seal(path, &key, Vec::new()), Err(Error::NotAModel { .. })),
            "{}",
            path.display()
        );
    }
    assert!(matches!(
        seal(&dir.0.join("missing"), &key, Vec::new()),
        Err(Error::Io { .. })
    ));
}

#[test]
fn a_wrong_key_is_refused_at_the_first_chunk() {
    let m = model();
    let wrong = ContentKey::generate();
    assert!(matches!(
        unseal(m.artifact.as_slice(), &wrong),
        Err(Error::Tampered { chunk: 0 })
    ));
    assert!(unseal(m.artifact.as_slice(), &m.key).is_ok());
}

#[test]
fn one_flipped_byte_anywhere_in_a_chunk_is_refused() {
    let m = model();
    for (chunk, offset) in [(0, 0), (2, 100), (2, SEALED_CHUNK - 1), (4, 1010)] {
        let mut artifact = m.artifact.clone();
        artifact[chunk_start(&m.artifact, chunk) + offset] ^= 0x01;
        assert!(
            matches!(unseal(artifact.as_slice(), &m.key), Err(Error::Tampered { chunk: c }) if c as usize == chunk),
            "byte {offset} of chunk {chunk}"
        );
    }
}

#[test]
fn truncation_is_refused_at_a_chunk_boundary_and_inside_a_chunk() {
    let m = model();
    let last = chunk_start(&m.artifact, 4);
    for (cut, chunk) in [
        (last, 4),                            // the whole last chunk dropped
        (last + 10, 4),                       // cut inside the last chunk
        (chunk_start(&m.artifact, 2) + 1, 2), // cut inside a middle chunk
        (header_len(&m.artifact), 0),         // nothing but the header
    ] {
        assert!(
            matches!(
                unseal(&m.artifact[..cut], &m.key),
                Err(Error::Truncated { chunk: c, chunks: 5 }) if c == chunk
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn reordered_chunks_are_refused() {
    let m = model();
    let mut artifact = m.artifact.clone();
    let (one, two) = (chunk_start(&m.artifact, 1), chunk_start(&m.artifact, 2));
    artifact[one..two].copy_from_slice(&m.artifact[two..two + SEALED_CHUNK]);
    artifact[two..two + SEALED_CHUNK].copy_from_slice(&m.artifact[one..two]);
    assert!(matches!(
        unseal(artifact.as_slice(), &m.key),
        Err(Error::Tampered { chunk: 1 })
    ));
}

#[test]
fn appended_bytes_are_refused() {
    let m = model();
    let mut one_byte = m.artifact.clone();
    one_byte.push(0);
    let mut a_chunk_again = m.artifact.clone();
    a_chunk_again.extend_from_slice(&m.artifact[chunk_start(&m.artifact, 4)..]);
    for artifact in [one_byte, a_chunk_again] {
        assert!(matches!(
            unseal(artifact.as_slice(), &m.key),
            Err(Error::TrailingData)
        ));
    }
}

#[test]
fn header_edits_are_refused() {
    let m = model();
    let header = header_len(&m.artifact);

    // A renamed file (still in name order, so only authentication can catch it).
    let mut renamed = m.artifact.clone();
    renamed[position(&m.artifact[..header], b"config.json") + 10] = b'o';
    // Sizes moved from one file to another: same total, so the same chunks.
    let mut resized = m.artifact.clone();
    let config_size = position(&m.artifact[..header], b"config.json") + 11;
    resized[config_size] = 1;
    let shard_2_size = position(&m.artifact[..header], SHARD_2.as_bytes()) + SHARD_2.len();
    let smaller = (SHARD_2_LEN as u64 - 1).to_le_bytes();
    resized[shard_2_size..shard_2_size + 8].copy_from_slice(&smaller);
    // Another nonce prefix: the 19 bytes before the file count.
    let mut renonced = m.artifact.clone();
    renonced[position(&m.artifact[..header], &CHUNK_SIZE.to_le_bytes()) + 4] ^= 1;
    for (what, artifact) in [("name", renamed), ("sizes", resized), ("nonce", renonced)] {
        assert!(
            matches!(
                unseal(artifact.as_slice(), &m.key),
                Err(Error::Tampered { chunk: 0 })
            ),
            "{what}"
        );
    }

    let mut magic = m.artifact.clone();
    magic[0] = b'M';
    assert!(matches!(
        unseal(magic.as_slice(), &m.key),
        Err(Error::BadMagic { .. })
    ));
    let mut version = m.artifact.clone();
    version[8] = 2;
    assert!(matches!(
        unseal(version.as_slice(), &m.key),
        Err(Error::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    let mut scheme = m.artifact.clone();
    scheme[position(&m.artifact[..header], b"be32")] = b'l';
    assert!(matches!(
        unseal(scheme.as_slice(), &m.key),
        Err(Error::UnsupportedScheme { found, .. }) if found == "xchacha20poly1305-stream-le32"
    ));
    let mut huge = m.artifact.clone();
    huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        unseal(huge.as_slice(), &m.key),
        Err(Error::BadHeader(_))
    ));
}

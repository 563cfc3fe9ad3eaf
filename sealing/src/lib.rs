//! Closed models: a model's files sealed at rest, and their key granted to chosen runners.
//!
//! A closed-model owner does not hand its weights to compute providers it does not trust:
//! whoever holds the file can leak it. So the owner seals the model once with a random
//! [`ContentKey`] ([`artifact::seal`]) and publishes the sealed artifact anywhere (mirrors,
//! storage hosts); for each runner it chooses, it wraps the content key to that runner's
//! X25519 [`SealingPublicKey`] with HPKE ([`grant::wrap`]) and posts the [`Grant`] to the hub.
//! The runner unwraps its grant ([`grant::unwrap`]) and decrypts the artifact chunk by chunk
//! into memory ([`artifact::unseal`]), checking the plaintext against the weights hash the
//! hub registered. A runner's sealing key is tied to its ed25519 receipt key by a signature
//! ([`binding`]), so an owner grants to the runner it knows, not to a key someone swapped in;
//! and, where the runner runs in a TEE, to that TEE by a quote over the binding
//! ([`attestation`]), so an owner grants to code it measured, not to the runner's operator.
//!
//! # What sealing protects, and what it does not
//!
//! It keeps the weights from everyone without a grant: storage hosts, mirrors, the hub's
//! readers, runners the owner did not choose. It detects any change to the artifact: an
//! edited byte, header or file table, dropped, reordered or appended chunks, and a
//! truncated file are all refused before a single byte is served. It does not stop
//! a granted runner from copying what it decrypted: only a TEE whose attestation gates the
//! grant does. Grants stay public on chain forever, so a leaked sealing key exposes every
//! content key ever granted to it; runners rotate sealing keys, and owners rotate a model
//! by sealing a new version under a new content key.
//!
//! # Sealed artifact format (version 1)
//!
//! Integers are little endian; strings and lists are borsh (a `u32` length, then the bytes
//! or items). The header is
//!
//! | bytes | field |
//! |-------|-------|
//! | 8     | magic `mkt.seal` ([`artifact::MAGIC`]) |
//! | 2     | format version, `1` |
//! | 4     | length of the body that follows, at most [`artifact::MAX_HEADER_LEN`] |
//! | …     | body: `borsh(scheme: String, chunk_size: u32, nonce_prefix: [u8; 19], files: Vec<(name: String, size: u64)>)` |
//!
//! with scheme `xchacha20poly1305-stream-be32` ([`artifact::SCHEME`]), chunk size 64 KiB
//! ([`artifact::CHUNK_SIZE`]) and the files in byte order of their names. Then come the
//! files' bytes, concatenated in that order, cut into chunks of exactly the chunk size (the
//! last one shorter or, for a model of 0 bytes, empty) and each encrypted with
//! XChaCha20-Poly1305 in the STREAM construction of Hoang, Reyhanitabar, Rogaway and
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance" (2015),
//! as the `aead` crate's `stream::EncryptorBE32` builds it: nonce = prefix ‖ `u32` big-endian
//! chunk counter ‖ last-chunk flag byte. Each chunk is its plaintext plus a 16-byte tag.
//! The first chunk's associated data is the whole header, from the magic to the end of the
//! body. Hence:
//!
//! * an edited name, size, scheme or nonce prefix fails the first chunk;
//! * a chunk moved elsewhere fails (its counter is in the nonce);
//! * a stream cut at a chunk boundary fails (no chunk there carries the last flag), and
//!   bytes after the last chunk are refused;
//! * chunks spliced from another artifact fail (another nonce prefix, or another key).
//!
//! A model path is what `market_protocol::weights` understands: one `.gguf` or
//! `.safetensors` file, or a directory, of which every file directly inside is sealed
//! (configuration and tokenizer too), so the runner gets the whole model from memory. The
//! weights hash is `market_protocol::weights`' own definition, computed while sealing and
//! again while unsealing.
//!
//! # Key strings
//!
//! Content keys, sealing keys and sealing public keys are written as 64 lowercase hex
//! digits of their 32 bytes (`Display`, `FromStr` and serde for public keys; an explicit
//! `to_hex` for secrets, so that no secret ends up in a log by a stray `{}`).

pub mod artifact;
pub mod attestation;
pub mod binding;
mod content_key;
mod error;
pub mod grant;
mod sealing_key;

pub use artifact::{seal, unseal, ModelFile, SealedInfo, Unsealed, SCHEME};
pub use attestation::{
    check_record, report_data_for, AttestationPolicy, DcapVerifier, QuoteVerifier, Tee,
    VerifiedQuote,
};
pub use binding::{bind_message, verify_binding};
pub use content_key::ContentKey;
pub use error::{AttestationError, Error, Result};
pub use grant::{Grant, GrantContext};
pub use sealing_key::{SealingKey, SealingPublicKey};

/// The operating system's random generator, which every key and nonce here comes from.
fn os_rng() -> rand_core::UnwrapErr<rand_core::OsRng> {
    rand_core::UnwrapErr(rand_core::OsRng)
}

/// The 32 bytes of a key written as 64 hex digits; `what` names the key in the error.
fn parse_hex32(what: &'static str, text: &str) -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|e| Error::BadKey {
        what,
        reason: format!("expected 64 hex digits: {e}"),
    })?;
    Ok(bytes)
}

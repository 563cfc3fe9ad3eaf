//! Deterministic ids for receipts and data, derived from the id of what created them.

use near_primitives_core::hash::{hash, CryptoHash};

pub fn derive(parent: &CryptoHash, kind: &[u8], index: u64) -> CryptoHash {
    let mut bytes = Vec::with_capacity(32 + kind.len() + 8);
    bytes.extend_from_slice(parent.as_ref());
    bytes.extend_from_slice(kind);
    bytes.extend_from_slice(&index.to_le_bytes());
    hash(&bytes)
}

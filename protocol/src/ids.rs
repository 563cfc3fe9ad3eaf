//! Identifiers and their validation rules.
//!
//! Model ids, content ids and chain ids go verbatim into the JSON text a user signs
//! (see [`crate::Authorization::message`]); restricting them to a small alphabet means that
//! text needs no escaping and every implementation produces the same bytes.

use near_sdk::{near, AccountId};

/// A sha256 digest or any other 32-byte commitment; JSON as base58, like NEAR's hashes.
pub type Hash32 = near_sdk::json_types::Base58CryptoHash;

/// Longest model or content id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 32;

/// A payment channel: one user paying one runner.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId {
    pub user: AccountId,
    pub runner: AccountId,
}

fn validate(kind: &str, id: &str, max: usize) -> Result<(), String> {
    if id.is_empty() || id.len() > max {
        return Err(format!(
            "{kind} `{id}` must be 1 to {max} bytes long, not {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{kind} `{id}` contains `{c}`: only a-z, 0-9, `-`, `_` and `.` are allowed"
        ));
    }
    Ok(())
}

pub fn validate_model_id(id: &str) -> Result<(), String> {
    validate("model id", id, MAX_ID_LEN)
}

pub fn validate_content_id(id: &str) -> Result<(), String> {
    validate("content id", id, MAX_ID_LEN)
}

pub fn validate_chain_id(id: &str) -> Result<(), String> {
    validate("chain id", id, MAX_CHAIN_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_what_would_need_escaping() {
        assert!(validate_model_id("smollm2-135m.q4_1").is_ok());
        assert!(validate_model_id("").unwrap_err().contains("1 to 64 bytes"));
        assert!(validate_model_id(&"a".repeat(65))
            .unwrap_err()
            .contains("not 65"));
        assert!(validate_model_id("Model").unwrap_err().contains("`M`"));
        assert!(validate_model_id("a\"b").unwrap_err().contains("`\"`"));
        assert!(validate_chain_id("mainnet").is_ok());
        assert!(validate_chain_id("net\\n").is_err());
    }
}

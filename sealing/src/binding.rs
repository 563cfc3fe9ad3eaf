//! A runner's sealing key tied to its ed25519 receipt key by a signature. Owners grant to
//! the sealing key the hub lists for a runner; without this binding, whoever could change that
//! listing would receive the owner's next grants. The signed message names the hub, chain and
//! runner, so a binding cannot be replayed for another runner or on another deployment.
//!
//! The message is `market_protocol::sealing::SealingKeyBinding`'s, which the hub checks too;
//! this module only gives it typed arguments and an off-chain verifier.

use market_protocol::crypto;
use market_protocol::sealing::SealingKeyBinding;
use market_protocol::{NativeCrypto, Signature};
use near_sdk::{AccountId, PublicKey};

use crate::{Error, Result, SealingPublicKey};

/// What the runner's receipt key signs:
/// `sha256(borsh(u32 SEALING_KEY_TAG) ‖ borsh(hub, chain_id, runner) ‖ sealing key)`, strings
/// as a `u32` little-endian length and UTF-8 bytes, the key as its 32 bytes.
pub fn bind_message(
    hub: &AccountId,
    chain_id: &str,
    runner: &AccountId,
    sealing_key: &SealingPublicKey,
) -> [u8; 32] {
    SealingKeyBinding {
        hub: hub.to_string(),
        chain_id: chain_id.to_owned(),
        runner: runner.to_string(),
        sealing_key: *sealing_key.as_bytes(),
    }
    .prehash(&NativeCrypto)
}

/// Checks that `receipt_key` signed the binding of `sealing_key` to `runner` on `hub`.
pub fn verify_binding(
    hub: &AccountId,
    chain_id: &str,
    runner: &AccountId,
    sealing_key: &SealingPublicKey,
    receipt_key: &PublicKey,
    signature: &Signature,
) -> Result<()> {
    let message = bind_message(hub, chain_id, runner, sealing_key);
    if crypto::verify(&NativeCrypto, receipt_key, signature, &message) {
        Ok(())
    } else {
        Err(Error::BindingInvalid {
            runner: runner.to_string(),
            sealing_key: sealing_key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the message: the hub, owners' tools and runners must hash the same bytes.
    #[test]
    fn bind_message_is_pinned() {
        let message = bind_message(
            &"hub.near".parse().unwrap(),
            "mainnet",
            &"r.near".parse().unwrap(),
            &SealingPublicKey::from_bytes([9; 32]),
        );
        assert_eq!(
            hex::encode(message),
            "5542fea8f0a65a62090b1b35895d4e8cac02d9b75a9f58a5a5f535f8e9d296a8"
        );
    }
}

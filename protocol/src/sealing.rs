//! What a runner signs to bind its X25519 sealing key (which content keys of sealed models
//! are wrapped to) to its identity on the hub: one of its registered ed25519 receipt keys
//! signs `sha256(borsh(u32 SEALING_KEY_TAG) ‖ borsh(SealingKeyBinding))`. The hub verifies
//! it before recording the key, so an owner wrapping a content key to the recorded key
//! wraps it to that runner, and to no key a third party slipped in.

use near_sdk::near;

use crate::Crypto;

/// NEP-461 off-chain prefix tag of sealing-key bindings (2^31 + 73,414): distinct from
/// receipts' and NEP-413's, so a binding signature passes for nothing else.
pub const SEALING_KEY_TAG: u32 = (1 << 31) + 73_414;

/// Length of an X25519 public key.
pub const SEALING_KEY_LEN: usize = 32;

#[near(serializers = [borsh])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealingKeyBinding {
    /// The hub account and its chain: a binding is valid on one hub only.
    pub hub: String,
    pub chain_id: String,
    pub runner: String,
    pub sealing_key: [u8; SEALING_KEY_LEN],
}

impl SealingKeyBinding {
    /// What the receipt key signs.
    pub fn prehash(&self, crypto: &impl Crypto) -> [u8; 32] {
        let mut bytes = Vec::with_capacity(128);
        borsh::BorshSerialize::serialize(&SEALING_KEY_TAG, &mut bytes).expect("writing to a Vec");
        borsh::BorshSerialize::serialize(self, &mut bytes).expect("writing to a Vec");
        crypto.sha256(&bytes)
    }
}

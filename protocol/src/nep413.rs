//! NEP-413 (`signMessage`) payloads: what a NEAR wallet signs when a dApp asks it to sign a
//! message. <https://github.com/near/NEPs/blob/master/neps/nep-0413.md>
//!
//! prehash = sha256(borsh(u32 tag = 2^31 + 413) ‖ borsh(payload)), signed with ed25519.

use borsh::BorshSerialize;

/// NEP-461 off-chain prefix for NEP-413 messages.
pub const NEP413_TAG: u32 = (1 << 31) + 413;

#[derive(BorshSerialize, Debug, Clone, PartialEq, Eq)]
#[borsh(crate = "borsh")]
pub struct Nep413Payload<'a> {
    pub message: &'a str,
    pub nonce: [u8; 32],
    pub recipient: &'a str,
    pub callback_url: Option<&'a str>,
}

impl Nep413Payload<'_> {
    /// The exact bytes that are hashed: tag then payload.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(4 + 4 + self.message.len() + 32 + 4 + self.recipient.len() + 1);
        NEP413_TAG.serialize(&mut bytes).expect("writing to a Vec");
        self.serialize(&mut bytes).expect("writing to a Vec");
        bytes
    }
}

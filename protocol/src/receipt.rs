//! The runner's cumulative usage receipt for one channel.
//!
//! Every field is cumulative over the channel's life, so a later receipt supersedes every
//! earlier one and only the latest per channel needs to reach the chain; the hub charges the
//! difference from what it already settled. Amounts are kept per model version (and per
//! content item) because the fee split differs per model.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::{
    crypto::{self, Crypto, Signature},
    ids::{validate_content_id, validate_model_id, Hash32},
    SignedAuthorization,
};

/// NEP-461 off-chain prefix tag of usage receipts (2^31 + 73,413): distinct from NEP-413's,
/// so a receipt signature can never pass for a wallet message or a transaction.
pub const RECEIPT_TAG: u32 = (1 << 31) + 73_413;

/// At most this many model lines (and content lines) per receipt; bounds the hub's
/// per-channel storage.
pub const MAX_LINES: usize = 4;

/// Cumulative usage of one model version on the channel.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageLine {
    pub model_id: String,
    pub version: u32,
    pub units_in: U64,
    pub units_out: U64,
    /// Cumulative yocto charged for this model version.
    pub amount: U128,
}

/// Cumulative inference-time use of one registered content item on the channel.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentLine {
    pub content_id: String,
    pub uses: U64,
    pub amount: U128,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageReceipt {
    pub user: AccountId,
    pub runner: AccountId,
    /// Id (NEP-413 prehash) of the authorization this spends under.
    pub authorization: Hash32,
    /// Strictly increasing per channel.
    pub seq: U64,
    pub lines: Vec<UsageLine>,
    pub content: Vec<ContentLine>,
    /// Cumulative total: the sum of every line's and content line's amount.
    pub amount: U128,
    /// sha256 of the latest request and of its output (see the runner's docs for the exact bytes).
    pub request_hash: Hash32,
    pub output_hash: Hash32,
    /// Hash chain over every request of the channel: see [`next_transcript`].
    pub transcript: Hash32,
    pub issued_at_ns: U64,
}

/// `transcript_n = sha256(transcript_{n-1} ‖ request_hash_n ‖ output_hash_n)`, from 32 zero
/// bytes; commits the receipt to every request and output the channel served.
pub fn next_transcript(
    crypto: &impl Crypto,
    previous: &[u8; 32],
    request: &[u8; 32],
    output: &[u8; 32],
) -> [u8; 32] {
    let mut bytes = [0u8; 96];
    bytes[..32].copy_from_slice(previous);
    bytes[32..64].copy_from_slice(request);
    bytes[64..].copy_from_slice(output);
    crypto.sha256(&bytes)
}

impl UsageReceipt {
    /// `sha256(borsh(u32 RECEIPT_TAG) ‖ borsh(receipt))`.
    pub fn prehash(&self, crypto: &impl Crypto) -> [u8; 32] {
        crypto.sha256(&self.signing_bytes())
    }

    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256);
        borsh::BorshSerialize::serialize(&RECEIPT_TAG, &mut bytes).expect("writing to a Vec");
        borsh::BorshSerialize::serialize(self, &mut bytes).expect("writing to a Vec");
        bytes
    }

    /// Shape checks that need no state: ids, duplicates, and the total.
    pub fn validate(&self) -> Result<(), String> {
        if self.lines.len() > MAX_LINES || self.content.len() > MAX_LINES {
            return Err(format!(
                "a receipt has at most {MAX_LINES} model lines and {MAX_LINES} content lines, not {} and {}",
                self.lines.len(),
                self.content.len()
            ));
        }
        let mut total: u128 = 0;
        for (i, line) in self.lines.iter().enumerate() {
            validate_model_id(&line.model_id)?;
            if self.lines[..i]
                .iter()
                .any(|l| l.model_id == line.model_id && l.version == line.version)
            {
                return Err(format!(
                    "model `{}` version {} has two lines",
                    line.model_id, line.version
                ));
            }
            total = total
                .checked_add(line.amount.0)
                .ok_or("line amounts overflow u128")?;
        }
        for (i, line) in self.content.iter().enumerate() {
            validate_content_id(&line.content_id)?;
            if self.content[..i]
                .iter()
                .any(|l| l.content_id == line.content_id)
            {
                return Err(format!("content `{}` has two lines", line.content_id));
            }
            total = total
                .checked_add(line.amount.0)
                .ok_or("content amounts overflow u128")?;
        }
        if total != self.amount.0 {
            return Err(format!(
                "receipt amount {} is not the sum of its lines, {total}",
                self.amount.0
            ));
        }
        Ok(())
    }
}

/// A receipt with the runner's signature.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    pub receipt: UsageReceipt,
    /// One of the runner's keys registered on the hub.
    pub runner_key: PublicKey,
    pub signature: Signature,
}

impl SignedReceipt {
    pub fn verify(&self, crypto: &impl Crypto) -> bool {
        crypto::verify(
            crypto,
            &self.runner_key,
            &self.signature,
            &self.receipt.prehash(crypto),
        )
    }

    #[cfg(feature = "sign")]
    pub fn sign(receipt: UsageReceipt, key: &crate::crypto::native::KeyPair) -> Self {
        let signature = key.sign(&receipt.prehash(&crate::NativeCrypto));
        Self {
            receipt,
            runner_key: key.public_key(),
            signature,
        }
    }
}

/// One entry of a `settle` batch. The authorization may be left out once the hub remembers
/// it for the channel (it remembers the last one it verified), which saves its bytes and
/// the user-signature check.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleItem {
    pub receipt: SignedReceipt,
    pub authorization: Option<SignedAuthorization>,
}

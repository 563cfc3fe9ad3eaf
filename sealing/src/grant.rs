//! A content key wrapped to one runner: HPKE (RFC 9180) in base mode with
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, the `info` binding the
//! grant to one hub, chain, model version and runner. A grant copied to another runner, model,
//! version, hub or chain does not open, so grants can sit in public on chain.

use std::fmt;

use borsh::BorshSerialize;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use near_sdk::AccountId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{ContentKey, Error, Result, SealingKey, SealingPublicKey};

/// First item of every grant's HPKE `info`, so it can be mistaken for no other use of HPKE.
pub const GRANT_INFO_LABEL: &str = "ai-market sealing grant v1";

/// What a grant is for. Every field goes into the HPKE `info`.
#[derive(BorshSerialize, Clone, Debug, PartialEq, Eq)]
pub struct GrantContext {
    pub hub: AccountId,
    pub chain_id: String,
    pub model_id: String,
    pub version: u32,
    pub runner: AccountId,
}

impl GrantContext {
    /// The HPKE `info`: `borsh(GRANT_INFO_LABEL) ‖ borsh(self)`, that is the label, `hub`,
    /// `chain_id` and `model_id` each as a `u32` little-endian byte length and their UTF-8
    /// bytes, `version` as a `u32` little endian, then `runner` like the strings. The length
    /// prefixes make it unambiguous: two contexts never share an encoding.
    pub fn info(&self) -> Vec<u8> {
        borsh::to_vec(&(GRANT_INFO_LABEL, self)).expect("writing to a Vec")
    }
}

impl fmt::Display for GrantContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model {} version {} for {} on {} ({})",
            self.model_id, self.version, self.runner, self.hub, self.chain_id
        )
    }
}

/// A content key wrapped to one runner's sealing key; JSON as hex strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// HPKE's encapsulated key: the sender's ephemeral X25519 public key, 32 bytes.
    #[serde(with = "hex")]
    pub enc: Vec<u8>,
    /// The content key sealed with ChaCha20-Poly1305: 32 bytes and a 16-byte tag.
    #[serde(with = "hex")]
    pub ciphertext: Vec<u8>,
}

/// Wraps `key` to the runner holding `runner`'s secret, for `context` only.
pub fn wrap(key: &ContentKey, runner: &SealingPublicKey, context: &GrantContext) -> Result<Grant> {
    let (enc, ciphertext) =
        hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &runner.to_hpke(),
            &context.info(),
            key.as_bytes(),
            &[],
            &mut crate::os_rng(),
        )
        // The one way to fail: a public key of low order, whose shared secret is zero.
        .map_err(|_| Error::BadSealingKey(runner.to_string()))?;
    Ok(Grant {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// The content key in `grant`, if it was wrapped to `secret`'s public key for exactly
/// `context`.
pub fn unwrap(grant: &Grant, secret: &SealingKey, context: &GrantContext) -> Result<ContentKey> {
    let refused = || Error::GrantRefused {
        context: context.to_string(),
    };
    let enc =
        <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&grant.enc).map_err(|_| refused())?;
    let plaintext = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret.0,
        &enc,
        &context.info(),
        &grant.ciphertext,
        &[],
    )
    .map(Zeroizing::new)
    .map_err(|_| refused())?;
    let bytes: &[u8; 32] = plaintext.as_slice().try_into().map_err(|_| refused())?;
    Ok(ContentKey::from_bytes(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the `info` bytes: owners and runners built apart must agree on them.
    #[test]
    fn info_bytes_are_pinned() {
        let context = GrantContext {
            hub: "hub.near".parse().unwrap(),
            chain_id: "mainnet".to_owned(),
            model_id: "m".to_owned(),
            version: 258,
            runner: "r.near".parse().unwrap(),
        };
        let expected = concat!(
            "1a000000",
            "61692d6d61726b6574207365616c696e67206772616e74207631", // "ai-market sealing grant v1"
            "08000000",
            "6875622e6e656172", // "hub.near"
            "07000000",
            "6d61696e6e6574", // "mainnet"
            "01000000",
            "6d",       // "m"
            "02010000", // 258
            "06000000",
            "722e6e656172", // "r.near"
        );
        assert_eq!(hex::encode(context.info()), expected);
    }
}

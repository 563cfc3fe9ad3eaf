//! The user's spending authorization for one channel.
//!
//! Signed as a NEP-413 message ([`crate::nep413`]) whose `recipient` is the hub account and
//! whose `message` is the canonical JSON text of the authorization ([`Authorization::message`]),
//! so the hub account and the chain id are inside the signed bytes: an authorization cannot
//! be replayed on another hub or another network.
//!
//! Version 2 signs price ceilings: per model, the most the user pays per 1,000 units in and
//! out and the most units one request may use; and the only content a runner may charge
//! for, each with the most per use. Within the cap a runner can then charge only what the
//! user saw and signed (the hub's rules are in its README, "Signed price ceilings").

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::{
    crypto::{self, Crypto, Signature},
    ids::{validate_chain_id, validate_content_id, validate_model_id, Hash32},
    nep413::Nep413Payload,
};

/// At most this many models per authorization; bounds the hub's per-channel storage.
pub const MAX_AUTHORIZED_MODELS: usize = 4;
/// The longest an authorization may live once the hub pins it (90 days): a runner's bond
/// stays until its pinned authorizations expire, so an endless one would lock it for good.
pub const MAX_LIFETIME_NS: u64 = 90 * 86_400 * 1_000_000_000;

/// At most this many content items per authorization; bounds the hub's per-channel storage.
pub const MAX_AUTHORIZED_CONTENT: usize = 4;

/// A model the authorization covers, with the most the user pays for it.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCeiling {
    pub model_id: String,
    /// Yocto per 1,000 input units, and per 1,000 output units, at most.
    pub max_in_per_1k: U128,
    pub max_out_per_1k: U128,
    /// Units (in + out) one request may use, at most.
    pub max_units_per_request: U64,
}

#[cfg(feature = "sign")]
impl ModelCeiling {
    /// Covers `model_id` at any price and request size: only the cap bounds spending.
    /// For tests, which check everything but the ceilings; users sign real ones.
    pub fn unbounded(model_id: &str) -> Self {
        Self {
            model_id: model_id.into(),
            max_in_per_1k: U128(u128::MAX),
            max_out_per_1k: U128(u128::MAX),
            max_units_per_request: U64(u64::MAX),
        }
    }
}

/// Inference-time content the authorization allows, with the most one use may cost.
/// There is no wildcard: a runner could register content of its own at the ceiling.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentCeiling {
    pub content_id: String,
    pub max_per_use: U128,
}

/// What the user allows one runner to charge.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The hub contract the money is escrowed in (NEP-413 `recipient` too).
    pub hub: AccountId,
    /// `mainnet`, `testnet`, or a local chain's id.
    pub chain_id: String,
    pub user: AccountId,
    pub runner: AccountId,
    /// Cumulative cap in yocto NEAR over the channel's whole life.
    pub cap: U128,
    /// Block timestamp (ns) from which receipts under this authorization no longer settle.
    pub expires_at_ns: U64,
    /// The models it covers, with their price ceilings.
    pub models: Vec<ModelCeiling>,
    /// The content a runner may put into the context and charge for (none if empty).
    pub content: Vec<ContentCeiling>,
    /// The user's key that signs it; must be registered on the hub.
    pub public_key: PublicKey,
}

/// Field order here is the canonical order of the signed JSON text.
#[derive(serde::Serialize)]
#[serde(crate = "near_sdk::serde")]
struct Message<'a> {
    kind: &'static str,
    hub: &'a AccountId,
    chain_id: &'a str,
    user: &'a AccountId,
    runner: &'a AccountId,
    cap: U128,
    expires_at_ns: U64,
    models: &'a [ModelCeiling],
    content: &'a [ContentCeiling],
    public_key: &'a PublicKey,
}

/// Version 1 (models without ceilings, no content) is no longer accepted: its receipts
/// could spend the cap on content the user never chose (docs/decisions.md).
pub const AUTHORIZATION_KIND: &str = "ai-market-authorization-v2";

impl Authorization {
    /// The text the user signs: compact JSON, fields in declaration order, numbers as
    /// decimal strings, the key as `ed25519:<base58>`. Ids are restricted so that no
    /// escaping ever occurs (see [`crate::ids`]).
    pub fn message(&self) -> String {
        near_sdk::serde_json::to_string(&Message {
            kind: AUTHORIZATION_KIND,
            hub: &self.hub,
            chain_id: &self.chain_id,
            user: &self.user,
            runner: &self.runner,
            cap: self.cap,
            expires_at_ns: self.expires_at_ns,
            models: &self.models,
            content: &self.content,
            public_key: &self.public_key,
        })
        .expect("serializing plain fields cannot fail")
    }

    /// Shape checks that need no state.
    pub fn validate(&self) -> Result<(), String> {
        validate_chain_id(&self.chain_id)?;
        if self.models.is_empty() || self.models.len() > MAX_AUTHORIZED_MODELS {
            return Err(format!(
                "an authorization covers 1 to {MAX_AUTHORIZED_MODELS} models, not {}",
                self.models.len()
            ));
        }
        for (i, model) in self.models.iter().enumerate() {
            validate_model_id(&model.model_id)?;
            if self.models[..i]
                .iter()
                .any(|m| m.model_id == model.model_id)
            {
                return Err(format!("model `{}` is listed twice", model.model_id));
            }
            if model.max_units_per_request.0 == 0 {
                return Err(format!(
                    "model `{}` allows 0 units per request",
                    model.model_id
                ));
            }
        }
        if self.content.len() > MAX_AUTHORIZED_CONTENT {
            return Err(format!(
                "an authorization allows at most {MAX_AUTHORIZED_CONTENT} content items, not {}",
                self.content.len()
            ));
        }
        for (i, item) in self.content.iter().enumerate() {
            validate_content_id(&item.content_id)?;
            if self.content[..i]
                .iter()
                .any(|c| c.content_id == item.content_id)
            {
                return Err(format!("content `{}` is listed twice", item.content_id));
            }
        }
        if crypto::ed25519_key_bytes(&self.public_key).is_none() {
            return Err(format!(
                "authorization key {} is not an ed25519 key",
                String::from(&self.public_key)
            ));
        }
        Ok(())
    }

    pub fn covers(&self, model_id: &str) -> bool {
        self.ceiling(model_id).is_some()
    }

    /// The ceilings of `model_id`, if the authorization covers it.
    pub fn ceiling(&self, model_id: &str) -> Option<&ModelCeiling> {
        self.models.iter().find(|m| m.model_id == model_id)
    }

    /// The per-use ceiling of `content_id`, if the authorization allows it.
    pub fn content_ceiling(&self, content_id: &str) -> Option<u128> {
        self.content
            .iter()
            .find(|c| c.content_id == content_id)
            .map(|c| c.max_per_use.0)
    }
}

/// An authorization with the NEP-413 nonce and the user's signature.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAuthorization {
    pub authorization: Authorization,
    /// The NEP-413 nonce: 32 bytes the signer picks at random.
    pub nonce: Hash32,
    pub signature: Signature,
}

impl SignedAuthorization {
    /// The NEP-413 prehash; it is also the authorization's id, which receipts name.
    pub fn prehash(&self, crypto: &impl Crypto) -> [u8; 32] {
        let message = self.authorization.message();
        let payload = Nep413Payload {
            message: &message,
            nonce: self.nonce.into(),
            recipient: self.authorization.hub.as_str(),
            callback_url: None,
        };
        crypto.sha256(&payload.signing_bytes())
    }

    /// The authorization's id if its signature by `authorization.public_key` is valid.
    pub fn verify(&self, crypto: &impl Crypto) -> Option<[u8; 32]> {
        let prehash = self.prehash(crypto);
        crypto::verify(
            crypto,
            &self.authorization.public_key,
            &self.signature,
            &prehash,
        )
        .then_some(prehash)
    }

    #[cfg(feature = "sign")]
    pub fn sign(
        authorization: Authorization,
        nonce: [u8; 32],
        key: &crate::crypto::native::KeyPair,
    ) -> Self {
        let mut signed = Self {
            authorization,
            nonce: nonce.into(),
            signature: Vec::new().into(),
        };
        signed.signature = key.sign(&signed.prehash(&crate::NativeCrypto));
        signed
    }
}

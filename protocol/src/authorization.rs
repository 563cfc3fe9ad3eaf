//! The user's spending authorization for one channel.
//!
//! Signed as a NEP-413 message ([`crate::nep413`]) whose `recipient` is the hub account and
//! whose `message` is the canonical JSON text of the authorization ([`Authorization::message`]),
//! so the hub account and the chain id are inside the signed bytes: an authorization cannot
//! be replayed on another hub or another network.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::{
    crypto::{self, Crypto, Signature},
    ids::{validate_chain_id, validate_model_id, Hash32},
    nep413::Nep413Payload,
};

/// At most this many models per authorization; bounds the hub's per-channel storage.
pub const MAX_AUTHORIZED_MODELS: usize = 4;

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
    /// The model ids it covers.
    pub models: Vec<String>,
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
    models: &'a [String],
    public_key: &'a PublicKey,
}

pub const AUTHORIZATION_KIND: &str = "ai-market-authorization-v1";

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
            validate_model_id(model)?;
            if self.models[..i].contains(model) {
                return Err(format!("model `{model}` is listed twice"));
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
        self.models.iter().any(|m| m == model_id)
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

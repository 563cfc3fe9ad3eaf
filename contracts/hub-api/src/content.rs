//! Content: what models are trained on, and what runners put into a model's context.

use market_protocol::Hash32;
use near_sdk::{json_types::U128, near, AccountId};

/// How a content item may be used.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum License {
    /// Never handed out for training; paid per use when a runner puts it into a model's
    /// context at inference time.
    InferenceOnly { price_per_use: U128 },
    /// May be named in a training manifest: its owner gets a share of the model's token.
    OpenForTraining,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentItem {
    pub owner: AccountId,
    pub sha256: Hash32,
    pub uri: String,
    pub license: License,
}

impl ContentItem {
    /// The price per use, if the item is inference-only content.
    pub fn price_per_use(&self) -> Option<u128> {
        match self.license {
            License::InferenceOnly { price_per_use } => Some(price_per_use.0),
            License::OpenForTraining => None,
        }
    }
}

/// The content registry and per-use royalties. The hub contract implements it; callers use [`crate::methods`].
pub trait Content {
    /// Registers a content item owned by the caller. Attach storage (surplus refunded).
    fn register_content(
        &mut self,
        content_id: String,
        sha256: Hash32,
        uri: String,
        license: License,
    );

    fn content(&self, content_id: String) -> Option<ContentItem>;

    /// Per-use royalties earned by `owner` and not yet withdrawn.
    fn content_earnings(&self, owner: AccountId) -> U128;

    /// Pays the caller's content royalties (all of them, or `amount`). One yocto (a
    /// full-access key).
    fn withdraw_content_earnings(&mut self, amount: Option<U128>);
}

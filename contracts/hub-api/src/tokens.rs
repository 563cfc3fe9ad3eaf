//! Model tokens: issuance with a training manifest.

use near_sdk::{near, Promise};

/// One entry of a training manifest: registered open content and its weight.
#[near(serializers = [json])]
#[derive(Clone, Debug)]
pub struct ManifestEntry {
    pub content_id: String,
    pub weight: u32,
}

/// Model tokens: their code, issuance and the holders' share. The hub contract implements it; callers use [`crate::methods`].
pub trait Tokens {
    /// Owner: the model token's wasm (borsh `Vec<u8>`), deployed by `issue_token`. Attach
    /// its storage (surplus refunded).
    fn set_token_code(&mut self, code: Vec<u8>);

    /// Owner: the hash of the model token deployed as a global contract (near-cli-rs
    /// `deploy-global-contract`). Token accounts then refer to it instead of storing the
    /// code: issuing a token costs about 0.02 NEAR of storage instead of about 1.9.
    /// One yocto (a full-access key).
    fn set_token_code_hash(&mut self, code_hash: market_protocol::Hash32);

    /// The model's owner issues its token on `<model_id>.<hub>`. The training manifest
    /// names registered open content with weights; the developer's own weight is
    /// `developer_weight` (see [`allocations`] for the split). Attach the token account's
    /// storage (the code's bytes and `token_state_bytes` of its holders at the storage
    /// price) and the manifest's; the rest is refunded. The token account is recorded at
    /// once, so a second issuance is refused until this one fails.
    fn issue_token(
        &mut self,
        model_id: String,
        symbol: String,
        manifest: Vec<ManifestEntry>,
        developer_weight: u32,
    ) -> Promise;

    /// Sends the model's accrued holders' share to its token (anyone may call). One call per
    /// model however many receipts accrued it.
    fn flush(&mut self, model_id: String) -> Promise;
}

//! Models and their versions, as registered by model developers.

use market_protocol::Hash32;
use near_sdk::{
    json_types::{U128, U64},
    near, AccountId,
};

use crate::{pause::Pauses, schedule::Scheduled};

/// What a model's runners are paid and who may serve it: changed only by schedule.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerTerms {
    /// The runner's share of each charge (basis points); the protocol takes the hub's
    /// `protocol_fee_bps`, the model's token holders the rest.
    pub runner_bps: u16,
    pub runner_policy: RunnerPolicy,
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerPolicy {
    /// Any registered runner may serve the model.
    Open,
    /// Only these runners may.
    Allowlist(Vec<AccountId>),
}

impl RunnerPolicy {
    pub fn allows(&self, runner: &AccountId) -> bool {
        match self {
            Self::Open => true,
            Self::Allowlist(list) => list.contains(runner),
        }
    }

    /// Whether every runner `self` allows is allowed by `other` too: such a change takes
    /// nothing from anyone and applies at once.
    pub fn within(&self, other: &Self) -> bool {
        match (self, other) {
            (_, Self::Open) => true,
            (Self::Open, Self::Allowlist(_)) => false,
            (Self::Allowlist(a), Self::Allowlist(b)) => a.iter().all(|r| b.contains(r)),
        }
    }
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub owner: AccountId,
    /// Yocto per 1,000 input units, and per 1,000 output units: what runners quote. The
    /// hub does not re-price receipts; the user's signed cap bounds every charge.
    pub price_in_per_1k: U128,
    pub price_out_per_1k: U128,
    /// The terms in effect until `pending_terms` takes over.
    pub terms: RunnerTerms,
    /// Scheduled new terms (`update_model`); settlement uses them from their
    /// `effective_at_ns` on.
    pub pending_terms: Option<Scheduled<RunnerTerms>>,
    /// Versions are numbered 1..=versions and never change once added.
    pub versions: u32,
    pub hidden: bool,
    /// Holders' share not yet paid to the model's token.
    pub holders_accrued: U128,
    pub registered_at_ns: U64,
    /// The model's token contract, recorded when `issue_token` starts (so a second
    /// issuance cannot race the first), with `token_issued` set once it is live.
    pub token: Option<AccountId>,
    pub token_issued: bool,
    /// The open content the model was trained on, with weights (set at issuance).
    pub training_manifest: Vec<(String, u32)>,
}

impl Model {
    /// The runner terms in effect at `now_ns`.
    pub fn terms_at(&self, now_ns: u64, pauses: &Pauses) -> &RunnerTerms {
        Scheduled::at(self.pending_terms.as_ref(), &self.terms, now_ns, pauses)
    }

    /// Whether `runner` may serve the model now and will still be allowed once the
    /// scheduled terms take over: a runner that checks this never serves what it could
    /// not settle.
    pub fn allows_now_and_scheduled(&self, runner: &AccountId) -> bool {
        self.terms.runner_policy.allows(runner)
            && self
                .pending_terms
                .as_ref()
                .is_none_or(|p| p.terms.runner_policy.allows(runner))
    }
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelVersion {
    /// sha256 of the weights, as the runner's engine defines it.
    pub weights_sha256: Hash32,
    /// `gguf`, `safetensors`, ...
    pub format: String,
    /// `llama`, `bert`, ...
    pub architecture: String,
    pub tokenizer_sha256: Hash32,
    pub uri: String,
    pub size_bytes: U64,
    pub added_at_ns: U64,
}

/// What a developer declares when adding a version.
#[near(serializers = [json])]
#[derive(Clone, Debug)]
pub struct VersionInput {
    pub weights_sha256: Hash32,
    pub format: String,
    pub architecture: String,
    pub tokenizer_sha256: Hash32,
    pub uri: String,
    pub size_bytes: U64,
    /// Set for a closed model's version whose weights are published sealed: only runners
    /// granted its content key may serve it (`Sealing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::SealedArtifact>,
}

/// Fields of a model its owner may change; `None` keeps the current value.
#[near(serializers = [json])]
#[derive(Clone, Debug, Default)]
pub struct ModelUpdate {
    pub price_in_per_1k: Option<U128>,
    pub price_out_per_1k: Option<U128>,
    pub runner_bps: Option<u16>,
    pub runner_policy: Option<RunnerPolicy>,
    pub hidden: Option<bool>,
}

/// `model(model_id)` and `models(..)`.
#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelView {
    pub model_id: String,
    pub model: Model,
    /// What the model's token holders get per charge: 10,000 − runner − protocol.
    pub holders_bps: u16,
}

/// Models and their versions, registered and owned by model developers. The hub contract implements it; callers use [`crate::methods`].
pub trait Registry {
    /// Registers a model owned by the caller. Attach storage (surplus refunded).
    fn register_model(
        &mut self,
        model_id: String,
        price_in_per_1k: U128,
        price_out_per_1k: U128,
        runner_bps: u16,
        runner_policy: RunnerPolicy,
    );

    /// Adds a version (immutable once added); returns its number, from 1.
    fn add_model_version(&mut self, model_id: String, version: VersionInput) -> u32;

    /// Changes any of the model's terms; only the fields given change. Prices (quotes:
    /// the user's signed ceilings bound what is charged) and `hidden` change at once.
    /// Hidden models are left out of `models` listings and runners stop serving them, but
    /// receipts for past use still settle. The runner terms (`runner_bps`,
    /// `runner_policy`) change at once only when the change takes nothing from anyone (the
    /// same share, and a policy allowing every runner the old one did); any other change is
    /// scheduled after the hub's notice, so receipts settled before then use the old terms
    /// and runners settle before it. A new update replaces a change still waiting. Attach
    /// one yocto, and storage if the record grows (surplus refunded).
    fn update_model(&mut self, model_id: String, update: ModelUpdate);

    /// Hands the model to another account. Attach one yocto, and storage if the new
    /// owner's id is longer (surplus refunded).
    fn transfer_model(&mut self, model_id: String, new_owner: AccountId);

    fn model(&self, model_id: String) -> Option<ModelView>;

    /// Models in registration order, hidden ones left out: `from_index` and `limit` count
    /// every model (so a page costs `limit` reads however many are hidden, and may hold
    /// fewer than `limit` entries).
    fn models(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ModelView>;

    fn model_version(&self, model_id: String, version: u32) -> Option<ModelVersion>;
}

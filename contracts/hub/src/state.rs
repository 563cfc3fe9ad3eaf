//! The hub's persistent state. Versioned: see [`VersionedState`] for how to add a version.

use market_protocol::{
    authorization::{ContentCeiling, ModelCeiling},
    Hash32,
};

use crate::pause::Pauses;
use near_sdk::{
    collections::{LazyOption, LookupMap, UnorderedMap, Vector},
    json_types::{U128, U64},
    near, AccountId, BorshStorageKey, PublicKey,
};

pub use market_protocol::ChannelId;

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
pub enum StorageKey {
    Models,
    ModelVersions,
    Runners,
    RunnerKeys,
    UserKeys,
    Channels,
    ChannelList,
    UserChannels,
    TokenCode,
    Content,
    ContentEarnings,
    UpgradeCode,
}

/// Every state layout the contract has had.
///
/// To add a version: copy `HubState` to `HubStateV<n>` (the old layout, kept for reading),
/// change `HubState`, add `V<n+1>(HubState)` here, make `migrate` turn each older variant
/// into the latest, and add a test that deploys the old layout and migrates it.
#[near(serializers = [borsh])]
#[allow(
    clippy::large_enum_variant,
    reason = "read once per call into the contract; a box would buy nothing"
)]
pub enum VersionedState {
    /// The layout before scheduled changes, per-account keys and bounded pauses; no hub
    /// with it holds money (see docs/decisions.md, "State layout 2"), so `migrate` refuses
    /// it rather than carrying a reader for it.
    V1,
    V2(HubState),
}

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub chain_id: String,
    /// The protocol's share of every charge (basis points), at most `MAX_PROTOCOL_FEE_BPS`.
    pub protocol_fee_bps: u16,
    /// The least share a model may give runners (basis points).
    pub min_runner_bps: u16,
    pub min_runner_bond: U128,
    /// A runner settles its receipts within this long of serving them.
    pub settlement_window_ns: U64,
    /// A user's withdrawal of unspent escrow waits this long; always longer than the
    /// settlement window, so what a runner earned is still there when it settles.
    pub withdrawal_delay_ns: U64,
    /// A leaving runner's bond is held this long.
    pub runner_exit_delay_ns: U64,
}

/// A change to terms that could reduce what someone already earned: it applies from
/// `effective_at_ns`, fixed when it was scheduled (now + the hub's notice), never earlier,
/// and later by any time the hub was paused since (when nobody could act on the notice).
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled<T> {
    pub terms: T,
    pub scheduled_at_ns: U64,
    pub effective_at_ns: U64,
}

impl<T: Clone> Scheduled<T> {
    /// `current`, or the scheduled terms once they are in effect at `now_ns`.
    pub fn at<'a>(
        pending: Option<&'a Self>,
        current: &'a T,
        now_ns: u64,
        pauses: &Pauses,
    ) -> &'a T {
        match pending {
            Some(p) if p.in_effect(now_ns, pauses) => &p.terms,
            _ => current,
        }
    }

    pub fn in_effect(&self, now_ns: u64, pauses: &Pauses) -> bool {
        now_ns >= pauses.extended(self.effective_at_ns.0, self.scheduled_at_ns.0, now_ns)
    }
}

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

#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runner {
    pub bond: U128,
    pub earnings: U128,
    /// A requested exit: the bond is returned from its `ready_at_ns` (fixed at the request,
    /// extended by any pause since).
    pub leave: Option<Deadline>,
    /// Set when the bond was returned: no receipt of this runner settles any more.
    pub left: bool,
    /// The latest expiry of any authorization the hub pinned for this runner's channels:
    /// the bond stays until then plus the settlement window, so it is still there
    /// whenever evidence of contradictory receipts can surface.
    pub exposed_until_ns: U64,
    /// Set when its bond was slashed for contradictory receipts (`report_equivocation`):
    /// no receipt of this runner settles any more either.
    pub slashed: bool,
}

/// A waiting period fixed when it was requested: a later change of the hub's delays does
/// not move it; a pause of the hub extends it by the paused time since `requested_at_ns`.
#[near(serializers = [borsh, json])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub requested_at_ns: U64,
    pub ready_at_ns: U64,
}

/// A signing key in its owner's own namespace (runner keys and user keys alike): keyed by
/// (account, key), so registering someone else's public key blocks nobody.
#[near(serializers = [borsh, json])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountKey {
    /// Revoked keys stay recorded for good (a tombstone), so they never come back.
    pub revoked_at_ns: Option<U64>,
}

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

/// What a channel's cumulative receipts have settled for one content item.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledContent {
    pub content_id: String,
    pub uses: U64,
    pub amount: U128,
    /// Uses and amount when the channel's authorization was pinned: its ceilings bound the
    /// growth from here.
    pub base_uses: U64,
    pub base_amount: U128,
}

/// What a channel's cumulative receipts have settled for one model version.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledLine {
    pub model_id: String,
    pub version: u32,
    pub units_in: U64,
    pub units_out: U64,
    pub amount: U128,
    /// Units and amount when the channel's authorization was pinned: its ceilings bound the
    /// growth from here.
    pub base_units_in: U64,
    pub base_units_out: U64,
    pub base_amount: U128,
}

/// The last authorization the hub verified for a channel: later receipts naming it skip
/// the user-signature check.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveAuthorization {
    pub id: Hash32,
    pub public_key: PublicKey,
    pub cap: U128,
    pub expires_at_ns: U64,
    /// The signed price ceilings.
    pub models: Vec<ModelCeiling>,
    pub content: Vec<ContentCeiling>,
    /// The channel's sequence when this authorization was pinned.
    pub base_seq: U64,
    /// Set when the user revokes the signing key: this pinned authorization settles until
    /// then (the revocation's notice), never after.
    pub revoked_until_ns: Option<U64>,
}

/// Escrow of one user for one runner, and what its receipts settled.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channel {
    /// Everything the user put in, less what was withdrawn.
    pub deposited: U128,
    /// Everything charged by settled receipts: the cumulative amount of the last one.
    pub settled: U128,
    pub last_seq: U64,
    pub lines: Vec<SettledLine>,
    pub content: Vec<SettledContent>,
    pub authorization: Option<ActiveAuthorization>,
    /// A requested withdrawal of the unspent escrow.
    pub withdrawal: Option<Deadline>,
}

impl Channel {
    pub fn unspent(&self) -> u128 {
        self.deposited.0 - self.settled.0
    }
}

#[near(serializers = [borsh])]
pub struct HubState {
    pub owner: AccountId,
    /// The account `propose_owner` named; it becomes the owner when it accepts.
    pub proposed_owner: Option<AccountId>,
    pub config: Config,
    /// A `set_config` waiting for its notice to end.
    pub pending_config: Option<Scheduled<Config>>,
    pub pauses: crate::pause::Pauses,
    pub protocol_earnings: u128,
    pub models: UnorderedMap<String, Model>,
    pub versions: LookupMap<(String, u32), ModelVersion>,
    pub runners: UnorderedMap<AccountId, Runner>,
    pub runner_keys: LookupMap<(AccountId, PublicKey), AccountKey>,
    /// Keys whose NEP-413 signatures authorize spending from their user's channels.
    pub user_keys: LookupMap<(AccountId, PublicKey), AccountKey>,
    /// A plain map (one storage read per lookup, where an iterable map takes two), with
    /// `channel_list` for listing: settlement reads and writes every channel it charges.
    pub channels: LookupMap<ChannelId, Channel>,
    pub channel_list: Vector<ChannelId>,
    /// The runners each user has channels with, so revoking a key can forget every
    /// authorization it signed, and settlement need not look the key up again.
    pub user_channels: LookupMap<AccountId, Vec<AccountId>>,
    /// The model token's wasm, set by the owner; `issue_token` deploys it.
    pub token_code: LazyOption<Vec<u8>>,
    /// The model token as a global contract (deployed once, by hash): when set,
    /// `issue_token` uses it instead of deploying `token_code` on every token account.
    pub token_code_hash: Option<[u8; 32]>,
    pub content: LookupMap<String, ContentItem>,
    /// Per-use royalties earned by content owners, paid on withdrawal.
    pub content_earnings: LookupMap<AccountId, u128>,
    /// New code the owner proposed (`propose_upgrade`), and when it may be applied.
    pub upgrade_code: LazyOption<Vec<u8>>,
    pub upgrade: Option<Scheduled<Hash32>>,
}

impl HubState {
    pub fn new(owner: AccountId, config: Config) -> Self {
        Self {
            owner,
            proposed_owner: None,
            config,
            pending_config: None,
            pauses: crate::pause::Pauses::default(),
            protocol_earnings: 0,
            models: UnorderedMap::new(StorageKey::Models),
            versions: LookupMap::new(StorageKey::ModelVersions),
            runners: UnorderedMap::new(StorageKey::Runners),
            runner_keys: LookupMap::new(StorageKey::RunnerKeys),
            user_keys: LookupMap::new(StorageKey::UserKeys),
            channels: LookupMap::new(StorageKey::Channels),
            channel_list: Vector::new(StorageKey::ChannelList),
            user_channels: LookupMap::new(StorageKey::UserChannels),
            token_code: LazyOption::new(StorageKey::TokenCode, None),
            token_code_hash: None,
            content: LookupMap::new(StorageKey::Content),
            content_earnings: LookupMap::new(StorageKey::ContentEarnings),
            upgrade_code: LazyOption::new(StorageKey::UpgradeCode, None),
            upgrade: None,
        }
    }
}

/// Read-modify-write of one entry. The hub uses near-sdk's write-through collections:
/// no cache to flush before measuring storage, and a far smaller wasm than `store`'s.
pub trait Update<K, V> {
    fn update<R>(&mut self, key: &K, change: impl FnOnce(&mut V) -> R) -> Option<R>;
}

macro_rules! impl_update {
    ($map:ident) => {
        impl<
                K: borsh::BorshSerialize + borsh::BorshDeserialize,
                V: borsh::BorshSerialize + borsh::BorshDeserialize,
            > Update<K, V> for $map<K, V>
        {
            fn update<R>(&mut self, key: &K, change: impl FnOnce(&mut V) -> R) -> Option<R> {
                let mut value = self.get(key)?;
                let result = change(&mut value);
                self.insert(key, &value);
                Some(result)
            }
        }
    };
}
impl_update!(LookupMap);
impl_update!(UnorderedMap);

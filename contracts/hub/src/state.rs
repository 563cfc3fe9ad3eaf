//! The hub's persistent state. Versioned: see [`VersionedState`] for how to add a version.

use near_sdk::{
    collections::{LazyOption, LookupMap, UnorderedMap, Vector},
    near, AccountId, BorshStorageKey, PublicKey,
};

// The records the hub stores are its views too: defined once, in the interface crate.
pub use market_hub_api::{
    AccountKey, ActiveAuthorization, Channel, Config, ContentItem, Deadline, License, Model,
    ModelVersion, Pauses, Runner, RunnerPolicy, RunnerTerms, Scheduled, SettledContent,
    SettledLine,
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
    // Added after layout 2, in maps the root state does not store (`SealingMaps`).
    SealedArtifacts,
    SealingKeys,
    Grants,
    ClosedModels,
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

#[near(serializers = [borsh])]
pub struct HubState {
    pub owner: AccountId,
    /// The account `propose_owner` named; it becomes the owner when it accepts.
    pub proposed_owner: Option<AccountId>,
    pub config: Config,
    /// A `set_config` waiting for its notice to end.
    pub pending_config: Option<Scheduled<Config>>,
    pub pauses: Pauses,
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
    pub upgrade: Option<Scheduled<market_protocol::Hash32>>,
    /// Closed models' records: storage prefixes only, not written with the root state, so
    /// the layout is still 2 (`crate::sealing::SealingMaps`).
    #[borsh(skip)]
    pub sealing: crate::sealing::SealingMaps,
}

impl HubState {
    pub fn new(owner: AccountId, config: Config) -> Self {
        Self {
            owner,
            proposed_owner: None,
            config,
            pending_config: None,
            pauses: Pauses::default(),
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
            sealing: crate::sealing::SealingMaps::default(),
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

//! NEP-297 events, one per state change. <https://github.com/near/NEPs/blob/master/neps/nep-0297.md>
//! Amounts are decimal strings (yocto), like every amount in the hub's JSON.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::state::{Config, License, RunnerTerms};

#[near(event_json(standard = "ai-market-hub"))]
pub enum Event {
    #[event_version("1.0.0")]
    ModelRegistered {
        model_id: String,
        owner: AccountId,
        price_in_per_1k: U128,
        price_out_per_1k: U128,
        runner_bps: u16,
    },
    #[event_version("1.0.0")]
    ModelVersionAdded {
        model_id: String,
        version: u32,
        weights_sha256: String,
    },
    #[event_version("2.0.0")]
    ModelUpdated {
        model_id: String,
        price_in_per_1k: U128,
        price_out_per_1k: U128,
        /// The runner terms in effect now.
        terms: RunnerTerms,
        hidden: bool,
    },
    /// New runner terms of a model, in effect from `effective_at_ns`.
    #[event_version("1.0.0")]
    ModelTermsScheduled {
        model_id: String,
        terms: RunnerTerms,
        effective_at_ns: U64,
    },
    #[event_version("1.0.0")]
    ModelTransferred {
        model_id: String,
        from: AccountId,
        to: AccountId,
    },
    #[event_version("1.0.0")]
    RunnerRegistered {
        runner: AccountId,
        bond: U128,
        keys: Vec<PublicKey>,
    },
    #[event_version("1.0.0")]
    RunnerKeyAdded { runner: AccountId, key: PublicKey },
    #[event_version("1.0.0")]
    RunnerKeyRevoked { runner: AccountId, key: PublicKey },
    #[event_version("1.0.0")]
    SealingKeyRegistered {
        runner: AccountId,
        key: near_sdk::json_types::Base64VecU8,
        receipt_key: PublicKey,
    },
    #[event_version("1.0.0")]
    VersionGranted {
        model_id: String,
        version: u32,
        runner: AccountId,
    },
    #[event_version("1.0.0")]
    GrantRevocationScheduled {
        model_id: String,
        version: u32,
        runner: AccountId,
        effective_at_ns: U64,
    },
    #[event_version("1.0.0")]
    RunnerBonded {
        runner: AccountId,
        added: U128,
        bond: U128,
    },
    #[event_version("1.0.0")]
    RunnerLeaveRequested { runner: AccountId, ready_at_ns: U64 },
    #[event_version("1.0.0")]
    RunnerLeft {
        runner: AccountId,
        bond_returned: U128,
    },
    /// A runner's contradictory receipts were reported: its bond went to the user and the
    /// reporter, and it settles nothing more.
    #[event_version("1.0.0")]
    RunnerSlashed {
        runner: AccountId,
        user: AccountId,
        reporter: AccountId,
        reason: String,
        to_user: U128,
        to_reporter: U128,
        to_protocol: U128,
    },
    #[event_version("1.0.0")]
    UserKeyAdded { user: AccountId, key: PublicKey },
    /// Authorizations the key signed that the hub already pinned settle until
    /// `pinned_until_ns`; every other one is refused from now on.
    #[event_version("2.0.0")]
    UserKeyRevoked {
        user: AccountId,
        key: PublicKey,
        pinned_until_ns: U64,
    },
    #[event_version("1.0.0")]
    ChannelFunded {
        user: AccountId,
        runner: AccountId,
        amount: U128,
        deposited: U128,
    },
    #[event_version("1.0.0")]
    WithdrawalRequested {
        user: AccountId,
        runner: AccountId,
        ready_at_ns: U64,
    },
    #[event_version("1.0.0")]
    WithdrawalFinished {
        user: AccountId,
        runner: AccountId,
        amount: U128,
    },
    #[event_version("1.0.0")]
    ReceiptSettled {
        user: AccountId,
        runner: AccountId,
        seq: U64,
        charge: U128,
        runner_share: U128,
        holders_share: U128,
        protocol_share: U128,
        content_share: U128,
    },
    #[event_version("1.0.0")]
    BatchSettled {
        settled: u32,
        rejected: u32,
        runner_share: U128,
        holders_share: U128,
        protocol_share: U128,
    },
    #[event_version("1.0.0")]
    ReceiptRejected {
        user: AccountId,
        runner: AccountId,
        seq: U64,
        code: market_hub_api::RejectCode,
        reason: String,
    },
    #[event_version("1.0.0")]
    EarningsWithdrawn { account: AccountId, amount: U128 },
    #[event_version("1.0.0")]
    ProtocolFeesWithdrawn { receiver: AccountId, amount: U128 },
    #[event_version("1.0.0")]
    PayoutFailed {
        receiver: AccountId,
        amount: U128,
        recredited_to: String,
    },
    #[event_version("1.0.0")]
    TokenIssued {
        model_id: String,
        token: AccountId,
        supply: U128,
        allocations: Vec<(AccountId, U128)>,
    },
    #[event_version("1.0.0")]
    ContentRegistered {
        content_id: String,
        owner: AccountId,
        license: License,
    },
    #[event_version("1.0.0")]
    ContentEarningsWithdrawn { owner: AccountId, amount: U128 },
    #[event_version("1.0.0")]
    RevenueFlushed { model_id: String, amount: U128 },
    #[event_version("2.0.0")]
    ConfigScheduled {
        config: Config,
        effective_at_ns: U64,
    },
    #[event_version("2.0.0")]
    Paused { paused: bool, until_ns: Option<U64> },
    #[event_version("1.0.0")]
    OwnerProposed { to: AccountId },
    #[event_version("1.0.0")]
    OwnerChanged { from: AccountId, to: AccountId },
    #[event_version("1.0.0")]
    Migrated { from_version: u16, to_version: u16 },
    #[event_version("1.0.0")]
    UpgradeProposed {
        code_hash: market_protocol::Hash32,
        ready_at_ns: U64,
    },
    #[event_version("1.0.0")]
    UpgradeCancelled {},
    #[event_version("1.0.0")]
    UpgradeApplied { code_hash: market_protocol::Hash32 },
}

//! The hub's settings and the owner's view of it.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, Promise,
};

use crate::schedule::Scheduled;

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

/// Config fields the owner may change (not the chain id); `None` keeps the current value.
#[near(serializers = [json])]
#[derive(Clone, Debug, Default)]
pub struct ConfigUpdate {
    pub protocol_fee_bps: Option<u16>,
    pub min_runner_bps: Option<u16>,
    pub min_runner_bond: Option<U128>,
    pub settlement_window_ns: Option<U64>,
    pub withdrawal_delay_ns: Option<U64>,
    pub runner_exit_delay_ns: Option<U64>,
}

/// `hub_info()`: the hub's settings and totals in one view.
#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubInfo {
    pub owner: AccountId,
    pub proposed_owner: Option<AccountId>,
    /// The config in effect now.
    pub config: Config,
    /// A `set_config` waiting for its notice to end.
    pub pending_config: Option<Scheduled<Config>>,
    pub paused: bool,
    /// When the current pause ends by itself.
    pub paused_until_ns: Option<U64>,
    /// Proposed code (its sha256) and from when it may be applied.
    pub upgrade: Option<Scheduled<market_protocol::Hash32>>,
    pub protocol_earnings: U128,
    /// Yocto to attach when opening a channel, on top of the first funds.
    pub channel_storage_cost: U128,
    pub state_version: u16,
    pub models: u64,
    pub runners: u64,
    pub channels: u64,
}

/// The owner's powers and the hub's settings. The hub contract implements it; callers use [`crate::methods`].
pub trait Admin {
    /// Owner: schedules a change of any of the fees, the runner bond and the delays; only
    /// the fields given change, and the result must still be valid (fees within the hard
    /// ceilings, every delay at most `MAX_DELAY_NS`, the withdrawal delay longer than the
    /// settlement window). It takes effect after the notice (the withdrawal delay in
    /// effect now), so receipts settled before then use the old fees; a new call replaces
    /// a change still waiting. Pending withdrawals and exits keep the ready time they were
    /// given. Models keep the runner share they set; a new minimum applies when they next
    /// change it.
    fn set_config(&mut self, update: ConfigUpdate);

    /// Owner: stops registrations, funding, settlement and withdrawals of escrow, for at
    /// most `pause::MAX_PAUSE_NS` (then the hub runs again by itself), and not again
    /// within `pause::PAUSE_COOLDOWN_NS` of the last pause's end. Every deadline (a
    /// withdrawal's or exit's ready time, an authorization's expiry) moves later by the
    /// paused time. Runners' earnings stay withdrawable.
    fn pause(&mut self);

    fn unpause(&mut self);

    /// Owner: pays protocol fees (all, or `amount`) to `receiver`.
    fn withdraw_protocol_fees(&mut self, receiver: AccountId, amount: Option<U128>);

    /// Owner: proposes another account as owner; nothing changes until it accepts
    /// (`accept_owner`), so a typo cannot hand the hub to an account nobody controls.
    fn propose_owner(&mut self, new_owner: AccountId);

    /// The proposed owner takes the role.
    fn accept_owner(&mut self);

    /// The hub's settings and totals in one view.
    fn hub_info(&self) -> HubInfo;
}

/// Upgrading the hub's code behind a time lock. The hub contract implements it; callers use [`crate::methods`].
pub trait Upgrades {
    /// Owner: proposes new code (borsh `Vec<u8>`); attach its storage (surplus refunded).
    /// It may be applied from `ready_at_ns` (`hub_info().upgrade`); a new proposal
    /// replaces a waiting one and restarts the lock.
    fn propose_upgrade(&mut self, code: Vec<u8>);

    /// Owner: drops the proposed code and refunds its storage.
    fn cancel_upgrade(&mut self);

    /// Owner, after the time lock: deploys the proposed code on the hub and runs its
    /// `migrate` in the same receipt. The freed storage goes back to the owner.
    fn apply_upgrade(&mut self) -> Promise;
}

//! Users' escrow channels (one per user and runner) and what their receipts settled.

use market_protocol::{
    authorization::{ContentCeiling, ModelCeiling},
    Hash32,
};
use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::schedule::Deadline;

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

/// `channel(user, runner)` and `channels(..)`.
#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelView {
    pub user: AccountId,
    pub runner: AccountId,
    pub channel: Channel,
    /// deposited − settled: what receipts may still charge.
    pub unspent: U128,
}

/// Users: authorization keys, channel escrow, and withdrawal of unspent funds. The hub contract implements it; callers use [`crate::methods`].
pub trait Escrow {
    /// Registers a key whose NEP-413 signatures authorize spending from the caller's
    /// channels. Keys live in the caller's own namespace: anyone else registering the same
    /// public key blocks nothing. Attach storage (surplus refunded); it stays with the key,
    /// which is kept as a tombstone once revoked.
    fn register_user_key(&mut self, key: PublicKey);

    /// Revokes a key for good (it can never be registered again). An authorization it
    /// signed that the hub has already pinned (verified for a channel by a settled
    /// receipt) still settles until the notice ends, the settlement window from now, so a
    /// runner is paid for what it served; every other authorization it signed is refused
    /// from now on. What a leaked key can still cost is bounded by the pinned
    /// authorizations' remaining caps (see docs/decisions.md).
    fn revoke_user_key(&mut self, key: PublicKey);

    /// Adds the attached deposit to the caller's channel with `runner`, creating the channel
    /// on first use (which reserves its storage out of the deposit). Funding cancels a
    /// pending withdrawal.
    fn fund_channel(&mut self, runner: AccountId);

    /// Starts the withdrawal delay for the caller's unspent escrow with `runner`. The
    /// ready time is fixed now (a later change of the hub's delays does not move it; a
    /// pause extends it). Refused while the hub is paused, when runners cannot settle.
    fn request_withdrawal(&mut self, runner: AccountId);

    /// After the delay: pays out everything not yet charged. The channel stays (it
    /// remembers the last settled sequence, so old receipts cannot be replayed into it).
    /// One yocto (a full-access key).
    fn finish_withdrawal(&mut self, runner: AccountId);

    fn channel(&self, user: AccountId, runner: AccountId) -> Option<ChannelView>;

    fn channels(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ChannelView>;
}

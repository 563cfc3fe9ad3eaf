//! Runners (compute providers) and the signing keys of runners and users.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

use crate::schedule::Deadline;

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

/// `runners(..)`.
#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerView {
    pub runner: AccountId,
    pub state: Runner,
}

/// A signing key in its owner's own namespace (runner keys and user keys alike): keyed by
/// (account, key), so registering someone else's public key blocks nobody.
#[near(serializers = [borsh, json])]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountKey {
    /// Revoked keys stay recorded for good (a tombstone), so they never come back.
    pub revoked_at_ns: Option<U64>,
}

impl AccountKey {
    pub fn revoked(&self) -> bool {
        self.revoked_at_ns.is_some()
    }
}

/// Runners (compute providers): signing keys, bond, leaving; and the keys' views. The hub contract implements it; callers use [`crate::methods`].
pub trait Runners {
    /// Registers the caller as a runner with its receipt-signing keys. The attached
    /// deposit pays the storage; the rest is the bond, at least `min_runner_bond`.
    fn register_runner(&mut self, keys: Vec<PublicKey>);

    /// Adds a signing key. Attach storage (surplus refunded).
    fn add_runner_key(&mut self, key: PublicKey);

    /// Revokes one of the caller's signing keys for good: receipts it signed no longer
    /// settle, and it can never be registered again. One yocto (a full-access key).
    fn revoke_runner_key(&mut self, key: PublicKey);

    /// Adds the attached deposit to the caller's bond.
    fn add_bond(&mut self);

    /// Starts the exit delay (fixed now: a later change of the hub's delays does not move
    /// it; a pause extends it); the runner may still settle receipts until it finishes.
    fn request_leave(&mut self);

    /// After the exit delay: returns the bond and stops settlement for this runner.
    /// Earnings stay withdrawable with `withdraw_earnings`. One yocto (a full-access key).
    fn finish_leave(&mut self);

    /// Pays the caller's settled earnings (all of them, or `amount`). One yocto (a
    /// full-access key).
    fn withdraw_earnings(&mut self, amount: Option<U128>);

    fn runner(&self, runner: AccountId) -> Option<Runner>;

    fn runners(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<RunnerView>;

    /// A runner's receipt-signing key, if it ever registered it (revoked ones included).
    fn runner_key(&self, runner: AccountId, key: PublicKey) -> Option<AccountKey>;

    /// A user's authorization key, if it ever registered it (revoked ones included).
    fn user_key(&self, user: AccountId, key: PublicKey) -> Option<AccountKey>;
}

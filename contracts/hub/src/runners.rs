//! Runners (compute providers): signing keys, bond, leaving.

use market_protocol::ed25519_key_bytes;
use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

pub use market_hub_api::RunnerView;

use crate::{
    error::Error,
    events::Event,
    payouts::Payout,
    state::{AccountKey, Deadline, Runner},
    storage::refund,
    Hub, HubExt,
};
use market_hub_api::Runners;

/// Keys per registration call; bounds the call's work.
pub const MAX_KEYS_PER_CALL: usize = 8;

impl Hub {
    /// A key `account` may add to `keys`: ed25519, and never registered there before
    /// (revoked keys stay as tombstones, so they never come back). Other accounts' keys
    /// live in their own namespaces: nobody can take a key away from another account.
    pub(crate) fn check_new_key(
        keys: &near_sdk::collections::LookupMap<(AccountId, PublicKey), AccountKey>,
        account: &AccountId,
        key: &PublicKey,
    ) {
        if ed25519_key_bytes(key).is_none() {
            Error::NotEd25519(key.clone()).panic();
        }
        if keys.contains_key(&(account.clone(), key.clone())) {
            Error::KeyTaken(key.clone()).panic();
        }
    }

    /// The caller's runner record, if it is registered and has not left.
    pub(crate) fn active_runner(&self) -> (AccountId, Runner) {
        let id = env::predecessor_account_id();
        let runner = self
            .runners
            .get(&id)
            .unwrap_or_else(|| Error::UnknownRunner(id.clone()).panic());
        if runner.left {
            Error::RunnerLeft(id).panic();
        }
        (id, runner)
    }
}

#[near]
impl Runners for Hub {
    #[payable]
    fn register_runner(&mut self, keys: Vec<PublicKey>) {
        self.assert_active();
        let runner = env::predecessor_account_id();
        if self.runners.get(&runner).is_some() {
            Error::RunnerExists(runner).panic();
        }
        if keys.is_empty() || keys.len() > MAX_KEYS_PER_CALL {
            Error::InvalidInput(format!(
                "register 1 to {MAX_KEYS_PER_CALL} keys, not {}",
                keys.len()
            ))
            .panic();
        }
        for (i, key) in keys.iter().enumerate() {
            Self::check_new_key(&self.runner_keys, &runner, key);
            if keys[..i].contains(key) {
                Error::InvalidInput(format!("key {} is listed twice", String::from(key))).panic();
            }
        }
        let mut record = Runner {
            bond: U128(0),
            earnings: U128(0),
            leave: None,
            left: false,
            slashed: false,
            exposed_until_ns: U64(0),
        };
        let ((), bond) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "registering a runner",
            |s| {
                // Measured at the record's largest size (a pending leave), so later changes
                // never add unpaid bytes.
                s.runners.insert(
                    &runner,
                    &Runner {
                        leave: Some(Deadline {
                            requested_at_ns: U64(0),
                            ready_at_ns: U64(0),
                        }),
                        ..record.clone()
                    },
                );
                for key in &keys {
                    s.runner_keys.insert(
                        &(runner.clone(), key.clone()),
                        &AccountKey {
                            // Measured revoked, the record's largest size.
                            revoked_at_ns: Some(U64(0)),
                        },
                    );
                }
            },
        );
        let min = self.config_now().min_runner_bond.0;
        if bond < min {
            Error::BondTooSmall { bond, min }.panic();
        }
        record.bond = U128(bond);
        self.runners.insert(&runner, &record);
        for key in &keys {
            self.runner_keys.insert(
                &(runner.clone(), key.clone()),
                &AccountKey {
                    revoked_at_ns: None,
                },
            );
        }
        Event::RunnerRegistered {
            runner,
            bond: U128(bond),
            keys,
        }
        .emit();
    }

    #[payable]
    fn add_runner_key(&mut self, key: PublicKey) {
        let (runner, _) = self.active_runner();
        Self::check_new_key(&self.runner_keys, &runner, &key);
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "adding a runner key",
            |s| {
                s.runner_keys.insert(
                    &(runner.clone(), key.clone()),
                    &AccountKey {
                        revoked_at_ns: Some(U64(0)),
                    },
                );
            },
        );
        self.runner_keys.insert(
            &(runner.clone(), key.clone()),
            &AccountKey {
                revoked_at_ns: None,
            },
        );
        refund(&runner, surplus);
        Event::RunnerKeyAdded { runner, key }.emit();
    }

    #[payable]
    fn revoke_runner_key(&mut self, key: PublicKey) {
        near_sdk::assert_one_yocto();
        let runner = env::predecessor_account_id();
        let id = (runner.clone(), key.clone());
        match self.runner_keys.get(&id) {
            Some(k) if k.revoked_at_ns.is_none() => {}
            Some(_) => Error::RevokedRunnerKey(key).panic(),
            None => Error::UnknownRunnerKey(key).panic(),
        }
        self.runner_keys.insert(
            &id,
            &AccountKey {
                revoked_at_ns: Some(U64(env::block_timestamp())),
            },
        );
        Event::RunnerKeyRevoked { runner, key }.emit();
    }

    #[payable]
    fn add_bond(&mut self) {
        let added = env::attached_deposit().as_yoctonear();
        let (runner, mut state) = self.active_runner();
        state.bond.0 = state
            .bond
            .0
            .checked_add(added)
            .unwrap_or_else(|| env::panic_str("bond overflows u128"));
        let bond = state.bond;
        self.runners.insert(&runner, &state);
        Event::RunnerBonded {
            runner,
            added: U128(added),
            bond,
        }
        .emit();
    }

    fn request_leave(&mut self) {
        let now = env::block_timestamp();
        let ready_at_ns = now + self.config_now().runner_exit_delay_ns.0;
        let (runner, mut state) = self.active_runner();
        state.leave = Some(Deadline {
            requested_at_ns: U64(now),
            ready_at_ns: U64(ready_at_ns),
        });
        self.runners.insert(&runner, &state);
        Event::RunnerLeaveRequested {
            runner,
            ready_at_ns: U64(ready_at_ns),
        }
        .emit();
    }

    #[payable]
    fn finish_leave(&mut self) {
        near_sdk::assert_one_yocto();
        let now_ns = env::block_timestamp();
        let (runner, mut state) = self.active_runner();
        let leave = state
            .leave
            .unwrap_or_else(|| Error::LeaveNotRequested(runner.clone()).panic());
        // The exit delay, and until every pinned authorization of its channels has expired
        // and the settlement window after it passed: the bond backs every receipt it could
        // still sign.
        let exposure = state
            .exposed_until_ns
            .0
            .saturating_add(self.config_now().settlement_window_ns.0);
        let ready_at_ns = self
            .pauses
            .extended(leave.ready_at_ns.0, leave.requested_at_ns.0, now_ns)
            .max(exposure);
        if now_ns < ready_at_ns {
            Error::TooEarly {
                what: "leaving",
                ready_at_ns,
                now_ns,
            }
            .panic();
        }
        let bond = std::mem::replace(&mut state.bond, U128(0));
        state.left = true;
        self.runners.insert(&runner, &state);
        Event::RunnerLeft {
            runner: runner.clone(),
            bond_returned: bond,
        }
        .emit();
        Payout::RunnerBond {
            runner: runner.clone(),
        }
        .send(&runner, bond.0);
    }

    #[payable]
    fn withdraw_earnings(&mut self, amount: Option<U128>) {
        near_sdk::assert_one_yocto();
        let runner = env::predecessor_account_id();
        let mut state = self
            .runners
            .get(&runner)
            .unwrap_or_else(|| Error::UnknownRunner(runner.clone()).panic());
        let available = state.earnings.0;
        let amount = amount.map_or(available, |a| a.0);
        if amount == 0 {
            Error::NothingToWithdraw.panic();
        }
        if amount > available {
            Error::AmountTooLarge {
                requested: amount,
                available,
            }
            .panic();
        }
        state.earnings.0 -= amount;
        self.runners.insert(&runner, &state);
        Event::EarningsWithdrawn {
            account: runner.clone(),
            amount: U128(amount),
        }
        .emit();
        Payout::RunnerEarnings {
            runner: runner.clone(),
        }
        .send(&runner, amount);
    }

    fn runner(&self, runner: AccountId) -> Option<Runner> {
        self.runners.get(&runner)
    }

    fn runners(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<RunnerView> {
        self.runners
            .iter()
            .skip(from_index.unwrap_or(0) as usize)
            .take(limit.unwrap_or(50).min(200) as usize)
            .map(|(runner, state)| RunnerView { runner, state })
            .collect()
    }

    fn runner_key(&self, runner: AccountId, key: PublicKey) -> Option<AccountKey> {
        self.runner_keys.get(&(runner, key))
    }

    fn user_key(&self, user: AccountId, key: PublicKey) -> Option<AccountKey> {
        self.user_keys.get(&(user, key))
    }
}

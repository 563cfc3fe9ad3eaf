//! Upgrades through the owner, with a time lock: new code is proposed and stored on the
//! hub, applied no earlier than the withdrawal delay plus the settlement window later (and
//! later by any pause), so every user can take their unspent escrow out, and every runner
//! settle, before new code runs. With the hub account's full-access key removed (the
//! deploy script's last step), this is the only way to change the code.

use near_sdk::{env, json_types::U64, near, Gas, NearToken, Promise};

use crate::{error::Error, events::Event, state::Scheduled, storage::refund, Hub, HubExt};
use market_hub_api::Upgrades;

/// Gas for `migrate` after the new code is deployed.
const MIGRATE_GAS: Gas = Gas::from_tgas(50);

#[near]
impl Upgrades for Hub {
    #[payable]
    fn propose_upgrade(&mut self, #[serializer(borsh)] code: Vec<u8>) {
        let attached = crate::storage::full_access_deposit();
        self.assert_owner_caller();
        if code.is_empty() {
            Error::InvalidInput("the proposed code is empty".into()).panic();
        }
        let now = env::block_timestamp();
        let config = self.config_now();
        let ready_at_ns = now + config.withdrawal_delay_ns.0 + config.settlement_window_ns.0;
        let hash = env::sha256_array(&code);
        let ((), surplus) = self.paying_storage(attached, "storing the proposed code", |s| {
            s.upgrade_code.set(&code);
            s.upgrade = Some(Scheduled {
                terms: hash.into(),
                scheduled_at_ns: U64(now),
                effective_at_ns: U64(ready_at_ns),
            });
        });
        refund(&env::predecessor_account_id(), surplus);
        Event::UpgradeProposed {
            code_hash: hash.into(),
            ready_at_ns: U64(ready_at_ns),
        }
        .emit();
    }

    #[payable]
    fn cancel_upgrade(&mut self) {
        self.assert_owner();
        if self.upgrade.is_none() {
            Error::InvalidInput("no upgrade is proposed".into()).panic();
        }
        let ((), freed) = self.paying_storage(0, "dropping the proposed code", |s| {
            s.upgrade_code.remove();
            s.upgrade = None;
        });
        refund(&env::predecessor_account_id(), freed);
        Event::UpgradeCancelled {}.emit();
    }

    #[payable]
    fn apply_upgrade(&mut self) -> Promise {
        self.assert_owner();
        let now = env::block_timestamp();
        let upgrade = self
            .upgrade
            .clone()
            .unwrap_or_else(|| Error::InvalidInput("no upgrade is proposed".into()).panic());
        if !upgrade.in_effect(now, &self.pauses) {
            Error::TooEarly {
                what: "upgrading",
                ready_at_ns: self.pauses.extended(
                    upgrade.effective_at_ns.0,
                    upgrade.scheduled_at_ns.0,
                    now,
                ),
                now_ns: now,
            }
            .panic();
        }
        let code = self.upgrade_code.get().expect("stored with the proposal");
        let ((), freed) = self.paying_storage(0, "applying the upgrade", |s| {
            s.upgrade_code.remove();
            s.upgrade = None;
        });
        refund(&env::predecessor_account_id(), freed);
        Event::UpgradeApplied {
            code_hash: upgrade.terms,
        }
        .emit();
        Promise::new(env::current_account_id())
            .deploy_contract(code)
            .function_call(
                "migrate".to_owned(),
                Vec::new(),
                NearToken::from_yoctonear(0),
                MIGRATE_GAS,
            )
    }
}

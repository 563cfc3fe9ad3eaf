//! The owner's powers, all of them: fees within the hard caps, the runner bond, the delays
//! (bounded, and changed only by schedule), a bounded pause, withdrawing protocol fees, and
//! handing over ownership in two steps. Each is evented and needs one yocto attached (a
//! full-access key), so a leaked function-call key of the owner can do none of them.

use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId,
};

pub use market_hub_api::{ConfigUpdate, HubInfo};

use crate::{
    error::Error,
    events::Event,
    fees::{MAX_PROTOCOL_FEE_BPS, MAX_RUNNER_BPS},
    payouts::Payout,
    state::{Config, Scheduled},
    Hub, HubExt,
};
use market_hub_api::Admin;

/// The longest any of the hub's delays may be, so no setting can freeze escrow or bonds
/// for good (and `now + delay` never overflows).
pub const MAX_DELAY_NS: u64 = 30 * 86_400 * 1_000_000_000;

pub fn validate_config(config: &Config) -> Result<(), Error> {
    market_protocol::validate_chain_id(&config.chain_id).map_err(Error::InvalidConfig)?;
    if config.protocol_fee_bps > MAX_PROTOCOL_FEE_BPS {
        return Err(Error::InvalidConfig(format!(
            "protocol fee {} bps is above the ceiling of {MAX_PROTOCOL_FEE_BPS} bps",
            config.protocol_fee_bps
        )));
    }
    if config.min_runner_bps > MAX_RUNNER_BPS {
        return Err(Error::InvalidConfig(format!(
            "minimum runner share {} bps is above the ceiling of {MAX_RUNNER_BPS} bps",
            config.min_runner_bps
        )));
    }
    for (name, delay) in [
        ("settlement window", config.settlement_window_ns),
        ("withdrawal delay", config.withdrawal_delay_ns),
        ("runner exit delay", config.runner_exit_delay_ns),
    ] {
        if delay.0 > MAX_DELAY_NS {
            return Err(Error::InvalidConfig(format!(
                "{name} {} ns is above the ceiling of {MAX_DELAY_NS} ns",
                delay.0
            )));
        }
    }
    // Money and trust rule 4: a user never escapes with funds a runner earned.
    if config.withdrawal_delay_ns.0 <= config.settlement_window_ns.0 {
        return Err(Error::InvalidConfig(format!(
            "withdrawal delay {} ns must be longer than the settlement window {} ns",
            config.withdrawal_delay_ns.0, config.settlement_window_ns.0
        )));
    }
    Ok(())
}

impl Hub {
    /// The owner, calling with a full-access key (one yocto attached).
    pub(crate) fn assert_owner(&self) {
        near_sdk::assert_one_yocto();
        self.assert_owner_caller();
    }

    /// The owner, in a call whose required deposit already proves a full-access key.
    pub(crate) fn assert_owner_caller(&self) {
        let caller = env::predecessor_account_id();
        if caller != self.owner {
            Error::NotOwner { caller }.panic();
        }
    }

    /// The config in effect at `now_ns`.
    pub(crate) fn config_at(&self, now_ns: u64) -> &Config {
        Scheduled::at(
            self.pending_config.as_ref(),
            &self.config,
            now_ns,
            &self.pauses,
        )
    }

    /// The config in effect now.
    pub(crate) fn config_now(&self) -> &Config {
        self.config_at(env::block_timestamp())
    }

    /// How long a change that could reduce someone's earnings waits: the withdrawal delay
    /// in effect, which is longer than the settlement window and at most `MAX_DELAY_NS`.
    pub(crate) fn notice_ns(&self) -> u64 {
        self.config_now().withdrawal_delay_ns.0
    }

    /// Folds a scheduled config that has taken effect into `config`.
    fn settle_pending_config(&mut self) {
        let now = env::block_timestamp();
        if let Some(p) = self.pending_config.take() {
            if p.in_effect(now, &self.pauses) {
                self.config = p.terms;
            } else {
                self.pending_config = Some(p);
            }
        }
    }
}

#[near]
impl Admin for Hub {
    #[payable]
    fn set_config(&mut self, update: ConfigUpdate) {
        self.assert_owner();
        self.settle_pending_config();
        let mut config = self.config.clone();
        config.protocol_fee_bps = update.protocol_fee_bps.unwrap_or(config.protocol_fee_bps);
        config.min_runner_bps = update.min_runner_bps.unwrap_or(config.min_runner_bps);
        config.min_runner_bond = update.min_runner_bond.unwrap_or(config.min_runner_bond);
        config.settlement_window_ns = update
            .settlement_window_ns
            .unwrap_or(config.settlement_window_ns);
        config.withdrawal_delay_ns = update
            .withdrawal_delay_ns
            .unwrap_or(config.withdrawal_delay_ns);
        config.runner_exit_delay_ns = update
            .runner_exit_delay_ns
            .unwrap_or(config.runner_exit_delay_ns);
        validate_config(&config).unwrap_or_else(|e| e.panic());
        let now = env::block_timestamp();
        let effective_at_ns = U64(now + self.notice_ns());
        self.pending_config = Some(Scheduled {
            terms: config.clone(),
            scheduled_at_ns: U64(now),
            effective_at_ns,
        });
        Event::ConfigScheduled {
            config,
            effective_at_ns,
        }
        .emit();
    }

    #[payable]
    fn pause(&mut self) {
        self.assert_owner();
        let until = self
            .pauses
            .pause(env::block_timestamp())
            .unwrap_or_else(|e| Error::InvalidInput(e).panic());
        Event::Paused {
            paused: true,
            until_ns: Some(U64(until)),
        }
        .emit();
    }

    #[payable]
    fn unpause(&mut self) {
        self.assert_owner();
        self.pauses
            .unpause(env::block_timestamp())
            .unwrap_or_else(|e| Error::InvalidInput(e).panic());
        Event::Paused {
            paused: false,
            until_ns: None,
        }
        .emit();
    }

    #[payable]
    fn withdraw_protocol_fees(&mut self, receiver: AccountId, amount: Option<U128>) {
        self.assert_owner();
        let available = self.protocol_earnings;
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
        self.protocol_earnings -= amount;
        Event::ProtocolFeesWithdrawn {
            receiver: receiver.clone(),
            amount: U128(amount),
        }
        .emit();
        Payout::ProtocolFees.send(&receiver, amount);
    }

    #[payable]
    fn propose_owner(&mut self, new_owner: AccountId) {
        self.assert_owner();
        self.proposed_owner = Some(new_owner.clone());
        Event::OwnerProposed { to: new_owner }.emit();
    }

    #[payable]
    fn accept_owner(&mut self) {
        near_sdk::assert_one_yocto();
        let caller = env::predecessor_account_id();
        if self.proposed_owner.as_ref() != Some(&caller) {
            Error::InvalidInput(format!("{caller} was not proposed as the hub's owner")).panic();
        }
        self.proposed_owner = None;
        let from = std::mem::replace(&mut self.owner, caller.clone());
        Event::OwnerChanged { from, to: caller }.emit();
    }

    fn hub_info(&self) -> HubInfo {
        HubInfo {
            owner: self.owner.clone(),
            proposed_owner: self.proposed_owner.clone(),
            config: self.config_now().clone(),
            pending_config: self
                .pending_config
                .clone()
                .filter(|p| !p.in_effect(env::block_timestamp(), &self.pauses)),
            paused: self.pauses.is_paused(env::block_timestamp()),
            paused_until_ns: self.pauses.paused_until(env::block_timestamp()).map(U64),
            upgrade: self.upgrade.clone(),
            protocol_earnings: U128(self.protocol_earnings),
            channel_storage_cost: U128(crate::storage::cost_of(
                crate::storage::CHANNEL_STORAGE_BYTES,
            )),
            state_version: crate::STATE_VERSION,
            models: self.models.len(),
            runners: self.runners.len(),
            channels: self.channel_list.len(),
        }
    }
}

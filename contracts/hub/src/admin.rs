//! The owner's powers, all of them: fees within the hard caps, the runner bond, the delays,
//! pausing, withdrawing protocol fees, and handing over ownership. Each is evented.

use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId,
};

use crate::{
    error::Error,
    events::Event,
    fees::{MAX_PROTOCOL_FEE_BPS, MAX_RUNNER_BPS},
    payouts::Payout,
    state::Config,
    Hub, HubExt,
};

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

#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubInfo {
    pub owner: AccountId,
    pub config: Config,
    pub paused: bool,
    pub protocol_earnings: U128,
    /// Yocto to attach when opening a channel, on top of the first funds.
    pub channel_storage_cost: U128,
    pub state_version: u16,
    pub models: u64,
    pub runners: u64,
    pub channels: u64,
}

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
    pub(crate) fn assert_owner(&self) {
        let caller = env::predecessor_account_id();
        if caller != self.owner {
            Error::NotOwner { caller }.panic();
        }
    }
}

#[near]
impl Hub {
    /// Owner: changes any of the fees, the runner bond and the delays; only the fields
    /// given change, and the result must still be valid (fees within the hard ceilings,
    /// the withdrawal delay longer than the settlement window). Models keep the runner
    /// share they set; a new minimum applies when they next change it.
    pub fn set_config(&mut self, update: ConfigUpdate) {
        self.assert_owner();
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
        self.config = config.clone();
        Event::ConfigChanged { config }.emit();
    }

    /// Owner: stops registrations, funding, settlement and withdrawals of escrow until
    /// `unpause`. Runners' earnings stay withdrawable.
    pub fn pause(&mut self) {
        self.assert_owner();
        self.paused = true;
        Event::Paused { paused: true }.emit();
    }

    pub fn unpause(&mut self) {
        self.assert_owner();
        self.paused = false;
        Event::Paused { paused: false }.emit();
    }

    /// Owner: pays protocol fees (all, or `amount`) to `receiver`.
    pub fn withdraw_protocol_fees(&mut self, receiver: AccountId, amount: Option<U128>) {
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

    /// Owner: hands the owner role to another account.
    pub fn set_owner(&mut self, new_owner: AccountId) {
        self.assert_owner();
        let from = std::mem::replace(&mut self.owner, new_owner.clone());
        Event::OwnerChanged {
            from,
            to: new_owner,
        }
        .emit();
    }

    /// The hub's settings and totals in one view.
    pub fn hub_info(&self) -> HubInfo {
        HubInfo {
            owner: self.owner.clone(),
            config: self.config.clone(),
            paused: self.paused,
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

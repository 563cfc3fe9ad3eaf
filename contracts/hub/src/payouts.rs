//! Payouts leave the ledger first and go out as transfers; a callback puts the amount back
//! where it came from if the transfer fails (say, the receiver account was deleted), so a
//! failed payout loses nothing and can be retried.

use market_protocol::ChannelId;
use near_sdk::{env, json_types::U128, near, AccountId, Gas, NearToken, Promise, PromiseError};

use crate::{events::Event, state::Update, Hub, HubExt};

/// Gas for `on_payout`: a few storage reads and writes and one event.
const ON_PAYOUT_GAS: Gas = Gas::from_tgas(5);

/// Where a payout came from, so a failed one can be re-credited there.
#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub enum Payout {
    RunnerEarnings {
        runner: AccountId,
    },
    RunnerBond {
        runner: AccountId,
    },
    ProtocolFees,
    ChannelRefund {
        channel: ChannelId,
    },
    ContentEarnings {
        owner: AccountId,
    },
    /// A reporter's share of a slashed bond; if it cannot be paid, the harmed user's
    /// channel gets it.
    ReporterReward {
        channel: ChannelId,
    },
}

impl Payout {
    pub fn send(self, to: &AccountId, amount: u128) {
        if amount == 0 {
            return;
        }
        Promise::new(to.clone())
            .transfer(NearToken::from_yoctonear(amount))
            .then(
                Hub::ext(env::current_account_id())
                    .with_static_gas(ON_PAYOUT_GAS)
                    .on_payout(self, to.clone(), U128(amount)),
            )
            .detach();
    }
}

#[near]
impl Hub {
    /// Callback of every payout: re-credits the amount if the transfer failed.
    #[private]
    #[allow(clippy::used_underscore_binding)]
    pub fn on_payout(
        &mut self,
        #[serializer(borsh)] payout: Payout,
        #[serializer(borsh)] receiver: AccountId,
        #[serializer(borsh)] amount: U128,
        #[callback_result] result: Result<(), PromiseError>,
    ) -> bool {
        if result.is_ok() {
            return true;
        }
        let recredited_to = match &payout {
            // A runner that has left keeps its returned bond as withdrawable earnings.
            Payout::RunnerEarnings { runner } | Payout::RunnerBond { runner } => {
                self.runners
                    .update(runner, |r| r.earnings.0 += amount.0)
                    .expect("payouts go to registered runners");
                format!("earnings of {runner}")
            }
            Payout::ProtocolFees => {
                self.protocol_earnings += amount.0;
                "protocol fees".to_owned()
            }
            Payout::ContentEarnings { owner } => {
                let earned = self.content_earnings.get(owner).unwrap_or(0);
                self.content_earnings.insert(owner, &(earned + amount.0));
                format!("content earnings of {owner}")
            }
            Payout::ChannelRefund { channel } | Payout::ReporterReward { channel } => {
                self.channels
                    .update(channel, |c| c.deposited.0 += amount.0)
                    .expect("refunds come from existing channels");
                format!("channel {} -> {}", channel.user, channel.runner)
            }
        };
        Event::PayoutFailed {
            receiver,
            amount,
            recredited_to,
        }
        .emit();
        false
    }
}

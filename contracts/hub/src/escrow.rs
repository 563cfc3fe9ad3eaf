//! Users: authorization keys, channel escrow, and withdrawal of unspent funds after a
//! delay longer than the settlement window (so a runner's earned funds are still there).

use market_protocol::ChannelId;
use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId, PublicKey,
};

pub use market_hub_api::ChannelView;

use crate::{
    error::Error,
    events::Event,
    payouts::Payout,
    state::{AccountKey, Channel, Deadline, Update},
    storage::{cost_of, refund, CHANNEL_STORAGE_BYTES},
    Hub, HubExt,
};
use market_hub_api::Escrow;

/// Channels per user; bounds what revoking a key rewrites.
pub const MAX_CHANNELS_PER_USER: usize = 64;

impl Hub {
    fn caller_channel(&self, runner: &AccountId) -> (ChannelId, Channel) {
        let id = ChannelId {
            user: env::predecessor_account_id(),
            runner: runner.clone(),
        };
        let channel = self.channels.get(&id).unwrap_or_else(|| {
            Error::UnknownChannel {
                user: id.user.clone(),
                runner: id.runner.clone(),
            }
            .panic()
        });
        (id, channel)
    }
}

#[near]
impl Escrow for Hub {
    #[payable]
    fn register_user_key(&mut self, key: PublicKey) {
        let user = env::predecessor_account_id();
        Self::check_new_key(&self.user_keys, &user, &key);
        let id = (user.clone(), key.clone());
        let ((), surplus) = self.paying_storage(
            env::attached_deposit().as_yoctonear(),
            "registering a user key",
            |s| {
                // Measured revoked, the record's largest size.
                s.user_keys.insert(
                    &id,
                    &AccountKey {
                        revoked_at_ns: Some(U64(0)),
                    },
                );
            },
        );
        self.user_keys.insert(
            &id,
            &AccountKey {
                revoked_at_ns: None,
            },
        );
        refund(&user, surplus);
        Event::UserKeyAdded { user, key }.emit();
    }

    fn revoke_user_key(&mut self, key: PublicKey) {
        let user = env::predecessor_account_id();
        let id = (user.clone(), key.clone());
        if self
            .user_keys
            .get(&id)
            .is_none_or(|k| k.revoked_at_ns.is_some())
        {
            Error::Inadmissible(market_protocol::Inadmissible::UnknownUserKey { key, user })
                .panic();
        }
        let now = env::block_timestamp();
        let pinned_until_ns = U64(now + self.config_now().settlement_window_ns.0);
        // The pinned authorizations carry their own end, so settlement never looks the key
        // up for a remembered authorization (one storage read less per receipt).
        for runner in self.user_channels.get(&user).unwrap_or_default() {
            let channel_id = ChannelId {
                user: user.clone(),
                runner,
            };
            self.channels.update(&channel_id, |channel| {
                if let Some(a) = channel
                    .authorization
                    .as_mut()
                    .filter(|a| a.public_key == key)
                {
                    a.revoked_until_ns = Some(pinned_until_ns);
                }
            });
        }
        self.user_keys.insert(
            &id,
            &AccountKey {
                revoked_at_ns: Some(U64(now)),
            },
        );
        Event::UserKeyRevoked {
            user,
            key,
            pinned_until_ns,
        }
        .emit();
    }

    #[payable]
    fn fund_channel(&mut self, runner: AccountId) {
        self.assert_active();
        let user = env::predecessor_account_id();
        let mut amount = env::attached_deposit().as_yoctonear();
        if self
            .runners
            .get(&runner)
            .is_none_or(|r| r.left || r.slashed)
        {
            Error::UnknownRunner(runner).panic();
        }
        let id = ChannelId {
            user: user.clone(),
            runner: runner.clone(),
        };
        let mut channel = if let Some(channel) = self.channels.get(&id) {
            if amount == 0 {
                Error::InvalidInput("attach the amount to add to the channel".into()).panic();
            }
            channel
        } else {
            // The record is charged at its largest size, its listing entries as measured.
            let mut runners = self.user_channels.get(&user).unwrap_or_default();
            if runners.len() >= MAX_CHANNELS_PER_USER {
                Error::InvalidInput(format!(
                    "{user} already has {MAX_CHANNELS_PER_USER} channels, the most a user may have"
                ))
                .panic();
            }
            runners.push(runner.clone());
            let ((), left) = self.paying_storage(amount, "opening a channel", |s| {
                s.channel_list.push(&id);
                s.user_channels.insert(&user, &runners);
            });
            let required = cost_of(CHANNEL_STORAGE_BYTES);
            if left <= required {
                Error::InsufficientDeposit {
                    attached: amount,
                    required: amount - left + required + 1,
                    what: "opening a channel",
                }
                .panic();
            }
            amount = left - required;
            Channel {
                deposited: U128(0),
                settled: U128(0),
                last_seq: U64(0),
                lines: Vec::new(),
                content: Vec::new(),
                authorization: None,
                withdrawal: None,
            }
        };
        channel.deposited.0 = channel
            .deposited
            .0
            .checked_add(amount)
            .unwrap_or_else(|| env::panic_str("deposit overflows u128"));
        channel.withdrawal = None;
        let deposited = channel.deposited;
        self.channels.insert(&id, &channel);
        Event::ChannelFunded {
            user,
            runner,
            amount: U128(amount),
            deposited,
        }
        .emit();
    }

    fn request_withdrawal(&mut self, runner: AccountId) {
        self.assert_active();
        let now_ns = env::block_timestamp();
        let ready_at_ns = now_ns + self.config_now().withdrawal_delay_ns.0;
        let (id, mut channel) = self.caller_channel(&runner);
        channel.withdrawal = Some(Deadline {
            requested_at_ns: U64(now_ns),
            ready_at_ns: U64(ready_at_ns),
        });
        self.channels.insert(&id, &channel);
        Event::WithdrawalRequested {
            user: id.user,
            runner: id.runner,
            ready_at_ns: U64(ready_at_ns),
        }
        .emit();
    }

    #[payable]
    fn finish_withdrawal(&mut self, runner: AccountId) {
        near_sdk::assert_one_yocto();
        self.assert_active();
        let now_ns = env::block_timestamp();
        let (id, mut channel) = self.caller_channel(&runner);
        let pending = channel.withdrawal.unwrap_or_else(|| {
            Error::WithdrawalNotRequested {
                user: id.user.clone(),
                runner: id.runner.clone(),
            }
            .panic()
        });
        let ready_at_ns =
            self.pauses
                .extended(pending.ready_at_ns.0, pending.requested_at_ns.0, now_ns);
        if now_ns < ready_at_ns {
            Error::TooEarly {
                what: "withdrawal",
                ready_at_ns,
                now_ns,
            }
            .panic();
        }
        let amount = channel.unspent();
        channel.deposited = channel.settled;
        channel.withdrawal = None;
        self.channels.insert(&id, &channel);
        Event::WithdrawalFinished {
            user: id.user.clone(),
            runner: id.runner.clone(),
            amount: U128(amount),
        }
        .emit();
        let user = id.user.clone();
        Payout::ChannelRefund { channel: id }.send(&user, amount);
    }

    fn channel(&self, user: AccountId, runner: AccountId) -> Option<ChannelView> {
        let channel = self.channels.get(&ChannelId {
            user: user.clone(),
            runner: runner.clone(),
        })?;
        Some(ChannelView {
            unspent: U128(channel.unspent()),
            user,
            runner,
            channel,
        })
    }

    fn channels(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ChannelView> {
        let from = u64::from(from_index.unwrap_or(0));
        let to = (from + u64::from(limit.unwrap_or(50).min(200))).min(self.channel_list.len());
        (from..to)
            .filter_map(|i| {
                let id = self.channel_list.get(i)?;
                let c = self.channels.get(&id)?;
                Some(ChannelView {
                    user: id.user,
                    runner: id.runner,
                    unspent: U128(c.unspent()),
                    channel: c,
                })
            })
            .collect()
    }
}

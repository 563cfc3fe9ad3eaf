//! Disputes, first brick: a runner's contradictory signed receipts are proof anyone can
//! submit. Receipts are cumulative, so two that cannot both be true (the same sequence with
//! different charges, or a later sequence charging less on some line) show the runner
//! signing whatever suits it. The hub verifies both signatures (any key the runner ever
//! registered, revoked ones included), takes the whole bond and stops the runner from
//! settling again.
//!
//! The rule for the bond: the reporter gets `REPORTER_BPS` of it (rounded down); the harmed
//! user gets back what the runner's settled receipts charged it on the channel, up to the
//! rest of the bond, into its channel's escrow; whatever is left goes to the protocol. So
//! a runner that reports itself through accounts it controls recovers only the reporter's
//! share plus what it had charged its own puppet channel, and charging that channel cost it
//! the holders' and the protocol's shares of every yocto: it never gets its bond back
//! early.

use market_protocol::{ChannelId, SignedReceipt, UsageReceipt};
use near_sdk::{env, json_types::U128, near};

use crate::{
    error::Error, events::Event, fees::bps_of, payouts::Payout, state::Update, EnvCrypto, Hub,
    HubExt,
};
use market_hub_api::Disputes;

/// The reporter's share of a slashed bond (basis points).
pub const REPORTER_BPS: u16 = 500;

/// Why two receipts of one channel cannot both be true, or `None` if they can.
pub fn contradiction(a: &UsageReceipt, b: &UsageReceipt) -> Option<String> {
    if a.user != b.user || a.runner != b.runner {
        return None;
    }
    let (early, late) = if a.seq.0 <= b.seq.0 { (a, b) } else { (b, a) };
    if early.seq == late.seq {
        return (early.lines != late.lines
            || early.content != late.content
            || early.amount != late.amount)
            .then(|| {
                format!(
                    "two receipts with sequence {} charge differently",
                    early.seq.0
                )
            });
    }
    if late.amount.0 < early.amount.0 {
        return Some(format!(
            "sequence {} charges {} yocto in all, less than sequence {}'s {}",
            late.seq.0, late.amount.0, early.seq.0, early.amount.0
        ));
    }
    for line in &early.lines {
        let later = late
            .lines
            .iter()
            .find(|l| l.model_id == line.model_id && l.version == line.version);
        let shrank = later.is_none_or(|l| {
            l.amount.0 < line.amount.0
                || l.units_in.0 < line.units_in.0
                || l.units_out.0 < line.units_out.0
        });
        if shrank {
            return Some(format!(
                "sequence {} has less of `{}` v{} than sequence {}",
                late.seq.0, line.model_id, line.version, early.seq.0
            ));
        }
    }
    for line in &early.content {
        let later = late
            .content
            .iter()
            .find(|c| c.content_id == line.content_id);
        if later.is_none_or(|c| c.uses.0 < line.uses.0 || c.amount.0 < line.amount.0) {
            return Some(format!(
                "sequence {} has less of content `{}` than sequence {}",
                late.seq.0, line.content_id, early.seq.0
            ));
        }
    }
    None
}

#[near]
impl Disputes for Hub {
    fn report_equivocation(
        &mut self,
        #[serializer(borsh)] first: SignedReceipt,
        #[serializer(borsh)] second: SignedReceipt,
    ) {
        let (a, b) = (&first.receipt, &second.receipt);
        let why = contradiction(a, b).unwrap_or_else(|| {
            Error::InvalidInput("the two receipts do not contradict each other".into()).panic()
        });
        for signed in [&first, &second] {
            let registered = self
                .runner_keys
                .contains_key(&(a.runner.clone(), signed.runner_key.clone()));
            if !registered || !signed.verify(&EnvCrypto) {
                Error::BadRunnerSignature.panic();
            }
        }
        let mut runner = self
            .runners
            .get(&a.runner)
            .unwrap_or_else(|| Error::UnknownRunner(a.runner.clone()).panic());
        if runner.slashed {
            Error::InvalidInput(format!("runner {} was already slashed", a.runner)).panic();
        }
        let channel = ChannelId {
            user: a.user.clone(),
            runner: a.runner.clone(),
        };
        if self.channels.get(&channel).is_none() {
            Error::UnknownChannel {
                user: channel.user,
                runner: channel.runner,
            }
            .panic();
        }
        let bond = std::mem::replace(&mut runner.bond.0, 0);
        runner.slashed = true;
        self.runners.insert(&a.runner, &runner);
        let reporter_share = bps_of(bond, REPORTER_BPS);
        let user_share = self
            .channels
            .update(&channel, |c| {
                let share = c.settled.0.min(bond - reporter_share);
                c.deposited.0 += share;
                share
            })
            .expect("checked above");
        let protocol_share = bond - reporter_share - user_share;
        self.protocol_earnings += protocol_share;
        let reporter = env::predecessor_account_id();
        Event::RunnerSlashed {
            runner: channel.runner.clone(),
            user: channel.user.clone(),
            reporter: reporter.clone(),
            reason: why,
            to_user: U128(user_share),
            to_reporter: U128(reporter_share),
            to_protocol: U128(protocol_share),
        }
        .emit();
        Payout::ReporterReward { channel }.send(&reporter, reporter_share);
    }
}

//! `settle` and `simulate_settle`: the engine over the contract's state.

use market_protocol::SettleItem;
use near_sdk::{env, json_types::U128, near, AccountId};

pub use market_hub_api::{ReceiptOutcome, SettleResult};

use crate::{
    engine::{Context, Engine},
    error::Error,
    events::Event,
    fees::Split,
    ledger::Overlay,
    EnvCrypto, Hub, HubExt,
};
use market_hub_api::Settlement;

/// Receipts per `settle` call; far above what 300 Tgas can settle, it only bounds the
/// input a caller can make the contract parse.
pub const MAX_BATCH: usize = 4_096;
/// Per-receipt events per call. nearcore allows 100 logs and 16 KiB of logs per receipt,
/// so a large batch cannot log every receipt: the first ones are logged one by one, and
/// `batch_settled` sums up all of them. Every receipt's outcome is in the return value.
pub const MAX_RECEIPT_EVENTS: usize = 32;

impl Hub {
    /// Runs the batch through the engine; returns the outcomes and, if the batch
    /// balances, the writes to apply.
    fn run_batch(
        &self,
        submitter: &AccountId,
        items: &[SettleItem],
    ) -> (Vec<ReceiptOutcome>, crate::ledger::Writes, Split) {
        if items.len() > MAX_BATCH {
            Error::InvalidInput(format!(
                "a batch has at most {MAX_BATCH} receipts, not {}",
                items.len()
            ))
            .panic();
        }
        let hub = env::current_account_id();
        let now_ns = env::block_timestamp();
        let config = self.config_at(now_ns);
        let ctx = Context {
            hub: &hub,
            submitter,
            chain_id: &config.chain_id,
            now_ns,
            protocol_fee_bps: config.protocol_fee_bps,
            pauses: &self.pauses,
            settlement_window_ns: config.settlement_window_ns.0,
        };
        let mut overlay = Overlay::new(self, now_ns);
        let mut engine = Engine::new(&mut overlay, &EnvCrypto, ctx);
        let outcomes = items
            .iter()
            .map(|item| {
                let r = &item.receipt.receipt;
                let result = match engine.settle(item) {
                    Ok(s) => SettleResult::Settled {
                        charge: U128(s.charge),
                        runner_share: U128(s.split.runner),
                        holders_share: U128(s.split.holders),
                        protocol_share: U128(s.split.protocol),
                        content_share: U128(s.content),
                    },
                    Err(e) => SettleResult::Rejected {
                        code: e.code(),
                        reason: e.to_string(),
                    },
                };
                ReceiptOutcome {
                    user: r.user.clone(),
                    runner: r.runner.clone(),
                    seq: r.seq,
                    result,
                }
            })
            .collect();
        let (_, paid) = engine.finalize().unwrap_or_else(|e| e.panic());
        (outcomes, overlay.into_writes(), paid)
    }
}

#[near]
impl Settlement for Hub {
    fn settle(&mut self, #[serializer(borsh)] items: Vec<SettleItem>) -> Vec<ReceiptOutcome> {
        self.assert_active();
        let (outcomes, writes, paid) = self.run_batch(&env::predecessor_account_id(), &items);
        writes.apply(self);
        let mut settled = 0u32;
        for (i, o) in outcomes.iter().enumerate() {
            let detailed = i < MAX_RECEIPT_EVENTS;
            match &o.result {
                SettleResult::Settled {
                    charge,
                    runner_share,
                    holders_share,
                    protocol_share,
                    content_share,
                } => {
                    settled += 1;
                    if detailed {
                        Event::ReceiptSettled {
                            user: o.user.clone(),
                            runner: o.runner.clone(),
                            seq: o.seq,
                            charge: *charge,
                            runner_share: *runner_share,
                            holders_share: *holders_share,
                            protocol_share: *protocol_share,
                            content_share: *content_share,
                        }
                        .emit();
                    }
                }
                SettleResult::Rejected { code, reason } if detailed => Event::ReceiptRejected {
                    user: o.user.clone(),
                    runner: o.runner.clone(),
                    seq: o.seq,
                    code: *code,
                    reason: reason.clone(),
                }
                .emit(),
                SettleResult::Rejected { .. } => {}
            }
        }
        Event::BatchSettled {
            settled,
            rejected: u32::try_from(outcomes.len()).unwrap_or(u32::MAX) - settled,
            runner_share: U128(paid.runner),
            holders_share: U128(paid.holders),
            protocol_share: U128(paid.protocol),
        }
        .emit();
        outcomes
    }

    fn simulate_settle(
        &self,
        #[serializer(borsh)] submitter: AccountId,
        #[serializer(borsh)] items: Vec<SettleItem>,
    ) -> Vec<ReceiptOutcome> {
        self.run_batch(&submitter, &items).0
    }
}

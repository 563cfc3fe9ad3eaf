//! `settle` and `simulate_settle`: the engine over the contract's state.

use market_protocol::SettleItem;
use near_sdk::{
    env,
    json_types::{U128, U64},
    near, AccountId,
};

use crate::{
    engine::{Context, Engine},
    error::Error,
    events::Event,
    fees::Split,
    ledger::Overlay,
    EnvCrypto, Hub, HubExt,
};

/// Receipts per `settle` call; far above what 300 Tgas can settle, it only bounds the
/// input a caller can make the contract parse.
pub const MAX_BATCH: usize = 4_096;
/// Per-receipt events per call. nearcore allows 100 logs and 16 KiB of logs per receipt,
/// so a large batch cannot log every receipt: the first ones are logged one by one, and
/// `batch_settled` sums up all of them. Every receipt's outcome is in the return value.
pub const MAX_RECEIPT_EVENTS: usize = 32;

#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SettleResult {
    Settled {
        charge: U128,
        runner_share: U128,
        holders_share: U128,
        protocol_share: U128,
        content_share: U128,
    },
    Rejected {
        code: String,
        reason: String,
    },
}

#[near(serializers = [json])]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptOutcome {
    pub user: AccountId,
    pub runner: AccountId,
    pub seq: U64,
    pub result: SettleResult,
}

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
                        code: e.code().to_owned(),
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
impl Hub {
    /// Settles a batch of signed receipts (borsh-encoded `Vec<SettleItem>`). Each receipt
    /// is checked on its own; a rejected one changes nothing and the rest settle. Anyone
    /// may submit (a runner, or a relayer on its behalf).
    pub fn settle(&mut self, #[serializer(borsh)] items: Vec<SettleItem>) -> Vec<ReceiptOutcome> {
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
                    code: code.clone(),
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

    /// What `settle` would return for this batch now if `submitter` sent it, changing
    /// nothing. A view (JSON-RPC `call_function`), so the submitter is an argument: a view
    /// has no predecessor. Arguments are borsh, `(submitter, items)`.
    pub fn simulate_settle(
        &self,
        #[serializer(borsh)] submitter: AccountId,
        #[serializer(borsh)] items: Vec<SettleItem>,
    ) -> Vec<ReceiptOutcome> {
        self.run_batch(&submitter, &items).0
    }
}

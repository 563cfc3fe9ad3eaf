//! What `settle` and `simulate_settle` return: one outcome per receipt.

use near_sdk::{
    json_types::{U128, U64},
    near, AccountId,
};

use market_protocol::{SettleItem, SignedReceipt};

use crate::reject::RejectCode;

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
        code: RejectCode,
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

/// Settlement of signed usage receipts. The hub contract implements it; callers use [`crate::methods`].
pub trait Settlement {
    /// Settles a batch of signed receipts (borsh-encoded `Vec<SettleItem>`). Each receipt
    /// is checked on its own; a rejected one changes nothing and the rest settle. Anyone
    /// may submit (a runner, or a relayer on its behalf).
    fn settle(&mut self, items: Vec<SettleItem>) -> Vec<ReceiptOutcome>;

    /// What `settle` would return for this batch now if `submitter` sent it, changing
    /// nothing. A view (JSON-RPC `call_function`), so the submitter is an argument: a view
    /// has no predecessor. Arguments are borsh, `(submitter, items)`.
    fn simulate_settle(&self, submitter: AccountId, items: Vec<SettleItem>) -> Vec<ReceiptOutcome>;
}

/// Evidence against a runner. The hub contract implements it; callers use [`crate::methods`].
pub trait Disputes {
    /// Anyone: submits two receipts of one channel signed by the same runner that cannot
    /// both be true (borsh `(SignedReceipt, SignedReceipt)`). Slashes the runner's whole
    /// bond (see the module's rule) and stops its settlement for good.
    fn report_equivocation(&mut self, first: SignedReceipt, second: SignedReceipt);
}

//! A transaction's result as nearcore's `FinalExecutionOutcomeView`: the transaction, its
//! outcome and every receipt's, each with its status, logs, gas and tokens burnt.

use near_primitives::{
    errors::TxExecutionError,
    hash::CryptoHash,
    types::{Balance, Gas},
    views::{
        ExecutionMetadataView, ExecutionOutcomeView, ExecutionOutcomeWithIdView,
        ExecutionStatusView, FinalExecutionOutcomeView, FinalExecutionStatus,
        SignedTransactionView,
    },
};

use crate::{Outcome, Status, TxResult};

pub(super) fn final_outcome(
    result: &TxResult,
    transaction: SignedTransactionView,
    block_hash: CryptoHash,
) -> FinalExecutionOutcomeView {
    let status = match result.status() {
        Status::Value(v) => FinalExecutionStatus::SuccessValue(v),
        Status::Failure(e) => FinalExecutionStatus::Failure(TxExecutionError::ActionError(e)),
        Status::Receipt(_) => unreachable!("status() follows receipts"),
    };
    FinalExecutionOutcomeView {
        status,
        transaction,
        transaction_outcome: outcome_view(&result.transaction, block_hash),
        receipts_outcome: result
            .receipts
            .iter()
            .map(|o| outcome_view(o, block_hash))
            .collect(),
    }
}

/// One receipt's or the transaction's outcome. Every receipt runs in its transaction's
/// block, so all share its hash; there are no Merkle proofs.
fn outcome_view(o: &Outcome, block_hash: CryptoHash) -> ExecutionOutcomeWithIdView {
    let status = match &o.status {
        Status::Value(v) => ExecutionStatusView::SuccessValue(v.clone()),
        Status::Receipt(id) => ExecutionStatusView::SuccessReceiptId(*id),
        Status::Failure(e) => {
            ExecutionStatusView::Failure(TxExecutionError::ActionError(e.clone()))
        }
    };
    ExecutionOutcomeWithIdView {
        proof: vec![],
        block_hash,
        id: o.id,
        outcome: ExecutionOutcomeView {
            logs: o.logs.clone(),
            receipt_ids: o.receipt_ids.clone(),
            gas_burnt: Gas::from_gas(o.gas_burnt),
            tokens_burnt: Balance::from_yoctonear(o.tokens_burnt),
            executor_id: o.executor.clone(),
            status,
            metadata: ExecutionMetadataView::default(),
        },
    }
}

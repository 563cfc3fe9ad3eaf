//! `tx`, `tx_status` and `EXPERIMENTAL_tx_status`: the outcome of a transaction this node
//! ran, by hash (`RpcTransactionStatusRequest`, `RpcTransactionResponse`,
//! `RpcTransactionError::UnknownTransaction`). Every transaction runs to completion in its
//! block, so each is `FINAL` once known. Outcomes live as long as the process.

use std::collections::HashMap;

use near_jsonrpc_primitives::{
    errors::RpcError,
    types::transactions::{
        RpcTransactionError, RpcTransactionResponse, RpcTransactionStatusRequest, TransactionInfo,
    },
};
use near_primitives::{
    hash::CryptoHash,
    types::AccountId,
    views::{FinalExecutionOutcomeView, FinalExecutionOutcomeViewEnum, TxExecutionStatus},
};
use serde_json::Value;

use super::{parse, reply, Node, RpcResult};

/// The outcomes of the transactions this node ran, by hash and by block.
#[derive(Default)]
pub(super) struct TxLog {
    outcomes: HashMap<CryptoHash, FinalExecutionOutcomeView>,
    by_height: HashMap<u64, CryptoHash>,
}

impl TxLog {
    pub fn get(&self, hash: &CryptoHash) -> Option<&FinalExecutionOutcomeView> {
        self.outcomes.get(hash)
    }

    /// The outcome of the transaction block `height` ran, if it ran one.
    pub fn at_height(&self, height: u64) -> Option<&FinalExecutionOutcomeView> {
        self.by_height
            .get(&height)
            .and_then(|h| self.outcomes.get(h))
    }

    pub fn record(&mut self, height: u64, outcome: FinalExecutionOutcomeView) {
        let hash = outcome.transaction.hash;
        self.by_height.insert(height, hash);
        self.outcomes.insert(hash, outcome);
    }
}

/// The response nearcore gives once a transaction is final.
pub(super) fn final_response(outcome: FinalExecutionOutcomeView) -> RpcTransactionResponse {
    RpcTransactionResponse {
        final_execution_outcome: Some(FinalExecutionOutcomeViewEnum::FinalExecutionOutcome(
            outcome,
        )),
        final_execution_status: TxExecutionStatus::Final,
    }
}

pub(super) async fn tx(node: &Node, params: Value) -> RpcResult {
    let hash = tx_hash(params)?;
    match node.txs.lock().await.get(&hash) {
        Some(outcome) => reply(final_response(outcome.clone())),
        None => Err(RpcTransactionError::UnknownTransaction {
            requested_transaction_hash: hash,
        }
        .into()),
    }
}

/// The hash asked about: nearcore's `{tx_hash, sender_account_id}` or `{signed_tx_base64}`,
/// its legacy `[tx_hash, sender_account_id]`, or a bare `{tx_hash}` (the sender is not
/// needed to find a transaction here).
fn tx_hash(params: Value) -> Result<CryptoHash, RpcError> {
    if let Value::Array(a) = &params {
        if a.len() == 2 {
            let (hash, _sender): (CryptoHash, AccountId) = parse(params)?;
            return Ok(hash);
        }
    }
    if let Some(hash) = params
        .get("tx_hash")
        .filter(|_| params.get("sender_account_id").is_none())
    {
        return parse(hash.clone());
    }
    let request: RpcTransactionStatusRequest = parse(params)?;
    Ok(match request.transaction_info {
        TransactionInfo::Transaction { signed_tx } => signed_tx.get_hash(),
        TransactionInfo::TransactionId { tx_hash, .. } => tx_hash,
    })
}

//! `send_tx`, `broadcast_tx_commit` and `broadcast_tx_async`: a signed transaction runs at
//! once, with every receipt it causes, in a new block (`RpcSendTransactionRequest`,
//! `RpcTransactionResponse`; an invalid one is `RpcTransactionError::InvalidTransaction`
//! with nearcore's `InvalidTxError` in `data`). A re-sent transaction gets its first
//! outcome back, as on nearcore.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use borsh::BorshDeserialize;
use near_jsonrpc_primitives::{
    errors::RpcError,
    types::transactions::{RpcSendTransactionRequest, RpcTransactionError},
};
use near_primitives::{
    transaction::SignedTransaction,
    views::{FinalExecutionOutcomeView, SignedTransactionView},
};
use serde_json::Value;

use super::{outcome::final_outcome, parse, reply, tx::final_response, Node, RpcResult};

/// Waits for nothing: whatever `wait_until` asks, the transaction is final on return.
pub(super) async fn send_tx(node: &Node, params: Value) -> RpcResult {
    let request: RpcSendTransactionRequest = parse(params)?;
    let outcome = submit(node, request.signed_transaction).await?;
    reply(final_response(outcome))
}

pub(super) async fn broadcast_tx_commit(node: &Node, params: Value) -> RpcResult {
    let outcome = submit(node, decode(&params)?).await?;
    reply(outcome)
}

pub(super) async fn broadcast_tx_async(node: &Node, params: Value) -> RpcResult {
    let tx = decode(&params)?;
    let hash = tx.get_hash();
    submit(node, tx).await?;
    reply(hash)
}

/// The legacy methods' `[signed_tx_base64]` (or the bare string).
fn decode(params: &Value) -> Result<SignedTransaction, RpcError> {
    let text = params
        .get(0)
        .unwrap_or(params)
        .as_str()
        .ok_or_else(|| parse_error("expected a base64-encoded signed transaction"))?;
    let bytes = B64
        .decode(text)
        .map_err(|e| parse_error(&format!("invalid base64: {e}")))?;
    SignedTransaction::try_from_slice(&bytes)
        .map_err(|e| parse_error(&format!("invalid transaction: {e}")))
}

fn parse_error(message: &str) -> RpcError {
    RpcError::parse_error(message.to_owned())
}

async fn submit(node: &Node, tx: SignedTransaction) -> Result<FinalExecutionOutcomeView, RpcError> {
    let hash = tx.get_hash();
    let mut chain = node.chain().await;
    // Looked up under the chain's lock, so the same transaction sent twice at once runs once.
    if let Some(outcome) = node.txs.lock().await.get(&hash) {
        return Ok(outcome.clone());
    }
    let view = SignedTransactionView::from(tx.clone());
    let result = chain
        .submit(tx)
        .map_err(|context| RpcTransactionError::InvalidTransaction { context })?;
    let outcome = final_outcome(&result, view, chain.block_hash());
    node.save(&chain)?;
    node.txs
        .lock()
        .await
        .record(chain.height(), outcome.clone());
    Ok(outcome)
}

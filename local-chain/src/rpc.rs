//! NEAR's JSON-RPC over the chain: the subset `near-workspaces`, `near-jsonrpc-client` and
//! near-cli-rs use (nearcore's `chain/jsonrpc`). Request and response shapes, error objects
//! and their tags follow nearcore's, so those clients parse them unchanged; every answer is
//! HTTP 200, as nearcore's are.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{body::Bytes, extract::State, routing::post, Json, Router};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use borsh::BorshDeserialize;
use near_primitives::{
    errors::TxExecutionError,
    hash::CryptoHash,
    transaction::SignedTransaction,
    views::{AccessKeyView, SignedTransactionView},
};
use near_primitives_core::types::AccountId;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{Chain, Outcome, Status, TxResult};

/// The chain behind a lock (transactions run one at a time, as nonces require), and the
/// outcomes of the transactions it ran, by hash.
pub struct Node {
    chain: Mutex<Chain>,
    txs: Mutex<HashMap<CryptoHash, Value>>,
    genesis_hash: CryptoHash,
    /// Where the chain is saved after every change, if anywhere.
    data_dir: Option<std::path::PathBuf>,
}

impl Node {
    pub fn new(chain: Chain) -> Arc<Self> {
        Self::persistent(chain, None)
    }

    /// A node that saves its chain to `data_dir` after every state change.
    pub fn persistent(chain: Chain, data_dir: Option<std::path::PathBuf>) -> Arc<Self> {
        let genesis_hash = chain.block_hash_at(1);
        Arc::new(Self {
            chain: Mutex::new(chain),
            txs: Mutex::new(HashMap::new()),
            genesis_hash,
            data_dir,
        })
    }

    fn save(&self, chain: &Chain) -> Result<(), RpcError> {
        match &self.data_dir {
            Some(dir) => chain.save(dir).map_err(|e| RpcError(json!({"name": "INTERNAL_ERROR", "cause": {"name": "INTERNAL_ERROR", "info": {"error_message": format!("saving the chain: {e}")}}, "code": -32000, "message": "Server error"}))),
            None => Ok(()),
        }
    }

    pub async fn chain(&self) -> tokio::sync::MutexGuard<'_, Chain> {
        self.chain.lock().await
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new().route("/", post(handle)).with_state(node)
}

/// Serves `node` on `addr` (port 0 for any free port); returns the bound address.
pub async fn serve(
    node: Arc<Node>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        axum::serve(listener, router(node))
            .await
            .expect("the RPC server runs");
    });
    Ok((bound, handle))
}

struct RpcError(Value);

fn handler_error(name: &str, info: Value, data: Value) -> RpcError {
    RpcError(
        json!({"name": "HANDLER_ERROR", "cause": {"name": name, "info": info}, "code": -32000, "message": "Server error", "data": data}),
    )
}

fn parse_error(message: &str) -> RpcError {
    RpcError(
        json!({"name": "REQUEST_VALIDATION_ERROR", "cause": {"name": "PARSE_ERROR", "info": {"error_message": message}}, "code": -32700, "message": "Parse error", "data": message}),
    )
}

async fn handle(State(node): State<Arc<Node>>, body: Bytes) -> Json<Value> {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Json(
                json!({"jsonrpc": "2.0", "id": null, "error": parse_error(&e.to_string()).0}),
            )
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let result = dispatch(&node, &method, params).await;
    Json(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError(error)) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    })
}

async fn dispatch(node: &Node, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        "status" => status(node).await,
        "health" => Ok(Value::Null),
        "block" => block(node, &params).await,
        "gas_price" => Ok(json!({"gas_price": crate::GAS_PRICE.to_string()})),
        "query" => query(node, &params).await,
        "broadcast_tx_commit" => {
            let tx = decode_tx(params.get(0).unwrap_or(&params.clone()))?;
            broadcast(node, tx).await
        }
        "send_tx" => {
            let tx = decode_tx(params.get("signed_tx_base64").unwrap_or(&Value::Null))?;
            let mut outcome = broadcast(node, tx).await?;
            outcome["final_execution_status"] = json!("FINAL");
            Ok(outcome)
        }
        "broadcast_tx_async" => {
            let tx = decode_tx(params.get(0).unwrap_or(&params.clone()))?;
            let hash = tx.get_hash();
            broadcast(node, tx).await?;
            Ok(json!(hash.to_string()))
        }
        "tx" | "EXPERIMENTAL_tx_status" => {
            let hash = params
                .get("tx_hash")
                .or_else(|| params.get(0))
                .and_then(Value::as_str)
                .and_then(|h| h.parse::<CryptoHash>().ok())
                .ok_or_else(|| parse_error("expected tx_hash"))?;
            match node.txs.lock().await.get(&hash) {
                Some(outcome) => {
                    let mut outcome = outcome.clone();
                    outcome["final_execution_status"] = json!("FINAL");
                    Ok(outcome)
                }
                None => Err(handler_error(
                    "UNKNOWN_TRANSACTION",
                    json!({"requested_transaction_hash": hash.to_string()}),
                    json!(format!("Transaction {hash} doesn't exist")),
                )),
            }
        }
        "sandbox_fast_forward" => {
            let delta = params
                .get("delta_height")
                .and_then(Value::as_u64)
                .ok_or_else(|| parse_error("expected delta_height"))?;
            let mut chain = node.chain().await;
            chain.fast_forward(delta);
            node.save(&chain)?;
            Ok(json!({}))
        }
        "sandbox_patch_state" => patch_state(node, &params).await,
        other => Err(RpcError(json!({
            "name": "REQUEST_VALIDATION_ERROR",
            "cause": {"name": "METHOD_NOT_FOUND", "info": {"method_name": other}},
            "code": -32601, "message": "Method not found", "data": other,
        }))),
    }
}

fn decode_tx(param: &Value) -> Result<SignedTransaction, RpcError> {
    let text = param
        .as_str()
        .ok_or_else(|| parse_error("expected a base64-encoded signed transaction"))?;
    let bytes = B64
        .decode(text)
        .map_err(|e| parse_error(&format!("invalid base64: {e}")))?;
    SignedTransaction::try_from_slice(&bytes)
        .map_err(|e| parse_error(&format!("invalid transaction: {e}")))
}

fn iso8601(ns: u64) -> String {
    // Days-from-civil (Howard Hinnant's algorithm): no date library needed for one field.
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = i64::try_from(days).expect("days since 1970 fit in i64") + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

const ZERO_HASH: &str = "11111111111111111111111111111111";

async fn status(node: &Node) -> Result<Value, RpcError> {
    let chain = node.chain().await;
    let version = near_primitives::version::PROTOCOL_VERSION;
    Ok(json!({
        "version": {"version": env!("CARGO_PKG_VERSION"), "build": "local-chain", "commit": "0"},
        "chain_id": chain.chain_id(),
        "protocol_version": version,
        "latest_protocol_version": version,
        "validators": [{"account_id": chain.root().to_string()}],
        "sync_info": {
            "latest_block_hash": chain.block_hash().to_string(),
            "latest_block_height": chain.height(),
            "latest_state_root": ZERO_HASH,
            "latest_block_time": iso8601(chain.timestamp_ns()),
            "syncing": false,
            "earliest_block_hash": node.genesis_hash.to_string(),
            "earliest_block_height": 1,
            "earliest_block_time": null,
            "epoch_id": ZERO_HASH,
            "epoch_start_height": 1,
        },
        "validator_account_id": chain.root().to_string(),
        "validator_public_key": null,
        "node_public_key": "ed25519:11111111111111111111111111111111",
        "node_key": null,
        "uptime_sec": 0,
        "genesis_hash": node.genesis_hash.to_string(),
    }))
}

async fn block(node: &Node, params: &Value) -> Result<Value, RpcError> {
    let chain = node.chain().await;
    // Every finality is the head; a block id is accepted if it was ever produced.
    let height = match params.get("block_id") {
        Some(Value::Number(h)) => h.as_u64().filter(|h| (1..=chain.height()).contains(h)),
        Some(Value::String(hash)) => (1..=chain.height())
            .rev()
            .find(|h| chain.block_hash_at(*h).to_string() == *hash),
        _ => Some(chain.height()),
    };
    let Some(height) = height else {
        return Err(handler_error(
            "UNKNOWN_BLOCK",
            json!({"block_reference": params}),
            json!("DB Not Found Error: block"),
        ));
    };
    let hash = chain.block_hash_at(height).to_string();
    let prev = chain
        .block_hash_at(height.saturating_sub(1).max(1))
        .to_string();
    let ts = chain.timestamp_ns() - (chain.height() - height) * crate::chain::BLOCK_NS;
    Ok(json!({
        "author": chain.root().to_string(),
        "chunks": [],
        "header": {
            "height": height, "prev_height": height.saturating_sub(1),
            "epoch_id": ZERO_HASH, "next_epoch_id": ZERO_HASH, "hash": hash, "prev_hash": prev,
            "prev_state_root": ZERO_HASH, "chunk_receipts_root": ZERO_HASH, "chunk_headers_root": ZERO_HASH,
            "chunk_tx_root": ZERO_HASH, "outcome_root": ZERO_HASH, "chunks_included": 1, "challenges_root": ZERO_HASH,
            "timestamp": ts, "timestamp_nanosec": ts.to_string(), "random_value": ZERO_HASH,
            "validator_proposals": [], "chunk_mask": [true], "gas_price": crate::GAS_PRICE.to_string(),
            "block_ordinal": height, "total_supply": chain.total_supply().to_string(), "challenges_result": [],
            "last_final_block": hash, "last_ds_final_block": hash, "next_bp_hash": ZERO_HASH,
            "block_merkle_root": ZERO_HASH, "epoch_sync_data_hash": null, "approvals": [],
            "signature": format!("ed25519:{}", "1".repeat(64)),
            "latest_protocol_version": near_primitives::version::PROTOCOL_VERSION,
            "chunk_endorsements": null, "shard_split": null,
        },
    }))
}

fn account_arg(params: &Value) -> Result<AccountId, RpcError> {
    params
        .get("account_id")
        .and_then(Value::as_str)
        .ok_or_else(|| parse_error("expected account_id"))?
        .parse()
        .map_err(|e| parse_error(&format!("invalid account_id: {e}")))
}

async fn query(node: &Node, params: &Value) -> Result<Value, RpcError> {
    let chain = node.chain().await;
    let (height, hash) = (chain.height(), chain.block_hash().to_string());
    let with_block = |mut v: Value| {
        v["block_height"] = json!(height);
        v["block_hash"] = json!(hash);
        v
    };
    let kind = params
        .get("request_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = account_arg(params)?;
    let unknown = || {
        handler_error(
            "UNKNOWN_ACCOUNT",
            json!({"requested_account_id": id.to_string(), "block_height": height, "block_hash": hash}),
            json!(format!("account {id} does not exist while viewing")),
        )
    };
    match kind {
        "view_account" => {
            let a = chain.account(&id).ok_or_else(unknown)?;
            let code_hash = if a.code.is_some() {
                a.code_hash().to_string()
            } else {
                ZERO_HASH.to_owned()
            };
            Ok(with_block(
                json!({"amount": a.amount.to_string(), "locked": a.locked.to_string(), "code_hash": code_hash, "storage_usage": a.storage_usage, "storage_paid_at": 0}),
            ))
        }
        "view_code" => {
            let a = chain.account(&id).ok_or_else(unknown)?;
            let code = a.code.as_ref().ok_or_else(|| {
                handler_error("NO_CONTRACT_CODE", json!({"contract_account_id": id.to_string(), "block_height": height, "block_hash": hash}), json!(format!("Contract code for contract ID #{id} has never been observed on the node")))
            })?;
            Ok(with_block(
                json!({"code_base64": B64.encode(code.code()), "hash": code.hash().to_string()}),
            ))
        }
        "view_state" => {
            let a = chain.account(&id).ok_or_else(unknown)?;
            let prefix = B64
                .decode(
                    params
                        .get("prefix_base64")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
                .map_err(|e| parse_error(&e.to_string()))?;
            let mut values: Vec<_> = a
                .storage
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .collect();
            values.sort();
            let values: Vec<Value> = values
                .into_iter()
                .map(|(k, v)| json!({"key": B64.encode(k), "value": B64.encode(v)}))
                .collect();
            Ok(with_block(json!({"values": values})))
        }
        "view_access_key" => {
            let a = chain.account(&id).ok_or_else(unknown)?;
            let key_text = params
                .get("public_key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key: near_crypto::PublicKey = key_text
                .parse()
                .map_err(|e| parse_error(&format!("invalid public_key: {e:?}")))?;
            match a.keys.get(&key) {
                Some(k) => {
                    let view = serde_json::to_value(AccessKeyView::from(k.clone()))
                        .expect("views serialize");
                    Ok(with_block(view))
                }
                // nearcore answers this one in its legacy shape, which clients match on.
                None => Ok(with_block(
                    json!({"error": format!("access key {key} does not exist while viewing"), "logs": []}),
                )),
            }
        }
        "view_access_key_list" => {
            let a = chain.account(&id).ok_or_else(unknown)?;
            let keys: Vec<Value> = a
                .keys
                .iter()
                .map(|(k, v)| json!({"public_key": k.to_string(), "access_key": serde_json::to_value(AccessKeyView::from(v.clone())).expect("views serialize")}))
                .collect();
            Ok(with_block(json!({"keys": keys})))
        }
        "call_function" => {
            let method = params
                .get("method_name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let args = B64
                .decode(
                    params
                        .get("args_base64")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )
                .map_err(|e| parse_error(&e.to_string()))?;
            if chain.account(&id).is_none() {
                return Err(unknown());
            }
            match chain.view(&id, method, &args) {
                Ok((result, logs)) => Ok(with_block(json!({"result": result, "logs": logs}))),
                // nearcore's legacy shape for a failed view, which clients parse.
                Err(e) => Ok(with_block(
                    json!({"error": format!("wasm execution failed with error: {e}"), "logs": []}),
                )),
            }
        }
        other => Err(parse_error(&format!("unknown request_type `{other}`"))),
    }
}

async fn broadcast(node: &Node, tx: SignedTransaction) -> Result<Value, RpcError> {
    let hash = tx.get_hash();
    // A re-sent transaction gets its first outcome back, as on nearcore.
    if let Some(outcome) = node.txs.lock().await.get(&hash) {
        return Ok(outcome.clone());
    }
    let mut chain = node.chain().await;
    let view = SignedTransactionView::from(tx.clone());
    match chain.submit(tx) {
        Ok(result) => {
            let block = chain.block_hash().to_string();
            let outcome = final_outcome(&result, view, &block);
            node.save(&chain)?;
            node.txs.lock().await.insert(hash, outcome.clone());
            Ok(outcome)
        }
        Err(invalid) => Err(handler_error(
            "INVALID_TRANSACTION",
            json!({}),
            json!({"TxExecutionError": {"InvalidTxError": serde_json::to_value(&invalid).expect("errors serialize")}}),
        )),
    }
}

fn status_json(status: &Status) -> Value {
    match status {
        Status::Value(v) => json!({"SuccessValue": B64.encode(v)}),
        Status::Receipt(id) => json!({"SuccessReceiptId": id.to_string()}),
        Status::Failure(e) => {
            json!({"Failure": serde_json::to_value(TxExecutionError::ActionError(e.clone())).expect("errors serialize")})
        }
    }
}

fn outcome_json(o: &Outcome, block: &str) -> Value {
    json!({
        "proof": [],
        "block_hash": block,
        "id": o.id.to_string(),
        "outcome": {
            "logs": o.logs,
            "receipt_ids": o.receipt_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "gas_burnt": o.gas_burnt,
            "tokens_burnt": o.tokens_burnt.to_string(),
            "executor_id": o.executor.to_string(),
            "status": status_json(&o.status),
            "metadata": {"version": 1, "gas_profile": null},
        },
    })
}

/// nearcore's `FinalExecutionOutcomeView`.
fn final_outcome(result: &TxResult, transaction: SignedTransactionView, block: &str) -> Value {
    let status = match result.status() {
        Status::Value(v) => json!({"SuccessValue": B64.encode(v)}),
        Status::Failure(e) => {
            json!({"Failure": serde_json::to_value(TxExecutionError::ActionError(e)).expect("errors serialize")})
        }
        Status::Receipt(_) => unreachable!("status() follows receipts"),
    };
    json!({
        "status": status,
        "transaction": serde_json::to_value(transaction).expect("views serialize"),
        "transaction_outcome": outcome_json(&result.transaction, block),
        "receipts_outcome": result.receipts.iter().map(|o| outcome_json(o, block)).collect::<Vec<_>>(),
    })
}

async fn patch_state(node: &Node, params: &Value) -> Result<Value, RpcError> {
    let records = params
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| parse_error("expected records"))?;
    let mut chain = node.chain().await;
    for record in records {
        let (kind, body) = record
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| parse_error("expected a state record"))?;
        let id = account_arg(body)?;
        let bytes = |field: &str| -> Result<Vec<u8>, RpcError> {
            B64.decode(body.get(field).and_then(Value::as_str).unwrap_or_default())
                .map_err(|e| parse_error(&e.to_string()))
        };
        let result = match kind.as_str() {
            "Account" => {
                let a = body
                    .get("account")
                    .ok_or_else(|| parse_error("expected account"))?;
                let amount = a
                    .get("amount")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let locked = a
                    .get("locked")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                chain.patch_account(&id, amount, locked);
                Ok(())
            }
            "Contract" => chain.patch_code(&id, bytes("code")?),
            "AccessKey" => {
                let key: near_crypto::PublicKey = body
                    .get("public_key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| parse_error(&format!("{e:?}")))?;
                let view: AccessKeyView =
                    serde_json::from_value(body.get("access_key").cloned().unwrap_or_default())
                        .map_err(|e| parse_error(&e.to_string()))?;
                chain.patch_key(&id, key, view.into())
            }
            "Data" => chain.patch_state(&id, bytes("data_key")?, bytes("value")?),
            other => Err(format!("state record {other} is not supported")),
        };
        result.map_err(|e| RpcError(json!({"name": "HANDLER_ERROR", "cause": {"name": "INTERNAL_ERROR", "info": {"error_message": e}}, "code": -32000, "message": "Server error", "data": e})))?;
    }
    node.save(&chain)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_of_known_instants() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::iso8601(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}

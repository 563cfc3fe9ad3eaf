//! The hub contract over NEAR JSON-RPC (`near-jsonrpc-client`): typed views and signed
//! function calls. The same client talks to testnet, mainnet and the local chain.

use std::time::Duration;

use near_jsonrpc_client::{methods, JsonRpcClient};
use near_jsonrpc_primitives::types::query::QueryResponseKind;
use near_primitives::{
    action::{Action, FunctionCallAction},
    transaction::{SignedTransaction, Transaction, TransactionV0},
    types::{Balance, BlockReference, Finality, FunctionArgs, Gas},
    views::{FinalExecutionStatus, QueryRequest},
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId,
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// What talking to the chain can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached or answered garbage: retry later.
    #[error("RPC unreachable: {0}")]
    Transport(String),
    /// The node answered with an error (unknown account, invalid transaction, ...).
    #[error("RPC error: {0}")]
    Rpc(String),
    /// The transaction ran and failed (a contract panic, out of gas).
    #[error("transaction failed: {0}")]
    Failed(String),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl ChainError {
    fn from_rpc<E: std::fmt::Debug>(e: &near_jsonrpc_client::errors::JsonRpcError<E>) -> Self {
        use near_jsonrpc_client::errors::JsonRpcError;
        match e {
            JsonRpcError::TransportError(t) => Self::Transport(format!("{t}")),
            JsonRpcError::ServerError(s) => Self::Rpc(format!("{s:?}")),
        }
    }
}

/// `user_key(user, key)` and `runner_key(runner, key)`: a key in its account's own
/// namespace; revoked keys stay recorded.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AccountKey {
    pub revoked_at_ns: Option<U64>,
}

impl AccountKey {
    pub fn revoked(&self) -> bool {
        self.revoked_at_ns.is_some()
    }
}

/// The parts of `channel(user, runner)` the runner uses.
#[derive(Deserialize, Clone, Debug)]
pub struct ChannelView {
    pub unspent: U128,
    pub channel: ChannelState,
}

#[derive(Deserialize, Clone, Debug)]
pub struct ChannelState {
    pub deposited: U128,
    pub settled: U128,
    pub last_seq: U64,
    /// A requested withdrawal of the unspent escrow (its ready time).
    pub withdrawal: Option<Value>,
}

/// The parts of `model(model_id)` the runner uses.
#[derive(Deserialize, Clone, Debug)]
pub struct ModelView {
    pub model_id: String,
    pub model: ModelState,
}

#[derive(Deserialize, Clone, Debug)]
pub struct ModelState {
    pub owner: AccountId,
    pub price_in_per_1k: U128,
    pub price_out_per_1k: U128,
    pub terms: RunnerTerms,
    /// New terms the owner scheduled: the runner stops serving as soon as they would
    /// exclude it, so nothing it serves is left to settle after they take effect.
    pub pending_terms: Option<Scheduled>,
    pub versions: u32,
    pub hidden: bool,
}

#[derive(Deserialize, Clone, Debug)]
pub struct RunnerTerms {
    pub runner_policy: Value,
}

#[derive(Deserialize, Clone, Debug)]
pub struct Scheduled {
    pub terms: RunnerTerms,
}

impl ModelState {
    pub fn allows(&self, runner: &AccountId) -> bool {
        self.terms.allows(runner)
            && self
                .pending_terms
                .as_ref()
                .is_none_or(|p| p.terms.allows(runner))
    }
}

impl RunnerTerms {
    pub fn allows(&self, runner: &AccountId) -> bool {
        match &self.runner_policy {
            Value::String(s) => s == "Open",
            Value::Object(o) => o
                .get("Allowlist")
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|r| r.as_str() == Some(runner.as_str()))),
            _ => false,
        }
    }
}

/// `model_version(model_id, version)`.
#[derive(Deserialize, Clone, Debug)]
pub struct ModelVersion {
    pub weights_sha256: market_protocol::Hash32,
    pub format: String,
    pub architecture: String,
}

/// `content(content_id)`.
#[derive(Deserialize, Clone, Debug)]
pub struct ContentItem {
    pub owner: AccountId,
    pub sha256: market_protocol::Hash32,
    pub license: Value,
}

impl ContentItem {
    /// The price per use if the item is inference-only content.
    pub fn price_per_use(&self) -> Option<u128> {
        self.license
            .get("InferenceOnly")?
            .get("price_per_use")?
            .as_str()?
            .parse()
            .ok()
    }
}

/// `runner(runner)`.
#[derive(Deserialize, Clone, Debug)]
pub struct RunnerState {
    pub bond: U128,
    pub earnings: U128,
    pub left: bool,
}

/// One receipt's outcome in `settle`'s return value.
#[derive(Deserialize, Clone, Debug)]
pub struct ReceiptOutcome {
    pub user: AccountId,
    pub seq: U64,
    pub result: SettleResult,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SettleResult {
    Settled { charge: U128, runner_share: U128 },
    Rejected { code: String, reason: String },
}

/// A JSON-RPC node and the hub on it.
#[derive(Clone)]
pub struct Hub {
    client: JsonRpcClient,
    pub account: AccountId,
    pub chain_id: String,
}

impl Hub {
    pub fn new(rpc_url: &str, account: AccountId, chain_id: String) -> Self {
        // A short timeout: a hung node must not hold up request handling or settlement,
        // both of which fall back or retry.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client with default TLS settings");
        Self {
            client: JsonRpcClient::with(http).connect(rpc_url),
            account,
            chain_id,
        }
    }

    pub fn rpc_url(&self) -> &str {
        self.client.server_addr()
    }

    /// A view call on the hub with JSON args, at the final block.
    pub async fn view<T: DeserializeOwned>(
        &self,
        method: &str,
        args: Value,
    ) -> Result<T, ChainError> {
        let response = self
            .client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::CallFunction {
                    account_id: self.account.clone(),
                    method_name: method.into(),
                    args: FunctionArgs::from(args.to_string().into_bytes()),
                },
            })
            .await
            .map_err(|e| ChainError::from_rpc(&e))?;
        match response.kind {
            QueryResponseKind::CallResult(r) => serde_json::from_slice(&r.result)
                .map_err(|e| ChainError::Unexpected(format!("`{method}` returned {e}"))),
            _ => Err(ChainError::Unexpected(format!(
                "`{method}` is not a call result"
            ))),
        }
    }

    pub async fn user_key(
        &self,
        user: &AccountId,
        key: &near_sdk::PublicKey,
    ) -> Result<Option<AccountKey>, ChainError> {
        self.view("user_key", json!({ "user": user, "key": key }))
            .await
    }

    pub async fn runner_key(
        &self,
        runner: &AccountId,
        key: &near_sdk::PublicKey,
    ) -> Result<Option<AccountKey>, ChainError> {
        self.view("runner_key", json!({ "runner": runner, "key": key }))
            .await
    }

    pub async fn channel(
        &self,
        user: &AccountId,
        runner: &AccountId,
    ) -> Result<Option<ChannelView>, ChainError> {
        self.view("channel", json!({ "user": user, "runner": runner }))
            .await
    }

    pub async fn model(&self, model_id: &str) -> Result<Option<ModelView>, ChainError> {
        self.view("model", json!({ "model_id": model_id })).await
    }

    pub async fn model_version(
        &self,
        model_id: &str,
        version: u32,
    ) -> Result<Option<ModelVersion>, ChainError> {
        self.view(
            "model_version",
            json!({ "model_id": model_id, "version": version }),
        )
        .await
    }

    pub async fn content(&self, content_id: &str) -> Result<Option<ContentItem>, ChainError> {
        self.view("content", json!({ "content_id": content_id }))
            .await
    }

    pub async fn runner(&self, runner: &AccountId) -> Result<Option<RunnerState>, ChainError> {
        self.view("runner", json!({ "runner": runner })).await
    }

    /// The final block's timestamp (ns): the clock authorizations expire by.
    pub async fn block_time_ns(&self) -> Result<u64, ChainError> {
        let block = self
            .client
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .map_err(|e| ChainError::from_rpc(&e))?;
        Ok(block.header.timestamp_nanosec)
    }

    pub fn client(&self) -> &JsonRpcClient {
        &self.client
    }
}

/// Signs and sends transactions from one access key. The next nonce is remembered and only
/// re-read from the chain after a failure, so a batch costs one RPC call, not three.
pub struct TxSender {
    hub: Hub,
    signer: near_crypto::Signer,
    nonce: Mutex<Option<u64>>,
}

impl TxSender {
    pub fn new(hub: Hub, signer: near_crypto::Signer) -> Self {
        Self {
            hub,
            signer,
            nonce: Mutex::new(None),
        }
    }

    pub fn account(&self) -> AccountId {
        self.signer.get_account_id()
    }

    /// Calls `method` on the hub and waits for the final outcome; returns the method's
    /// return value. Any error leaves the nonce to be re-read.
    pub async fn call(
        &self,
        method: &str,
        args: Vec<u8>,
        deposit: u128,
        gas: u64,
    ) -> Result<Vec<u8>, ChainError> {
        let mut nonce = self.nonce.lock().await;
        let result = self
            .call_locked(&mut nonce, method, args, deposit, gas)
            .await;
        if result.is_err() {
            *nonce = None;
        }
        result
    }

    async fn call_locked(
        &self,
        nonce: &mut Option<u64>,
        method: &str,
        args: Vec<u8>,
        deposit: u128,
        gas: u64,
    ) -> Result<Vec<u8>, ChainError> {
        let client = self.hub.client();
        let access_key = client
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: self.account(),
                    public_key: self.signer.public_key(),
                },
            })
            .await
            .map_err(|e| ChainError::from_rpc(&e))?;
        let QueryResponseKind::AccessKey(key) = access_key.kind else {
            return Err(ChainError::Unexpected("not an access key".into()));
        };
        let next = nonce.map_or(key.nonce, |n| n.max(key.nonce)) + 1;
        let tx = Transaction::V0(TransactionV0 {
            signer_id: self.account(),
            public_key: self.signer.public_key(),
            nonce: next,
            receiver_id: self.hub.account.clone(),
            block_hash: access_key.block_hash,
            actions: vec![Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: method.into(),
                args,
                gas: Gas::from_gas(gas),
                deposit: Balance::from_yoctonear(deposit),
            }))],
        });
        let signature = self.signer.sign(tx.get_hash_and_size().0.as_ref());
        let outcome = client
            .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
                signed_transaction: SignedTransaction::new(signature, tx),
            })
            .await
            .map_err(|e| ChainError::from_rpc(&e))?;
        *nonce = Some(next);
        match outcome.status {
            FinalExecutionStatus::SuccessValue(value) => Ok(value),
            FinalExecutionStatus::Failure(e) => Err(ChainError::Failed(e.to_string())),
            other => Err(ChainError::Unexpected(format!("status {other:?}"))),
        }
    }

    /// `settle(items)` with borsh args; the per-receipt outcomes.
    pub async fn settle(
        &self,
        items: &[market_protocol::SettleItem],
        gas: u64,
    ) -> Result<Vec<ReceiptOutcome>, ChainError> {
        let args = borsh::to_vec(items).expect("serializing to a Vec cannot fail");
        let value = self.call("settle", args, 0, gas).await?;
        serde_json::from_slice(&value)
            .map_err(|e| ChainError::Unexpected(format!("settle returned {e}")))
    }
}

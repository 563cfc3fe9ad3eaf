//! The hub over NEAR JSON-RPC (`near-jsonrpc-client`): typed views at the final block and
//! signed calls waiting for their final outcome. The same client talks to testnet, mainnet
//! and the local chain.

use std::time::Duration;

use near_jsonrpc_client::{methods as rpc, JsonRpcClient};
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError};
use near_primitives::{
    action::{Action, FunctionCallAction},
    transaction::{SignedTransaction, Transaction, TransactionV0},
    types::{Balance, BlockReference, Finality, FunctionArgs, Gas},
    views::{FinalExecutionStatus, QueryRequest},
};
use near_sdk::AccountId;
use tokio::sync::Mutex;

use crate::methods::{Call, DecodeError, View};

/// What talking to the chain can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached or answered garbage: retry later.
    #[error("RPC unreachable: {0}")]
    Transport(String),
    /// The node answered with an error (unknown account, invalid transaction, ...).
    #[error("RPC error: {0}")]
    Rpc(String),
    /// The contract failed (a panic, out of gas): a transaction, or a view.
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

impl From<DecodeError> for ChainError {
    fn from(e: DecodeError) -> Self {
        Self::Unexpected(e.to_string())
    }
}

/// A JSON-RPC node and the hub on it.
#[derive(Clone)]
pub struct HubClient {
    client: JsonRpcClient,
    pub account: AccountId,
    pub chain_id: String,
}

impl HubClient {
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

    pub fn rpc(&self) -> &JsonRpcClient {
        &self.client
    }

    /// A view of the hub at the final block.
    pub async fn view<R>(&self, view: View<R>) -> Result<R, ChainError> {
        let response = self
            .client
            .call(rpc::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::CallFunction {
                    account_id: self.account.clone(),
                    method_name: view.method.into(),
                    args: FunctionArgs::from(view.args.clone()),
                },
            })
            .await
            .map_err(|e| match e {
                // The contract itself failed (a panic, out of gas): as a failed call.
                near_jsonrpc_client::errors::JsonRpcError::ServerError(
                    near_jsonrpc_client::errors::JsonRpcServerError::HandlerError(
                        RpcQueryError::ContractExecutionError { vm_error, .. },
                    ),
                ) => ChainError::Failed(vm_error),
                other => ChainError::from_rpc(&other),
            })?;
        match response.kind {
            QueryResponseKind::CallResult(r) => Ok(view.decode(&r.result)?),
            _ => Err(ChainError::Unexpected(format!(
                "`{}` is not a call result",
                view.method
            ))),
        }
    }

    /// The final block's timestamp (ns): the clock authorizations expire by.
    pub async fn block_time_ns(&self) -> Result<u64, ChainError> {
        let block = self
            .client
            .call(rpc::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .map_err(|e| ChainError::from_rpc(&e))?;
        Ok(block.header.timestamp_nanosec)
    }
}

/// Signs and sends the hub's calls from one access key. The next nonce is remembered and
/// only re-read from the chain after a failure, so a call costs one RPC round trip, not
/// three.
pub struct Signer {
    hub: HubClient,
    key: near_crypto::Signer,
    nonce: Mutex<Option<u64>>,
}

impl Signer {
    pub fn new(hub: HubClient, signer: near_crypto::Signer) -> Self {
        Self {
            hub,
            key: signer,
            nonce: Mutex::new(None),
        }
    }

    pub fn account(&self) -> AccountId {
        self.key.get_account_id()
    }

    pub fn hub(&self) -> &HubClient {
        &self.hub
    }

    /// Sends `call` and waits for its final outcome; returns its decoded value. Any error
    /// leaves the nonce to be re-read.
    pub async fn call<R>(&self, call: Call<R>) -> Result<R, ChainError> {
        let mut nonce = self.nonce.lock().await;
        let result = self.send_locked(&mut nonce, &call).await;
        if result.is_err() {
            *nonce = None;
        }
        Ok(call.decode(&result?)?)
    }

    async fn send_locked<R>(
        &self,
        nonce: &mut Option<u64>,
        call: &Call<R>,
    ) -> Result<Vec<u8>, ChainError> {
        let client = self.hub.rpc();
        let access_key = client
            .call(rpc::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: self.account(),
                    public_key: self.key.public_key(),
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
            public_key: self.key.public_key(),
            nonce: next,
            receiver_id: self.hub.account.clone(),
            block_hash: access_key.block_hash,
            actions: vec![Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: call.method.into(),
                args: call.args.clone(),
                gas: Gas::from_gas(call.gas),
                deposit: Balance::from_yoctonear(call.deposit),
            }))],
        });
        let signature = self.key.sign(tx.get_hash_and_size().0.as_ref());
        let outcome = client
            .call(rpc::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
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
}

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
    views::{FinalExecutionOutcomeView, FinalExecutionStatus, QueryRequest, TxExecutionStatus},
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
    /// A transaction was sent and no final outcome came in time: it may still land.
    #[error("no final outcome in time for transaction {0}")]
    OutcomeUnknown(String),
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

/// Signs and sends the hub's calls from one access key. The next nonce is remembered (the
/// larger of it and the chain's), so a call costs one access-key read and the transaction.
///
/// A call waits for its transaction's `FINAL` outcome, each RPC request bounded by
/// `request_timeout` and the whole wait by `outcome_timeout`: a node that hangs, drops an
/// answer or times out itself is asked again for the same transaction, by hash, and the
/// same signed transaction is sent again if the node does not know it (the chain runs a
/// transaction once, whoever sends it how often). Past `outcome_timeout` the call ends with
/// [`ChainError::OutcomeUnknown`]: the transaction may still land, and the caller must find
/// out from the contract's state, not by sending new work blind.
pub struct Signer {
    hub: HubClient,
    key: near_crypto::Signer,
    nonce: Mutex<Option<u64>>,
    request_timeout: Duration,
    outcome_timeout: Duration,
}

/// A transaction handed to the node, whose outcome is not known yet.
pub struct Sent {
    signed: SignedTransaction,
}

impl Sent {
    pub fn hash(&self) -> String {
        self.signed.get_hash().to_string()
    }
}

/// Between two asks for an outcome the node did not give.
const POLL_EVERY: Duration = Duration::from_millis(250);

impl Signer {
    pub fn new(hub: HubClient, signer: near_crypto::Signer) -> Self {
        Self {
            hub,
            key: signer,
            nonce: Mutex::new(None),
            request_timeout: Duration::from_secs(10),
            outcome_timeout: Duration::from_mins(1),
        }
    }

    /// Bounds on each RPC request and on the whole wait for a final outcome.
    #[must_use]
    pub fn timeouts(mut self, request: Duration, outcome: Duration) -> Self {
        self.request_timeout = request;
        self.outcome_timeout = outcome;
        self
    }

    pub fn account(&self) -> AccountId {
        self.key.get_account_id()
    }

    pub fn hub(&self) -> &HubClient {
        &self.hub
    }

    /// Sends `call` and waits for its final outcome; returns its decoded value.
    pub async fn call<R>(&self, call: Call<R>) -> Result<R, ChainError> {
        let sent = self.send(&call).await?;
        self.outcome(&call, sent).await
    }

    /// Signs `call` and hands it to the node, without waiting for it to run. An error means
    /// nothing was sent, or the node refused the transaction itself (a bad nonce, too
    /// little balance); once the node may have it, the answer is `Ok`: what became of it
    /// is for [`Signer::outcome`] to find out.
    pub async fn send<R>(&self, call: &Call<R>) -> Result<Sent, ChainError> {
        use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
        let mut nonce = self.nonce.lock().await;
        let signed = self.sign(&mut nonce, call).await?;
        drop(nonce);
        let answer = self
            .request(rpc::send_tx::RpcSendTransactionRequest {
                signed_transaction: signed.clone(),
                wait_until: TxExecutionStatus::None,
            })
            .await;
        match answer {
            Some(Err(
                e @ JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                    near_jsonrpc_primitives::types::transactions::RpcTransactionError::InvalidTransaction { .. },
                )),
            )) => {
                // The node refused it, so its nonce was not used. The remembered nonce may
                // be what made it invalid (one a lying node's view made up, too large for
                // the chain ever to accept): forget it, and take the node's next time.
                *self.nonce.lock().await = None;
                Err(ChainError::from_rpc(&e))
            }
            _ => Ok(Sent { signed }),
        }
    }

    /// Waits for `sent`'s `FINAL` outcome and decodes `call`'s value from it.
    pub async fn outcome<R>(&self, call: &Call<R>, sent: Sent) -> Result<R, ChainError> {
        let outcome = self.final_outcome(sent.signed).await?;
        match outcome.status {
            FinalExecutionStatus::SuccessValue(value) => Ok(call.decode(&value)?),
            FinalExecutionStatus::Failure(e) => Err(ChainError::Failed(e.to_string())),
            other => Err(ChainError::Unexpected(format!("status {other:?}"))),
        }
    }

    /// One RPC request, bounded by `request_timeout`; `None` if no answer came in time.
    async fn request<M: rpc::RpcMethod>(
        &self,
        method: M,
    ) -> Option<Result<M::Response, near_jsonrpc_client::errors::JsonRpcError<M::Error>>> {
        tokio::time::timeout(self.request_timeout, self.hub.rpc().call(method))
            .await
            .ok()
    }

    /// `call` as a transaction signed with the next nonce, which is taken whatever becomes
    /// of the transaction (a nonce may be skipped, never reused).
    async fn sign<R>(
        &self,
        nonce: &mut Option<u64>,
        call: &Call<R>,
    ) -> Result<SignedTransaction, ChainError> {
        let access_key = self
            .request(rpc::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request: QueryRequest::ViewAccessKey {
                    account_id: self.account(),
                    public_key: self.key.public_key(),
                },
            })
            .await
            .ok_or_else(|| {
                ChainError::Transport(format!("no answer within {:?}", self.request_timeout))
            })?
            .map_err(|e| ChainError::from_rpc(&e))?;
        let QueryResponseKind::AccessKey(key) = access_key.kind else {
            return Err(ChainError::Unexpected("not an access key".into()));
        };
        let next = nonce
            .map_or(key.nonce, |n| n.max(key.nonce))
            .checked_add(1)
            .ok_or_else(|| ChainError::Unexpected(format!("access key nonce {}", key.nonce)))?;
        *nonce = Some(next);
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
        Ok(SignedTransaction::new(signature, tx))
    }

    /// Asks the node about `signed` until it reports it `FINAL`, by hash, sending the same
    /// transaction again if the node does not know it, until `outcome_timeout`.
    async fn final_outcome(
        &self,
        signed: SignedTransaction,
    ) -> Result<FinalExecutionOutcomeView, ChainError> {
        use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
        use near_jsonrpc_primitives::types::transactions::{RpcTransactionError, TransactionInfo};

        let hash = signed.get_hash();
        let deadline = tokio::time::Instant::now() + self.outcome_timeout;
        let mut known = true;
        loop {
            let answer = if known {
                self.request(rpc::tx::RpcTransactionStatusRequest {
                    transaction_info: TransactionInfo::TransactionId {
                        tx_hash: hash,
                        sender_account_id: self.account(),
                    },
                    wait_until: TxExecutionStatus::Final,
                })
                .await
            } else {
                self.request(rpc::send_tx::RpcSendTransactionRequest {
                    signed_transaction: signed.clone(),
                    wait_until: TxExecutionStatus::Final,
                })
                .await
            };
            match answer {
                Some(Ok(response)) => {
                    known = true;
                    if response.final_execution_status == TxExecutionStatus::Final {
                        if let Some(outcome) = response.final_execution_outcome {
                            return Ok(outcome.into_outcome());
                        }
                    }
                }
                // Not seen by this node (sent to another, or lost): send it again.
                Some(Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                    RpcTransactionError::UnknownTransaction { .. },
                )))) => known = false,
                // No answer in time, the node's own wait ran out, or the answer was lost:
                // the transaction may be on its way; ask about it.
                None
                | Some(Err(
                    JsonRpcError::TransportError(_)
                    | JsonRpcError::ServerError(
                        JsonRpcServerError::HandlerError(
                            RpcTransactionError::TimeoutError(_)
                            | RpcTransactionError::InternalError { .. },
                        )
                        | JsonRpcServerError::ResponseStatusError(_)
                        | JsonRpcServerError::InternalError { .. },
                    ),
                )) => known = true,
                Some(Err(other)) => return Err(ChainError::from_rpc(&other)),
            }
            if tokio::time::Instant::now() + POLL_EVERY >= deadline {
                return Err(ChainError::OutcomeUnknown(hash.to_string()));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

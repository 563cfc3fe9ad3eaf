//! NEAR's JSON-RPC over the chain: the methods near-api-js, `near-jsonrpc-client`,
//! `near-workspaces` and near-cli-rs call (nearcore's `chain/jsonrpc`), one module per
//! method or family as nearcore's `chain/jsonrpc/src/api/`. Requests, responses and errors
//! are nearcore's own types (`near-jsonrpc-primitives`, `near_primitives::views`), so those
//! clients parse them unchanged: errors carry `name`/`cause`/`info` and the legacy `code`,
//! `message` and `data`; every answer is HTTP 200, as nearcore's are.

mod block;
mod chunk;
mod config;
mod gas_price;
mod outcome;
mod query;
mod sandbox;
mod send_tx;
mod status;
mod tx;
mod validators;
mod view;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{
        header::{
            ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
        },
        HeaderValue, StatusCode,
    },
    middleware,
    response::Response,
    routing::post,
    Json, Router,
};
use near_jsonrpc_primitives::{
    errors::RpcError,
    message::{self, Message, Request},
};
use near_primitives::{
    hash::CryptoHash,
    types::{BlockId, BlockReference, SyncCheckpoint},
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{chain::GENESIS_HEIGHT, Chain};
use tx::TxLog;

/// What a method answers: its result, or nearcore's error object.
type RpcResult = Result<Value, RpcError>;

/// The chain behind a lock (transactions run one at a time, as nonces require), and the
/// outcomes of the transactions it ran.
pub struct Node {
    chain: Mutex<Chain>,
    txs: Mutex<TxLog>,
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
        let genesis_hash = chain.block_hash_at(GENESIS_HEIGHT);
        Arc::new(Self {
            chain: Mutex::new(chain),
            txs: Mutex::new(TxLog::default()),
            genesis_hash,
            data_dir,
        })
    }

    pub async fn chain(&self) -> tokio::sync::MutexGuard<'_, Chain> {
        self.chain.lock().await
    }

    fn save(&self, chain: &Chain) -> Result<(), RpcError> {
        match &self.data_dir {
            Some(dir) => chain
                .save(dir)
                .map_err(|e| RpcError::new_internal_error(None, format!("saving the chain: {e}"))),
            None => Ok(()),
        }
    }
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/", post(handle).options(preflight))
        .layer(middleware::map_response(allow_any_origin))
        .with_state(node)
}

/// Any origin may call, as nearcore's default `cors_allowed_origins: ["*"]` allows: a dApp
/// in a browser calls the node from its own origin.
async fn allow_any_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    response
}

/// The browser's CORS preflight before a JSON POST: nothing to do but the headers above.
async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
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

/// One JSON-RPC message in, one out, as nearcore's `JsonRpcHandler::process`.
async fn handle(State(node): State<Arc<Node>>, body: Bytes) -> Json<Message> {
    Json(match message::from_slice(&body) {
        Ok(Message::Request(request)) => {
            let id = request.id.clone();
            Message::response(id, dispatch(&node, request).await)
        }
        Ok(_) => Message::error(RpcError::parse_error(
            "JSON RPC Request format was expected".to_owned(),
        )),
        Err(broken) => broken.reply(),
    })
}

async fn dispatch(node: &Node, request: Request) -> RpcResult {
    let params = request.params;
    match request.method.as_str() {
        "block" => block::block(node, params).await,
        "broadcast_tx_async" => send_tx::broadcast_tx_async(node, params).await,
        "broadcast_tx_commit" => send_tx::broadcast_tx_commit(node, params).await,
        "chunk" => chunk::chunk(node, params).await,
        "gas_price" => gas_price::gas_price(node, params).await,
        "health" => status::health(),
        "query" => query::query(node, params).await,
        "send_tx" => send_tx::send_tx(node, params).await,
        "status" => status::status(node).await,
        "tx" | "tx_status" | "EXPERIMENTAL_tx_status" => tx::tx(node, params).await,
        "validators" => validators::validators(node, params).await,
        "EXPERIMENTAL_call_function" => view::call_function(node, params).await,
        "EXPERIMENTAL_genesis_config" => config::genesis_config(node).await,
        "EXPERIMENTAL_protocol_config" => config::protocol_config(node, params).await,
        "EXPERIMENTAL_view_access_key" => view::access_key(node, params).await,
        "EXPERIMENTAL_view_access_key_list" => view::access_key_list(node, params).await,
        "EXPERIMENTAL_view_account" => view::account(node, params).await,
        "EXPERIMENTAL_view_code" => view::code(node, params).await,
        "EXPERIMENTAL_view_state" => view::state(node, params).await,
        "sandbox_fast_forward" => sandbox::fast_forward(node, params).await,
        "sandbox_patch_state" => sandbox::patch_state(node, params).await,
        other => Err(RpcError::method_not_found(other.to_owned())),
    }
}

/// Params as the method's request type, failing as nearcore's `Params::parse` does.
fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::parse_error(format!("Failed parsing args: {e}")))
}

/// A method's typed response as JSON.
fn reply<T: Serialize>(response: T) -> RpcResult {
    serde_json::to_value(response).map_err(|e| RpcError::serialization_error(e.to_string()))
}

/// No params (null, `[]`, `[null]` or `{}`) mean the head, as nearcore's optimistic finality.
fn is_empty(params: &Value) -> bool {
    match params {
        Value::Null => true,
        Value::Array(a) => a.iter().all(Value::is_null),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The block a request names: the flattened `BlockReference` of nearcore's `RpcBlockRequest`
/// and `RpcProtocolConfigRequest`, its legacy `[block_id]`, or nothing for the head.
fn block_reference(params: Value) -> Result<BlockReference, RpcError> {
    if is_empty(&params) {
        return Ok(BlockReference::latest());
    }
    if let Value::Array(a) = params {
        let (block_id,): (BlockId,) = parse(Value::Array(a))?;
        return Ok(BlockReference::BlockId(block_id));
    }
    parse(params)
}

/// The root's first key stands for the validator key this chain does not have.
fn root_key(chain: &Chain) -> near_crypto::PublicKey {
    chain
        .account(chain.root())
        .and_then(|a| a.keys.keys().next().cloned())
        .unwrap_or_else(|| near_crypto::PublicKey::empty(near_crypto::KeyType::ED25519))
}

/// The height `reference` names, if this chain produced it. Every finality is the head:
/// blocks are final when produced. Every height up to the head exists, those skipped by
/// `sandbox_fast_forward` included.
fn height_of(chain: &Chain, reference: &BlockReference) -> Option<u64> {
    let produced = GENESIS_HEIGHT..=chain.height();
    match reference {
        BlockReference::Finality(_) => Some(chain.height()),
        BlockReference::SyncCheckpoint(
            SyncCheckpoint::Genesis | SyncCheckpoint::EarliestAvailable,
        ) => Some(GENESIS_HEIGHT),
        BlockReference::BlockId(BlockId::Height(h)) => produced.contains(h).then_some(*h),
        BlockReference::BlockId(BlockId::Hash(hash)) => {
            produced.rev().find(|h| chain.block_hash_at(*h) == *hash)
        }
    }
}

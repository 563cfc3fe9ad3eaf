//! nearcore's per-kind query methods, `EXPERIMENTAL_view_account`, `_view_code`,
//! `_view_state`, `_view_access_key`, `_view_access_key_list` and `_call_function`: the same
//! answers as [`super::query`], in their own request, response and error types (a missing
//! key or a failed call is a typed error here, not `query`'s legacy result).

use near_jsonrpc_primitives::{
    errors::RpcError,
    types::{
        call_function::{RpcCallFunctionError, RpcCallFunctionRequest, RpcCallFunctionResponse},
        query::{QueryResponseKind, RpcQueryError, RpcQueryResponse},
        view_access_key::{
            RpcViewAccessKeyError, RpcViewAccessKeyRequest, RpcViewAccessKeyResponse,
        },
        view_access_key_list::{
            RpcViewAccessKeyListError, RpcViewAccessKeyListRequest, RpcViewAccessKeyListResponse,
        },
        view_account::{RpcViewAccountError, RpcViewAccountRequest, RpcViewAccountResponse},
        view_code::{RpcViewCodeError, RpcViewCodeRequest, RpcViewCodeResponse},
        view_state::{RpcViewStateError, RpcViewStateRequest, RpcViewStateResponse},
    },
};
use near_primitives::{types::BlockReference, views::QueryRequest};
use serde_json::Value;

use super::{parse, query, reply, Node, RpcResult};

/// Runs `request` as `query` does; a failure in the method's own error type.
async fn run<E>(
    node: &Node,
    block: &BlockReference,
    request: QueryRequest,
) -> Result<RpcQueryResponse, RpcError>
where
    E: From<RpcQueryError>,
    RpcError: From<E>,
{
    let chain = node.chain().await;
    query::view(&chain, block, request).map_err(|e| RpcError::from(E::from(e)))
}

fn unexpected(kind: &QueryResponseKind) -> RpcError {
    RpcError::new_internal_error(None, format!("unexpected query answer {kind:?}"))
}

pub(super) async fn account(node: &Node, params: Value) -> RpcResult {
    let r: RpcViewAccountRequest = parse(params)?;
    let request = QueryRequest::ViewAccount {
        account_id: r.account_id,
    };
    let answer = run::<RpcViewAccountError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::ViewAccount(account) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcViewAccountResponse {
        account,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

pub(super) async fn code(node: &Node, params: Value) -> RpcResult {
    let r: RpcViewCodeRequest = parse(params)?;
    let request = QueryRequest::ViewCode {
        account_id: r.account_id,
    };
    let answer = run::<RpcViewCodeError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::ViewCode(code) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcViewCodeResponse {
        code,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

pub(super) async fn state(node: &Node, params: Value) -> RpcResult {
    let r: RpcViewStateRequest = parse(params)?;
    let request = QueryRequest::ViewState {
        account_id: r.account_id,
        prefix: r.prefix,
        after_key: r.after_key,
        limit: r.limit,
        include_proof: r.include_proof,
    };
    let answer = run::<RpcViewStateError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::ViewState(state) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcViewStateResponse {
        state,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

pub(super) async fn access_key(node: &Node, params: Value) -> RpcResult {
    let r: RpcViewAccessKeyRequest = parse(params)?;
    let request = QueryRequest::ViewAccessKey {
        account_id: r.account_id,
        public_key: r.public_key,
    };
    let answer = run::<RpcViewAccessKeyError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::AccessKey(access_key) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcViewAccessKeyResponse {
        access_key,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

pub(super) async fn access_key_list(node: &Node, params: Value) -> RpcResult {
    let r: RpcViewAccessKeyListRequest = parse(params)?;
    let request = QueryRequest::ViewAccessKeyList {
        account_id: r.account_id,
        after_key: r.after_key,
        limit: r.limit,
    };
    let answer = run::<RpcViewAccessKeyListError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::AccessKeyList(access_key_list) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcViewAccessKeyListResponse {
        access_key_list,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

pub(super) async fn call_function(node: &Node, params: Value) -> RpcResult {
    let r: RpcCallFunctionRequest = parse(params)?;
    let request = QueryRequest::CallFunction {
        account_id: r.account_id,
        method_name: r.method_name,
        args: r.args,
    };
    let answer = run::<RpcCallFunctionError>(node, &r.block_reference, request).await?;
    let QueryResponseKind::CallResult(result) = answer.kind else {
        return Err(unexpected(&answer.kind));
    };
    reply(RpcCallFunctionResponse {
        result,
        block_height: answer.block_height,
        block_hash: answer.block_hash,
    })
}

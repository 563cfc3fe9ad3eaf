//! `query`: accounts, code, contract state, access keys and view calls at the head
//! (`RpcQueryRequest`, `RpcQueryResponse`, `RpcQueryError`), answered by [`view`], which the
//! per-kind `EXPERIMENTAL_view_*` methods share. State is kept for the head only: a query
//! naming an older block is answered with the head's state, and says so in `block_height`.

use std::num::NonZeroU32;

use near_jsonrpc_primitives::{
    errors::RpcError,
    types::query::{QueryResponseKind, RpcQueryError, RpcQueryRequest, RpcQueryResponse},
};
use near_primitives::{
    errors::{CompilationError, FunctionCallError},
    hash::CryptoHash,
    types::{AccountId, BlockHeight, BlockReference, StoreKey},
    views::{
        AccessKeyInfoView, AccessKeyList, AccessKeyView, AccountView, CallResult, ContractCodeView,
        QueryRequest, StateItem, ViewStateResult,
    },
};
use near_primitives_core::types::Balance;
use serde_json::{json, Value};

use super::{height_of, parse, reply, Node, RpcResult};
use crate::{account::Account, Chain};

pub(super) async fn query(node: &Node, params: Value) -> RpcResult {
    let request: RpcQueryRequest = parse(params)?;
    let chain = node.chain().await;
    match view(&chain, &request.block_reference, request.request) {
        Ok(response) => reply(response),
        // nearcore answers these two in their legacy result shape, which clients match on
        // (`chain/jsonrpc/src/lib.rs`, `process_query_response`).
        Err(RpcQueryError::ContractExecutionError {
            vm_error,
            block_height,
            block_hash,
            ..
        }) => Ok(legacy_error(vm_error, block_height, block_hash)),
        Err(RpcQueryError::UnknownAccessKey {
            public_key,
            block_height,
            block_hash,
        }) => Ok(legacy_error(
            format!("access key {public_key} does not exist while viewing"),
            block_height,
            block_hash,
        )),
        Err(e) => Err(RpcError::from(e)),
    }
}

fn legacy_error(error: String, block_height: BlockHeight, block_hash: CryptoHash) -> Value {
    json!({"error": error, "logs": [], "block_height": block_height, "block_hash": block_hash})
}

/// Answers `request` from the head's state, if `block` names a block this chain produced.
pub(super) fn view(
    chain: &Chain,
    block: &BlockReference,
    request: QueryRequest,
) -> Result<RpcQueryResponse, RpcQueryError> {
    if height_of(chain, block).is_none() {
        return Err(RpcQueryError::UnknownBlock {
            block_reference: block.clone(),
        });
    }
    let (block_height, block_hash) = (chain.height(), chain.block_hash());
    let account = |id: &AccountId| {
        chain
            .account(id)
            .ok_or_else(|| RpcQueryError::UnknownAccount {
                requested_account_id: id.clone(),
                block_height,
                block_hash,
            })
    };
    let kind = match request {
        QueryRequest::ViewAccount { account_id } => {
            QueryResponseKind::ViewAccount(account_view(account(&account_id)?))
        }
        QueryRequest::ViewCode { account_id } => {
            let code = account(&account_id)?.code.as_ref().ok_or_else(|| {
                RpcQueryError::NoContractCode {
                    contract_account_id: account_id.clone(),
                    block_height,
                    block_hash,
                }
            })?;
            QueryResponseKind::ViewCode(ContractCodeView {
                code: code.code().to_vec(),
                hash: *code.hash(),
            })
        }
        QueryRequest::ViewState {
            account_id,
            prefix,
            after_key,
            limit,
            include_proof: _,
        } => QueryResponseKind::ViewState(state_view(
            account(&account_id)?,
            &prefix,
            after_key.as_ref(),
            limit,
        )),
        QueryRequest::ViewAccessKey {
            account_id,
            public_key,
        } => {
            let key = account(&account_id)?.keys.get(&public_key).ok_or_else(|| {
                RpcQueryError::UnknownAccessKey {
                    public_key: public_key.clone(),
                    block_height,
                    block_hash,
                }
            })?;
            QueryResponseKind::AccessKey(AccessKeyView::from(key.clone()))
        }
        QueryRequest::ViewAccessKeyList {
            account_id,
            after_key,
            limit,
        } => {
            let keys = account(&account_id)?
                .keys
                .iter()
                .map(|(k, v)| AccessKeyInfoView::new(k, AccessKeyView::from(v.clone())));
            // Keys are listed in their handles' order, so `after_key` resumes a listing.
            let mut keys: Vec<_> = keys
                .filter(|k| after_key.as_ref().is_none_or(|after| k.public_key > *after))
                .collect();
            keys.sort_by(|a, b| a.public_key.cmp(&b.public_key));
            let last_key = truncate(&mut keys, limit)
                .then(|| keys.last().map(|k| k.public_key.clone()))
                .flatten();
            QueryResponseKind::AccessKeyList(AccessKeyList { keys, last_key })
        }
        QueryRequest::CallFunction {
            account_id,
            method_name,
            args,
        } => {
            let error = |vm_error: String, error| RpcQueryError::ContractExecutionError {
                vm_error: format!("wasm execution failed with error: {vm_error}"),
                error,
                block_height,
                block_hash,
            };
            if account(&account_id)?.code.is_none() {
                // The VM's rendering, which near-api-js matches on.
                let vm_error = format!(
                    "CompilationError(CodeDoesNotExist {{ account_id: \"{account_id}\" }})"
                );
                let missing = CompilationError::CodeDoesNotExist { account_id };
                return Err(error(
                    vm_error,
                    FunctionCallError::CompilationError(missing),
                ));
            }
            let (result, logs) = chain
                .view(&account_id, &method_name, &args)
                .map_err(|e| error(e.clone(), FunctionCallError::ExecutionError(e)))?;
            QueryResponseKind::CallResult(CallResult { result, logs })
        }
        QueryRequest::ViewGlobalContractCode { code_hash } => global_code(
            chain,
            near_primitives::action::GlobalContractIdentifier::CodeHash(code_hash),
            block_height,
            block_hash,
        )?,
        QueryRequest::ViewGlobalContractCodeByAccountId { account_id } => global_code(
            chain,
            near_primitives::action::GlobalContractIdentifier::AccountId(account_id),
            block_height,
            block_hash,
        )?,
        // Gas keys are not modelled: no account has one.
        QueryRequest::ViewGasKeyNonces { public_key, .. } => {
            return Err(RpcQueryError::UnknownGasKey {
                public_key,
                block_height,
                block_hash,
            })
        }
    };
    Ok(RpcQueryResponse {
        kind,
        block_height,
        block_hash,
    })
}

fn account_view(a: &Account) -> AccountView {
    AccountView {
        amount: Balance::from_yoctonear(a.amount),
        locked: Balance::from_yoctonear(a.locked),
        code_hash: a.code_hash(),
        storage_usage: a.storage_usage,
        storage_paid_at: 0,
        global_contract_hash: None,
        global_contract_account_id: None,
        state: near_primitives_core::account::AccountState::Initialized,
        bootstrap_nonce: None,
    }
}

/// The entries under `prefix` in key order, from after `after_key`, at most `limit`.
fn state_view(
    a: &Account,
    prefix: &StoreKey,
    after_key: Option<&StoreKey>,
    limit: Option<NonZeroU32>,
) -> ViewStateResult {
    let mut values: Vec<_> = a
        .storage
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| after_key.is_none_or(|after| k.as_slice() > after.as_slice()))
        .collect();
    values.sort();
    let mut values: Vec<StateItem> = values
        .into_iter()
        .map(|(k, v)| StateItem {
            key: k.clone().into(),
            value: v.clone().into(),
        })
        .collect();
    let last_key = truncate(&mut values, limit)
        .then(|| values.last().map(|v| v.key.clone()))
        .flatten();
    ViewStateResult {
        values,
        proof: vec![],
        last_key,
    }
}

/// Keeps at most `limit` items; whether any were left out.
fn truncate<T>(items: &mut Vec<T>, limit: Option<NonZeroU32>) -> bool {
    let limit = limit.map_or(usize::MAX, |l| {
        usize::try_from(l.get()).unwrap_or(usize::MAX)
    });
    let more = items.len() > limit;
    items.truncate(limit);
    more
}

fn global_code(
    chain: &Chain,
    identifier: near_primitives::action::GlobalContractIdentifier,
    block_height: BlockHeight,
    block_hash: CryptoHash,
) -> Result<QueryResponseKind, RpcQueryError> {
    match chain.global_contract_code(&identifier) {
        Some(code) => Ok(QueryResponseKind::ViewCode(ContractCodeView {
            code: code.code().to_vec(),
            hash: *code.hash(),
        })),
        None => Err(RpcQueryError::NoGlobalContractCode {
            identifier,
            block_height,
            block_hash,
        }),
    }
}

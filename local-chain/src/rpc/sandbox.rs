//! The sandbox methods near-workspaces calls: `sandbox_patch_state` (accounts, code, access
//! keys and contract data) and `sandbox_fast_forward` (height and time).

use near_crypto::{PublicKey, PublicKeyHandle};
use near_jsonrpc_primitives::types::sandbox::{
    RpcSandboxFastForwardRequest, RpcSandboxFastForwardResponse, RpcSandboxPatchStateError,
    RpcSandboxPatchStateRequest, RpcSandboxPatchStateResponse,
};
use near_primitives::state_record::StateRecord;
use serde_json::Value;

use super::{parse, reply, Node, RpcResult};

pub(super) async fn fast_forward(node: &Node, params: Value) -> RpcResult {
    let request: RpcSandboxFastForwardRequest = parse(params)?;
    let mut chain = node.chain().await;
    chain.fast_forward(request.delta_height);
    node.save(&chain)?;
    reply(RpcSandboxFastForwardResponse {})
}

pub(super) async fn patch_state(node: &Node, params: Value) -> RpcResult {
    let request: RpcSandboxPatchStateRequest = parse(params)?;
    let mut chain = node.chain().await;
    for record in request.records {
        let patched = match record {
            StateRecord::Account {
                account_id,
                account,
            } => {
                let (amount, locked) = (account.amount(), account.locked());
                chain.patch_account(&account_id, amount.as_yoctonear(), locked.as_yoctonear());
                Ok(())
            }
            StateRecord::Contract { account_id, code } => chain.patch_code(&account_id, code),
            StateRecord::AccessKey {
                account_id,
                public_key,
                access_key,
            } => match public_key {
                PublicKeyHandle::ED25519(key) => {
                    chain.patch_key(&account_id, PublicKey::ED25519(key), access_key)
                }
                PublicKeyHandle::SECP256K1(key) => {
                    chain.patch_key(&account_id, PublicKey::SECP256K1(key), access_key)
                }
                // The trie keeps only a hash of an ML-DSA-65 key; so does the record.
                PublicKeyHandle::MlDsa65(_) => Err(format!(
                    "access key {public_key} of {account_id}: ML-DSA-65 keys are not supported"
                )),
            },
            StateRecord::Data {
                account_id,
                data_key,
                value,
            } => chain.patch_state(&account_id, data_key.into(), value.into()),
            other => Err(format!("state record {other} is not supported")),
        };
        patched
            .map_err(|error_message| RpcSandboxPatchStateError::InternalError { error_message })?;
    }
    node.save(&chain)?;
    reply(RpcSandboxPatchStateResponse {})
}

//! `status` and `health`: nearcore's `StatusResponse` of a one-validator node that is never
//! syncing (`RpcStatusResponse`, `RpcHealthResponse`).

use near_crypto::{KeyType, PublicKey};
use near_jsonrpc_primitives::types::status::{RpcHealthResponse, RpcStatusResponse};
use near_primitives::{
    hash::CryptoHash,
    types::EpochId,
    version::{Version, PROTOCOL_VERSION},
    views::{StatusResponse, StatusSyncInfo, ValidatorInfo},
};

use super::{block::timestamp_at, reply, Node, RpcResult};
use crate::chain::{GENESIS_HEIGHT, GENESIS_TIMESTAMP_NS};

pub(super) fn health() -> RpcResult {
    reply(RpcHealthResponse)
}

pub(super) async fn status(node: &Node) -> RpcResult {
    let chain = node.chain().await;
    let root = chain.root().clone();
    reply(RpcStatusResponse {
        status_response: StatusResponse {
            version: Version {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                build: "local-chain".to_owned(),
                commit: "0".to_owned(),
                rustc_version: String::new(),
            },
            chain_id: chain.chain_id().to_owned(),
            protocol_version: PROTOCOL_VERSION,
            latest_protocol_version: PROTOCOL_VERSION,
            rpc_addr: None,
            validators: vec![ValidatorInfo {
                account_id: root.clone(),
            }],
            sync_info: StatusSyncInfo {
                latest_block_hash: chain.block_hash(),
                latest_block_height: chain.height(),
                latest_state_root: CryptoHash::default(),
                latest_block_time: utc(timestamp_at(&chain, chain.height())),
                syncing: false,
                earliest_block_hash: Some(node.genesis_hash),
                earliest_block_height: Some(GENESIS_HEIGHT),
                earliest_block_time: Some(utc(GENESIS_TIMESTAMP_NS)),
                epoch_id: Some(EpochId::default()),
                epoch_start_height: Some(GENESIS_HEIGHT),
            },
            validator_account_id: Some(root),
            validator_public_key: None,
            node_public_key: PublicKey::empty(KeyType::ED25519),
            node_key: None,
            uptime_sec: 0,
            genesis_hash: node.genesis_hash,
            detailed_debug_status: None,
        },
    })
}

/// A block time, ns since the Unix epoch, as nearcore's status reports it.
pub(super) fn utc(ns: u64) -> near_time::Utc {
    near_time::Utc::from_unix_timestamp_nanos(i128::from(ns))
        .expect("a u64 of nanoseconds is a valid date")
}

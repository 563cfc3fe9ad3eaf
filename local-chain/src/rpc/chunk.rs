//! `chunk`: nearcore's `ChunkView` of a block's one chunk (`RpcChunkRequest`,
//! `RpcChunkResponse`, `RpcChunkError`): the block's transaction, if it had one. Receipts
//! run in their transaction's block and are not listed.

use near_jsonrpc_primitives::{
    errors::RpcError,
    types::chunks::{ChunkReference, RpcChunkError, RpcChunkRequest, RpcChunkResponse},
};
use near_primitives::{
    hash::CryptoHash,
    sharding::ChunkHash,
    types::{Balance, BlockId, BlockReference, Gas, ShardId},
    views::{ChunkHeaderView, ChunkView},
};
use serde_json::Value;

use super::{height_of, parse, reply, tx::TxLog, Node, RpcResult};
use crate::{chain::GENESIS_HEIGHT, ids::derive, Chain};

/// nearcore's chunk gas limit on mainnet: 1,000 Tgas.
const CHUNK_GAS_LIMIT: Gas = Gas::from_teragas(1_000);

pub(super) async fn chunk(node: &Node, params: Value) -> RpcResult {
    let reference = chunk_reference(params)?;
    let chain = node.chain().await;
    let height = match &reference {
        ChunkReference::BlockShardId { block_id, shard_id } => {
            if *shard_id != ShardId::new(0) {
                return Err(RpcChunkError::InvalidShardId {
                    shard_id: *shard_id,
                }
                .into());
            }
            height_of(&chain, &BlockReference::BlockId(block_id.clone())).ok_or_else(|| {
                RpcError::from(RpcChunkError::UnknownBlock {
                    error_message: format!("{block_id:?}"),
                })
            })?
        }
        ChunkReference::ChunkHash { chunk_id } => (GENESIS_HEIGHT..=chain.height())
            .rev()
            .find(|h| chunk_hash(&chain, *h) == *chunk_id)
            .ok_or(RpcChunkError::UnknownChunk {
                chunk_hash: ChunkHash(*chunk_id),
            })?,
    };
    let txs = node.txs.lock().await;
    let transactions = txs
        .at_height(height)
        .map(|o| o.transaction.clone())
        .into_iter()
        .collect();
    reply(RpcChunkResponse {
        chunk_view: ChunkView {
            author: chain.root().clone(),
            header: header(&chain, &txs, height),
            transactions,
            receipts: vec![],
        },
    })
}

/// nearcore's forms: `{chunk_id}` or `{block_id, shard_id}`, or the legacy `[chunk_id]` or
/// `[[block_id, shard_id]]`.
fn chunk_reference(params: Value) -> Result<ChunkReference, RpcError> {
    let Value::Array(mut a) = params else {
        return parse::<RpcChunkRequest>(params).map(|r| r.chunk_reference);
    };
    if a.len() != 1 {
        return Err(RpcError::parse_error(format!(
            "Failed parsing args: expected one chunk reference, got {}",
            a.len()
        )));
    }
    match a.swap_remove(0) {
        pair @ Value::Array(_) => {
            let (block_id, shard_id): (BlockId, ShardId) = parse(pair)?;
            Ok(ChunkReference::BlockShardId { block_id, shard_id })
        }
        hash => Ok(ChunkReference::ChunkHash {
            chunk_id: parse(hash)?,
        }),
    }
}

fn chunk_hash(chain: &Chain, height: u64) -> CryptoHash {
    derive(&chain.block_hash_at(height), b"chunk", 0)
}

/// The header of block `height`'s chunk: the gas and tokens its transaction burnt.
pub(super) fn header(chain: &Chain, txs: &TxLog, height: u64) -> ChunkHeaderView {
    let (gas_used, balance_burnt) = txs.at_height(height).map_or((0, 0), |o| {
        std::iter::once(&o.transaction_outcome)
            .chain(&o.receipts_outcome)
            .fold((0, 0), |(gas, tokens), r| {
                (
                    gas + r.outcome.gas_burnt.as_gas(),
                    tokens + r.outcome.tokens_burnt.as_yoctonear(),
                )
            })
    });
    ChunkHeaderView {
        chunk_hash: chunk_hash(chain, height),
        prev_block_hash: chain.block_hash_at(height.saturating_sub(1).max(GENESIS_HEIGHT)),
        outcome_root: CryptoHash::default(),
        prev_state_root: CryptoHash::default(),
        encoded_merkle_root: CryptoHash::default(),
        encoded_length: 0,
        height_created: height,
        height_included: height,
        shard_id: ShardId::new(0),
        gas_used: Gas::from_gas(gas_used),
        gas_limit: CHUNK_GAS_LIMIT,
        rent_paid: Balance::ZERO,
        validator_reward: Balance::ZERO,
        balance_burnt: Balance::from_yoctonear(balance_burnt),
        outgoing_receipts_root: CryptoHash::default(),
        tx_root: CryptoHash::default(),
        validator_proposals: vec![],
        congestion_info: None,
        bandwidth_requests: None,
        proposed_split: None,
        signature: near_crypto::Signature::empty(near_crypto::KeyType::ED25519),
    }
}

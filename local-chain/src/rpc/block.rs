//! `block`: nearcore's `BlockView` of any block this chain produced (`RpcBlockRequest`,
//! `RpcBlockResponse`, `RpcBlockError`). One block per transaction, each with one chunk.

use near_jsonrpc_primitives::types::blocks::{RpcBlockError, RpcBlockResponse};
use near_primitives::{
    types::Balance,
    version::PROTOCOL_VERSION,
    views::{BlockHeaderView, BlockView},
};
use serde_json::Value;

use super::{block_reference, chunk, height_of, reply, tx::TxLog, Node, RpcResult};
use crate::{
    chain::{BLOCK_NS, GENESIS_HEIGHT},
    Chain, GAS_PRICE,
};

pub(super) async fn block(node: &Node, params: Value) -> RpcResult {
    let block_reference = block_reference(params)?;
    let chain = node.chain().await;
    let Some(height) = height_of(&chain, &block_reference) else {
        return Err(RpcBlockError::UnknownBlock {
            error_message: format!("DB Not Found Error: {block_reference:?}"),
        }
        .into());
    };
    let txs = node.txs.lock().await;
    reply(RpcBlockResponse {
        block_view: block_view(&chain, &txs, height),
    })
}

/// The time of block `height`: blocks are [`BLOCK_NS`] apart, the head's is the chain's.
pub(super) fn timestamp_at(chain: &Chain, height: u64) -> u64 {
    chain.timestamp_ns() - (chain.height() - height) * BLOCK_NS
}

pub(super) fn block_view(chain: &Chain, txs: &TxLog, height: u64) -> BlockView {
    let hash = chain.block_hash_at(height);
    let timestamp = timestamp_at(chain, height);
    let header = BlockHeaderView {
        height,
        prev_height: (height > GENESIS_HEIGHT).then(|| height - 1),
        hash,
        prev_hash: chain.block_hash_at(height.saturating_sub(1).max(GENESIS_HEIGHT)),
        chunks_included: 1,
        timestamp,
        timestamp_nanosec: timestamp,
        chunk_mask: vec![true],
        gas_price: Balance::from_yoctonear(GAS_PRICE),
        block_ordinal: Some(height),
        total_supply: Balance::from_yoctonear(chain.total_supply()),
        // Final when produced: no forks, one producer.
        last_final_block: hash,
        last_ds_final_block: hash,
        latest_protocol_version: PROTOCOL_VERSION,
        // Epochs, roots, approvals and signatures are not modelled: their defaults.
        ..BlockHeaderView::default()
    };
    BlockView {
        author: chain.root().clone(),
        header,
        chunks: vec![chunk::header(chain, txs, height)],
    }
}

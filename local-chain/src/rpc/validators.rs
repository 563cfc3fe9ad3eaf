//! `validators`: one epoch, one validator, the root account, which produced every block
//! (`RpcValidatorRequest`, `RpcValidatorResponse`, `RpcValidatorError`).

use std::collections::HashMap;

use near_jsonrpc_primitives::types::validator::{
    RpcValidatorError, RpcValidatorRequest, RpcValidatorResponse,
};
use near_primitives::{
    hash::CryptoHash,
    types::{Balance, BlockId, BlockReference, EpochReference, ShardId},
    views::{CurrentEpochValidatorInfo, EpochValidatorInfo},
};
use serde_json::Value;

use super::{height_of, is_empty, parse, reply, root_key, Node, RpcResult};
use crate::chain::GENESIS_HEIGHT;

pub(super) async fn validators(node: &Node, params: Value) -> RpcResult {
    // nearcore's `[block_id]` (`[null]` for the latest epoch) or `{block_id}`/`{epoch_id}`.
    let epoch = match params {
        p if is_empty(&p) => EpochReference::Latest,
        Value::Array(_) => match parse::<(Option<BlockId>,)>(params)?.0 {
            Some(id) => EpochReference::BlockId(id),
            None => EpochReference::Latest,
        },
        p => parse::<RpcValidatorRequest>(p)?.epoch_reference,
    };
    let chain = node.chain().await;
    match &epoch {
        EpochReference::Latest => {}
        EpochReference::BlockId(id) => {
            height_of(&chain, &BlockReference::BlockId(id.clone()))
                .ok_or(RpcValidatorError::UnknownEpoch)?;
        }
        EpochReference::EpochId(id) if id.0 == CryptoHash::default() => {}
        EpochReference::EpochId(_) => return Err(RpcValidatorError::UnknownEpoch.into()),
    }
    let root = chain.root().clone();
    let public_key = root_key(&chain);
    let blocks = chain.height() - GENESIS_HEIGHT + 1;
    reply(RpcValidatorResponse {
        validator_info: EpochValidatorInfo {
            current_validators: vec![CurrentEpochValidatorInfo {
                account_id: root,
                public_key,
                is_slashed: false,
                stake: Balance::ZERO,
                shards_produced: vec![ShardId::new(0)],
                num_produced_blocks: blocks,
                num_expected_blocks: blocks,
                num_produced_chunks: blocks,
                num_expected_chunks: blocks,
                num_produced_chunks_per_shard: vec![blocks],
                num_expected_chunks_per_shard: vec![blocks],
                // Chunk endorsements (stateless validation) are not modelled.
                num_produced_endorsements: 0,
                num_expected_endorsements: 0,
                num_produced_endorsements_per_shard: vec![0],
                num_expected_endorsements_per_shard: vec![0],
                shards_endorsed: vec![],
            }],
            next_validators: vec![],
            current_fishermen: vec![],
            next_fishermen: vec![],
            current_proposals: vec![],
            prev_epoch_kickout: vec![],
            epoch_start_height: GENESIS_HEIGHT,
            epoch_height: 1,
            validator_reward_paid_prev_epoch: HashMap::new(),
        },
    })
}

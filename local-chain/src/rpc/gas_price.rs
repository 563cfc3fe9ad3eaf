//! `gas_price`: the fixed [`GAS_PRICE`] at any block this chain produced
//! (`RpcGasPriceRequest`, `GasPriceView`, `RpcGasPriceError`).

use near_jsonrpc_primitives::types::gas_price::{
    RpcGasPriceError, RpcGasPriceRequest, RpcGasPriceResponse,
};
use near_primitives::{
    types::{Balance, BlockId, BlockReference},
    views::GasPriceView,
};
use serde_json::Value;

use super::{height_of, is_empty, parse, reply, Node, RpcResult};
use crate::GAS_PRICE;

pub(super) async fn gas_price(node: &Node, params: Value) -> RpcResult {
    // nearcore's `[block_id]` (`[null]` for the head), `{block_id}`, or nothing for the head.
    let block_id: Option<BlockId> = match params {
        p if is_empty(&p) => None,
        Value::Array(_) => parse::<(Option<BlockId>,)>(params)?.0,
        p => parse::<RpcGasPriceRequest>(p)?.block_id,
    };
    if let Some(id) = block_id {
        let chain = node.chain().await;
        if height_of(&chain, &BlockReference::BlockId(id.clone())).is_none() {
            return Err(RpcGasPriceError::UnknownBlock {
                error_message: format!("{id:?}"),
            }
            .into());
        }
    }
    reply(RpcGasPriceResponse {
        gas_price_view: GasPriceView {
            gas_price: Balance::from_yoctonear(GAS_PRICE),
        },
    })
}

//! `EXPERIMENTAL_protocol_config` and `EXPERIMENTAL_genesis_config`: nearcore's
//! `ProtocolConfigView` and `GenesisConfig` of this chain, with the runtime config it runs
//! (`RuntimeConfigView`: storage price per byte, fees, wasm limits), which near-api-js reads
//! for `Account.getState()` and `getBalance()`.

use near_chain_configs::{GenesisConfig, ProtocolConfig, ProtocolConfigView};
use near_jsonrpc_primitives::types::config::{RpcProtocolConfigError, RpcProtocolConfigResponse};
use near_primitives::{
    types::{AccountInfo, Balance, Gas},
    version::PROTOCOL_VERSION,
};
use serde_json::Value;

use super::{block_reference, height_of, reply, root_key, Node, RpcResult};
use crate::{
    chain::{GENESIS_HEIGHT, GENESIS_TIMESTAMP_NS},
    Chain, GAS_PRICE,
};

pub(super) async fn protocol_config(node: &Node, params: Value) -> RpcResult {
    let block_reference = block_reference(params)?;
    let chain = node.chain().await;
    if height_of(&chain, &block_reference).is_none() {
        return Err(RpcProtocolConfigError::UnknownBlock {
            error_message: format!("{block_reference:?}"),
        }
        .into());
    }
    // One protocol version for the chain's whole life: every block's config is the same.
    let config_view = ProtocolConfigView::from(ProtocolConfig {
        genesis_config: genesis_config_of(&chain),
        runtime_config: chain.config().clone(),
    });
    reply(RpcProtocolConfigResponse { config_view })
}

pub(super) async fn genesis_config(node: &Node) -> RpcResult {
    reply(genesis_config_of(&*node.chain().await))
}

/// The genesis as nearcore would describe this chain: one shard, one block producer (the
/// root), a fixed gas price. Epochs, rewards and kickouts are not modelled; their fields keep
/// nearcore's defaults, and the epoch length and transaction validity period are mainnet's,
/// reported but not enforced (block hashes in transactions are not checked).
fn genesis_config_of(chain: &Chain) -> GenesisConfig {
    let genesis_ns = i64::try_from(GENESIS_TIMESTAMP_NS).expect("the genesis time fits in i64");
    GenesisConfig {
        protocol_version: PROTOCOL_VERSION,
        genesis_time: chrono::DateTime::from_timestamp_nanos(genesis_ns),
        chain_id: chain.chain_id().to_owned(),
        genesis_height: GENESIS_HEIGHT,
        num_block_producer_seats: 1,
        epoch_length: 43_200,
        gas_limit: Gas::from_teragas(1_000),
        min_gas_price: Balance::from_yoctonear(GAS_PRICE),
        max_gas_price: Balance::from_yoctonear(GAS_PRICE),
        validators: vec![AccountInfo {
            account_id: chain.root().clone(),
            public_key: root_key(chain),
            amount: Balance::ZERO,
        }],
        transaction_validity_period: 86_400,
        total_supply: Balance::from_yoctonear(chain.total_supply()),
        protocol_treasury_account: chain.root().clone(),
        ..GenesisConfig::default()
    }
}

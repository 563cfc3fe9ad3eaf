//! Accounts as the chain stores them.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use near_crypto::PublicKey;
use near_parameters::RuntimeConfig;
use near_primitives::account::AccessKey;
use near_vm_runner::ContractCode;

#[derive(Clone, Debug, Default)]
pub struct Account {
    /// Liquid balance, yocto.
    pub amount: u128,
    pub locked: u128,
    pub code: Option<Arc<ContractCode>>,
    /// Storage the code takes on this account: its length when deployed here, the
    /// identifier's length when it uses a global contract.
    pub code_storage: u64,
    /// Contract data.
    pub storage: HashMap<Vec<u8>, Vec<u8>>,
    /// Bytes staked for: the account record, its keys, code and data, counted as nearcore
    /// counts them (`num_bytes_account`, 40 extra bytes per record).
    pub storage_usage: u64,
    pub keys: BTreeMap<PublicKey, AccessKey>,
}

impl Account {
    pub fn new(amount: u128, config: &RuntimeConfig) -> Self {
        Self {
            amount,
            storage_usage: config.fees.storage_usage_config.num_bytes_account,
            ..Self::default()
        }
    }

    /// Storage a key record takes: its key bytes, the borsh access key and the record's overhead.
    pub fn key_bytes(key: &PublicKey, access_key: &AccessKey, config: &RuntimeConfig) -> u64 {
        (borsh::object_length(key).unwrap_or(0) + borsh::object_length(access_key).unwrap_or(0))
            as u64
            + config.fees.storage_usage_config.num_extra_bytes_record
    }

    /// The balance storage staking requires.
    pub fn storage_cost(&self, config: &RuntimeConfig) -> u128 {
        u128::from(self.storage_usage) * config.storage_amount_per_byte().as_yoctonear()
    }

    pub fn code_hash(&self) -> near_primitives_core::hash::CryptoHash {
        self.code.as_ref().map(|c| *c.hash()).unwrap_or_default()
    }
}

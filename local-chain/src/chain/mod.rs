//! The chain: accounts, signed transactions, receipts executed in nearcore's VM, blocks.
//!
//! Execution follows nearcore's runtime (`runtime/runtime/src/`), one module per job as
//! there: `verify` checks a transaction against the signer's access key and charges its
//! send fees and prepaid gas up front (`verifier.rs`); `receipts` routes receipts, applies
//! each to its receiver all or nothing, refunds unused gas and the deposits of failed
//! receipts, and makes the receipts a contract creates wait for the data they depend on
//! (`lib.rs`); `actions` has one function per action kind (`actions.rs`); `vm` runs a
//! function call in near-vm-runner with the fee config of `PROTOCOL_VERSION`; `promises`
//! reads the receipts a contract created back from the VM's action log; `gas` prices
//! actions from nearcore's fee schedule. Saving and loading is [`crate::persist`]. One
//! block per transaction, with all its receipts; see README.md for what this leaves out.

mod actions;
mod gas;
mod promises;
mod receipts;
mod verify;
mod vm;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use near_crypto::{PublicKey, SecretKey, Signer};
use near_parameters::{RuntimeConfig, RuntimeConfigStore};
use near_primitives::{
    account::AccessKey,
    action::{Action, GlobalContractIdentifier},
    errors::InvalidTxError,
    transaction::{SignedTransaction, Transaction, TransactionV0},
};
use near_primitives_core::{hash::CryptoHash, types::AccountId, version::PROTOCOL_VERSION};
use near_vm_runner::{ContractCode, MockContractRuntimeCache};

use crate::{
    account::Account,
    ids::derive,
    outcome::{Outcome, Status, TxResult},
};
use receipts::Receipt;

/// Gas price, yocto per gas: mainnet's minimum.
pub const GAS_PRICE: u128 = 100_000_000;
/// Block time this chain advances per block.
pub const BLOCK_NS: u64 = 1_000_000_000;
/// Height of the genesis block.
pub const GENESIS_HEIGHT: u64 = 1;
/// Time of the genesis block, ns since the Unix epoch (2023-11-14T22:13:20Z).
pub const GENESIS_TIMESTAMP_NS: u64 = 1_700_000_000_000_000_000;

pub struct Chain {
    pub(crate) config: Arc<RuntimeConfig>,
    #[allow(clippy::struct_field_names)] // nearcore's own name for it
    pub(crate) chain_id: String,
    pub(crate) root: AccountId,
    pub(crate) accounts: BTreeMap<AccountId, Account>,
    pub(crate) height: u64,
    pub(crate) timestamp_ns: u64,
    cache: MockContractRuntimeCache,
    /// Promise results by data id: `None` for a failed promise.
    data: HashMap<CryptoHash, Option<Vec<u8>>>,
    /// Receipts waiting for data.
    waiting: Vec<Receipt>,
    /// Global contract code, by hash, and the hash each deploying account's id names.
    global_code: HashMap<CryptoHash, Arc<ContractCode>>,
    global_by_account: HashMap<AccountId, CryptoHash>,
}

impl Chain {
    /// A chain whose genesis holds `root` with `balance` yocto and a full-access `key`.
    pub fn new(chain_id: &str, root: &AccountId, key: &PublicKey, balance: u128) -> Self {
        let store = RuntimeConfigStore::new(None);
        let mut config = (**store.get_config(PROTOCOL_VERSION)).clone();
        let mut wasm = (*config.wasm_config).clone();
        wasm.vm_kind = wasm.vm_kind.replace_with_wasmtime_if_unsupported();
        config.wasm_config = Arc::new(wasm);
        let mut chain = Self {
            config: Arc::new(config),
            chain_id: chain_id.to_owned(),
            root: root.clone(),
            accounts: BTreeMap::new(),
            height: GENESIS_HEIGHT,
            timestamp_ns: GENESIS_TIMESTAMP_NS,
            cache: MockContractRuntimeCache::default(),
            data: HashMap::new(),
            waiting: Vec::new(),
            global_code: HashMap::new(),
            global_by_account: HashMap::new(),
        };
        let mut account = Account::new(balance, &chain.config);
        account.storage_usage += Account::key_bytes(key, &AccessKey::full_access(), &chain.config);
        account.keys.insert(key.clone(), AccessKey::full_access());
        chain.accounts.insert(root.clone(), account);
        chain
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    /// The head's hash; clients put it in transactions (it is not checked).
    pub fn block_hash(&self) -> CryptoHash {
        self.block_hash_at(self.height)
    }

    pub fn block_hash_at(&self, height: u64) -> CryptoHash {
        derive(&CryptoHash::default(), b"block", height)
    }

    /// The genesis account: it may create top-level accounts, as a sandbox's registrar.
    pub fn root(&self) -> &AccountId {
        &self.root
    }

    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.amount + a.locked).sum()
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// The global contract `id` names, if it was deployed.
    pub fn global_contract_code(&self, id: &GlobalContractIdentifier) -> Option<Arc<ContractCode>> {
        let hash = match id {
            GlobalContractIdentifier::CodeHash(h) => h,
            GlobalContractIdentifier::AccountId(a) => self.global_by_account.get(a)?,
        };
        self.global_code.get(hash).cloned()
    }

    /// Moves time on by `blocks` blocks, as `sandbox_fast_forward` does.
    pub fn fast_forward(&mut self, blocks: u64) {
        self.height += blocks;
        self.timestamp_ns += blocks * BLOCK_NS;
    }

    /// Creates or updates an account's balances, as `sandbox_patch_state` does.
    pub fn patch_account(&mut self, id: &AccountId, amount: u128, locked: u128) {
        let config = self.config.clone();
        let a = self
            .accounts
            .entry(id.clone())
            .or_insert_with(|| Account::new(0, &config));
        a.amount = amount;
        a.locked = locked;
    }

    pub fn patch_code(&mut self, id: &AccountId, code: Vec<u8>) -> Result<(), String> {
        let a = self.account_mut(id)?;
        a.storage_usage = a.storage_usage - a.code_storage + code.len() as u64;
        a.code_storage = code.len() as u64;
        a.code = Some(Arc::new(ContractCode::new(code, None)));
        Ok(())
    }

    pub fn patch_key(
        &mut self,
        id: &AccountId,
        key: PublicKey,
        access_key: AccessKey,
    ) -> Result<(), String> {
        let config = self.config.clone();
        let a = self.account_mut(id)?;
        if let Some(old) = a.keys.insert(key.clone(), access_key.clone()) {
            a.storage_usage -= Account::key_bytes(&key, &old, &config);
        }
        a.storage_usage += Account::key_bytes(&key, &access_key, &config);
        Ok(())
    }

    /// Sets one storage entry of a contract, as `sandbox_patch_state` does.
    pub fn patch_state(
        &mut self,
        account: &AccountId,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), String> {
        let extra = self.config.fees.storage_usage_config.num_extra_bytes_record;
        let a = self.account_mut(account)?;
        let added = (key.len() + value.len()) as u64 + extra;
        if let Some(old) = a.storage.insert(key.clone(), value) {
            a.storage_usage -= (key.len() + old.len()) as u64 + extra;
        }
        a.storage_usage += added;
        Ok(())
    }

    fn account_mut(&mut self, id: &AccountId) -> Result<&mut Account, String> {
        self.accounts
            .get_mut(id)
            .ok_or_else(|| format!("account {id} does not exist"))
    }

    /// Signs and submits a transaction from `signer` with the key's next nonce.
    pub fn sign_and_submit(
        &mut self,
        signer: &Signer,
        signer_id: &AccountId,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Result<TxResult, InvalidTxError> {
        let public_key = signer.public_key();
        let nonce = self
            .accounts
            .get(signer_id)
            .and_then(|a| a.keys.get(&public_key))
            .map_or(0, |k| k.nonce)
            + 1;
        let tx = Transaction::V0(TransactionV0 {
            signer_id: signer_id.clone(),
            public_key,
            nonce,
            receiver_id: receiver.clone(),
            block_hash: self.block_hash(),
            actions,
        });
        let signature = signer.sign(tx.get_hash_and_size().0.as_ref());
        self.submit(SignedTransaction::new(signature, tx))
    }

    /// Checks a signed transaction, charges its signer, and runs it and every receipt it
    /// causes to completion, in one new block.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<TxResult, InvalidTxError> {
        let hash = tx.get_hash();
        let send_fee = self.verify_and_charge(&tx)?;
        self.height += 1;
        self.timestamp_ns += BLOCK_NS;
        let t = &tx.transaction;
        let signer_id = t.signer_id();
        let receipt_id = derive(&hash, b"receipt", 0);
        let transaction = Outcome {
            id: hash,
            executor: signer_id.clone(),
            logs: vec![],
            gas_burnt: send_fee,
            tokens_burnt: u128::from(send_fee) * GAS_PRICE,
            receipt_ids: vec![receipt_id],
            status: Status::Receipt(receipt_id),
        };
        let receipt = Receipt {
            id: receipt_id,
            predecessor: signer_id.clone(),
            receiver: t.receiver_id().clone(),
            signer: signer_id.clone(),
            signer_key: t.public_key().clone(),
            gas_price: GAS_PRICE,
            actions: t.actions().to_vec(),
            input_data_ids: vec![],
            output: vec![],
            refund_to: signer_id.clone(),
            is_refund: false,
        };
        Ok(TxResult {
            transaction,
            receipts: self.run_receipts(receipt),
        })
    }
}

/// A signer for an account's key.
pub fn signer(account: &AccountId, key: SecretKey) -> Signer {
    near_crypto::InMemorySigner::from_secret_key(account.clone(), key)
}

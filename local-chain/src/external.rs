//! The `External` the VM calls for one receipt: the receiver's storage, with nearcore's
//! trie-node fees charged from [`crate::trie`], and every promise action recorded.
//!
//! Action recording is delegated to near-vm-runner's own `MockedExternal` (its action log is
//! exactly the list of receipts and actions the contract created); storage is the
//! account's, moved in for the call and moved back out afterwards.

use std::collections::HashMap;

use near_crypto::PublicKey;
use near_primitives_core::{
    hash::{CryptoHash, YieldId},
    types::{AccountId, Balance, Gas, GasWeight, Nonce, NonceIndex},
    universal_state_init::{DecodeMode, RawStateInit, StateInitError, UniversalStateInitCounts},
};
use near_vm_runner::logic::{
    mocks::mock_external::MockedExternal,
    types::{ActionIndex, GlobalContractDeployMode, GlobalContractIdentifier, ReceiptIndex},
    External, StorageAccessTracker, VMLogicError, ValuePtr,
};

use crate::trie::nodes_touched;

type Result<T, E = VMLogicError> = std::result::Result<T, E>;

pub struct AccountExt {
    pub inner: MockedExternal,
    chain_id: String,
    /// Seeds data ids so they are unique across the chain.
    receipt_id: CryptoHash,
    data_ids: u64,
}

impl AccountExt {
    pub fn new(storage: HashMap<Vec<u8>, Vec<u8>>, chain_id: &str, receipt_id: CryptoHash) -> Self {
        let mut inner = MockedExternal::new();
        inner.fake_trie = storage;
        Self {
            inner,
            chain_id: chain_id.to_owned(),
            receipt_id,
            data_ids: 0,
        }
    }

    fn charge(&self, tracker: &mut dyn StorageAccessTracker) -> Result<()> {
        tracker.trie_node_touched(nodes_touched(self.inner.fake_trie.len()))
    }
}

impl External for AccountExt {
    fn storage_set(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.charge(tracker)?;
        self.inner.storage_set(tracker, key, value)
    }

    fn storage_get<'a>(
        &'a self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Box<dyn ValuePtr + 'a>>> {
        self.charge(tracker)?;
        self.inner.storage_get(tracker, key)
    }

    fn storage_remove(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.charge(tracker)?;
        self.inner.storage_remove(tracker, key)
    }

    fn storage_has_key(
        &mut self,
        tracker: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<bool> {
        self.charge(tracker)?;
        self.inner.storage_has_key(tracker, key)
    }

    fn generate_data_id(&mut self) -> CryptoHash {
        self.data_ids += 1;
        crate::ids::derive(&self.receipt_id, b"data", self.data_ids)
    }

    fn get_recorded_storage_size(&self) -> usize {
        0
    }

    fn storage_proof_size_before_receipt(&self) -> usize {
        0
    }

    fn validator_stake(&self, account_id: &AccountId) -> Result<Option<Balance>> {
        self.inner.validator_stake(account_id)
    }

    fn validator_total_stake(&self) -> Result<Balance> {
        self.inner.validator_total_stake()
    }

    fn chain_id(&self) -> String {
        self.chain_id.clone()
    }

    fn create_action_receipt(
        &mut self,
        receipt_indices: Vec<ReceiptIndex>,
        receiver_id: AccountId,
    ) -> Result<ReceiptIndex, VMLogicError> {
        self.inner
            .create_action_receipt(receipt_indices, receiver_id)
    }

    fn create_promise_yield_receipt(
        &mut self,
        receiver_id: AccountId,
    ) -> Result<(ReceiptIndex, CryptoHash), VMLogicError> {
        self.inner.create_promise_yield_receipt(receiver_id)
    }

    fn create_promise_yield_receipt_with_id(
        &mut self,
        receiver_id: AccountId,
        user_yield_id: YieldId,
    ) -> Result<Option<(ReceiptIndex, CryptoHash)>, VMLogicError> {
        self.inner
            .create_promise_yield_receipt_with_id(receiver_id, user_yield_id)
    }

    fn submit_promise_resume_data(
        &mut self,
        data_id: CryptoHash,
        data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        self.inner.submit_promise_resume_data(data_id, data)
    }

    fn submit_promise_resume_data_with_yield_id(
        &mut self,
        user_yield_id: YieldId,
        data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        self.inner
            .submit_promise_resume_data_with_yield_id(user_yield_id, data)
    }

    fn append_action_create_account(&mut self, receipt_index: ReceiptIndex) {
        self.inner.append_action_create_account(receipt_index);
    }

    fn append_action_deploy_contract(&mut self, receipt_index: ReceiptIndex, code: Vec<u8>) {
        self.inner
            .append_action_deploy_contract(receipt_index, code);
    }

    fn append_action_deploy_global_contract(
        &mut self,
        receipt_index: ReceiptIndex,
        code: Vec<u8>,
        mode: GlobalContractDeployMode,
    ) {
        self.inner
            .append_action_deploy_global_contract(receipt_index, code, mode);
    }

    fn append_action_use_global_contract(
        &mut self,
        receipt_index: ReceiptIndex,
        contract_id: GlobalContractIdentifier,
    ) {
        self.inner
            .append_action_use_global_contract(receipt_index, contract_id);
    }

    fn append_action_deterministic_state_init(
        &mut self,
        receipt_index: ReceiptIndex,
        contract_id: GlobalContractIdentifier,
        amount: Balance,
    ) -> ActionIndex {
        self.inner
            .append_action_deterministic_state_init(receipt_index, contract_id, amount)
    }

    fn set_deterministic_state_init_data_entry(
        &mut self,
        receipt_index: ReceiptIndex,
        action_index: ActionIndex,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), VMLogicError> {
        self.inner
            .set_deterministic_state_init_data_entry(receipt_index, action_index, key, value)
    }

    fn check_state_init(&self, state_init: &RawStateInit) -> Result<(), StateInitError> {
        self.inner.check_state_init(state_init)
    }

    fn state_init_send_counts(
        &self,
        state_init: &RawStateInit,
        mode: DecodeMode,
    ) -> UniversalStateInitCounts {
        self.inner.state_init_send_counts(state_init, mode)
    }

    fn append_action_universal_state_init(
        &mut self,
        receipt_index: ReceiptIndex,
        state_init: RawStateInit,
        amount: Balance,
    ) {
        self.inner
            .append_action_universal_state_init(receipt_index, state_init, amount);
    }

    fn append_action_function_call_weight(
        &mut self,
        receipt_index: ReceiptIndex,
        method_name: Vec<u8>,
        args: Vec<u8>,
        attached_deposit: Balance,
        prepaid_gas: Gas,
        gas_weight: GasWeight,
    ) -> Result<(), VMLogicError> {
        self.inner.append_action_function_call_weight(
            receipt_index,
            method_name,
            args,
            attached_deposit,
            prepaid_gas,
            gas_weight,
        )
    }

    fn append_action_transfer(&mut self, receipt_index: ReceiptIndex, deposit: Balance) {
        self.inner.append_action_transfer(receipt_index, deposit);
    }

    fn append_action_transfer_to_gas_key(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        deposit: Balance,
    ) {
        self.inner
            .append_action_transfer_to_gas_key(receipt_index, public_key, deposit);
    }

    fn append_action_add_gas_key_with_full_access(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        num_nonces: NonceIndex,
    ) {
        self.inner.append_action_add_gas_key_with_full_access(
            receipt_index,
            public_key,
            num_nonces,
        );
    }

    fn append_action_add_gas_key_with_function_call(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        num_nonces: NonceIndex,
        allowance: Option<Balance>,
        receiver_id: AccountId,
        method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        self.inner.append_action_add_gas_key_with_function_call(
            receipt_index,
            public_key,
            num_nonces,
            allowance,
            receiver_id,
            method_names,
        )
    }

    fn append_action_stake(
        &mut self,
        receipt_index: ReceiptIndex,
        stake: Balance,
        public_key: PublicKey,
    ) {
        self.inner
            .append_action_stake(receipt_index, stake, public_key);
    }

    fn append_action_add_key_with_full_access(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
    ) {
        self.inner
            .append_action_add_key_with_full_access(receipt_index, public_key, nonce);
    }

    fn append_action_add_key_with_function_call(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
        allowance: Option<Balance>,
        receiver_id: AccountId,
        method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        self.inner.append_action_add_key_with_function_call(
            receipt_index,
            public_key,
            nonce,
            allowance,
            receiver_id,
            method_names,
        )
    }

    fn append_action_delete_key(&mut self, receipt_index: ReceiptIndex, public_key: PublicKey) {
        self.inner
            .append_action_delete_key(receipt_index, public_key);
    }

    fn append_action_delete_account(
        &mut self,
        receipt_index: ReceiptIndex,
        beneficiary_id: AccountId,
    ) {
        self.inner
            .append_action_delete_account(receipt_index, beneficiary_id);
    }

    fn get_receipt_receiver(&self, receipt_index: ReceiptIndex) -> &AccountId {
        self.inner.get_receipt_receiver(receipt_index)
    }

    fn set_refund_to(&mut self, receipt_index: ReceiptIndex, refund_to: AccountId) {
        self.inner.set_refund_to(receipt_index, refund_to);
    }

    fn post_quantum_keys_enabled(&self) -> bool {
        false
    }
}

//! The VM call: one function call run in near-vm-runner over the receiver's storage
//! ([`crate::external`]), with the wasm and fee config of `PROTOCOL_VERSION`, as nearcore's
//! `runtime/runtime/src/actions.rs` `execute_function_call` does; and view calls, which run
//! the same way on a scratch copy of the account.

use std::{rc::Rc, sync::Arc};

use near_crypto::PublicKey;
use near_primitives_core::{
    account::AccountContract,
    config::ViewConfig,
    hash::CryptoHash,
    types::{AccountId, Balance, Gas},
};
use near_vm_runner::{
    logic::{
        errors::FunctionCallError, mocks::mock_external::MockAction, types::PromiseResult,
        ReturnData, VMContext,
    },
    ContractCode,
};

use super::{gas::distribute_gas, Chain};
use crate::{account::Account, external::AccountExt, ids::derive};

/// One function call: who calls what, with what.
pub(super) struct VmCall<'a> {
    pub receiver: &'a AccountId,
    pub predecessor: &'a AccountId,
    pub signer: &'a AccountId,
    pub signer_key: &'a PublicKey,
    pub method: &'a str,
    pub args: &'a [u8],
    pub deposit: u128,
    pub gas: Gas,
    pub promise_results: Vec<PromiseResult>,
    /// Seeds the call's randomness and the ids of the data it creates.
    pub receipt_id: CryptoHash,
    /// Set for a view call: the VM then refuses state changes and promises.
    pub view_config: Option<ViewConfig>,
    /// Accounts waiting for this call's result.
    pub output_data_receivers: Vec<AccountId>,
}

/// What a function call did.
pub(super) struct FunctionRun {
    pub burnt_gas: u64,
    /// Gas used, including what was handed on to the calls it created.
    pub used_gas: u64,
    pub logs: Vec<String>,
    /// The failure, as the VM renders it.
    pub error: Option<String>,
    /// The receipts and actions the call created.
    pub actions: Vec<MockAction>,
    pub return_data: ReturnData,
}

impl FunctionRun {
    fn failed(error: String) -> Self {
        Self {
            burnt_gas: 0,
            used_gas: 0,
            logs: vec![],
            error: Some(error),
            actions: vec![],
            return_data: ReturnData::None,
        }
    }
}

struct StoredCode(Arc<ContractCode>);

impl near_vm_runner::Contract for StoredCode {
    fn hash(&self) -> CryptoHash {
        *self.0.hash()
    }

    fn get_code(&self) -> Option<Arc<ContractCode>> {
        Some(self.0.clone())
    }
}

impl Chain {
    /// Runs a view method.
    pub fn view(
        &self,
        account: &AccountId,
        method: &str,
        args: &[u8],
    ) -> Result<(Vec<u8>, Vec<String>), String> {
        let a = self
            .accounts
            .get(account)
            .ok_or_else(|| format!("account {account} does not exist"))?;
        let mut scratch = a.clone();
        let call = VmCall {
            receiver: account,
            predecessor: account,
            signer: account,
            signer_key: &PublicKey::empty(near_crypto::KeyType::ED25519),
            method,
            args,
            deposit: 0,
            gas: Gas::from_teragas(300),
            promise_results: vec![],
            receipt_id: derive(&CryptoHash::default(), b"view", self.height),
            view_config: Some(ViewConfig {
                max_gas_burnt: self.config.wasm_config.limit_config.max_gas_burnt,
            }),
            output_data_receivers: vec![],
        };
        let run = self.run_function(&mut scratch, call);
        match run.error {
            None => Ok((
                match run.return_data {
                    ReturnData::Value(v) => v,
                    _ => vec![],
                },
                run.logs,
            )),
            Some(e) => Err(e),
        }
    }

    /// Runs `call` against `account`, which it leaves as the call left it (its storage, and
    /// its balance and storage usage if the call succeeded).
    pub(super) fn run_function(&self, account: &mut Account, call: VmCall) -> FunctionRun {
        let Some(code) = account.code.clone() else {
            return FunctionRun::failed(format!(
                "CompilationError(CodeDoesNotExist {{ account_id: \"{}\" }})",
                call.receiver
            ));
        };
        let context = VMContext {
            current_account_id: call.receiver.clone(),
            signer_account_id: call.signer.clone(),
            signer_account_pk: borsh::to_vec(call.signer_key).expect("a key serializes"),
            predecessor_account_id: call.predecessor.clone(),
            refund_to_account_id: call.predecessor.clone(),
            input: Rc::from(call.args),
            promise_results: call.promise_results.into(),
            block_height: self.height,
            block_timestamp: self.timestamp_ns,
            epoch_height: 1,
            account_balance: Balance::from_yoctonear(account.amount),
            account_locked_balance: Balance::from_yoctonear(account.locked),
            storage_usage: account.storage_usage,
            account_contract: AccountContract::Local(*code.hash()),
            attached_deposit: Balance::from_yoctonear(call.deposit),
            prepaid_gas: call.gas,
            random_seed: call.receipt_id.as_ref().to_vec(),
            view_config: call.view_config,
            output_data_receivers: call.output_data_receivers,
        };
        let wasm_config = self.config.wasm_config.clone();
        let gas_counter = context.make_gas_counter(&wasm_config);
        let prepared = near_vm_runner::prepare(
            &StoredCode(code),
            wasm_config,
            Some(&self.cache),
            gas_counter,
            call.method,
        );
        let mut ext = AccountExt::new(
            std::mem::take(&mut account.storage),
            &self.chain_id,
            call.receipt_id,
        );
        let result = near_vm_runner::run(prepared, &mut ext, &context, self.config.fees.clone());
        // Storage goes back whatever happened: `apply` restores the whole account anyway
        // if the call failed.
        account.storage = std::mem::take(&mut ext.inner.fake_trie);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => return FunctionRun::failed(format!("{e:?}")),
        };
        if let Some(error) = &outcome.aborted {
            // The VM's own rendering: "Smart contract panicked: <message>" for a panic.
            let message = match error {
                FunctionCallError::HostError(h) => h.to_string(),
                other => format!("{other:?}"),
            };
            return FunctionRun {
                burnt_gas: outcome.burnt_gas.as_gas(),
                used_gas: outcome.used_gas.as_gas(),
                logs: outcome.logs,
                error: Some(message),
                actions: vec![],
                return_data: ReturnData::None,
            };
        }
        account.amount = outcome.balance.as_yoctonear();
        account.storage_usage = outcome.storage_usage;
        let mut actions = ext.inner.action_log;
        let unused = call.gas.as_gas().saturating_sub(outcome.used_gas.as_gas());
        let used = outcome.used_gas.as_gas() + distribute_gas(&mut actions, unused);
        FunctionRun {
            burnt_gas: outcome.burnt_gas.as_gas(),
            used_gas: used,
            logs: outcome.logs,
            error: None,
            actions,
            return_data: outcome.return_data,
        }
    }
}

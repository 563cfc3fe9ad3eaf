//! One function per action, as nearcore's `runtime/runtime/src/actions.rs`: each applies its
//! action to the receiver as the receipt's earlier actions left it, or fails with nearcore's
//! `ActionErrorKind`. [`Chain::apply_action`] only dispatches.

use std::{rc::Rc, sync::Arc};

use near_parameters::RuntimeConfig;
use near_primitives::{
    action::{
        Action, AddKeyAction, DeleteAccountAction, DeleteKeyAction, DeployContractAction,
        DeployGlobalContractAction, FunctionCallAction, GlobalContractDeployMode,
        GlobalContractIdentifier, TransferAction, UseGlobalContractAction,
    },
    errors::{ActionErrorKind, FunctionCallError},
};
use near_primitives_core::types::{AccountId, Balance};
use near_vm_runner::{
    logic::{types::PromiseResult, ReturnData},
    ContractCode,
};

use super::{
    promises::{receipt_position, receipts_from},
    receipts::Receipt,
    vm::VmCall,
    Chain,
};
use crate::{account::Account, outcome::Status};

/// What a receipt's actions have done so far. The account is written back only if every
/// action succeeds and the receiver can still afford its storage.
pub(super) struct ActionState {
    pub account: Account,
    /// Whether the receiver exists: before the receipt, or created by one of its actions.
    pub exists: bool,
    pub gas_burnt: u64,
    /// Prepaid gas the calls did not use, refunded to the signer.
    pub refund_gas: u64,
    pub logs: Vec<String>,
    /// Receipts the calls created.
    pub created: Vec<Receipt>,
    /// The last action's result.
    pub result: Status,
    /// Set when the account deleted itself: who gets its balance.
    pub deleted_to: Option<AccountId>,
}

impl ActionState {
    /// The state before any action: the receiver as stored (a new, empty account if there
    /// is none), and the receipt's execution fees burnt.
    pub fn new(existing: Option<Account>, exec_fees: u64, config: &RuntimeConfig) -> Self {
        Self {
            exists: existing.is_some(),
            account: existing.unwrap_or_else(|| Account::new(0, config)),
            gas_burnt: exec_fees,
            refund_gas: 0,
            logs: Vec::new(),
            created: Vec::new(),
            result: Status::Value(vec![]),
            deleted_to: None,
        }
    }
}

/// A failure inside a call, as nearcore reports a contract's panic.
pub(super) fn fn_error(message: String) -> ActionErrorKind {
    ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(message))
}

type ActionResult = Result<(), ActionErrorKind>;

impl Chain {
    /// Applies action `index` of `r`; `inputs` are the results of the receipts `r` waited on.
    pub(super) fn apply_action(
        &mut self,
        r: &Receipt,
        index: usize,
        inputs: &[Option<Vec<u8>>],
        state: &mut ActionState,
    ) -> ActionResult {
        let action = &r.actions[index];
        if !state.exists && !matches!(action, Action::CreateAccount(_)) {
            return Err(ActionErrorKind::AccountDoesNotExist {
                account_id: r.receiver.clone(),
            });
        }
        let config = self.config.clone();
        match action {
            Action::CreateAccount(_) => action_create_account(r, state),
            Action::Transfer(transfer) => action_transfer(transfer, state),
            Action::DeployContract(deploy) => action_deploy_contract(deploy, state),
            Action::DeployGlobalContract(deploy) => {
                self.action_deploy_global_contract(r, deploy, state)
            }
            Action::UseGlobalContract(using) => self.action_use_global_contract(using, state),
            Action::AddKey(add) => action_add_key(&config, r, add, state),
            Action::DeleteKey(delete) => action_delete_key(&config, r, delete, state),
            Action::DeleteAccount(delete) => action_delete_account(r, delete, state),
            Action::FunctionCall(call) => self.action_function_call(r, index, call, inputs, state),
            other => Err(fn_error(format!(
                "action {other:?} is not supported by the local chain"
            ))),
        }
    }

    /// Deploys code every account may use, by hash or by this account's id. nearcore burns
    /// the deployer's balance for its storage, at the global price per byte, instead of
    /// staking it on one account.
    fn action_deploy_global_contract(
        &mut self,
        r: &Receipt,
        deploy: &DeployGlobalContractAction,
        state: &mut ActionState,
    ) -> ActionResult {
        let account = &mut state.account;
        let cost = self
            .config
            .fees
            .storage_usage_config
            .global_contract_storage_amount_per_byte
            .as_yoctonear()
            * deploy.code.len() as u128;
        let Some(left) = account.amount.checked_sub(cost) else {
            return Err(ActionErrorKind::LackBalanceForState {
                account_id: r.receiver.clone(),
                amount: Balance::from_yoctonear(cost - account.amount),
            });
        };
        account.amount = left;
        let code = Arc::new(ContractCode::new(deploy.code.to_vec(), None));
        let hash = *code.hash();
        self.global_code.insert(hash, code);
        if matches!(deploy.deploy_mode, GlobalContractDeployMode::AccountId) {
            self.global_by_account.insert(r.receiver.clone(), hash);
        }
        Ok(())
    }

    /// Makes the account run a global contract; it stakes storage for the identifier only.
    fn action_use_global_contract(
        &self,
        using: &UseGlobalContractAction,
        state: &mut ActionState,
    ) -> ActionResult {
        let id_len = match &using.contract_identifier {
            GlobalContractIdentifier::CodeHash(_) => 32,
            GlobalContractIdentifier::AccountId(a) => a.len() as u64,
        };
        let Some(code) = self.global_contract_code(&using.contract_identifier) else {
            return Err(fn_error(format!(
                "global contract {:?} does not exist",
                using.contract_identifier
            )));
        };
        let account = &mut state.account;
        account.storage_usage = account.storage_usage - account.code_storage + id_len;
        account.code_storage = id_len;
        account.code = Some(code);
        Ok(())
    }

    /// Runs a call in the VM; the call's deposit is the receiver's before it runs. Only the
    /// receipt's last action's result is the receipt's, and only it feeds waiting receipts.
    fn action_function_call(
        &self,
        r: &Receipt,
        index: usize,
        call: &FunctionCallAction,
        inputs: &[Option<Vec<u8>>],
        state: &mut ActionState,
    ) -> ActionResult {
        state.account.amount += call.deposit.as_yoctonear();
        let last = index + 1 == r.actions.len();
        let output_data_receivers = if last {
            r.output.iter().map(|o| o.receiver.clone()).collect()
        } else {
            vec![]
        };
        let promise_results = inputs
            .iter()
            .map(|d| match d {
                Some(v) => PromiseResult::Successful(Rc::from(v.as_slice())),
                None => PromiseResult::Failed,
            })
            .collect();
        let run = self.run_function(
            &mut state.account,
            VmCall {
                receiver: &r.receiver,
                predecessor: &r.predecessor,
                signer: &r.signer,
                signer_key: &r.signer_key,
                method: &call.method_name,
                args: &call.args,
                deposit: call.deposit.as_yoctonear(),
                gas: call.gas,
                promise_results,
                receipt_id: r.id,
                view_config: None,
                output_data_receivers,
            },
        );
        state.gas_burnt += run.burnt_gas;
        state.refund_gas += call.gas.as_gas().saturating_sub(run.used_gas);
        state.logs.extend(run.logs);
        if let Some(message) = run.error {
            return Err(fn_error(message));
        }
        let base = state.created.len();
        state.created.extend(receipts_from(r, &run.actions));
        if last {
            state.result = match run.return_data {
                ReturnData::Value(v) => Status::Value(v),
                ReturnData::ReceiptIndex(i) => {
                    Status::Receipt(state.created[base + receipt_position(&run.actions, i)].id)
                }
                ReturnData::None => Status::Value(vec![]),
            };
        }
        Ok(())
    }
}

/// Sub-accounts are created by their parent; top-level accounts by anyone, as the sandbox's
/// registrar allows.
fn action_create_account(r: &Receipt, state: &mut ActionState) -> ActionResult {
    if state.exists {
        return Err(ActionErrorKind::AccountAlreadyExists {
            account_id: r.receiver.clone(),
        });
    }
    let parent_ok = r
        .receiver
        .get_parent_account_id()
        .is_none_or(|p| p == r.predecessor.as_str());
    if !parent_ok {
        return Err(ActionErrorKind::CreateAccountNotAllowed {
            account_id: r.receiver.clone(),
            predecessor_id: r.predecessor.clone(),
        });
    }
    state.exists = true;
    Ok(())
}

#[allow(clippy::unnecessary_wraps)] // every action function has the same signature
fn action_transfer(transfer: &TransferAction, state: &mut ActionState) -> ActionResult {
    state.account.amount += transfer.deposit.as_yoctonear();
    Ok(())
}

/// Replaces the account's code; storage counts the new code instead of the old.
#[allow(clippy::unnecessary_wraps)] // every action function has the same signature
fn action_deploy_contract(deploy: &DeployContractAction, state: &mut ActionState) -> ActionResult {
    let account = &mut state.account;
    let len = deploy.code.len() as u64;
    account.storage_usage = account.storage_usage - account.code_storage + len;
    account.code_storage = len;
    account.code = Some(Arc::new(ContractCode::new(deploy.code.clone(), None)));
    Ok(())
}

fn action_add_key(
    config: &RuntimeConfig,
    r: &Receipt,
    add: &AddKeyAction,
    state: &mut ActionState,
) -> ActionResult {
    let AddKeyAction {
        public_key,
        access_key,
    } = add;
    let account = &mut state.account;
    if account.keys.contains_key(public_key) {
        return Err(ActionErrorKind::AddKeyAlreadyExists {
            account_id: r.receiver.clone(),
            public_key: Box::new(public_key.clone()),
        });
    }
    account.storage_usage += Account::key_bytes(public_key, access_key, config);
    account.keys.insert(public_key.clone(), access_key.clone());
    Ok(())
}

fn action_delete_key(
    config: &RuntimeConfig,
    r: &Receipt,
    delete: &DeleteKeyAction,
    state: &mut ActionState,
) -> ActionResult {
    let public_key = &delete.public_key;
    let account = &mut state.account;
    let Some(key) = account.keys.remove(public_key) else {
        return Err(ActionErrorKind::DeleteKeyDoesNotExist {
            account_id: r.receiver.clone(),
            public_key: Box::new(public_key.clone()),
        });
    };
    account.storage_usage -= Account::key_bytes(public_key, &key, config);
    Ok(())
}

/// Only an account deletes itself; its balance goes to the beneficiary once every action
/// has succeeded.
fn action_delete_account(
    r: &Receipt,
    delete: &DeleteAccountAction,
    state: &mut ActionState,
) -> ActionResult {
    if r.predecessor != r.receiver {
        return Err(ActionErrorKind::ActorNoPermission {
            account_id: r.receiver.clone(),
            actor_id: r.predecessor.clone(),
        });
    }
    state.deleted_to = Some(delete.beneficiary_id.clone());
    Ok(())
}

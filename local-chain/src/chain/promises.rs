//! The receipts a contract created, read back from the VM's action log (near-vm-runner's
//! `MockedExternal` records each promise call as a `MockAction`), as nearcore's
//! `ReceiptManager` builds them: one receipt per `CreateReceipt`, its actions in order, and
//! a data dependency for each receipt it was joined after (`promise_then`, `promise_and`).

use std::collections::HashMap;

use near_crypto::PublicKey;
use near_primitives::{
    account::{AccessKey, AccessKeyPermission, FunctionCallPermission},
    action::{
        Action, AddKeyAction, CreateAccountAction, DeleteAccountAction, DeleteKeyAction,
        DeployContractAction, DeployGlobalContractAction, FunctionCallAction,
        GlobalContractDeployMode, GlobalContractIdentifier, StakeAction, TransferAction,
        UseGlobalContractAction,
    },
};
use near_primitives_core::types::Balance;
use near_vm_runner::logic::{mocks::mock_external::MockAction, types};

use super::receipts::{DataReceiver, Receipt};
use crate::ids::derive;

/// The receipts `parent`'s function call created, from the VM's action log.
pub(super) fn receipts_from(parent: &Receipt, log: &[MockAction]) -> Vec<Receipt> {
    // Action-log index of each created receipt → its position in the result.
    let mut position: HashMap<u64, usize> = HashMap::new();
    let mut out: Vec<Receipt> = Vec::new();
    for (i, action) in log.iter().enumerate() {
        let i = i as u64;
        match action {
            MockAction::CreateReceipt {
                receipt_indices,
                receiver_id,
            } => {
                let id = derive(&parent.id, b"promise", i);
                let mut input = Vec::new();
                for dep in receipt_indices {
                    let data_id = derive(&id, b"data", *dep);
                    input.push(data_id);
                    out[position[dep]].output.push(DataReceiver {
                        data_id,
                        receiver: receiver_id.clone(),
                    });
                }
                position.insert(i, out.len());
                out.push(Receipt {
                    id,
                    predecessor: parent.receiver.clone(),
                    receiver: receiver_id.clone(),
                    signer: parent.signer.clone(),
                    signer_key: parent.signer_key.clone(),
                    gas_price: parent.gas_price,
                    actions: vec![],
                    input_data_ids: input,
                    output: vec![],
                    refund_to: parent.receiver.clone(),
                    is_refund: false,
                });
            }
            MockAction::SetRefundTo {
                receipt_index,
                refund_to,
            } => out[position[receipt_index]].refund_to = refund_to.clone(),
            other => {
                let (index, action) = action_of(other.clone());
                out[position[&index]].actions.push(action);
            }
        }
    }
    out
}

/// Position among created receipts of the receipt at action-log index `index`.
pub(super) fn receipt_position(log: &[MockAction], index: u64) -> usize {
    log[..usize::try_from(index).expect("an action-log index fits in usize")]
        .iter()
        .filter(|a| matches!(a, MockAction::CreateReceipt { .. }))
        .count()
}

/// One logged promise action: the action-log index of its receipt, and the action.
fn action_of(logged: MockAction) -> (u64, Action) {
    match logged {
        MockAction::CreateAccount { receipt_index } => {
            (receipt_index, Action::CreateAccount(CreateAccountAction {}))
        }
        MockAction::DeployContract {
            receipt_index,
            code,
        } => (
            receipt_index,
            Action::DeployContract(DeployContractAction { code }),
        ),
        MockAction::FunctionCallWeight {
            receipt_index,
            method_name,
            args,
            attached_deposit,
            prepaid_gas,
            gas_weight: _,
        } => (
            receipt_index,
            Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: String::from_utf8_lossy(&method_name).into_owned(),
                args,
                gas: prepaid_gas,
                deposit: attached_deposit,
            })),
        ),
        MockAction::Transfer {
            receipt_index,
            deposit,
        } => (receipt_index, Action::Transfer(TransferAction { deposit })),
        MockAction::AddKeyWithFullAccess {
            receipt_index,
            public_key,
            nonce,
        } => (
            receipt_index,
            add_key(public_key, nonce, AccessKeyPermission::FullAccess),
        ),
        MockAction::AddKeyWithFunctionCall {
            receipt_index,
            public_key,
            nonce,
            allowance,
            receiver_id,
            method_names,
        } => {
            let permission = AccessKeyPermission::FunctionCall(FunctionCallPermission {
                allowance,
                receiver_id: receiver_id.to_string(),
                method_names: method_names
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect(),
            });
            (receipt_index, add_key(public_key, nonce, permission))
        }
        MockAction::DeleteKey {
            receipt_index,
            public_key,
        } => (
            receipt_index,
            Action::DeleteKey(Box::new(DeleteKeyAction { public_key })),
        ),
        MockAction::DeleteAccount {
            receipt_index,
            beneficiary_id,
        } => (
            receipt_index,
            Action::DeleteAccount(DeleteAccountAction { beneficiary_id }),
        ),
        MockAction::DeployGlobalContract {
            receipt_index,
            code,
            mode,
        } => (
            receipt_index,
            Action::DeployGlobalContract(DeployGlobalContractAction {
                code: code.into(),
                deploy_mode: match mode {
                    types::GlobalContractDeployMode::CodeHash => GlobalContractDeployMode::CodeHash,
                    types::GlobalContractDeployMode::AccountId => {
                        GlobalContractDeployMode::AccountId
                    }
                },
            }),
        ),
        MockAction::UseGlobalContract {
            receipt_index,
            contract_id,
        } => (
            receipt_index,
            Action::UseGlobalContract(Box::new(UseGlobalContractAction {
                contract_identifier: match contract_id {
                    types::GlobalContractIdentifier::CodeHash(h) => {
                        GlobalContractIdentifier::CodeHash(h)
                    }
                    types::GlobalContractIdentifier::AccountId(a) => {
                        GlobalContractIdentifier::AccountId(a)
                    }
                },
            })),
        ),
        MockAction::Stake {
            receipt_index,
            stake,
            public_key,
        } => (
            receipt_index,
            Action::Stake(Box::new(StakeAction { stake, public_key })),
        ),
        unsupported => {
            // Global contracts, state init and gas keys: not modelled. The receipt gets a
            // stake action, which `apply` refuses by name.
            let index = serde_json::to_value(&unsupported)
                .ok()
                .and_then(|v| {
                    v.as_object()?
                        .values()
                        .next()?
                        .get("receipt_index")?
                        .as_u64()
                })
                .unwrap_or(0);
            let stake = StakeAction {
                stake: Balance::ZERO,
                public_key: PublicKey::empty(near_crypto::KeyType::ED25519),
            };
            (index, Action::Stake(Box::new(stake)))
        }
    }
}

fn add_key(public_key: PublicKey, nonce: u64, permission: AccessKeyPermission) -> Action {
    Action::AddKey(Box::new(AddKeyAction {
        public_key,
        access_key: AccessKey { nonce, permission },
    }))
}

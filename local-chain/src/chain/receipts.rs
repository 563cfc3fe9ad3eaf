//! Receipt routing and gas, as nearcore's `runtime/runtime/src/lib.rs` (`apply_action_receipt`,
//! `generate_refund_receipts`): a receipt runs once the data it depends on has arrived; its
//! actions apply to the receiver all or nothing; the receiver must still afford its storage;
//! a failed receipt refunds its deposits, every receipt refunds its unused gas to the signer;
//! its result goes to the receipts waiting on it, or is handed on with the promise it returned.

use std::collections::VecDeque;

use near_crypto::PublicKey;
use near_primitives::{
    action::{Action, TransferAction},
    errors::{ActionError, ActionErrorKind},
};
use near_primitives_core::{
    hash::CryptoHash,
    types::{AccountId, Balance},
};

use super::{actions::ActionState, Chain};
use crate::{
    ids::derive,
    outcome::{Outcome, Status},
};

/// Where a receipt's result goes: the data id a waiting receipt reads it under.
#[derive(Clone, Debug)]
pub(super) struct DataReceiver {
    pub data_id: CryptoHash,
    pub receiver: AccountId,
}

#[derive(Clone, Debug)]
pub(super) struct Receipt {
    pub id: CryptoHash,
    pub predecessor: AccountId,
    pub receiver: AccountId,
    pub signer: AccountId,
    pub signer_key: PublicKey,
    pub gas_price: u128,
    pub actions: Vec<Action>,
    pub input_data_ids: Vec<CryptoHash>,
    pub output: Vec<DataReceiver>,
    pub refund_to: AccountId,
    /// Refunds come from the system: free, and never refunded themselves.
    pub is_refund: bool,
}

impl Chain {
    /// Runs `first` and every receipt it leads to, in order; returns their outcomes.
    pub(super) fn run_receipts(&mut self, first: Receipt) -> Vec<Outcome> {
        let mut queue = VecDeque::from([first]);
        let mut outcomes = Vec::new();
        while let Some(receipt) = queue.pop_front() {
            let (outcome, created) = self.apply(receipt);
            outcomes.push(outcome);
            for r in created {
                if self.is_ready(&r) {
                    queue.push_back(r);
                } else {
                    self.waiting.push(r);
                }
            }
            // Data that arrived may have made waiting receipts ready.
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|r| self.is_ready(r));
            self.waiting = still;
            queue.extend(ready);
        }
        outcomes
    }

    fn is_ready(&self, r: &Receipt) -> bool {
        r.input_data_ids.iter().all(|d| self.data.contains_key(d))
    }

    /// Applies one receipt to its receiver, all or nothing; returns its outcome and the
    /// receipts it sends (those its calls created, then refunds).
    fn apply(&mut self, r: Receipt) -> (Outcome, Vec<Receipt>) {
        let inputs: Vec<Option<Vec<u8>>> = r
            .input_data_ids
            .iter()
            .map(|d| self.data.remove(d).flatten())
            .collect();
        let exec_fees = if r.is_refund {
            0
        } else {
            self.exec_fees(&r.actions)
        };
        let existing = self.accounts.get(&r.receiver).cloned();
        let mut state = ActionState::new(existing, exec_fees, &self.config);
        let mut failure = None;
        for index in 0..r.actions.len() {
            if let Err(kind) = self.apply_action(&r, index, &inputs, &mut state) {
                failure = Some(ActionError {
                    index: Some(index as u64),
                    kind,
                });
                break;
            }
        }
        if failure.is_none() && state.deleted_to.is_none() {
            failure = self.check_storage_staking(&r.receiver, &state);
        }
        let mut refunds = Vec::new();
        if let Some(error) = failure {
            // All or nothing: the account is left as it was, nothing it created is sent,
            // and the deposits go back to whoever attached them.
            state.created.clear();
            state.result = Status::Failure(error);
            let deposits: u128 = r
                .actions
                .iter()
                .map(|a| a.get_deposit_balance().as_yoctonear())
                .sum();
            if deposits > 0 && !r.is_refund {
                refunds.push(refund(&r, &r.refund_to, deposits, 0));
            }
        } else if let Some(beneficiary) = &state.deleted_to {
            self.accounts.remove(&r.receiver);
            if state.account.amount > 0 {
                refunds.push(refund(&r, beneficiary, state.account.amount, 1));
            }
        } else {
            self.accounts
                .insert(r.receiver.clone(), std::mem::take(&mut state.account));
        }
        if state.refund_gas > 0 && !r.is_refund {
            let amount = u128::from(state.refund_gas) * r.gas_price;
            refunds.push(refund(&r, &r.signer, amount, 2));
        }
        self.deliver(&r, &state.result, &mut state.created);
        let mut created = state.created;
        let receipt_ids = created.iter().chain(&refunds).map(|x| x.id).collect();
        created.extend(refunds);
        let outcome = Outcome {
            id: r.id,
            executor: r.receiver.clone(),
            logs: state.logs,
            gas_burnt: state.gas_burnt,
            tokens_burnt: u128::from(state.gas_burnt) * r.gas_price,
            receipt_ids,
            status: state.result,
        };
        (outcome, created)
    }

    /// A receiver left unable to afford the storage it uses fails the receipt.
    fn check_storage_staking(&self, id: &AccountId, state: &ActionState) -> Option<ActionError> {
        let a = &state.account;
        let cost = a.storage_cost(&self.config);
        (a.amount + a.locked < cost).then(|| ActionError {
            index: None,
            kind: ActionErrorKind::LackBalanceForState {
                account_id: id.clone(),
                amount: Balance::from_yoctonear(cost - a.amount - a.locked),
            },
        })
    }

    /// Delivers `r`'s result to whoever waits on it, or hands the waiters on to the receipt
    /// whose result it returned.
    fn deliver(&mut self, r: &Receipt, result: &Status, created: &mut [Receipt]) {
        match result {
            Status::Receipt(id) => {
                if let Some(next) = created.iter_mut().find(|c| c.id == *id) {
                    next.output.extend(r.output.iter().cloned());
                }
            }
            Status::Value(v) => {
                for o in &r.output {
                    self.data.insert(o.data_id, Some(v.clone()));
                }
            }
            Status::Failure(_) => {
                for o in &r.output {
                    self.data.insert(o.data_id, None);
                }
            }
        }
    }
}

/// A refund of `amount` to `to` caused by `r`; `kind` tells its refunds apart.
fn refund(r: &Receipt, to: &AccountId, amount: u128, kind: u64) -> Receipt {
    let system: AccountId = "system".parse().expect("valid account id");
    Receipt {
        id: derive(&r.id, b"refund", kind),
        predecessor: system.clone(),
        receiver: to.clone(),
        signer: system,
        signer_key: PublicKey::empty(near_crypto::KeyType::ED25519),
        gas_price: 0,
        actions: vec![Action::Transfer(TransferAction {
            deposit: Balance::from_yoctonear(amount),
        })],
        input_data_ids: vec![],
        output: vec![],
        refund_to: to.clone(),
        is_refund: true,
    }
}

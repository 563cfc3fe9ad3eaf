//! Transaction verification, as nearcore's `runtime/runtime/src/verifier.rs`: the signature,
//! the signer's access key and nonce, a function-call key's permission, then the signer's
//! balance for the transaction's cost and the storage it stakes. Everything is checked
//! before anything is written, so an invalid transaction changes nothing.

use near_primitives::{
    account::{AccessKey, AccessKeyPermission, FunctionCallPermission},
    action::Action,
    errors::{InvalidAccessKeyError, InvalidTxError},
    transaction::{SignedTransaction, Transaction},
};
use near_primitives_core::types::Balance;

use super::{Chain, GAS_PRICE};

impl Chain {
    /// Checks `tx` and charges its signer the send fees, the prepaid gas and the deposits;
    /// returns the send fee, the gas the transaction itself burns.
    pub(super) fn verify_and_charge(
        &mut self,
        tx: &SignedTransaction,
    ) -> Result<u64, InvalidTxError> {
        let t = &tx.transaction;
        if !tx.signature.verify(tx.get_hash().as_ref(), t.public_key()) {
            return Err(InvalidTxError::InvalidSignature);
        }
        let signer_id = t.signer_id();
        let fees = self.tx_fees(t.actions(), signer_id == t.receiver_id());
        let deposits: u128 = t
            .actions()
            .iter()
            .map(|a| a.get_deposit_balance().as_yoctonear())
            .sum();
        let cost = (u128::from(fees.send) + u128::from(fees.prepaid)) * GAS_PRICE + deposits;
        let config = self.config.clone();
        let signer =
            self.accounts
                .get_mut(signer_id)
                .ok_or_else(|| InvalidTxError::SignerDoesNotExist {
                    signer_id: signer_id.clone(),
                })?;
        let storage_cost = signer.storage_cost(&config);
        let (balance, locked) = (signer.amount, signer.locked);
        let key = signer.keys.get_mut(t.public_key()).ok_or_else(|| {
            InvalidTxError::InvalidAccessKeyError(InvalidAccessKeyError::AccessKeyNotFound {
                account_id: signer_id.clone(),
                public_key: Box::new(t.public_key().clone()),
            })
        })?;
        let nonce = t.nonce().nonce();
        if nonce <= key.nonce {
            return Err(InvalidTxError::InvalidNonce {
                tx_nonce: nonce,
                ak_nonce: key.nonce,
            });
        }
        // nearcore's bound: a nonce may not run ahead of the chain by more than a million
        // per block, so a key cannot be burnt to u64::MAX.
        let upper_bound = self
            .height
            .saturating_mul(near_primitives::account::AccessKey::ACCESS_KEY_NONCE_RANGE_MULTIPLIER);
        if nonce >= upper_bound {
            return Err(InvalidTxError::NonceTooLarge {
                tx_nonce: nonce,
                upper_bound,
            });
        }
        let new_allowance = match &key.permission {
            AccessKeyPermission::FunctionCall(permission) => {
                check_function_call_key(permission, t, cost)?
            }
            _ => None,
        };
        let Some(left) = balance.checked_sub(cost) else {
            return Err(InvalidTxError::NotEnoughBalance {
                signer_id: signer_id.clone(),
                balance: Balance::from_yoctonear(balance),
                cost: Balance::from_yoctonear(cost),
            });
        };
        if left + locked < storage_cost {
            return Err(InvalidTxError::LackBalanceForState {
                signer_id: signer_id.clone(),
                amount: Balance::from_yoctonear(storage_cost - left - locked),
            });
        }
        charge_key(key, nonce, new_allowance);
        signer.amount = left;
        Ok(fees.send)
    }
}

/// A function-call key signs one function call without deposit, to its receiver, to one
/// of its methods if it names any, within its allowance; returns the allowance left.
fn check_function_call_key(
    permission: &FunctionCallPermission,
    t: &Transaction,
    cost: u128,
) -> Result<Option<Balance>, InvalidTxError> {
    let invalid = |e| Err(InvalidTxError::InvalidAccessKeyError(e));
    let [Action::FunctionCall(call)] = t.actions() else {
        return invalid(InvalidAccessKeyError::RequiresFullAccess);
    };
    if !call.deposit.is_zero() {
        return invalid(InvalidAccessKeyError::DepositWithFunctionCall);
    }
    if permission.receiver_id != t.receiver_id().as_str() {
        return invalid(InvalidAccessKeyError::ReceiverMismatch {
            tx_receiver: t.receiver_id().clone(),
            ak_receiver: permission.receiver_id.clone(),
        });
    }
    if !permission.method_names.is_empty() && !permission.method_names.contains(&call.method_name) {
        return invalid(InvalidAccessKeyError::MethodNameMismatch {
            method_name: call.method_name.clone(),
        });
    }
    let Some(allowance) = &permission.allowance else {
        return Ok(None);
    };
    match allowance.as_yoctonear().checked_sub(cost) {
        Some(left) => Ok(Some(Balance::from_yoctonear(left))),
        None => invalid(InvalidAccessKeyError::NotEnoughAllowance {
            account_id: t.signer_id().clone(),
            public_key: Box::new(t.public_key().clone()),
            allowance: *allowance,
            cost: Balance::from_yoctonear(cost),
        }),
    }
}

/// Records the nonce used and, for a function-call key with an allowance, what is left of it.
fn charge_key(key: &mut AccessKey, nonce: u64, new_allowance: Option<Balance>) {
    key.nonce = nonce;
    if let (Some(left), AccessKeyPermission::FunctionCall(p)) = (new_allowance, &mut key.permission)
    {
        p.allowance = Some(left);
    }
}

//! What executing a transaction or a receipt produced.

use near_primitives::errors::{ActionError, InvalidTxError};
use near_primitives_core::{hash::CryptoHash, types::AccountId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Returned bytes (empty if the method returned nothing).
    Value(Vec<u8>),
    /// The result is that of another receipt (the method returned a promise).
    Receipt(CryptoHash),
    Failure(ActionError),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub id: CryptoHash,
    pub executor: AccountId,
    pub logs: Vec<String>,
    pub gas_burnt: u64,
    pub tokens_burnt: u128,
    pub receipt_ids: Vec<CryptoHash>,
    pub status: Status,
}

/// A transaction and everything it caused.
#[derive(Clone, Debug)]
pub struct TxResult {
    pub transaction: Outcome,
    /// In execution order.
    pub receipts: Vec<Outcome>,
}

impl TxResult {
    /// The final status: the first receipt's, following returned promises.
    pub fn status(&self) -> Status {
        let mut id = self.transaction.receipt_ids[0];
        loop {
            let Some(o) = self.receipts.iter().find(|o| o.id == id) else {
                return Status::Failure(ActionError {
                    index: None,
                    kind: near_primitives::errors::ActionErrorKind::FunctionCallError(
                        near_primitives::errors::FunctionCallError::ExecutionError(format!(
                            "receipt {id} did not run"
                        )),
                    ),
                });
            };
            match &o.status {
                Status::Receipt(next) => id = *next,
                other => return other.clone(),
            }
        }
    }

    /// The returned bytes, or the failure as a message.
    pub fn result(&self) -> Result<Vec<u8>, String> {
        match self.status() {
            Status::Value(v) => Ok(v),
            Status::Failure(e) => Err(failure_message(&e)),
            Status::Receipt(_) => unreachable!("status() follows receipts"),
        }
    }

    pub fn logs(&self) -> Vec<&str> {
        self.receipts
            .iter()
            .flat_map(|o| o.logs.iter().map(String::as_str))
            .collect()
    }

    pub fn gas_burnt(&self) -> u64 {
        self.transaction.gas_burnt + self.receipts.iter().map(|o| o.gas_burnt).sum::<u64>()
    }

    /// Failures of any receipt, in order (a failed callback does not fail the transaction).
    pub fn failures(&self) -> Vec<&ActionError> {
        self.receipts
            .iter()
            .filter_map(|o| match &o.status {
                Status::Failure(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}

/// A contract panic reads `Smart contract panicked: <message>`, as on a real node.
pub fn failure_message(e: &ActionError) -> String {
    match &e.kind {
        near_primitives::errors::ActionErrorKind::FunctionCallError(
            near_primitives::errors::FunctionCallError::ExecutionError(m),
        ) => m.clone(),
        other => format!("{other:?}"),
    }
}

pub type TxError = InvalidTxError;

//! Gas, from nearcore's fee schedule for `PROTOCOL_VERSION` (`near-parameters`): the send
//! and execution fees of a transaction's actions (nearcore's `runtime/runtime/src/config.rs`)
//! and the weighted split of a call's unused gas among the calls it created.

use near_parameters::ActionCosts;
use near_primitives::{account::AccessKeyPermission, action::Action};
use near_primitives_core::types::{Gas, GasWeight};
use near_vm_runner::logic::mocks::mock_external::MockAction;

use super::Chain;

/// What a transaction's signer pays for, in gas.
pub(super) struct Fees {
    /// Burnt converting the transaction to a receipt.
    pub send: u64,
    /// Bought up front: the receipt's execution fees and the gas attached to its calls.
    pub prepaid: u64,
}

impl Chain {
    /// The fees of a transaction with `actions`; `sir` when the signer is the receiver,
    /// which nearcore charges less for.
    pub(super) fn tx_fees(&self, actions: &[Action], sir: bool) -> Fees {
        let fees = &self.config.fees;
        let send = |c: ActionCosts| fees.fee(c).send_fee(sir).gas.as_gas();
        let exec = |c: ActionCosts| fees.fee(c).exec_fee().gas.as_gas();
        let mut f = Fees {
            send: send(ActionCosts::new_action_receipt),
            prepaid: exec(ActionCosts::new_action_receipt),
        };
        for a in actions {
            for (cost, n) in action_costs(a) {
                f.send += send(cost) * n;
                f.prepaid += exec(cost) * n;
            }
            if let Action::FunctionCall(call) = a {
                f.prepaid += call.gas.as_gas();
            }
        }
        f
    }

    /// The execution fees a receipt with `actions` burns, before any call runs.
    pub(super) fn exec_fees(&self, actions: &[Action]) -> u64 {
        let fees = &self.config.fees;
        let exec = |c: ActionCosts| fees.fee(c).exec_fee().gas.as_gas();
        exec(ActionCosts::new_action_receipt)
            + actions
                .iter()
                .flat_map(action_costs)
                .map(|(c, n)| exec(c) * n)
                .sum::<u64>()
    }
}

/// The fee parts of one action: (cost, how many times).
fn action_costs(action: &Action) -> Vec<(ActionCosts, u64)> {
    match action {
        Action::CreateAccount(_) => vec![(ActionCosts::create_account, 1)],
        Action::DeployContract(d) => vec![
            (ActionCosts::deploy_contract_base, 1),
            (ActionCosts::deploy_contract_byte, d.code.len() as u64),
        ],
        Action::FunctionCall(f) => vec![
            (ActionCosts::function_call_base, 1),
            (
                ActionCosts::function_call_byte,
                (f.method_name.len() + f.args.len()) as u64,
            ),
        ],
        Action::Transfer(_) => vec![(ActionCosts::transfer, 1)],
        Action::AddKey(k) => match &k.access_key.permission {
            AccessKeyPermission::FullAccess => vec![(ActionCosts::add_full_access_key, 1)],
            AccessKeyPermission::FunctionCall(p) => vec![
                (ActionCosts::add_function_call_key_base, 1),
                (
                    ActionCosts::add_function_call_key_byte,
                    p.method_names.iter().map(|m| m.len() as u64 + 1).sum(),
                ),
            ],
            // Any other permission kind is charged as a full-access key.
            #[allow(clippy::match_same_arms)]
            _ => vec![(ActionCosts::add_full_access_key, 1)],
        },
        Action::DeleteKey(_) => vec![(ActionCosts::delete_key, 1)],
        Action::DeleteAccount(_) => vec![(ActionCosts::delete_account, 1)],
        Action::DeployGlobalContract(d) => vec![
            (ActionCosts::deploy_global_contract_base, 1),
            (
                ActionCosts::deploy_global_contract_byte,
                d.code.len() as u64,
            ),
        ],
        Action::UseGlobalContract(u) => vec![
            (ActionCosts::use_global_contract_base, 1),
            (
                ActionCosts::use_global_contract_byte,
                u.contract_identifier.len() as u64,
            ),
        ],
        _ => vec![],
    }
}

/// Gives unused gas to function calls created with a weight, in proportion (nearcore's
/// `ReceiptManager::distribute_gas`); returns how much was given.
pub(super) fn distribute_gas(actions: &mut [MockAction], unused: u64) -> u64 {
    let total: u64 = actions
        .iter()
        .map(|a| match a {
            MockAction::FunctionCallWeight {
                gas_weight: GasWeight(w),
                ..
            } => *w,
            _ => 0,
        })
        .sum();
    if total == 0 || unused == 0 {
        return 0;
    }
    let mut given = 0u64;
    let last = actions.iter().rposition(
        |a| matches!(a, MockAction::FunctionCallWeight { gas_weight: GasWeight(w), .. } if *w > 0),
    );
    for (i, a) in actions.iter_mut().enumerate() {
        if let MockAction::FunctionCallWeight {
            prepaid_gas,
            gas_weight: GasWeight(w),
            ..
        } = a
        {
            if *w == 0 {
                continue;
            }
            // The last weighted call takes the remainder, so rounding loses no gas.
            let share = if Some(i) == last {
                unused - given
            } else {
                u64::try_from(u128::from(unused) * u128::from(*w) / u128::from(total))
                    .expect("a share of the unused gas is at most the unused gas")
            };
            *prepaid_gas = Gas::from_gas(prepaid_gas.as_gas() + share);
            given += share;
        }
    }
    given
}

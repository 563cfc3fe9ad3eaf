//! The chain: accounts, signed transactions, receipts executed in nearcore's VM, blocks.
//!
//! Execution follows nearcore's runtime (`runtime/runtime/src/lib.rs`, `actions.rs`):
//! a transaction is checked against the signer's access key and pays its send fees and
//! prepaid gas up front; its receipt applies the actions to the receiver, all or nothing;
//! function calls run in near-vm-runner with the fee config of `PROTOCOL_VERSION`; the
//! receipts a contract creates wait for the data they depend on; unused gas and the
//! deposits of failed receipts are refunded. One block per transaction, with all its
//! receipts; see README.md for what this leaves out.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    rc::Rc,
    sync::Arc,
};

use near_crypto::{PublicKey, SecretKey, Signer};
use near_parameters::{ActionCosts, RuntimeConfig, RuntimeConfigStore};
use near_primitives::{
    account::{AccessKey, AccessKeyPermission},
    action::GlobalContractIdentifier,
    action::{
        Action, AddKeyAction, CreateAccountAction, DeleteAccountAction, DeleteKeyAction,
        DeployContractAction, FunctionCallAction, TransferAction,
    },
    errors::{
        ActionError, ActionErrorKind, FunctionCallError, InvalidAccessKeyError, InvalidTxError,
    },
    transaction::{SignedTransaction, Transaction, TransactionV0},
};
use near_primitives_core::{
    account::AccountContract,
    hash::CryptoHash,
    types::{AccountId, Balance, Gas, GasWeight},
    version::PROTOCOL_VERSION,
};
use near_vm_runner::{
    logic::{mocks::mock_external::MockAction, types::PromiseResult, ReturnData, VMContext},
    ContractCode, MockContractRuntimeCache,
};

use crate::{
    account::Account,
    external::AccountExt,
    ids::derive,
    outcome::{Outcome, Status, TxResult},
};

/// Gas price, yocto per gas: mainnet's minimum.
pub const GAS_PRICE: u128 = 100_000_000;
/// Block time this chain advances per block.
pub const BLOCK_NS: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
struct DataReceiver {
    data_id: CryptoHash,
    receiver: AccountId,
}

#[derive(Clone, Debug)]
struct Receipt {
    id: CryptoHash,
    predecessor: AccountId,
    receiver: AccountId,
    signer: AccountId,
    signer_key: PublicKey,
    gas_price: u128,
    actions: Vec<Action>,
    input_data_ids: Vec<CryptoHash>,
    output: Vec<DataReceiver>,
    refund_to: AccountId,
    /// Refunds come from the system: free, and never refunded themselves.
    is_refund: bool,
}

pub struct Chain {
    config: Arc<RuntimeConfig>,
    #[allow(clippy::struct_field_names)] // nearcore's own name for it
    chain_id: String,
    root: AccountId,
    accounts: BTreeMap<AccountId, Account>,
    height: u64,
    timestamp_ns: u64,
    cache: MockContractRuntimeCache,
    /// Promise results by data id: `None` for a failed promise.
    data: HashMap<CryptoHash, Option<Vec<u8>>>,
    /// Receipts waiting for data.
    waiting: Vec<Receipt>,
    /// Global contract code, by hash, and the hash each deploying account's id names.
    global_code: HashMap<CryptoHash, Arc<ContractCode>>,
    global_by_account: HashMap<AccountId, CryptoHash>,
}

fn fn_error(message: String) -> ActionErrorKind {
    ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(message))
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
            height: 1,
            timestamp_ns: 1_700_000_000_000_000_000,
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

    /// Writes the chain's state to `dir` (see [`crate::persist`]).
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        crate::persist::write(
            dir,
            &crate::persist::Snapshot {
                chain_id: self.chain_id.clone(),
                root: self.root.clone(),
                height: self.height,
                timestamp_ns: self.timestamp_ns,
                accounts: self
                    .accounts
                    .iter()
                    .map(|(id, a)| (id.clone(), a.into()))
                    .collect(),
            },
        )
    }

    /// The chain saved in `dir`, if there is one. Promise data in flight is not saved:
    /// every transaction runs to completion before it returns.
    pub fn load(dir: &std::path::Path) -> std::io::Result<Option<Self>> {
        let Some(s) = crate::persist::read(dir)? else {
            return Ok(None);
        };
        let key = PublicKey::empty(near_crypto::KeyType::ED25519);
        let mut chain = Self::new(&s.chain_id, &s.root, &key, 0);
        chain.height = s.height;
        chain.timestamp_ns = s.timestamp_ns;
        chain.accounts = s
            .accounts
            .into_iter()
            .map(|(id, a)| (id, a.into()))
            .collect();
        Ok(Some(chain))
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
        let a = self
            .accounts
            .get_mut(id)
            .ok_or_else(|| format!("account {id} does not exist"))?;
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
        let a = self
            .accounts
            .get_mut(id)
            .ok_or_else(|| format!("account {id} does not exist"))?;
        if let Some(old) = a.keys.insert(key.clone(), access_key.clone()) {
            a.storage_usage -= Account::key_bytes(&key, &old, &config);
        }
        a.storage_usage += Account::key_bytes(&key, &access_key, &config);
        Ok(())
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Moves time on by `blocks` blocks, as `sandbox_fast_forward` does.
    pub fn fast_forward(&mut self, blocks: u64) {
        self.height += blocks;
        self.timestamp_ns += blocks * BLOCK_NS;
    }

    /// Sets one storage entry of a contract, as `sandbox_patch_state` does.
    pub fn patch_state(
        &mut self,
        account: &AccountId,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), String> {
        let a = self
            .accounts
            .get_mut(account)
            .ok_or_else(|| format!("account {account} does not exist"))?;
        let extra = self.config.fees.storage_usage_config.num_extra_bytes_record;
        let added = (key.len() + value.len()) as u64 + extra;
        if let Some(old) = a.storage.insert(key.clone(), value) {
            a.storage_usage -= (key.len() + old.len()) as u64 + extra;
        }
        a.storage_usage += added;
        Ok(())
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
        let t = &tx.transaction;
        if !tx.signature.verify(hash.as_ref(), t.public_key()) {
            return Err(InvalidTxError::InvalidSignature);
        }
        let signer_id = t.signer_id().clone();
        let fees = self.tx_fees(t.actions(), &signer_id == t.receiver_id());
        let deposits: u128 = t
            .actions()
            .iter()
            .map(|a| a.get_deposit_balance().as_yoctonear())
            .sum();
        let cost = (u128::from(fees.send) + u128::from(fees.prepaid)) * GAS_PRICE + deposits;
        let config = self.config.clone();
        let signer =
            self.accounts
                .get_mut(&signer_id)
                .ok_or(InvalidTxError::SignerDoesNotExist {
                    signer_id: signer_id.clone(),
                })?;
        let (balance, locked, storage_cost) =
            (signer.amount, signer.locked, signer.storage_cost(&config));
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
        // Checked first, written last: an invalid transaction changes nothing.
        let mut new_allowance = None;
        if let AccessKeyPermission::FunctionCall(permission) = &key.permission {
            let [Action::FunctionCall(call)] = t.actions() else {
                return Err(InvalidTxError::InvalidAccessKeyError(
                    InvalidAccessKeyError::RequiresFullAccess,
                ));
            };
            if !call.deposit.is_zero() {
                return Err(InvalidTxError::InvalidAccessKeyError(
                    InvalidAccessKeyError::DepositWithFunctionCall,
                ));
            }
            if permission.receiver_id != t.receiver_id().as_str() {
                return Err(InvalidTxError::InvalidAccessKeyError(
                    InvalidAccessKeyError::ReceiverMismatch {
                        tx_receiver: t.receiver_id().clone(),
                        ak_receiver: permission.receiver_id.clone(),
                    },
                ));
            }
            if !permission.method_names.is_empty()
                && !permission.method_names.contains(&call.method_name)
            {
                return Err(InvalidTxError::InvalidAccessKeyError(
                    InvalidAccessKeyError::MethodNameMismatch {
                        method_name: call.method_name.clone(),
                    },
                ));
            }
            if let Some(allowance) = &permission.allowance {
                let Some(left) = allowance.as_yoctonear().checked_sub(cost) else {
                    return Err(InvalidTxError::InvalidAccessKeyError(
                        InvalidAccessKeyError::NotEnoughAllowance {
                            account_id: signer_id.clone(),
                            public_key: Box::new(t.public_key().clone()),
                            allowance: *allowance,
                            cost: Balance::from_yoctonear(cost),
                        },
                    ));
                };
                new_allowance = Some(Balance::from_yoctonear(left));
            }
        }
        let Some(left) = balance.checked_sub(cost) else {
            return Err(InvalidTxError::NotEnoughBalance {
                signer_id,
                balance: Balance::from_yoctonear(balance),
                cost: Balance::from_yoctonear(cost),
            });
        };
        if left + locked < storage_cost {
            return Err(InvalidTxError::LackBalanceForState {
                signer_id,
                amount: Balance::from_yoctonear(storage_cost - left - locked),
            });
        }
        key.nonce = nonce;
        if let (Some(left), AccessKeyPermission::FunctionCall(p)) =
            (new_allowance, &mut key.permission)
        {
            p.allowance = Some(left);
        }
        signer.amount = left;

        self.height += 1;
        self.timestamp_ns += BLOCK_NS;
        let receipt_id = derive(&hash, b"receipt", 0);
        let transaction = Outcome {
            id: hash,
            executor: signer_id.clone(),
            logs: vec![],
            gas_burnt: fees.send,
            tokens_burnt: u128::from(fees.send) * GAS_PRICE,
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
            refund_to: signer_id,
            is_refund: false,
        };
        Ok(TxResult {
            transaction,
            receipts: self.run_receipts(receipt),
        })
    }

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
        let receipt_id = derive(&CryptoHash::default(), b"view", self.height);
        let view = near_primitives_core::config::ViewConfig {
            max_gas_burnt: self.config.wasm_config.limit_config.max_gas_burnt,
        };
        let run = self.run_function(
            &mut scratch,
            account,
            account,
            account,
            &PublicKey::empty(near_crypto::KeyType::ED25519),
            method,
            args,
            0,
            Gas::from_teragas(300),
            vec![],
            receipt_id,
            Some(view),
            vec![],
        );
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

    fn tx_fees(&self, actions: &[Action], sir: bool) -> Fees {
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

    fn exec_fees(&self, actions: &[Action]) -> u64 {
        let fees = &self.config.fees;
        let exec = |c: ActionCosts| fees.fee(c).exec_fee().gas.as_gas();
        exec(ActionCosts::new_action_receipt)
            + actions
                .iter()
                .flat_map(action_costs)
                .map(|(c, n)| exec(c) * n)
                .sum::<u64>()
    }

    /// Runs `first` and every receipt it leads to, in order; returns their outcomes.
    fn run_receipts(&mut self, first: Receipt) -> Vec<Outcome> {
        let mut queue = VecDeque::from([first]);
        let mut outcomes = Vec::new();
        while let Some(receipt) = queue.pop_front() {
            let (outcome, created) = self.apply(receipt);
            outcomes.push(outcome);
            for r in created {
                if r.input_data_ids.iter().all(|d| self.data.contains_key(d)) {
                    queue.push_back(r);
                } else {
                    self.waiting.push(r);
                }
            }
            // Data that arrived may have made waiting receipts ready.
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|r| r.input_data_ids.iter().all(|d| self.data.contains_key(d)));
            self.waiting = still;
            queue.extend(ready);
        }
        outcomes
    }

    /// Applies one receipt to its receiver, all or nothing.
    #[allow(clippy::too_many_lines)]
    fn apply(&mut self, r: Receipt) -> (Outcome, Vec<Receipt>) {
        let config = self.config.clone();
        let inputs: Vec<Option<Vec<u8>>> = r
            .input_data_ids
            .iter()
            .map(|d| self.data.remove(d).flatten())
            .collect();
        let promise_results = || -> Vec<PromiseResult> {
            inputs
                .iter()
                .map(|d| match d {
                    Some(v) => PromiseResult::Successful(Rc::from(v.as_slice())),
                    None => PromiseResult::Failed,
                })
                .collect()
        };
        let exists = self.accounts.contains_key(&r.receiver);
        let mut account = self
            .accounts
            .get(&r.receiver)
            .cloned()
            .unwrap_or_else(|| Account::new(0, &config));
        let mut gas_burnt = if r.is_refund {
            0
        } else {
            self.exec_fees(&r.actions)
        };
        let mut logs = Vec::new();
        let mut created: Vec<Receipt> = Vec::new();
        let mut result = Status::Value(vec![]);
        let mut refund_gas: u64 = 0;
        let mut deleted_to: Option<AccountId> = None;
        let mut created_account = false;

        let mut failure: Option<ActionError> = None;
        for (index, action) in r.actions.iter().enumerate() {
            let fail = |kind| {
                Some(ActionError {
                    index: Some(index as u64),
                    kind,
                })
            };
            if !exists && !created_account && !matches!(action, Action::CreateAccount(_)) {
                failure = fail(ActionErrorKind::AccountDoesNotExist {
                    account_id: r.receiver.clone(),
                });
                break;
            }
            match action {
                Action::CreateAccount(CreateAccountAction {}) => {
                    if exists || created_account {
                        failure = fail(ActionErrorKind::AccountAlreadyExists {
                            account_id: r.receiver.clone(),
                        });
                        break;
                    }
                    // Sub-accounts by their parent; top-level accounts by anyone, as the
                    // sandbox's registrar allows.
                    let parent_ok = r
                        .receiver
                        .get_parent_account_id()
                        .is_none_or(|p| p == r.predecessor.as_str());
                    if !parent_ok {
                        failure = fail(ActionErrorKind::CreateAccountNotAllowed {
                            account_id: r.receiver.clone(),
                            predecessor_id: r.predecessor.clone(),
                        });
                        break;
                    }
                    created_account = true;
                }
                Action::Transfer(TransferAction { deposit }) => {
                    account.amount += deposit.as_yoctonear();
                }
                Action::DeployContract(DeployContractAction { code }) => {
                    account.storage_usage =
                        account.storage_usage - account.code_storage + code.len() as u64;
                    account.code_storage = code.len() as u64;
                    account.code = Some(Arc::new(ContractCode::new(code.clone(), None)));
                }
                Action::DeployGlobalContract(deploy) => {
                    // nearcore burns the deployer's balance for the code's storage, at the
                    // global price per byte, instead of staking it on one account.
                    let cost = config
                        .fees
                        .storage_usage_config
                        .global_contract_storage_amount_per_byte
                        .as_yoctonear()
                        * deploy.code.len() as u128;
                    let Some(left) = account.amount.checked_sub(cost) else {
                        failure = fail(ActionErrorKind::LackBalanceForState {
                            account_id: r.receiver.clone(),
                            amount: Balance::from_yoctonear(cost - account.amount),
                        });
                        break;
                    };
                    account.amount = left;
                    let code = Arc::new(ContractCode::new(deploy.code.to_vec(), None));
                    let hash = *code.hash();
                    self.global_code.insert(hash, code);
                    if matches!(
                        deploy.deploy_mode,
                        near_primitives::action::GlobalContractDeployMode::AccountId
                    ) {
                        self.global_by_account.insert(r.receiver.clone(), hash);
                    }
                }
                Action::UseGlobalContract(using) => {
                    let (hash, id_len) = match &using.contract_identifier {
                        GlobalContractIdentifier::CodeHash(h) => (Some(*h), 32),
                        GlobalContractIdentifier::AccountId(a) => {
                            (self.global_by_account.get(a).copied(), a.len() as u64)
                        }
                    };
                    let Some(code) = hash.and_then(|h| self.global_code.get(&h).cloned()) else {
                        failure = fail(fn_error(format!(
                            "global contract {:?} does not exist",
                            using.contract_identifier
                        )));
                        break;
                    };
                    account.storage_usage = account.storage_usage - account.code_storage + id_len;
                    account.code_storage = id_len;
                    account.code = Some(code);
                }
                Action::AddKey(add) => {
                    let AddKeyAction {
                        public_key,
                        access_key,
                    } = add.as_ref();
                    if account.keys.contains_key(public_key) {
                        failure = fail(ActionErrorKind::AddKeyAlreadyExists {
                            account_id: r.receiver.clone(),
                            public_key: Box::new(public_key.clone()),
                        });
                        break;
                    }
                    account.storage_usage += Account::key_bytes(public_key, access_key, &config);
                    account.keys.insert(public_key.clone(), access_key.clone());
                }
                Action::DeleteKey(delete) => {
                    let DeleteKeyAction { public_key } = delete.as_ref();
                    let Some(key) = account.keys.remove(public_key) else {
                        failure = fail(ActionErrorKind::DeleteKeyDoesNotExist {
                            account_id: r.receiver.clone(),
                            public_key: Box::new(public_key.clone()),
                        });
                        break;
                    };
                    account.storage_usage -= Account::key_bytes(public_key, &key, &config);
                }
                Action::DeleteAccount(DeleteAccountAction { beneficiary_id }) => {
                    if r.predecessor != r.receiver {
                        failure = fail(ActionErrorKind::ActorNoPermission {
                            account_id: r.receiver.clone(),
                            actor_id: r.predecessor.clone(),
                        });
                        break;
                    }
                    deleted_to = Some(beneficiary_id.clone());
                }
                Action::FunctionCall(call) => {
                    let FunctionCallAction {
                        method_name,
                        args,
                        gas,
                        deposit,
                    } = call.as_ref();
                    account.amount += deposit.as_yoctonear();
                    let last = index + 1 == r.actions.len();
                    let receivers = if last {
                        r.output.iter().map(|o| o.receiver.clone()).collect()
                    } else {
                        vec![]
                    };
                    let run = self.run_function(
                        &mut account,
                        &r.receiver,
                        &r.predecessor,
                        &r.signer,
                        &r.signer_key,
                        method_name,
                        args,
                        deposit.as_yoctonear(),
                        *gas,
                        promise_results(),
                        r.id,
                        None,
                        receivers,
                    );
                    gas_burnt += run.burnt_gas;
                    refund_gas += gas.as_gas().saturating_sub(run.used_gas);
                    logs.extend(run.logs);
                    if let Some(message) = run.error {
                        failure = fail(fn_error(message));
                        break;
                    }
                    let base = created.len();
                    created.extend(Self::receipts_from(&r, &run.actions));
                    if last {
                        result = match run.return_data {
                            ReturnData::Value(v) => Status::Value(v),
                            ReturnData::ReceiptIndex(i) => Status::Receipt(
                                created[base + receipt_position(&run.actions, i)].id,
                            ),
                            ReturnData::None => Status::Value(vec![]),
                        };
                    }
                }
                other => {
                    failure = fail(fn_error(format!(
                        "action {other:?} is not supported by the local chain"
                    )));
                    break;
                }
            }
        }
        if failure.is_none()
            && deleted_to.is_none()
            && account.amount + account.locked < account.storage_cost(&config)
        {
            failure = Some(ActionError {
                index: None,
                kind: ActionErrorKind::LackBalanceForState {
                    account_id: r.receiver.clone(),
                    amount: Balance::from_yoctonear(
                        account.storage_cost(&config) - account.amount - account.locked,
                    ),
                },
            });
        }

        let mut refunds = Vec::new();
        let receipt_ids;
        if let Some(error) = failure {
            // All or nothing: the account is left as it was, nothing it created is sent,
            // and the deposits go back to whoever attached them.
            created.clear();
            result = Status::Failure(error);
            let deposits: u128 = r
                .actions
                .iter()
                .map(|a| a.get_deposit_balance().as_yoctonear())
                .sum();
            if deposits > 0 && !r.is_refund {
                refunds.push(Self::refund(&r, &r.refund_to, deposits, 0));
            }
            receipt_ids = vec![];
        } else {
            if let Some(beneficiary) = deleted_to {
                let amount = account.amount;
                self.accounts.remove(&r.receiver);
                if amount > 0 {
                    refunds.push(Self::refund(&r, &beneficiary, amount, 1));
                }
            } else {
                self.accounts.insert(r.receiver.clone(), account);
            }
            receipt_ids = created.iter().map(|c| c.id).collect();
        }
        if refund_gas > 0 && !r.is_refund {
            refunds.push(Self::refund(
                &r,
                &r.signer,
                u128::from(refund_gas) * r.gas_price,
                2,
            ));
        }
        // Deliver this receipt's result to whoever waits on it, or hand the waiters on to
        // the receipt whose result it returned.
        match &result {
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
        let mut all_ids = receipt_ids;
        all_ids.extend(refunds.iter().map(|x: &Receipt| x.id));
        created.extend(refunds);
        let outcome = Outcome {
            id: r.id,
            executor: r.receiver.clone(),
            logs,
            gas_burnt,
            tokens_burnt: u128::from(gas_burnt) * r.gas_price,
            receipt_ids: all_ids,
            status: result,
        };
        (outcome, created)
    }

    fn refund(r: &Receipt, to: &AccountId, amount: u128, kind: u64) -> Receipt {
        Receipt {
            id: derive(&r.id, b"refund", kind),
            predecessor: "system".parse().expect("valid account id"),
            receiver: to.clone(),
            signer: "system".parse().expect("valid account id"),
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

    /// The receipts a contract created, from the VM's action log.
    fn receipts_from(parent: &Receipt, log: &[MockAction]) -> Vec<Receipt> {
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
                        let p = position[dep];
                        out[p].output.push(DataReceiver {
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
                    let (index, action) = match other.clone() {
                        MockAction::CreateAccount { receipt_index } => (receipt_index, Action::CreateAccount(CreateAccountAction {})),
                        MockAction::DeployContract { receipt_index, code } => (receipt_index, Action::DeployContract(DeployContractAction { code })),
                        MockAction::FunctionCallWeight { receipt_index, method_name, args, attached_deposit, prepaid_gas, gas_weight: _ } => (
                            receipt_index,
                            Action::FunctionCall(Box::new(FunctionCallAction {
                                method_name: String::from_utf8_lossy(&method_name).into_owned(),
                                args,
                                gas: prepaid_gas,
                                deposit: attached_deposit,
                            })),
                        ),
                        MockAction::Transfer { receipt_index, deposit } => (receipt_index, Action::Transfer(TransferAction { deposit })),
                        MockAction::AddKeyWithFullAccess { receipt_index, public_key, nonce } => (
                            receipt_index,
                            Action::AddKey(Box::new(AddKeyAction { public_key, access_key: AccessKey { nonce, permission: AccessKeyPermission::FullAccess } })),
                        ),
                        MockAction::DeleteKey { receipt_index, public_key } => (receipt_index, Action::DeleteKey(Box::new(DeleteKeyAction { public_key }))),
                        MockAction::DeleteAccount { receipt_index, beneficiary_id } => (receipt_index, Action::DeleteAccount(DeleteAccountAction { beneficiary_id })),
                        MockAction::AddKeyWithFunctionCall { receipt_index, public_key, nonce, allowance, receiver_id, method_names } => (
                            receipt_index,
                            Action::AddKey(Box::new(AddKeyAction {
                                public_key,
                                access_key: AccessKey {
                                    nonce,
                                    permission: AccessKeyPermission::FunctionCall(near_primitives::account::FunctionCallPermission {
                                        allowance,
                                        receiver_id: receiver_id.to_string(),
                                        method_names: method_names.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect(),
                                    }),
                                },
                            })),
                        ),
                        MockAction::DeployGlobalContract { receipt_index, code, mode } => (
                            receipt_index,
                            Action::DeployGlobalContract(near_primitives::action::DeployGlobalContractAction {
                                code: code.into(),
                                deploy_mode: match mode {
                                    near_vm_runner::logic::types::GlobalContractDeployMode::CodeHash => near_primitives::action::GlobalContractDeployMode::CodeHash,
                                    near_vm_runner::logic::types::GlobalContractDeployMode::AccountId => near_primitives::action::GlobalContractDeployMode::AccountId,
                                },
                            }),
                        ),
                        MockAction::UseGlobalContract { receipt_index, contract_id } => (
                            receipt_index,
                            Action::UseGlobalContract(Box::new(near_primitives::action::UseGlobalContractAction {
                                contract_identifier: match contract_id {
                                    near_vm_runner::logic::types::GlobalContractIdentifier::CodeHash(h) => GlobalContractIdentifier::CodeHash(h),
                                    near_vm_runner::logic::types::GlobalContractIdentifier::AccountId(a) => GlobalContractIdentifier::AccountId(a),
                                },
                            })),
                        ),
                        MockAction::Stake { receipt_index, stake, public_key } => {
                            (receipt_index, Action::Stake(Box::new(near_primitives::action::StakeAction { stake, public_key })))
                        }
                        unsupported => {
                            // Global contracts, state init and gas keys: not modelled. The
                            // receipt gets a stake action, which `apply` refuses by name.
                            let index = serde_json::to_value(&unsupported)
                                .ok()
                                .and_then(|v| v.as_object()?.values().next()?.get("receipt_index")?.as_u64())
                                .unwrap_or(0);
                            (index, Action::Stake(Box::new(near_primitives::action::StakeAction {
                                stake: Balance::ZERO,
                                public_key: PublicKey::empty(near_crypto::KeyType::ED25519),
                            })))
                        }
                    };
                    out[position[&index]].actions.push(action);
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn run_function(
        &self,
        account: &mut Account,
        receiver: &AccountId,
        predecessor: &AccountId,
        signer: &AccountId,
        signer_key: &PublicKey,
        method: &str,
        args: &[u8],
        deposit: u128,
        gas: Gas,
        promise_results: Vec<PromiseResult>,
        receipt_id: CryptoHash,
        view_config: Option<near_primitives_core::config::ViewConfig>,
        output_data_receivers: Vec<AccountId>,
    ) -> FunctionRun {
        let Some(code) = account.code.clone() else {
            return FunctionRun::failed(format!(
                "CompilationError(CodeDoesNotExist {{ account_id: \"{receiver}\" }})"
            ));
        };
        let context = VMContext {
            current_account_id: receiver.clone(),
            signer_account_id: signer.clone(),
            signer_account_pk: borsh::to_vec(signer_key).expect("a key serializes"),
            predecessor_account_id: predecessor.clone(),
            refund_to_account_id: predecessor.clone(),
            input: Rc::from(args),
            promise_results: promise_results.into(),
            block_height: self.height,
            block_timestamp: self.timestamp_ns,
            epoch_height: 1,
            account_balance: Balance::from_yoctonear(account.amount),
            account_locked_balance: Balance::from_yoctonear(account.locked),
            storage_usage: account.storage_usage,
            account_contract: AccountContract::Local(*code.hash()),
            attached_deposit: Balance::from_yoctonear(deposit),
            prepaid_gas: gas,
            random_seed: receipt_id.as_ref().to_vec(),
            view_config,
            output_data_receivers,
        };
        let wasm_config = self.config.wasm_config.clone();
        let contract = StoredCode(code);
        let gas_counter = context.make_gas_counter(&wasm_config);
        let prepared = near_vm_runner::prepare(
            &contract,
            wasm_config,
            Some(&self.cache),
            gas_counter,
            method,
        );
        let mut ext = AccountExt::new(
            std::mem::take(&mut account.storage),
            &self.chain_id,
            receipt_id,
        );
        let result = near_vm_runner::run(prepared, &mut ext, &context, self.config.fees.clone());
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                account.storage = ext.inner.fake_trie;
                return FunctionRun::failed(format!("{e:?}"));
            }
        };
        if let Some(error) = &outcome.aborted {
            // The VM's own rendering: "Smart contract panicked: <message>" for a panic.
            let message = match error {
                near_vm_runner::logic::errors::FunctionCallError::HostError(h) => h.to_string(),
                other => format!("{other:?}"),
            };
            // Storage is left as it was: `apply` restores the whole account anyway.
            account.storage = ext.inner.fake_trie;
            return FunctionRun {
                burnt_gas: outcome.burnt_gas.as_gas(),
                used_gas: outcome.used_gas.as_gas(),
                logs: outcome.logs,
                error: Some(message),
                actions: vec![],
                return_data: ReturnData::None,
            };
        }
        account.storage = ext.inner.fake_trie;
        account.amount = outcome.balance.as_yoctonear();
        account.storage_usage = outcome.storage_usage;
        let mut actions = ext.inner.action_log;
        let unused = gas.as_gas().saturating_sub(outcome.used_gas.as_gas());
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

/// Gives unused gas to function calls created with a weight, in proportion (nearcore's
/// `ReceiptManager::distribute_gas`); returns how much was given.
fn distribute_gas(actions: &mut [MockAction], unused: u64) -> u64 {
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

/// Position among created receipts of the receipt at action-log index `index`.
fn receipt_position(log: &[MockAction], index: u64) -> usize {
    log[..usize::try_from(index).expect("an action-log index fits in usize")]
        .iter()
        .filter(|a| matches!(a, MockAction::CreateReceipt { .. }))
        .count()
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

struct Fees {
    send: u64,
    prepaid: u64,
}

struct FunctionRun {
    burnt_gas: u64,
    used_gas: u64,
    logs: Vec<String>,
    error: Option<String>,
    actions: Vec<MockAction>,
    return_data: ReturnData,
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

/// A signer for an account's key.
pub fn signer(account: &AccountId, key: SecretKey) -> Signer {
    near_crypto::InMemorySigner::from_secret_key(account.clone(), key)
}

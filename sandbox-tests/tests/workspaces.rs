//! The hub's life cycle as ordinary near-workspaces tests. By default they start the local
//! chain in-process and connect to it over JSON-RPC; with `NEAR_SANDBOX_RPC_ADDR` (and
//! `NEAR_SANDBOX_ROOT_ACCOUNT`, `NEAR_SANDBOX_ROOT_KEY`) they run unchanged against a real
//! `neard` sandbox instead.

use market_hub_api::{
    methods, Call, License, ManifestEntry, ReceiptOutcome, RejectCode, RunnerPolicy, SettleResult,
    View,
};
use market_protocol::SettleItem;
use near_workspaces::{
    network::{Sandbox, ValidatorKey},
    result::ExecutionFinalResult,
    types::{Gas, NearToken, SecretKey},
    Account, AccountId, Contract, Worker,
};
use sandbox_tests::{config, version_input, wasm, CHAIN_ID, HOUR_NS, MODEL};
use serde_json::{json, Value};

/// Sends hub call `c` from `account` (near-workspaces as the interface's transport): its
/// method, arguments, deposit and gas all come from the descriptor.
async fn transact<R>(account: &Account, hub: &AccountId, c: &Call<R>) -> ExecutionFinalResult {
    account
        .call(hub, c.method)
        .args(c.args.clone())
        .deposit(NearToken::from_yoctonear(c.deposit))
        .gas(Gas::from_gas(c.gas))
        .transact()
        .await
        .unwrap_or_else(|e| panic!("sending {}: {e}", c.method))
}

/// A hub call that must succeed: its result, decoded by the method's own decoder.
async fn call<R>(account: &Account, hub: &AccountId, c: Call<R>) -> R {
    let bytes = transact(account, hub, &c)
        .await
        .raw_bytes()
        .unwrap_or_else(|e| panic!("{} by {}: {e:?}", c.method, account.id()));
    c.decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// A hub view, decoded.
async fn view<R>(worker: &Worker<Sandbox>, hub: &AccountId, v: View<R>) -> R {
    let bytes = worker
        .view(hub, v.method)
        .args(v.args.clone())
        .await
        .unwrap_or_else(|e| panic!("view {}: {e}", v.method))
        .result;
    v.decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

async fn worker() -> Worker<Sandbox> {
    let (url, root, key) = if let Ok(url) = std::env::var("NEAR_SANDBOX_RPC_ADDR") {
        (
            url,
            std::env::var("NEAR_SANDBOX_ROOT_ACCOUNT").unwrap_or_else(|_| "test.near".into()),
            std::env::var("NEAR_SANDBOX_ROOT_KEY")
                .expect("NEAR_SANDBOX_ROOT_KEY: the sandbox's validator secret key"),
        )
    } else {
        let (addr, key) = sandbox_tests::start_local_node().await;
        (format!("http://{addr}"), "test.near".to_owned(), key)
    };
    let key: SecretKey = key.parse().expect("a secret key");
    near_workspaces::sandbox()
        .rpc_addr(&url)
        .validator_key(ValidatorKey::Known(root.parse().unwrap(), key))
        .await
        .expect("connects to the node")
}

fn yocto(v: &Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

struct Setup {
    worker: Worker<Sandbox>,
    hub: Contract,
    dev: Account,
    owner: Account,
    runner: Account,
    user: Account,
    runner_key: market_protocol::crypto::native::KeyPair,
    user_key: market_protocol::crypto::native::KeyPair,
}

async fn setup() -> Setup {
    let worker = worker().await;
    let root = worker.root_account().unwrap();
    let sub = |name: &'static str, near: u128| {
        let root = root.clone();
        async move {
            root.create_subaccount(name)
                .initial_balance(NearToken::from_near(near))
                .transact()
                .await
                .unwrap()
                .into_result()
                .unwrap()
        }
    };
    let hub_account = sub("hub", 30).await;
    let hub = hub_account
        .deploy(&wasm("market_hub"))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let owner = sub("owner", 5).await;
    call(&hub_account, hub.id(), methods::new(owner.id(), &config())).await;
    let dev = sub("dev", 10).await;
    let storage = NearToken::from_millinear(100).as_yoctonear();
    call(
        &dev,
        hub.id(),
        methods::register_model(MODEL, 1000, 2000, 7000, &RunnerPolicy::Open).deposit(storage),
    )
    .await;
    call(
        &dev,
        hub.id(),
        methods::add_model_version(MODEL, &version_input()).deposit(storage),
    )
    .await;
    let runner = sub("runner", 10).await;
    let runner_key = market_protocol::crypto::native::KeyPair::from_seed([2; 32]);
    call(
        &runner,
        hub.id(),
        methods::register_runner(&[runner_key.public_key()])
            .deposit(NearToken::from_near(2).as_yoctonear()),
    )
    .await;
    let user = sub("alice", 10).await;
    let user_key = market_protocol::crypto::native::KeyPair::from_seed([1; 32]);
    call(
        &user,
        hub.id(),
        methods::register_user_key(&user_key.public_key()).deposit(storage),
    )
    .await;
    call(
        &user,
        hub.id(),
        methods::fund_channel(runner.id()).deposit(NearToken::from_near(5).as_yoctonear()),
    )
    .await;
    Setup {
        worker,
        hub,
        dev,
        owner,
        runner,
        user,
        runner_key,
        user_key,
    }
}

fn item(
    s: &Setup,
    auth: &market_protocol::SignedAuthorization,
    seq: u64,
    amount: u128,
) -> SettleItem {
    sandbox_tests::signed_receipt(auth, &s.runner_key, seq, amount, 0)
}

fn authorization(s: &Setup, cap: u128, expires_at_ns: u64) -> market_protocol::SignedAuthorization {
    market_protocol::SignedAuthorization::sign(
        market_protocol::Authorization {
            hub: s.hub.id().as_str().parse().unwrap(),
            chain_id: CHAIN_ID.into(),
            user: s.user.id().as_str().parse().unwrap(),
            runner: s.runner.id().as_str().parse().unwrap(),
            cap: cap.into(),
            expires_at_ns: expires_at_ns.into(),
            models: vec![market_protocol::authorization::ModelCeiling::unbounded(
                "smollm2-135m",
            )],
            content: vec![],
            public_key: s.user_key.public_key(),
        },
        [7; 32],
        &s.user_key,
    )
}

/// `settle` sent by the runner with 300 Tgas.
async fn settle(s: &Setup, items: &[SettleItem]) -> Vec<ReceiptOutcome> {
    call(
        &s.runner,
        s.hub.id(),
        methods::settle(items).gas(Gas::from_tgas(300).as_gas()),
    )
    .await
}

/// The code a receipt was rejected with.
fn rejected(o: &ReceiptOutcome) -> RejectCode {
    match &o.result {
        SettleResult::Rejected { code, .. } => *code,
        SettleResult::Settled { .. } => panic!("settled: {o:?}"),
    }
}

async fn runner_earnings(s: &Setup) -> u128 {
    view(&s.worker, s.hub.id(), methods::runner(s.runner.id()))
        .await
        .expect("the runner is registered")
        .earnings
        .0
}

#[tokio::test]
async fn hub_life_cycle_over_json_rpc() {
    let s = setup().await;
    let block = s.worker.view_block().await.unwrap();
    let auth = authorization(
        &s,
        NearToken::from_near(1).as_yoctonear(),
        block.timestamp() + 1_000 * HOUR_NS,
    );

    let outcomes = settle(
        &s,
        &[item(&s, &auth, 1, 1_000_000), item(&s, &auth, 2, 3_000_000)],
    )
    .await;
    match &outcomes[1].result {
        SettleResult::Settled { charge, .. } => assert_eq!(charge.0, 2_000_000),
        SettleResult::Rejected { .. } => panic!("rejected: {:?}", outcomes[1]),
    }
    // Replay of the same receipts pays nothing.
    let replay = settle(&s, &[item(&s, &auth, 2, 3_000_000)]).await;
    assert_eq!(rejected(&replay[0]), RejectCode::StaleSequence);

    assert_eq!(runner_earnings(&s).await, 2_100_000);

    // Earnings out.
    let before = s.runner.view_account().await.unwrap().balance;
    let tgas_50 = Gas::from_tgas(50).as_gas();
    call(
        &s.runner,
        s.hub.id(),
        methods::withdraw_earnings(None).gas(tgas_50),
    )
    .await;
    assert_eq!(runner_earnings(&s).await, 0);
    assert!(
        s.runner.view_account().await.unwrap().balance
            < before.saturating_add(NearToken::from_yoctonear(2_100_000)),
        "paid gas"
    );

    // Unspent funds out, after the delay, moved with fast_forward.
    call(
        &s.user,
        s.hub.id(),
        methods::request_withdrawal(s.runner.id()),
    )
    .await;
    let finish = || methods::finish_withdrawal(s.runner.id()).gas(tgas_50);
    let early = transact(&s.user, s.hub.id(), &finish()).await;
    assert!(format!("{:?}", early.into_result().unwrap_err())
        .contains("Smart contract panicked: withdrawal is possible from"));
    s.worker.fast_forward(2 * 3_600 + 10).await.unwrap();
    call(&s.user, s.hub.id(), finish()).await;
    let channel = view(
        &s.worker,
        s.hub.id(),
        methods::channel(s.user.id(), s.runner.id()),
    )
    .await
    .expect("the channel stays");
    assert_eq!(channel.unspent.0, 0);
}

#[tokio::test]
async fn attacks_replayed_against_the_wasm() {
    let s = setup().await;
    let now = s.worker.view_block().await.unwrap().timestamp();
    let auth = authorization(&s, 5_000, now + 1_000 * HOUR_NS);
    let expired = authorization(&s, 5_000, now);
    let mut wrong_hub = authorization(&s, 5_000, now + 1_000 * HOUR_NS).authorization;
    wrong_hub.hub = "other-hub.test.near".parse().unwrap();
    let wrong_hub = market_protocol::SignedAuthorization::sign(wrong_hub, [8; 32], &s.user_key);
    let mut forged_user = authorization(&s, 6_000, now + 1_000 * HOUR_NS);
    forged_user.signature.0[0] ^= 1;
    let outcomes = settle(
        &s,
        &[
            item(&s, &auth, 1, 5_001),
            item(&s, &expired, 1, 10),
            item(&s, &wrong_hub, 1, 10),
            item(&s, &forged_user, 1, 10),
        ],
    )
    .await;
    let codes: Vec<_> = outcomes.iter().map(rejected).collect();
    assert_eq!(
        codes,
        [
            RejectCode::OverCap,
            RejectCode::Expired,
            RejectCode::WrongHub,
            RejectCode::BadUserSignature
        ]
    );

    // Admin power stays with the owner: a panic surfaces as a failed outcome with its message.
    let err = transact(&s.user, s.hub.id(), &methods::pause())
        .await
        .into_result()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains(&format!("{} is not the hub owner", s.user.id())),
        "{err:?}"
    );
    // Unpaid storage is refused.
    let unpaid = methods::register_model("free-rider", 1, 1, 7000, &RunnerPolicy::Open);
    let err = transact(&s.user, s.hub.id(), &unpaid)
        .await
        .into_result()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("registering a model needs"),
        "{err:?}"
    );
}

#[tokio::test]
async fn token_issuance_flush_and_claims_over_json_rpc() {
    let s = setup().await;
    let root = s.worker.root_account().unwrap();
    let curator = root
        .create_subaccount("curator")
        .initial_balance(NearToken::from_near(5))
        .transact()
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let (dev, owner) = (s.dev.clone(), s.owner.clone());
    call(
        &curator,
        s.hub.id(),
        methods::register_content(
            "corpus",
            [0; 32].into(),
            "https://x/c",
            &License::OpenForTraining,
        )
        .deposit(NearToken::from_millinear(100).as_yoctonear()),
    )
    .await;
    let three_near = NearToken::from_near(3).as_yoctonear();
    call(
        &owner,
        s.hub.id(),
        methods::set_token_code(&wasm("model_token")).deposit(three_near),
    )
    .await;
    let manifest = [ManifestEntry {
        content_id: "corpus".into(),
        weight: 30,
    }];
    call(
        &dev,
        s.hub.id(),
        methods::issue_token(MODEL, "SMOL", &manifest, 70).deposit(three_near),
    )
    .await;
    let token: AccountId = format!("{MODEL}.{}", s.hub.id()).parse().unwrap();
    let balance = |who: AccountId| {
        let (worker, token) = (s.worker.clone(), token.clone());
        async move {
            yocto(
                &worker
                    .view(&token, "ft_balance_of")
                    .args_json(json!({"account_id": who}))
                    .await
                    .unwrap()
                    .json::<Value>()
                    .unwrap(),
            )
        }
    };
    assert_eq!(balance(dev.id().clone()).await, 700_000 * 10u128.pow(18));
    assert_eq!(
        balance(curator.id().clone()).await,
        300_000 * 10u128.pow(18)
    );

    let now = s.worker.view_block().await.unwrap().timestamp();
    let auth = authorization(
        &s,
        NearToken::from_near(1).as_yoctonear(),
        now + 1_000 * HOUR_NS,
    );
    settle(&s, &[item(&s, &auth, 1, 50_000_000)]).await;
    let accrued = |s: &Setup| {
        let (worker, hub) = (s.worker.clone(), s.hub.id().clone());
        async move {
            view(&worker, &hub, methods::model(MODEL))
                .await
                .expect("the model is registered")
                .model
                .holders_accrued
                .0
        }
    };
    assert_eq!(accrued(&s).await, 10_000_000);

    // Break the token's state: its `on_revenue` fails, the flush's callback sees it and the
    // accrual is back, nothing lost.
    let state = s.worker.view_state(&token).await.unwrap();
    let original = state[b"STATE".as_slice()].clone();
    s.worker
        .patch_state(&token, b"STATE", b"broken")
        .await
        .unwrap();
    let flush = || methods::flush(MODEL).gas(Gas::from_tgas(100).as_gas());
    let failed = transact(&s.runner, s.hub.id(), &flush()).await;
    assert!(!failed.failures().is_empty(), "on_revenue failed");
    assert!(
        failed.logs().iter().any(|l| l.contains("payout_failed")),
        "{:?}",
        failed.logs()
    );
    assert!(!flush().decode(&failed.raw_bytes().unwrap()).unwrap());
    assert_eq!(accrued(&s).await, 10_000_000);

    // Repaired, the retry goes through; holders claim exactly 70 % and 30 %.
    s.worker
        .patch_state(&token, b"STATE", &original)
        .await
        .unwrap();
    assert!(call(&s.runner, s.hub.id(), flush()).await);
    assert_eq!(accrued(&s).await, 0);
    let claimable = |who: AccountId| {
        let (worker, token) = (s.worker.clone(), token.clone());
        async move {
            yocto(
                &worker
                    .view(&token, "claimable")
                    .args_json(json!({"account_id": who}))
                    .await
                    .unwrap()
                    .json::<Value>()
                    .unwrap(),
            )
        }
    };
    assert_eq!(claimable(dev.id().clone()).await, 7_000_000);
    assert_eq!(claimable(curator.id().clone()).await, 3_000_000);
    let claimed = curator
        .call(&token, "claim")
        .transact()
        .await
        .unwrap()
        .json::<String>()
        .unwrap();
    assert_eq!(claimed, "3000000");
    assert_eq!(claimable(curator.id().clone()).await, 0);
}

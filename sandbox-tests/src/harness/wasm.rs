//! The harness's second target: the compiled hub wasm on the local chain, driven by signed
//! transactions from each actor's own account, read back through its views.

use near_sdk::{AccountId, PublicKey};
use serde_json::{json, Value};

use super::{user_keys, Observed, Target, RUNNER_OWN, WIKI, WIKI_PRICE};
use crate::{acc, yocto, Market, MODEL, NEAR, TGAS};

/// The local chain's block time advances one block per transaction.
const BLOCK_NS: u64 = local_chain::chain::BLOCK_NS;

pub struct WasmTarget {
    m: Market,
}

impl WasmTarget {
    /// The `Market` fixture's hub, model and runner, with the harness's users (their keys
    /// registered, their channels opened), a relayer, an outsider, the wiki's owner and the
    /// runner's own content.
    pub fn new() -> Self {
        let mut m = Market::new(0);
        let hub = m.hub.clone();
        for (user, key) in user_keys() {
            let account = m.env.create_account(user.as_str(), 1_000 * NEAR);
            m.env
                .call(
                    &account,
                    &hub,
                    "register_user_key",
                    json!({"key": key}),
                    NEAR / 10,
                )
                .result()
                .expect("register_user_key");
            m.env
                .call(
                    &account,
                    &hub,
                    "fund_channel",
                    json!({"runner": m.runner}),
                    NEAR / 10,
                )
                .result()
                .expect("fund_channel");
        }
        for name in ["relayer.near", "mallory.near"] {
            m.env.create_account(name, 10 * NEAR);
        }
        let wiki = m.env.create_account("wiki.near", 10 * NEAR);
        let license = json!({"InferenceOnly": {"price_per_use": WIKI_PRICE.to_string()}});
        m.env
            .call(&wiki, &hub, "register_content", json!({"content_id": WIKI, "sha256": "11111111111111111111111111111111", "uri": "https://wiki.example", "license": license}), NEAR / 10)
            .result()
            .expect("register_content");
        let runner = m.runner.clone();
        let license = json!({"InferenceOnly": {"price_per_use": "1000000000"}});
        m.env
            .call(&runner, &hub, "register_content", json!({"content_id": RUNNER_OWN, "sha256": "11111111111111111111111111111111", "uri": "https://runner.example", "license": license}), NEAR / 10)
            .result()
            .expect("register_content");
        Self { m }
    }

    fn view(&self, method: &str, args: Value) -> Value {
        self.m.env.view(&self.m.hub, method, args)
    }

    fn call(&mut self, who: &str, method: &str, args: Value, deposit: u128) -> Value {
        let hub = self.m.hub.clone();
        let bytes = self
            .m
            .env
            .call(&acc(who), &hub, method, args, deposit)
            .result()
            .unwrap_or_else(|e| panic!("{method} by {who}: {e}"));
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON result")
        }
    }

    fn update_model(&mut self, policy: Value) {
        self.call(
            "dev.near",
            "update_model",
            json!({"model_id": MODEL, "update": {"runner_policy": policy}}),
            NEAR / 100,
        );
    }
}

impl Default for WasmTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for WasmTarget {
    fn now(&self) -> u64 {
        // A transaction executes in the next block.
        self.m.env.chain.timestamp_ns() + BLOCK_NS
    }
    fn tolerance_ns(&self) -> u64 {
        3 * BLOCK_NS
    }
    fn wait(&mut self, ns: u64) {
        self.m.env.chain.fast_forward(ns / BLOCK_NS);
    }
    fn fund(&mut self, user: &AccountId, amount: u128) {
        let runner = self.m.runner.clone();
        self.call(
            user.as_str(),
            "fund_channel",
            json!({"runner": runner}),
            amount,
        );
    }
    fn settle(&mut self, item: &market_protocol::SettleItem, submitter: &str) -> Option<u128> {
        let result = self
            .m
            .settle_as(&acc(submitter), std::slice::from_ref(item), 300 * TGAS)
            .result()
            .unwrap_or_else(|e| panic!("settle by {submitter} failed as a transaction: {e}"));
        let outcomes: Vec<Value> = serde_json::from_slice(&result).expect("outcomes");
        outcomes[0]["result"]
            .get("settled")
            .map(|s| yocto(&s["charge"]))
    }
    fn register_user_key(&mut self, user: &AccountId, key: &PublicKey) {
        self.call(
            user.as_str(),
            "register_user_key",
            json!({"key": key}),
            NEAR / 10,
        );
    }
    fn revoke_user_key(&mut self, user: &AccountId, key: &PublicKey) -> u64 {
        self.call(user.as_str(), "revoke_user_key", json!({"key": key}), 0);
        // The end of the notice the hub stamped on the pinned authorization, if it pinned
        // one signed by this key; otherwise nothing depends on it.
        let runner = self.m.runner.clone();
        let channel = self.view("channel", json!({"user": user, "runner": runner}));
        let until = &channel["channel"]["authorization"]["revoked_until_ns"];
        until
            .as_str()
            .map_or(u64::MAX, |s| s.parse().expect("a U64"))
    }
    fn drop_runner(&mut self) -> u64 {
        self.update_model(json!({"Allowlist": ["other.near"]}));
        let model = self.view("model", json!({"model_id": MODEL}));
        model["model"]["pending_terms"]["effective_at_ns"]
            .as_str()
            .expect("the narrowing is scheduled")
            .parse()
            .expect("a U64")
    }
    fn restore_runner(&mut self) {
        self.update_model(json!("Open"));
    }
    fn request_withdrawal(&mut self, user: &AccountId) -> Option<u64> {
        let runner = self.m.runner.clone();
        self.call(
            user.as_str(),
            "request_withdrawal",
            json!({"runner": runner}),
            0,
        );
        let channel = self.view("channel", json!({"user": user, "runner": runner}));
        let ready = &channel["channel"]["withdrawal"]["ready_at_ns"];
        Some(ready.as_str().expect("requested").parse().expect("a U64"))
    }
    fn finish_withdrawal(&mut self, user: &AccountId) -> Option<u128> {
        let runner = self.m.runner.clone();
        let view = |t: &Self| {
            yocto(&t.view("channel", json!({"user": user, "runner": runner}))["unspent"])
        };
        let before = view(self);
        let hub = self.m.hub.clone();
        let done = self
            .m
            .env
            .call(
                &acc(user.as_str()),
                &hub,
                "finish_withdrawal",
                json!({"runner": runner}),
                1,
            )
            .result()
            .is_ok();
        done.then(|| before - view(self))
    }
    fn observe(&self, users: &[AccountId]) -> Observed {
        let runner = self.m.runner.clone();
        let model = self.view("model", json!({"model_id": MODEL}));
        Observed {
            runner: yocto(&self.view("runner", json!({"runner": runner}))["earnings"]),
            holders: yocto(&model["model"]["holders_accrued"]),
            protocol: yocto(&self.view("hub_info", json!({}))["protocol_earnings"]),
            wiki: yocto(&self.view("content_earnings", json!({"owner": "wiki.near"}))),
            runner_content: yocto(&self.view("content_earnings", json!({"owner": runner}))),
            channels: users
                .iter()
                .map(|u| {
                    let c = &self.view("channel", json!({"user": u, "runner": runner}))["channel"];
                    (
                        yocto(&c["deposited"]),
                        yocto(&c["settled"]),
                        u64::try_from(yocto(&c["last_seq"])).expect("a U64"),
                    )
                })
                .collect(),
        }
    }
}

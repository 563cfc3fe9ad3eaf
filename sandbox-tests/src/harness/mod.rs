//! The adversarial harness: seeded random sequences of honest and hostile actions against
//! the hub's settlement engine, every balance compared after every step with a reference
//! model of the market written here in plain Rust.
//!
//! The reference model does not call the hub's engine, fee split or ledger: it keeps its
//! own books (escrow, pinned authorizations and their baselines, earnings, accruals) and
//! decides from its own rules whether each receipt must settle and what each party must be
//! credited. The target is the hub's `Engine` over an in-memory `Ledger` (the same engine
//! the contract runs, without the VM), so a million steps take seconds.
//!
//! Actors: two users (alice, bob), the runner, the model's owner (who narrows its runner
//! policy), the content owner (wiki), a relayer that submits the runner's receipts, an
//! outsider (mallory) with a key of its own, and time. Attacks: forged signatures,
//! replays, receipts signed by an unregistered key, another channel's authorization,
//! another hub's, amounts over the cap, over the signed price ceilings, units over the
//! per-request limit, content the user never allowed, decreasing cumulative amounts, and
//! receipts after the user's key was revoked or the model's policy dropped the runner.
//! On the wasm target, users also withdraw their unspent escrow after the delay, while
//! the runner keeps settling: a refund must never include what the runner earned.
//! A failing seed is printed; `HARNESS_SEED=<seed> HARNESS_STEPS=<n>` replays it.

pub mod wasm;

use std::collections::HashMap;

use market_hub::{
    engine::{ContentTerms, Context, Engine, Ledger, ModelTerms},
    pause::Pauses,
    state::{AccountKey, Channel, RunnerPolicy, RunnerTerms},
};
use market_protocol::{
    authorization::ModelCeiling, crypto::native::KeyPair, receipt::next_transcript,
    testing::AuthorizationBuilder, ChannelId, ContentLine, NativeCrypto, SettleItem,
    SignedAuthorization, SignedReceipt, UsageLine, UsageReceipt,
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId, PublicKey,
};

/// xorshift64: deterministic per seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

const MODEL: &str = "smollm2-135m";
const WIKI: &str = "wiki";
const RUNNER_OWN: &str = "runner-own";
const CHAIN: &str = "localnet";
const HUB: &str = "hub.near";
const SECOND_NS: u64 = 1_000_000_000;
const WINDOW_NS: u64 = 3_600 * SECOND_NS;
const NOTICE_NS: u64 = 2 * WINDOW_NS;
const START_NS: u64 = 1_700_000_000 * SECOND_NS;
/// The model's prices (yocto per 1,000 units) and the users' signed ceilings: equal, so an
/// honest runner charges exactly up to what the hub allows.
const PRICE_IN: u128 = 1_000_000;
const PRICE_OUT: u128 = 3_000_000;
const MAX_UNITS: u64 = 2_000;
const WIKI_PRICE: u128 = 700_000;
const RUNNER_BPS: u16 = 7_000;
const PROTOCOL_BPS: u16 = 1_000;

fn acc(s: &str) -> AccountId {
    s.parse().expect("valid account id")
}

/// What the receipts of one run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub steps: u64,
    pub settled: u64,
    pub rejected: u64,
    pub attacks: u64,
    /// Escrow withdrawals that paid out (the wasm target only).
    pub withdrawals: u64,
}

/// The in-memory ledger the engine runs over.
#[derive(Default)]
pub struct Memory {
    runner_keys: HashMap<(AccountId, PublicKey), AccountKey>,
    user_keys: HashMap<(AccountId, PublicKey), AccountKey>,
    channels: HashMap<ChannelId, Channel>,
    terms: Option<RunnerTerms>,
    pending: Option<(RunnerTerms, u64)>,
    now_ns: u64,
    runner: u128,
    holders: u128,
    protocol: u128,
    content: HashMap<AccountId, u128>,
}

impl Ledger for Memory {
    fn runner_key(&self, runner: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        self.runner_keys
            .get(&(runner.clone(), key.clone()))
            .copied()
    }
    fn runner_left(&self, runner: &AccountId) -> Option<bool> {
        (runner.as_str() == "runner.near").then_some(false)
    }
    fn user_key(&self, user: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        self.user_keys.get(&(user.clone(), key.clone())).copied()
    }
    fn channel(&self, id: &ChannelId) -> Option<Channel> {
        self.channels.get(id).cloned()
    }
    fn model_terms(&self, model_id: &str) -> Option<ModelTerms> {
        let terms = match &self.pending {
            Some((t, at)) if self.now_ns >= *at => t.clone(),
            _ => self.terms.clone()?,
        };
        (model_id == MODEL).then_some(ModelTerms { versions: 1, terms })
    }
    fn sealed_admits(&self, _: &str, _: u32, _: &AccountId) -> bool {
        // The harness's model is in the clear; sealing has its own test (`sealing.rs`).
        true
    }
    fn content_terms(&self, content_id: &str) -> Option<ContentTerms> {
        match content_id {
            WIKI => Some(ContentTerms {
                owner: acc("wiki.near"),
                price_per_use: Some(WIKI_PRICE),
            }),
            RUNNER_OWN => Some(ContentTerms {
                owner: acc("runner.near"),
                price_per_use: Some(1_000_000_000),
            }),
            _ => None,
        }
    }
    fn put_channel(&mut self, id: ChannelId, channel: Channel) {
        self.channels.insert(id, channel);
    }
    fn credit_runner(&mut self, _: &AccountId, amount: u128) {
        self.runner += amount;
    }
    fn extend_exposure(&mut self, _: &AccountId, _: u64) {}
    fn credit_holders(&mut self, _: &str, amount: u128) {
        self.holders += amount;
    }
    fn credit_protocol(&mut self, amount: u128) {
        self.protocol += amount;
    }
    fn credit_content_owner(&mut self, owner: &AccountId, amount: u128) {
        *self.content.entry(owner.clone()).or_default() += amount;
    }
}

/// What the harness reads back from a target after every step.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub runner: u128,
    pub holders: u128,
    pub protocol: u128,
    /// Content earnings of wiki.near and of runner.near (which must never earn any).
    pub wiki: u128,
    pub runner_content: u128,
    /// Per user: deposited, settled, last sequence.
    pub channels: Vec<(u128, u128, u64)>,
}

/// A market the harness drives: the engine over memory, or the compiled wasm on the local
/// chain. Each method is one action of one actor; the harness decides what must happen.
pub trait Target {
    /// The block time the next action executes at.
    fn now(&self) -> u64;
    /// How far the target's clock may be from `now` for the action it runs: deadlines this
    /// close are judged either way, then the model follows the target.
    fn tolerance_ns(&self) -> u64;
    fn wait(&mut self, ns: u64);
    fn fund(&mut self, user: &AccountId, amount: u128);
    /// One receipt sent by `submitter`: the charge, or `None` if refused.
    fn settle(&mut self, item: &SettleItem, submitter: &str) -> Option<u128>;
    fn register_user_key(&mut self, user: &AccountId, key: &PublicKey);
    /// Revokes the key; returns when its pinned authorizations stop settling.
    fn revoke_user_key(&mut self, user: &AccountId, key: &PublicKey) -> u64;
    /// The model's owner drops the runner from its policy; returns when it takes effect.
    fn drop_runner(&mut self) -> u64;
    fn restore_runner(&mut self);
    /// The user asks for its unspent escrow back: the ready time the hub gave, or `None`
    /// where the target has no escrow withdrawals (the engine alone).
    fn request_withdrawal(&mut self, user: &AccountId) -> Option<u64>;
    /// The user takes its unspent escrow out: what was paid, or `None` if refused.
    fn finish_withdrawal(&mut self, user: &AccountId) -> Option<u128>;
    fn observe(&self, users: &[AccountId]) -> Observed;
}

/// The hub's engine over an in-memory ledger.
pub struct EngineTarget(Memory);

impl EngineTarget {
    pub fn new(users: &[(AccountId, PublicKey)]) -> Self {
        let mut memory = Memory {
            now_ns: START_NS,
            terms: Some(RunnerTerms {
                runner_bps: RUNNER_BPS,
                runner_policy: RunnerPolicy::Open,
            }),
            ..Memory::default()
        };
        memory.runner_keys.insert(
            (acc("runner.near"), runner_key().public_key()),
            AccountKey {
                revoked_at_ns: None,
            },
        );
        for (user, key) in users {
            memory.user_keys.insert(
                (user.clone(), key.clone()),
                AccountKey {
                    revoked_at_ns: None,
                },
            );
            memory.channels.insert(channel_id(user), Channel::default());
        }
        Self(memory)
    }
}

impl Target for EngineTarget {
    fn now(&self) -> u64 {
        self.0.now_ns
    }
    fn tolerance_ns(&self) -> u64 {
        0
    }
    fn wait(&mut self, ns: u64) {
        self.0.now_ns += ns;
    }
    fn fund(&mut self, user: &AccountId, amount: u128) {
        self.0
            .channels
            .get_mut(&channel_id(user))
            .expect("the user's channel")
            .deposited
            .0 += amount;
    }
    fn settle(&mut self, item: &SettleItem, submitter: &str) -> Option<u128> {
        let hub = acc(HUB);
        let submitter = acc(submitter);
        let pauses = Pauses::EMPTY;
        let ctx = Context {
            hub: &hub,
            submitter: &submitter,
            chain_id: CHAIN,
            now_ns: self.0.now_ns,
            protocol_fee_bps: PROTOCOL_BPS,
            pauses: &pauses,
            settlement_window_ns: WINDOW_NS,
        };
        let mut engine = Engine::new(&mut self.0, &NativeCrypto, ctx);
        let result = engine.settle(item).ok().map(|s| s.charge);
        engine
            .finalize()
            .expect("the engine's own conservation check holds");
        result
    }
    fn register_user_key(&mut self, user: &AccountId, key: &PublicKey) {
        self.0.user_keys.insert(
            (user.clone(), key.clone()),
            AccountKey {
                revoked_at_ns: None,
            },
        );
    }
    fn revoke_user_key(&mut self, user: &AccountId, key: &PublicKey) -> u64 {
        let now = self.0.now_ns;
        self.0.user_keys.insert(
            (user.clone(), key.clone()),
            AccountKey {
                revoked_at_ns: Some(U64(now)),
            },
        );
        // As the contract does: the pinned authorization carries the notice's end.
        if let Some(a) = self
            .0
            .channels
            .get_mut(&channel_id(user))
            .and_then(|c| c.authorization.as_mut())
            .filter(|a| &a.public_key == key)
        {
            a.revoked_until_ns = Some(U64(now + WINDOW_NS));
        }
        now + WINDOW_NS
    }
    fn drop_runner(&mut self) -> u64 {
        let at = self.0.now_ns + NOTICE_NS;
        self.0.pending = Some((
            RunnerTerms {
                runner_bps: RUNNER_BPS,
                runner_policy: RunnerPolicy::Allowlist(vec![acc("other.near")]),
            },
            at,
        ));
        at
    }
    fn restore_runner(&mut self) {
        self.0.pending = None;
    }
    fn request_withdrawal(&mut self, _: &AccountId) -> Option<u64> {
        None
    }
    fn finish_withdrawal(&mut self, _: &AccountId) -> Option<u128> {
        None
    }
    fn observe(&self, users: &[AccountId]) -> Observed {
        let m = &self.0;
        Observed {
            runner: m.runner,
            holders: m.holders,
            protocol: m.protocol,
            wiki: m.content.get(&acc("wiki.near")).copied().unwrap_or(0),
            runner_content: m.content.get(&acc("runner.near")).copied().unwrap_or(0),
            channels: users
                .iter()
                .map(|u| {
                    let c = &m.channels[&channel_id(u)];
                    (c.deposited.0, c.settled.0, c.last_seq.0)
                })
                .collect(),
        }
    }
}

fn channel_id(user: &AccountId) -> ChannelId {
    ChannelId {
        user: user.clone(),
        runner: acc("runner.near"),
    }
}

/// The reference model's view of one channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Books {
    deposited: u128,
    settled: u128,
    last_seq: u64,
    /// The settled model line (units in, units out, amount) and wiki line (uses, amount).
    line: (u64, u64, u128),
    wiki: (u64, u128),
    /// The pinned authorization's index and the baseline taken when it was pinned.
    pinned: Option<Pin>,
    /// When a requested withdrawal of the unspent escrow is ready.
    withdrawal: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    auth: usize,
    seq: u64,
    line: (u64, u64, u128),
    wiki: (u64, u128),
    revoked_until: Option<u64>,
}

/// What the runner has served on one channel and not yet had settled: its latest
/// cumulative receipt.
#[derive(Clone, Debug, Default)]
struct Served {
    seq: u64,
    line: (u64, u64, u128),
    wiki: (u64, u128),
    transcript: [u8; 32],
}

struct User {
    id: AccountId,
    key: KeyPair,
    /// Keys registered so far: a revoked key is replaced by a fresh one.
    keys: u64,
    auths: Vec<SignedAuthorization>,
    /// What each new authorization adds to the channel's cumulative cap.
    cap: u128,
    /// How long each of its authorizations lives.
    lifetime: u64,
    key_revoked_at: Option<u64>,
    books: Books,
    served: Served,
}

/// The market under test and its reference model, stepped together.
pub struct Harness<T> {
    target: T,
    users: Vec<User>,
    /// From when the runner may no longer serve the model (the owner's narrowing).
    dropped_at: Option<u64>,
    model: (u128, u128, u128, HashMap<AccountId, u128>),
    rng: Rng,
    pub tally: Tally,
}

/// The harness's two users and their first keys: what a target sets up.
pub fn user_keys() -> Vec<(AccountId, PublicKey)> {
    USERS
        .iter()
        .enumerate()
        .map(|(i, name)| (acc(name), first_key(i).public_key()))
        .collect()
}

const USERS: [&str; 2] = ["alice.near", "bob.near"];

fn first_key(i: usize) -> KeyPair {
    KeyPair::from_seed([10 + u8::try_from(i).expect("two users"); 32])
}

impl<T: Target> Harness<T> {
    pub fn new(seed: u64, target: T) -> Self {
        let start = target.now();
        let observed = target.observe(&USERS.map(acc));
        let mut users = Vec::new();
        for (i, name) in USERS.into_iter().enumerate() {
            let key = first_key(i);
            let mut user = User {
                id: acc(name),
                key,
                keys: 1,
                auths: Vec::new(),
                cap: 0,
                lifetime: 0,
                key_revoked_at: None,
                books: Books::default(),
                served: Served::default(),
            };
            // Generous and tight caps, long and short lives.
            user.cap = [5_000_000_000, 200_000_000][i];
            user.lifetime = [100, 10][i] * WINDOW_NS;
            // Whatever the target's channel already holds (the chain's first funding).
            user.books.deposited = observed.channels[i].0;
            let signed = sign(&user, HUB, 0, start, user.cap);
            user.auths.push(signed);
            users.push(user);
        }
        Self {
            target,
            users,
            dropped_at: None,
            model: (0, 0, 0, HashMap::new()),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            tally: Tally::default(),
        }
    }

    /// One random action, then every balance compared with the model.
    pub fn step(&mut self) -> Result<(), String> {
        self.tally.steps += 1;
        let u = usize::from(self.rng.next(2) == 1);
        match self.rng.next(100) {
            0..=39 => self.serve(u),
            40..=59 => {
                let by_runner = self.rng.next(2) == 0;
                self.settle_honest(u, by_runner)?;
            }
            60..=63 => self.fund(u),
            64 => self.withdraw(u)?,
            65..=66 => {
                let ns = self.rng.next(WINDOW_NS);
                self.target.wait(ns);
            }
            67 => self.resign(u),
            68 if self.rng.next(40) == 0 => self.revoke(u),
            69 if self.rng.next(60) == 0 => self.drop_runner(),
            70 if self.rng.next(30) == 0 => self.restore_runner(),
            _ => self.attack(u)?,
        }
        self.compare()
    }

    /// The runner serves one request off chain: its cumulative receipt grows, priced at the
    /// model's prices rounded down per request, within the signed per-request limit.
    fn serve(&mut self, u: usize) {
        let units_in = self.rng.next(MAX_UNITS / 2);
        let units_out = self.rng.next(MAX_UNITS - units_in);
        let amount = (u128::from(units_in) * PRICE_IN + u128::from(units_out) * PRICE_OUT) / 1_000;
        let with_wiki = self.rng.next(3) == 0;
        let s = &mut self.users[u].served;
        s.seq += 1;
        s.line.0 += units_in;
        s.line.1 += units_out;
        s.line.2 += amount;
        if with_wiki {
            s.wiki.0 += 1;
            s.wiki.1 += WIKI_PRICE;
        }
        let tag = s.seq.to_le_bytes()[0];
        s.transcript = next_transcript(&NativeCrypto, &s.transcript, &[tag; 32], &[!tag; 32]);
    }

    fn fund(&mut self, u: usize) {
        // A user leaving does not fund again (which would cancel its withdrawal) but now
        // and then.
        if self.users[u].books.withdrawal.is_some() && self.rng.next(10) != 0 {
            return;
        }
        let amount = u128::from(self.rng.next(300_000_000)) + 1;
        self.target.fund(&self.users[u].id, amount);
        let b = &mut self.users[u].books;
        b.deposited += amount;
        // Funding cancels a pending withdrawal.
        b.withdrawal = None;
    }

    /// The user requests its unspent escrow back, or takes it once the delay (the
    /// notice, 2 hours) has passed: runners settle in between, and a refund must never
    /// include what they earned.
    fn withdraw(&mut self, u: usize) -> Result<(), String> {
        let now = self.target.now();
        let tolerance = self.target.tolerance_ns();
        let id = self.users[u].id.clone();
        let Some(ready) = self.users[u].books.withdrawal else {
            self.users[u].books.withdrawal = self.target.request_withdrawal(&id);
            if let Some(ready) = self.users[u].books.withdrawal {
                if ready.abs_diff(now + NOTICE_NS) > tolerance {
                    return Err(format!(
                        "withdrawal ready at {ready}, the model says {}",
                        now + NOTICE_NS
                    ));
                }
            }
            return Ok(());
        };
        let b = &self.users[u].books;
        let due = b.deposited - b.settled;
        let got = self.target.finish_withdrawal(&id);
        let unsure = now.abs_diff(ready) <= tolerance;
        match got {
            Some(paid) if paid == due && (now >= ready || unsure) => {
                let b = &mut self.users[u].books;
                b.deposited = b.settled;
                b.withdrawal = None;
                self.tally.withdrawals += 1;
                Ok(())
            }
            None if now < ready || unsure => Ok(()),
            _ => Err(format!(
                "withdrawal of user {u} at {now} (ready {ready}): hub paid {got:?}, the model owes {due}"
            )),
        }
    }

    /// The user signs a new authorization (a fresh nonce and expiry), which the next
    /// receipt names; after a revocation, with a fresh key registered first.
    fn resign(&mut self, u: usize) {
        let now = self.target.now();
        let cap = self.next_cap(u);
        let user = &mut self.users[u];
        if user.key_revoked_at.take().is_some() {
            user.keys += 1;
            let mut seed = [100 + u8::try_from(u).expect("two users"); 32];
            seed[..8].copy_from_slice(&user.keys.to_le_bytes());
            user.key = KeyPair::from_seed(seed);
            self.target
                .register_user_key(&user.id, &user.key.public_key());
        }
        let n = user.auths.len();
        let signed = sign(user, HUB, n, now, cap);
        user.auths.push(signed);
    }

    /// The cumulative cap a new authorization of user `u` signs: what its runner has served
    /// so far plus its budget, so caps keep up with a long run.
    fn next_cap(&self, u: usize) -> u128 {
        let s = &self.users[u].served;
        s.line.2 + s.wiki.1 + self.users[u].cap
    }

    fn revoke(&mut self, u: usize) {
        let now = self.target.now();
        let user = &mut self.users[u];
        if user.key_revoked_at.is_some() {
            return;
        }
        user.key_revoked_at = Some(now);
        let until = self
            .target
            .revoke_user_key(&user.id, &user.key.public_key());
        // Only an authorization the revoked key signed carries the notice.
        let key = user.key.public_key();
        if let Some(pin) = user
            .books
            .pinned
            .as_mut()
            .filter(|p| user.auths[p.auth].authorization.public_key == key)
        {
            pin.revoked_until = Some(until);
        }
    }

    /// The model's owner drops the runner from its policy: scheduled after the notice.
    fn drop_runner(&mut self) {
        if self.dropped_at.is_none() {
            self.dropped_at = Some(self.target.drop_runner());
        }
    }

    /// The owner allows the runner again: a widening, in effect at once.
    fn restore_runner(&mut self) {
        if self.dropped_at.take().is_some() {
            self.target.restore_runner();
        }
    }

    fn receipt(&self, u: usize, served: &Served, auth: usize) -> UsageReceipt {
        let user = &self.users[u];
        let mut content = Vec::new();
        if served.wiki.0 > 0 {
            content.push(ContentLine {
                content_id: WIKI.into(),
                uses: U64(served.wiki.0),
                amount: U128(served.wiki.1),
            });
        }
        UsageReceipt {
            user: user.id.clone(),
            runner: acc("runner.near"),
            authorization: user.auths[auth].prehash(&NativeCrypto).into(),
            seq: U64(served.seq),
            lines: vec![UsageLine {
                model_id: MODEL.into(),
                version: 1,
                units_in: U64(served.line.0),
                units_out: U64(served.line.1),
                amount: U128(served.line.2),
            }],
            content,
            amount: U128(served.line.2 + served.wiki.1),
            request_hash: [1; 32].into(),
            output_hash: [2; 32].into(),
            transcript: served.transcript.into(),
            issued_at_ns: U64(self.target.now()),
        }
    }

    fn item(&self, u: usize, receipt: UsageReceipt, key: &KeyPair, auth: usize) -> SettleItem {
        SettleItem {
            receipt: SignedReceipt::sign(receipt, key),
            authorization: Some(self.users[u].auths[auth].clone()),
        }
    }

    /// Runs one receipt through the target as `submitter`.
    fn run(&mut self, item: &SettleItem, submitter: &str) -> Option<u128> {
        let result = self.target.settle(item, submitter);
        match result {
            Some(_) => self.tally.settled += 1,
            None => self.tally.rejected += 1,
        }
        result
    }

    /// The runner's latest receipt, under the newest authorization: the model decides
    /// whether it must settle and what it pays.
    fn settle_honest(&mut self, u: usize, by_runner: bool) -> Result<(), String> {
        let served = self.users[u].served.clone();
        if served.seq == 0 {
            return Ok(());
        }
        let auth = self.users[u].auths.len() - 1;
        let item = self.item(u, self.receipt(u, &served, auth), &runner_key(), auth);
        let expected = self.expect(u, &served, auth);
        let got = self.run(
            &item,
            if by_runner {
                "runner.near"
            } else {
                "relayer.near"
            },
        );
        match (expected, got) {
            (Expect::Settles(e) | Expect::Either(e), Some(g)) if e == g => {
                self.apply(u, &served, auth);
                Ok(())
            }
            (Expect::Refused | Expect::Either(_), None) => Ok(()),
            (e, g) => Err(format!(
                "honest receipt seq {} of user {u}: model expects {e:?}, hub gave {g:?}",
                served.seq
            )),
        }
    }

    /// The model's rules: the charge an honest receipt must settle for, or a refusal.
    fn expect(&self, u: usize, served: &Served, auth: usize) -> Expect {
        let user = &self.users[u];
        let b = &user.books;
        let now = self.target.now();
        let tolerance = self.target.tolerance_ns();
        let mut unsure = false;
        // Whether `deadline` has passed; one within the target's tolerance counts as not
        // passed and makes the outcome either way.
        let mut passed = |deadline: u64| {
            if tolerance > 0 && now.abs_diff(deadline) <= tolerance {
                unsure = true;
                false
            } else {
                now >= deadline
            }
        };
        if served.seq <= b.last_seq || passed(user.auths[auth].authorization.expires_at_ns.0) {
            return Expect::Refused;
        }
        let pin = match b.pinned {
            Some(p) if p.auth == auth => {
                if p.revoked_until.is_some_and(&mut passed) {
                    return Expect::Refused;
                }
                p
            }
            // A new pin: refused outright once the key is revoked.
            _ if user.key_revoked_at.is_some() => return Expect::Refused,
            _ => Pin {
                auth,
                seq: b.last_seq,
                line: b.line,
                wiki: b.wiki,
                revoked_until: None,
            },
        };
        let line_grew = served.line != b.line;
        if line_grew && self.dropped_at.is_some_and(&mut passed) {
            return Expect::Refused;
        }
        // Honest serving stays within the ceilings by construction; check the model's
        // own arithmetic of them anyway, from the pin.
        let requests = u128::from(served.seq - pin.seq);
        let (d_in, d_out) = (served.line.0 - pin.line.0, served.line.1 - pin.line.1);
        if line_grew {
            let bound = (u128::from(d_in) * PRICE_IN + u128::from(d_out) * PRICE_OUT) / 1_000;
            if served.line.2 - pin.line.2 > bound
                || u128::from(d_in + d_out) > requests * u128::from(MAX_UNITS)
            {
                return Expect::Refused;
            }
        }
        let total = served.line.2 + served.wiki.1;
        if total > user.auths[auth].authorization.cap.0 {
            return Expect::Refused;
        }
        let charge = total - b.settled;
        match (charge <= b.deposited - b.settled, unsure) {
            (false, _) => Expect::Refused,
            (true, false) => Expect::Settles(charge),
            (true, true) => Expect::Either(charge),
        }
    }

    /// Books an accepted honest receipt in the model: its own split, rounded as documented
    /// (runner and protocol down, holders the rest), content wholly to its owner.
    fn apply(&mut self, u: usize, served: &Served, auth: usize) {
        let b = &mut self.users[u].books;
        let model_delta = served.line.2 - b.line.2;
        let wiki_delta = served.wiki.1 - b.wiki.1;
        let runner = model_delta * u128::from(RUNNER_BPS) / 10_000;
        let protocol = model_delta * u128::from(PROTOCOL_BPS) / 10_000;
        self.model.0 += runner;
        self.model.1 += model_delta - runner - protocol;
        self.model.2 += protocol;
        *self.model.3.entry(acc("wiki.near")).or_default() += wiki_delta;
        if b.pinned.is_none_or(|p| p.auth != auth) {
            b.pinned = Some(Pin {
                auth,
                seq: b.last_seq,
                line: b.line,
                wiki: b.wiki,
                revoked_until: None,
            });
        }
        b.settled = served.line.2 + served.wiki.1;
        b.last_seq = served.seq;
        b.line = served.line;
        b.wiki = served.wiki;
    }

    /// A hostile receipt: each must be refused and change nothing.
    fn attack(&mut self, u: usize) -> Result<(), String> {
        self.tally.attacks += 1;
        let mut served = self.users[u].served.clone();
        served.seq = served.seq.max(self.users[u].books.last_seq) + 1;
        let auth = self.users[u].auths.len() - 1;
        let runner_key = runner_key();
        let kind = self.rng.next(10);
        let (item, submitter) = match kind {
            // A relayer's copy with a forged runner signature.
            0 => {
                let mut item = self.item(u, self.receipt(u, &served, auth), &runner_key, auth);
                item.receipt.signature.0[7] ^= 1;
                (item, "relayer.near")
            }
            // Mallory signs a receipt for the runner with her own key.
            1 => {
                let key = KeyPair::from_seed([66; 32]);
                (
                    self.item(u, self.receipt(u, &served, auth), &key, auth),
                    "mallory.near",
                )
            }
            // A replay of the last settled receipt.
            2 => {
                let b = &self.users[u].books;
                if b.last_seq == 0 {
                    return Ok(());
                }
                let settled = Served {
                    seq: b.last_seq,
                    line: b.line,
                    wiki: b.wiki,
                    transcript: [0; 32],
                };
                let pinned = b.pinned.map_or(auth, |p| p.auth);
                (
                    self.item(u, self.receipt(u, &settled, pinned), &runner_key, pinned),
                    "relayer.near",
                )
            }
            // The other user's authorization named in this channel.
            3 => {
                let mut r = self.receipt(u, &served, auth);
                let other = &self.users[1 - u];
                r.authorization = other.auths[other.auths.len() - 1]
                    .prehash(&NativeCrypto)
                    .into();
                let mut item = self.item(u, r, &runner_key, auth);
                item.authorization = Some(other.auths[other.auths.len() - 1].clone());
                (item, "runner.near")
            }
            // An authorization signed for another hub.
            4 => {
                let n = self.users[u].auths.len();
                let foreign = sign(
                    &self.users[u],
                    "other-hub.near",
                    n,
                    self.target.now(),
                    self.next_cap(u),
                );
                let mut r = self.receipt(u, &served, auth);
                r.authorization = foreign.prehash(&NativeCrypto).into();
                let mut item = self.item(u, r, &runner_key, auth);
                item.authorization = Some(foreign);
                (item, "runner.near")
            }
            // More than the cap.
            5 => {
                served.line.2 += self.users[u].auths[auth].authorization.cap.0 + 1;
                (
                    self.item(u, self.receipt(u, &served, auth), &runner_key, auth),
                    "runner.near",
                )
            }
            // Over the signed price ceilings (the units unchanged, the amount up).
            6 => {
                // Honest amounts are sums of per-request floors, below the bound by less
                // than one yocto per request: going over by more than that must fail.
                served.line.2 += u128::from(served.seq) + 1 + u128::from(self.rng.next(1_000_000));
                (
                    self.item(u, self.receipt(u, &served, auth), &runner_key, auth),
                    "runner.near",
                )
            }
            // Units over the per-request limit.
            7 => {
                served.line.0 += MAX_UNITS * (served.seq + 1);
                (
                    self.item(u, self.receipt(u, &served, auth), &runner_key, auth),
                    "runner.near",
                )
            }
            // The runner's own content, which the user never allowed.
            8 => {
                let mut r = self.receipt(u, &served, auth);
                r.content.push(ContentLine {
                    content_id: RUNNER_OWN.into(),
                    uses: U64(1),
                    amount: U128(1_000),
                });
                r.amount.0 += 1_000;
                (self.item(u, r, &runner_key, auth), "runner.near")
            }
            // A later receipt whose cumulative amount went down.
            _ => {
                let b = &self.users[u].books;
                if b.line.2 == 0 {
                    return Ok(());
                }
                served.line = (b.line.0, b.line.1, b.line.2 - 1);
                served.wiki = b.wiki;
                (
                    self.item(u, self.receipt(u, &served, auth), &runner_key, auth),
                    "runner.near",
                )
            }
        };
        if let Some(charge) = self.run(&item, submitter) {
            return Err(format!(
                "attack {kind} on user {u} settled for {charge} yocto"
            ));
        }
        Ok(())
    }

    /// Every balance equal to the model's, and conservation across escrow and payees.
    fn compare(&self) -> Result<(), String> {
        let ids: Vec<AccountId> = self.users.iter().map(|u| u.id.clone()).collect();
        let got = self.target.observe(&ids);
        let want = Observed {
            runner: self.model.0,
            holders: self.model.1,
            protocol: self.model.2,
            wiki: self.model.3.get(&acc("wiki.near")).copied().unwrap_or(0),
            runner_content: 0,
            channels: self
                .users
                .iter()
                .map(|u| (u.books.deposited, u.books.settled, u.books.last_seq))
                .collect(),
        };
        if got != want {
            return Err(format!("the target has {got:?}, the model {want:?}"));
        }
        // Conservation, from the target's own figures: escrow that left a channel went to
        // exactly one payee.
        let charged: u128 = got.channels.iter().map(|c| c.1).sum();
        let paid = got.runner + got.holders + got.protocol + got.wiki + got.runner_content;
        if charged != paid {
            return Err(format!("conservation: charged {charged} != paid {paid}"));
        }
        Ok(())
    }
}

/// What the model says an honest receipt must do.
#[derive(Debug)]
enum Expect {
    Settles(u128),
    Refused,
    /// A deadline within the target's clock tolerance: either outcome, this charge if paid.
    Either(u128),
}

/// The runner's receipt key (`KeyPair` is not `Clone`: keys are made from their seed).
fn runner_key() -> KeyPair {
    KeyPair::from_seed([2; 32])
}

/// The user's `n`-th authorization for `hub`, signed at `now`, with the ceilings at the
/// model's prices.
fn sign(user: &User, hub: &str, n: usize, now: u64, cap: u128) -> SignedAuthorization {
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(&(n as u64).to_le_bytes());
    nonce[8] = u8::from(hub != HUB);
    AuthorizationBuilder::new(&acc(hub), CHAIN, &user.id, &acc("runner.near"))
        .cap(cap)
        .expires_at(now + user.lifetime)
        .model(ModelCeiling {
            model_id: MODEL.into(),
            max_in_per_1k: U128(PRICE_IN),
            max_out_per_1k: U128(PRICE_OUT),
            max_units_per_request: U64(MAX_UNITS),
        })
        .content(WIKI, WIKI_PRICE)
        .sign(nonce, &user.key)
}

/// Runs `steps` steps from `seed` on `target`; the error names the seed and the step that
/// failed.
pub fn run<T: Target>(seed: u64, steps: u64, target: T) -> Result<Tally, String> {
    let mut h = Harness::new(seed, target);
    for i in 0..steps {
        h.step().map_err(|e| {
            format!(
                "seed {seed}, step {i}: {e} (replay: HARNESS_SEED={seed} HARNESS_STEPS={})",
                i + 1
            )
        })?;
    }
    Ok(h.tally)
}

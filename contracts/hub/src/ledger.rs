//! The contract's [`Ledger`]: reads through to the hub's state, buffers every write, and
//! applies them only on [`Writes::apply`]. `settle` applies; `simulate_settle` (a view)
//! drops them, so both run the very same code.

use std::cell::RefCell;

use market_protocol::ChannelId;
use near_sdk::{AccountId, PublicKey};

use crate::{
    engine::{ContentTerms, Ledger, ModelTerms},
    state::{AccountKey, Channel, HubState, License, Update},
};

pub struct Overlay<'a> {
    state: &'a HubState,
    /// The settlement's block time: which scheduled terms are in effect.
    now_ns: u64,
    writes: Writes,
    // A batch usually comes from one runner for a few models: each is read from storage
    // once per batch (a storage read costs about 0.3 Tgas).
    runner_keys: RefCell<SortedMap<(AccountId, PublicKey), Option<AccountKey>>>,
    runners_left: RefCell<SortedMap<AccountId, Option<bool>>>,
    models: RefCell<SortedMap<String, Option<ModelTerms>>>,
    sealed: RefCell<SortedMap<(String, u32, AccountId), bool>>,
    content: RefCell<SortedMap<String, Option<ContentTerms>>>,
}

#[derive(Default)]
pub struct Writes {
    channels: SortedMap<ChannelId, Channel>,
    /// Per runner: earnings to credit, and the latest expiry of an authorization pinned.
    runners: SortedMap<AccountId, (u128, u64)>,
    holders: SortedMap<String, u128>,
    content_owners: SortedMap<AccountId, u128>,
    protocol: u128,
}

/// A map as a sorted vector: binary search for lookups. std's `BTreeMap` would add some
/// 15 KB of wasm per key type for the handful of entries a batch writes.
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// The value under `key`, inserting `make()` first if there is none.
    fn entry_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V
    where
        K: Clone,
    {
        let i = match self.0.binary_search_by(|(k, _)| k.cmp(key)) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key.clone(), make()));
                i
            }
        };
        &mut self.0[i].1
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(state: &'a HubState, now_ns: u64) -> Self {
        Self {
            state,
            now_ns,
            writes: Writes::default(),
            runner_keys: RefCell::default(),
            runners_left: RefCell::default(),
            models: RefCell::default(),
            sealed: RefCell::default(),
            content: RefCell::default(),
        }
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

fn add(to: &mut u128, amount: u128) {
    // Credits are bounded by escrowed NEAR, far below u128::MAX; overflow is a bug.
    *to = to
        .checked_add(amount)
        .unwrap_or_else(|| near_sdk::env::panic_str("ledger credit overflows u128"));
}

impl Writes {
    pub fn apply(self, state: &mut HubState) {
        for (id, channel) in self.channels {
            state.channels.insert(&id, &channel);
        }
        for (runner, (amount, until)) in self.runners {
            state
                .runners
                .update(&runner, |r| {
                    add(&mut r.earnings.0, amount);
                    r.exposed_until_ns.0 = r.exposed_until_ns.0.max(until);
                })
                .expect("the engine only credits registered runners");
        }
        for (model_id, amount) in self.holders {
            state
                .models
                .update(&model_id, |m| add(&mut m.holders_accrued.0, amount))
                .expect("the engine only credits registered models");
        }
        for (owner, amount) in self.content_owners {
            let mut earned = state.content_earnings.get(&owner).unwrap_or(0);
            add(&mut earned, amount);
            state.content_earnings.insert(&owner, &earned);
        }
        add(&mut state.protocol_earnings, self.protocol);
    }
}

impl Ledger for Overlay<'_> {
    fn runner_key(&self, runner: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        let id = (runner.clone(), key.clone());
        *self
            .runner_keys
            .borrow_mut()
            .entry_with(&id, || self.state.runner_keys.get(&id))
    }

    fn runner_left(&self, runner: &AccountId) -> Option<bool> {
        *self.runners_left.borrow_mut().entry_with(runner, || {
            self.state.runners.get(runner).map(|r| r.left || r.slashed)
        })
    }

    fn user_key(&self, user: &AccountId, key: &PublicKey) -> Option<AccountKey> {
        self.state.user_keys.get(&(user.clone(), key.clone()))
    }

    fn channel(&self, id: &ChannelId) -> Option<Channel> {
        self.writes
            .channels
            .get(id)
            .cloned()
            .or_else(|| self.state.channels.get(id))
    }

    fn model_terms(&self, model_id: &str) -> Option<ModelTerms> {
        let id = model_id.to_owned();
        self.models
            .borrow_mut()
            .entry_with(&id, || {
                self.state.models.get(&id).map(|m| ModelTerms {
                    versions: m.versions,
                    terms: m.terms_at(self.now_ns, &self.state.pauses).clone(),
                })
            })
            .clone()
    }

    fn sealed_admits(&self, model_id: &str, version: u32, runner: &AccountId) -> bool {
        let id = (model_id.to_owned(), version, runner.clone());
        *self.sealed.borrow_mut().entry_with(&id, || {
            self.state
                .sealing
                .admits(model_id, version, runner, self.now_ns, &self.state.pauses)
        })
    }

    fn put_channel(&mut self, id: ChannelId, channel: Channel) {
        *self.writes.channels.entry_with(&id, Channel::default) = channel;
    }

    fn credit_runner(&mut self, runner: &AccountId, amount: u128) {
        add(
            &mut self.writes.runners.entry_with(runner, || (0, 0)).0,
            amount,
        );
    }

    fn extend_exposure(&mut self, runner: &AccountId, until_ns: u64) {
        let entry = &mut self.writes.runners.entry_with(runner, || (0, 0)).1;
        *entry = (*entry).max(until_ns);
    }

    fn credit_holders(&mut self, model_id: &str, amount: u128) {
        add(
            self.writes.holders.entry_with(&model_id.to_owned(), || 0),
            amount,
        );
    }

    fn content_terms(&self, content_id: &str) -> Option<ContentTerms> {
        let id = content_id.to_owned();
        self.content
            .borrow_mut()
            .entry_with(&id, || {
                self.state.content.get(&id).map(|c| ContentTerms {
                    owner: c.owner,
                    price_per_use: match c.license {
                        License::InferenceOnly { price_per_use } => Some(price_per_use.0),
                        License::OpenForTraining => None,
                    },
                })
            })
            .clone()
    }

    fn credit_content_owner(&mut self, owner: &AccountId, amount: u128) {
        add(self.writes.content_owners.entry_with(owner, || 0), amount);
    }

    fn credit_protocol(&mut self, amount: u128) {
        add(&mut self.writes.protocol, amount);
    }
}

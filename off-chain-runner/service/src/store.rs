//! The crash-safe receipt store (redb). Per channel (one user paying this runner): the
//! latest signed receipt, the authorization it spends under, and how far settlement got;
//! and every receipt ever signed, by (user, seq), as the record of what was charged.
//!
//! Each receipt is written in one write transaction that is committed with redb's default
//! durability (fsync) before the response is sent, so a crash after a response never loses
//! what the user was charged for. redb runs one write transaction at a time, and the next
//! receipt is built from the stored latest inside that transaction, so concurrent requests
//! on a channel can never sign two receipts with the same sequence.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
    sync::Mutex,
};

use borsh::{BorshDeserialize, BorshSerialize};
use market_protocol::{SignedAuthorization, SignedReceipt};
use near_sdk::AccountId;
use redb::{Database, ReadableTable, TableDefinition};

use crate::error::{Error, Result};

/// user → borsh(`ChannelRecord`).
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// (user, seq) → borsh(`SignedReceipt`).
const RECEIPTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("receipts");

#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The latest receipt: cumulative, so it alone needs to reach the chain.
    pub receipt: SignedReceipt,
    /// The authorization `receipt` names, attached when it is settled.
    pub authorization: SignedAuthorization,
    /// The highest sequence whose settlement on chain is final (0: none).
    pub settled_seq: u64,
    /// The cumulative amount of receipt `settled_seq`.
    pub settled_amount: u128,
    /// The latest receipt the hub refused, with its error code; not resent until a newer
    /// receipt supersedes it.
    pub rejected: Option<(u64, String)>,
}

impl ChannelRecord {
    pub fn seq(&self) -> u64 {
        self.receipt.receipt.seq.0
    }

    pub fn amount(&self) -> u128 {
        self.receipt.receipt.amount.0
    }

    /// Signed but not settled, and not refused as it stands.
    pub fn pending(&self) -> bool {
        self.seq() > self.settled_seq
            && self
                .rejected
                .as_ref()
                .is_none_or(|(seq, _)| *seq < self.seq())
    }
}

/// One channel as `status` shows it (and `GET /v1/runner/status` answers it).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatus {
    pub user: AccountId,
    /// The latest receipt's sequence, and the highest settled.
    pub seq: u64,
    pub settled_seq: u64,
    /// Cumulative yocto charged by the latest receipt, and settled.
    pub amount: near_sdk::json_types::U128,
    pub settled_amount: near_sdk::json_types::U128,
    /// `pending`, `refused: <code>`, or empty when settled.
    pub note: String,
}

impl ChannelStatus {
    pub fn of(user: AccountId, r: &ChannelRecord) -> Self {
        let note = match &r.rejected {
            Some((seq, code)) if *seq >= r.seq() => format!("refused: {code}"),
            _ if r.pending() => "pending".to_owned(),
            _ => String::new(),
        };
        Self {
            user,
            seq: r.seq(),
            settled_seq: r.settled_seq,
            amount: near_sdk::json_types::U128(r.amount()),
            settled_amount: near_sdk::json_types::U128(r.settled_amount),
            note,
        }
    }

    pub fn pending(&self) -> bool {
        self.note == "pending"
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal("store", format!("receipt store: {e}"))
}

pub struct Store {
    db: Database,
    /// What is unsettled, kept beside the database (updated after each commit) so that
    /// `/metrics` reads it without scanning the store.
    exposure: Mutex<Exposure>,
}

/// One channel's part of the exposure.
#[derive(Clone, Copy)]
struct Owed {
    unsettled: u128,
    /// When its first unsettled receipt was issued (ns).
    since_ns: u64,
    /// When the authorization it settles under expires (ns).
    expires_ns: u64,
}

/// The unsettled channels, with the sum and the two minima `/metrics` shows, each update
/// O(log n) and each read O(1).
#[derive(Default)]
struct Exposure {
    owed: HashMap<String, Owed>,
    since: BTreeSet<(u64, String)>,
    expires: BTreeSet<(u64, String)>,
    unsettled: u128,
}

impl Exposure {
    fn set(&mut self, user: &str, owed: Option<Owed>) {
        if let Some(old) = self.owed.remove(user) {
            self.since.remove(&(old.since_ns, user.to_owned()));
            self.expires.remove(&(old.expires_ns, user.to_owned()));
            self.unsettled -= old.unsettled;
        }
        if let Some(new) = owed {
            self.since.insert((new.since_ns, user.to_owned()));
            self.expires.insert((new.expires_ns, user.to_owned()));
            self.unsettled = self.unsettled.saturating_add(new.unsettled);
            self.owed.insert(user.to_owned(), new);
        }
    }
}

/// What a channel owes as `record` stands; `issued_ns(seq)` reads a receipt's issue time.
fn owed(
    record: &ChannelRecord,
    issued_ns: impl FnOnce(u64) -> Result<Option<u64>>,
) -> Result<Option<Owed>> {
    if !record.pending() {
        return Ok(None);
    }
    let first = record.settled_seq + 1;
    let since_ns = if first == record.seq() {
        record.receipt.receipt.issued_at_ns.0
    } else {
        // Pruning never removes unsettled receipts; the latest's time if it did.
        issued_ns(first)?.unwrap_or(record.receipt.receipt.issued_at_ns.0)
    };
    Ok(Some(Owed {
        unsettled: record.amount().saturating_sub(record.settled_amount),
        since_ns,
        expires_ns: record.authorization.authorization.expires_at_ns.0,
    }))
}

/// What is unsettled over every channel, as `/metrics` shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unsettled {
    /// Channels with a receipt to settle.
    pub channels: usize,
    /// Yocto signed for and not yet settled, over those channels.
    pub amount: u128,
    /// When the oldest unsettled receipt was issued (ns).
    pub oldest_ns: Option<u64>,
    /// The soonest expiry of an authorization with something unsettled (ns): past it the
    /// hub settles nothing under it.
    pub nearest_expiry_ns: Option<u64>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(internal)?;
        }
        let db = Database::create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        txn.open_table(CHANNELS).map_err(internal)?;
        txn.open_table(RECEIPTS).map_err(internal)?;
        txn.commit().map_err(internal)?;
        let store = Self {
            db,
            exposure: Mutex::default(),
        };
        let mut exposure = Exposure::default();
        for (user, record) in store.channels()? {
            let owes = owed(&record, |seq| store.issued_ns(&user, seq))?;
            exposure.set(user.as_str(), owes);
        }
        *store.exposure.lock().expect("exposure lock") = exposure;
        Ok(store)
    }

    /// What is unsettled now, without reading the database.
    pub fn unsettled(&self) -> Unsettled {
        let e = self.exposure.lock().expect("exposure lock");
        Unsettled {
            channels: e.owed.len(),
            amount: e.unsettled,
            oldest_ns: e.since.first().map(|(ns, _)| *ns),
            nearest_expiry_ns: e.expires.first().map(|(ns, _)| *ns),
        }
    }

    fn issued_ns(&self, user: &AccountId, seq: u64) -> Result<Option<u64>> {
        Ok(self.receipt(user, seq)?.map(|r| r.receipt.issued_at_ns.0))
    }

    /// Whether the database answers a read (`/health`).
    pub fn check(&self) -> Result<()> {
        let txn = self.db.begin_read().map_err(internal)?;
        txn.open_table(CHANNELS).map_err(internal)?;
        Ok(())
    }

    pub fn channel(&self, user: &AccountId) -> Result<Option<ChannelRecord>> {
        let txn = self.db.begin_read().map_err(internal)?;
        let table = txn.open_table(CHANNELS).map_err(internal)?;
        let value = table.get(user.as_str()).map_err(internal)?;
        value.map(|v| decode(v.value())).transpose()
    }

    pub fn channels(&self) -> Result<Vec<(AccountId, ChannelRecord)>> {
        let txn = self.db.begin_read().map_err(internal)?;
        let table = txn.open_table(CHANNELS).map_err(internal)?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(internal)? {
            let (k, v) = entry.map_err(internal)?;
            all.push((k.value().parse().map_err(internal)?, decode(v.value())?));
        }
        Ok(all)
    }

    /// Every channel as `status` shows it.
    pub fn status(&self) -> Result<Vec<ChannelStatus>> {
        Ok(self
            .channels()?
            .into_iter()
            .map(|(user, r)| ChannelStatus::of(user, &r))
            .collect())
    }

    /// Up to `limit` channels with a receipt to settle.
    pub fn pending(&self, limit: usize) -> Result<Vec<(AccountId, ChannelRecord)>> {
        let mut all = self.channels()?;
        all.retain(|(_, r)| r.pending());
        all.truncate(limit);
        Ok(all)
    }

    /// A receipt from the history.
    pub fn receipt(&self, user: &AccountId, seq: u64) -> Result<Option<SignedReceipt>> {
        let txn = self.db.begin_read().map_err(internal)?;
        let table = txn.open_table(RECEIPTS).map_err(internal)?;
        let value = table.get((user.as_str(), seq)).map_err(internal)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Builds the channel's next record from its current one and commits it durably, in
    /// one write transaction. `next` must return a record whose receipt sequence is above
    /// the current one's.
    pub fn append(
        &self,
        user: &AccountId,
        next: impl FnOnce(Option<&ChannelRecord>) -> Result<ChannelRecord>,
    ) -> Result<ChannelRecord> {
        let txn = self.db.begin_write().map_err(internal)?;
        let record = {
            let mut channels = txn.open_table(CHANNELS).map_err(internal)?;
            let current = channels
                .get(user.as_str())
                .map_err(internal)?
                .map(|v| decode::<ChannelRecord>(v.value()))
                .transpose()?;
            let record = next(current.as_ref())?;
            if current.as_ref().is_some_and(|c| record.seq() <= c.seq()) {
                return Err(Error::internal(
                    "sequence",
                    format!("receipt sequence {} does not advance", record.seq()),
                ));
            }
            channels
                .insert(user.as_str(), encode(&record).as_slice())
                .map_err(internal)?;
            let mut receipts = txn.open_table(RECEIPTS).map_err(internal)?;
            receipts
                .insert(
                    (user.as_str(), record.seq()),
                    encode(&record.receipt).as_slice(),
                )
                .map_err(internal)?;
            let owes = owed(&record, |seq| issued_in(&receipts, user, seq))?;
            (record, owes)
        };
        let (record, owes) = record;
        self.commit_with_exposure(txn, user, owes)?;
        Ok(record)
    }

    fn update(
        &self,
        user: &AccountId,
        change: impl FnOnce(&mut ChannelRecord, &dyn Fn(u64) -> Result<Option<u128>>),
    ) -> Result<()> {
        let txn = self.db.begin_write().map_err(internal)?;
        let owes = {
            let mut channels = txn.open_table(CHANNELS).map_err(internal)?;
            let receipts = txn.open_table(RECEIPTS).map_err(internal)?;
            let Some(mut record) = channels
                .get(user.as_str())
                .map_err(internal)?
                .map(|v| decode::<ChannelRecord>(v.value()))
                .transpose()?
            else {
                return Ok(());
            };
            let amount_of = |seq: u64| -> Result<Option<u128>> {
                let value = receipts.get((user.as_str(), seq)).map_err(internal)?;
                Ok(value
                    .map(|v| decode::<SignedReceipt>(v.value()))
                    .transpose()?
                    .map(|r| r.receipt.amount.0))
            };
            change(&mut record, &amount_of);
            channels
                .insert(user.as_str(), encode(&record).as_slice())
                .map_err(internal)?;
            owed(&record, |seq| issued_in(&receipts, user, seq))?
        };
        self.commit_with_exposure(txn, user, owes)
    }

    /// Commits `txn` and records what `user`'s channel now owes. The index's lock is held
    /// across both: write transactions commit one after another, so two writers on one
    /// channel set the index in the order they committed, never the older one last.
    fn commit_with_exposure(
        &self,
        txn: redb::WriteTransaction,
        user: &AccountId,
        owes: Option<Owed>,
    ) -> Result<()> {
        let mut exposure = self.exposure.lock().expect("exposure lock");
        txn.commit().map_err(internal)?;
        exposure.set(user.as_str(), owes);
        Ok(())
    }

    /// Deletes history the runner no longer needs: receipts below a channel's settled one
    /// and issued before `before_ns`. Kept always: each channel's latest receipt, its last
    /// settled one (what the hub charged, the runner's evidence), and everything not yet
    /// settled. Returns how many were deleted.
    ///
    /// Deletes in write transactions of at most `PRUNE_CHUNK` receipts: redb runs one
    /// write transaction at a time, and every request's receipt waits for the one open.
    pub fn prune(&self, before_ns: u64) -> Result<usize> {
        const PRUNE_CHUNK: usize = 1_000;
        let settled: HashMap<String, u64> = self
            .channels()?
            .into_iter()
            .map(|(user, r)| (user.to_string(), r.settled_seq))
            .collect();
        let mut pruned = 0;
        for (user, below) in settled {
            loop {
                let doomed: Vec<u64> = {
                    let txn = self.db.begin_read().map_err(internal)?;
                    let receipts = txn.open_table(RECEIPTS).map_err(internal)?;
                    let mut doomed = Vec::new();
                    for entry in receipts
                        .range((user.as_str(), 0)..(user.as_str(), below))
                        .map_err(internal)?
                    {
                        let (key, value) = entry.map_err(internal)?;
                        let receipt: SignedReceipt = decode(value.value())?;
                        if receipt.receipt.issued_at_ns.0 < before_ns {
                            doomed.push(key.value().1);
                            if doomed.len() == PRUNE_CHUNK {
                                break;
                            }
                        }
                    }
                    doomed
                };
                if doomed.is_empty() {
                    break;
                }
                let txn = self.db.begin_write().map_err(internal)?;
                {
                    let mut receipts = txn.open_table(RECEIPTS).map_err(internal)?;
                    for seq in &doomed {
                        receipts.remove((user.as_str(), *seq)).map_err(internal)?;
                    }
                }
                txn.commit().map_err(internal)?;
                pruned += doomed.len();
                if doomed.len() < PRUNE_CHUNK {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    /// Records that receipt `seq` of the channel is settled on chain (final). Never moves
    /// backwards.
    pub fn mark_settled(&self, user: &AccountId, seq: u64) -> Result<()> {
        let mut failed = None;
        self.update(user, |record, amount_of| {
            if seq <= record.settled_seq {
                return;
            }
            match amount_of(seq) {
                Ok(Some(amount)) => {
                    record.settled_seq = seq;
                    record.settled_amount = amount;
                }
                Ok(None) => failed = Some(internal(format!("no receipt {seq} of {user}"))),
                Err(e) => failed = Some(e),
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    pub fn mark_rejected(&self, user: &AccountId, seq: u64, code: &str) -> Result<()> {
        self.update(user, |record, _| {
            if seq > record.settled_seq {
                record.rejected = Some((seq, code.to_owned()));
            }
        })
    }
}

/// A receipt's issue time, read in a write transaction.
fn issued_in(
    receipts: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    user: &AccountId,
    seq: u64,
) -> Result<Option<u64>> {
    let value = receipts.get((user.as_str(), seq)).map_err(internal)?;
    Ok(value
        .map(|v| decode::<SignedReceipt>(v.value()))
        .transpose()?
        .map(|r| r.receipt.issued_at_ns.0))
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("serializing to a Vec cannot fail")
}

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T> {
    borsh::from_slice(bytes).map_err(internal)
}

//! Settlement: the latest receipt of each channel with something unsettled goes to the
//! hub's `settle` in batches, sent by the runner's own account, the most urgent first (the
//! authorization that expires soonest).
//!
//! Idempotent by construction: a receipt is marked settled only once its final outcome is
//! known, and the hub refuses any receipt whose sequence is not above the channel's last
//! settled one (`stale_sequence`). So after a crash, a timeout or a lost answer, resending
//! is always safe: what was settled pays nothing twice, and a `stale_sequence` answer is
//! resolved by reading the channel's last settled sequence from the hub.
//!
//! Faults, and what each does:
//! - the node cannot be reached or answers garbage: the round stops, the task backs off;
//! - the hub is paused: the same (a pause ends by itself);
//! - the transaction fails as a whole (out of gas, a panic on one poison receipt): the
//!   batch is split in halves and each half sent again, down to single receipts; a receipt
//!   that fails alone is recorded as refused (`transaction_failed`) and every other one
//!   settles;
//! - the hub refuses a receipt for a reason that may pass (`underfunded`: the user may
//!   fund the channel): it is retried after `retry_later`, never recorded as final; other
//!   refusals are final until a newer receipt supersedes the refused one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use market_hub_api::{
    jsonrpc::{ChainError, Signer},
    methods, ChannelView, ReceiptOutcome, RejectCode, SettleResult,
};
use market_protocol::SettleItem;
use near_sdk::AccountId;

use crate::{
    metrics::{Metrics, RpcCall},
    store::Store,
};

/// Gas attached to every batch: the most a transaction may use. Unused gas is refunded.
pub const SETTLE_GAS: u64 = 300_000_000_000_000;

/// How often settled history is pruned.
const PRUNE_EVERY: Duration = Duration::from_hours(1);

/// The longest the last settlement before exit may take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a receipt whose transaction fails on its own is recorded as.
pub const TRANSACTION_FAILED: &str = "transaction_failed";

#[derive(Clone, Debug)]
pub struct Settings {
    /// Receipts per transaction. The first receipt of a channel costs ~4 Tgas (the user's
    /// signature is verified), later ones ~0.2 Tgas (docs/benchmarks.md): 50 keeps a batch
    /// of first receipts within 300 Tgas, and a batch that does not fit is split anyway.
    pub batch: usize,
    /// Gas attached to each `settle` transaction.
    pub gas: u64,
    pub interval: Duration,
    /// Backoff after a failure doubles from `interval` up to this.
    pub max_backoff: Duration,
    /// How long a receipt refused for a reason that may pass waits before it is resent.
    pub retry_later: Duration,
    /// Settled history older than this is pruned (see `Store::prune`), once an hour.
    pub keep_receipts: Duration,
    /// The longest one RPC request of a settlement may take.
    pub request_timeout: Duration,
    /// The longest a `settle` transaction's final outcome is waited for; past it the round
    /// ends and the hub's channel records say later what landed (`reconcile`).
    pub outcome_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: 50,
            gas: SETTLE_GAS,
            interval: Duration::from_secs(30),
            max_backoff: Duration::from_mins(5),
            retry_later: Duration::from_mins(5),
            keep_receipts: Duration::from_hours(24 * 90),
            request_timeout: Duration::from_secs(10),
            outcome_timeout: Duration::from_mins(1),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub settled: usize,
    /// Found already settled (an earlier attempt's answer was lost).
    pub already: usize,
    /// Refused by the hub, final until a newer receipt of the channel.
    pub rejected: Vec<(String, u64, RejectCode)>,
    /// Refused for now (`underfunded`): resent after `retry_later`.
    pub deferred: Vec<(String, u64, RejectCode)>,
    /// Receipts whose transaction failed even alone, with the failure.
    pub failed: Vec<(String, u64, String)>,
}

impl Report {
    fn add(&mut self, other: Self) {
        self.sent += other.sent;
        self.settled += other.settled;
        self.already += other.already;
        self.rejected.extend(other.rejected);
        self.deferred.extend(other.deferred);
        self.failed.extend(other.failed);
    }
}

/// Channels to settle before the others, each with the time (chain ns) by which it must
/// settle: a requested withdrawal's ready time, a revoked key's notice, or now for a
/// channel over the unsettled cap. The HTTP side marks them as it learns of them and wakes
/// the settlement task.
#[derive(Default)]
pub struct Urgent {
    deadlines: Mutex<HashMap<AccountId, u64>>,
    wake: tokio::sync::Notify,
}

impl Urgent {
    /// `user`'s channel must settle by `deadline_ns`; settles it at the next round, now.
    pub fn mark(&self, user: &AccountId, deadline_ns: u64) {
        let mut deadlines = self.deadlines.lock().expect("urgency lock");
        let d = deadlines.entry(user.clone()).or_insert(deadline_ns);
        *d = (*d).min(deadline_ns);
        drop(deadlines);
        self.wake.notify_one();
    }

    /// Starts a settlement round now (the operator asked: `settle --runner-url`).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn deadline(&self, user: &AccountId) -> Option<u64> {
        self.deadlines
            .lock()
            .expect("urgency lock")
            .get(user)
            .copied()
    }

    fn settled(&self, user: &AccountId) {
        self.deadlines.lock().expect("urgency lock").remove(user);
    }
}

/// Refusals that may pass with time: the receipt stays pending.
fn transient(code: RejectCode) -> bool {
    matches!(code, RejectCode::Underfunded)
}

pub struct Settler {
    store: Arc<Store>,
    /// Sends `settle` as the runner's account.
    signer: Signer,
    settings: Settings,
    /// Shared with the HTTP server's `/metrics`.
    metrics: Option<Arc<Metrics>>,
    /// Channels not to resend before the given time (transient refusals).
    deferred: Mutex<HashMap<AccountId, Instant>>,
    /// Channels last refused as `underfunded`: not resent (at the cost of gas) until the
    /// hub's view shows escrow enough for what they owe.
    underfunded: Mutex<std::collections::HashSet<AccountId>>,
    urgent: Arc<Urgent>,
}

impl Settler {
    pub fn new(
        store: Arc<Store>,
        signer: Signer,
        settings: Settings,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            store,
            signer: signer.timeouts(settings.request_timeout, settings.outcome_timeout),
            settings,
            metrics,
            deferred: Mutex::new(HashMap::new()),
            underfunded: Mutex::default(),
            urgent: Arc::default(),
        }
    }

    /// Shares the urgent channels with whoever marks them (the HTTP server).
    #[must_use]
    pub fn with_urgent(mut self, urgent: Arc<Urgent>) -> Self {
        self.urgent = urgent;
        self
    }

    /// A store operation, off the async workers: redb's commits wait for an fsync.
    async fn on_store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, crate::error::Error> + Send + 'static,
    ) -> Result<T, ChainError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| ChainError::Unexpected(e.to_string()))?
            .map_err(|e| ChainError::Unexpected(e.to_string()))
    }

    /// Not resent before `retry_later`.
    fn defer(&self, user: &AccountId) {
        self.deferred
            .lock()
            .expect("deferral lock")
            .insert(user.clone(), Instant::now() + self.settings.retry_later);
    }

    /// Up to one batch of the channels to settle now, most urgent first.
    async fn next_batch(&self) -> Result<Vec<SettleItem>, ChainError> {
        let mut pending = self.on_store(|s| s.pending(usize::MAX)).await?;
        let now = Instant::now();
        {
            let mut deferred = self.deferred.lock().expect("deferral lock");
            deferred.retain(|_, until| *until > now);
            pending.retain(|(user, _)| !deferred.contains_key(user));
        }
        let recheck: Vec<(AccountId, u128)> = {
            let underfunded = self.underfunded.lock().expect("deferral lock");
            pending
                .iter()
                .filter(|(user, _)| underfunded.contains(user))
                .map(|(user, r)| (user.clone(), r.amount().saturating_sub(r.settled_amount)))
                .collect()
        };
        for (user, owed) in recheck {
            let view = self
                .signer
                .hub()
                .view(methods::channel(&user, &self.signer.account()))
                .await?;
            if view.is_some_and(|v| v.unspent.0 >= owed) {
                self.underfunded
                    .lock()
                    .expect("deferral lock")
                    .remove(&user);
            } else {
                self.defer(&user);
                pending.retain(|(u, _)| *u != user);
            }
        }
        // The nearest deadline first: a notice ending (withdrawal, revoked key), or the
        // authorization's expiry, after which the hub settles nothing under it.
        pending.sort_by_key(|(user, r)| {
            let expiry = r.authorization.authorization.expires_at_ns.0;
            let deadline = self.urgent.deadline(user).map_or(expiry, |d| d.min(expiry));
            (deadline, user.clone())
        });
        pending.truncate(self.settings.batch);
        Ok(pending
            .into_iter()
            .map(|(_, r)| SettleItem {
                receipt: r.receipt,
                authorization: Some(r.authorization),
            })
            .collect())
    }

    /// Sends one batch, if anything is due, and records each outcome.
    pub async fn settle_once(&self) -> Result<Report, ChainError> {
        let items = self.next_batch().await?;
        let mut report = Report::default();
        if !items.is_empty() {
            self.send(&items, &mut report).await?;
        }
        if let Some(m) = &self.metrics {
            Metrics::add(
                &m.receipts_settled,
                (report.settled + report.already) as u64,
            );
            Metrics::add(
                &m.receipts_rejected,
                (report.rejected.len() + report.failed.len()) as u64,
            );
        }
        Ok(report)
    }

    /// Sends `items` in one transaction; when it fails as a whole, each half on its own.
    async fn send(&self, items: &[SettleItem], report: &mut Report) -> Result<(), ChainError> {
        let mut pending: Vec<&[SettleItem]> = vec![items];
        while let Some(batch) = pending.pop() {
            let call = methods::settle(batch).gas(self.settings.gas);
            let started = Instant::now();
            let outcomes = match self.signer.send(&call).await {
                Ok(sent) => {
                    crate::killpoint::reached("settle_after_broadcast");
                    self.signer.outcome(&call, sent).await
                }
                Err(e) => Err(e),
            };
            if let Some(m) = &self.metrics {
                Metrics::observe(&m.rpc_latency(RpcCall::Settle), started.elapsed());
                Metrics::add(&m.settle_batches, 1);
                if outcomes.is_err() {
                    Metrics::add(&m.settle_failures, 1);
                }
            }
            match outcomes {
                Ok(outcomes) => {
                    crate::killpoint::reached("settle_after_outcome");
                    report.sent += batch.len();
                    self.record(batch, outcomes, report).await?;
                }
                Err(ChainError::Failed(failure)) => {
                    // A paused hub fails every batch: wait, do not split.
                    let info = self.signer.hub().view(methods::hub_info()).await?;
                    if info.paused {
                        return Err(ChainError::Failed(failure));
                    }
                    if let [item] = batch {
                        let user = item.receipt.receipt.user.clone();
                        let seq = item.receipt.receipt.seq.0;
                        // Poison only if the hub's own rules fail on it: the free view runs
                        // them without a transaction. If it answers, the failure was not
                        // the receipt's (a pause starting, the hub short of storage, a
                        // node's hiccup): retry later, never record a good receipt as
                        // failed.
                        let runner = self.signer.account();
                        let simulated = self
                            .signer
                            .hub()
                            .view(methods::simulate_settle(
                                &runner,
                                std::slice::from_ref(item),
                            ))
                            .await;
                        match simulated {
                            Err(ChainError::Failed(_)) => {
                                tracing::warn!(%user, seq, "a receipt fails the hub's rules on its own: {failure}");
                                let who = user.clone();
                                self.on_store(move |s| {
                                    s.mark_rejected(&who, seq, TRANSACTION_FAILED)
                                })
                                .await?;
                                report.sent += 1;
                                report.failed.push((user.to_string(), seq, failure));
                            }
                            Err(other) => return Err(other),
                            Ok(_) => {
                                tracing::warn!(%user, seq, "a receipt's transaction failed though the hub's rules pass it, retrying later: {failure}");
                                self.defer(&user);
                                report
                                    .deferred
                                    .push((user.to_string(), seq, RejectCode::Unknown));
                            }
                        }
                    } else {
                        tracing::info!(receipts = batch.len(), "the settle transaction failed as a whole, sending each half: {failure}");
                        let (first, second) = batch.split_at(batch.len() / 2);
                        pending.push(second);
                        pending.push(first);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Records the outcome of each item of `batch`. Outcomes come from the node: one that
    /// names a receipt not in the batch (a node that lies or mixes transactions up) is
    /// ignored, so no other receipt of the store is marked by it.
    async fn record(
        &self,
        batch: &[SettleItem],
        outcomes: Vec<ReceiptOutcome>,
        report: &mut Report,
    ) -> Result<(), ChainError> {
        let sent: std::collections::HashSet<(&AccountId, u64)> = batch
            .iter()
            .map(|i| (&i.receipt.receipt.user, i.receipt.receipt.seq.0))
            .collect();
        for outcome in outcomes {
            let seq = outcome.seq.0;
            if !sent.contains(&(&outcome.user, seq)) {
                tracing::warn!(user = %outcome.user, seq, "the node reported an outcome for a receipt this batch did not send: ignored");
                continue;
            }
            match outcome.result {
                SettleResult::Settled { .. } => {
                    let user = outcome.user.clone();
                    self.on_store(move |s| s.mark_settled(&user, seq)).await?;
                    self.urgent.settled(&outcome.user);
                    report.settled += 1;
                }
                SettleResult::Rejected {
                    code: RejectCode::StaleSequence,
                    ..
                } => {
                    let code = RejectCode::StaleSequence;
                    // Settled by an attempt whose answer never arrived, or refused; the
                    // hub's channel record says which.
                    let channel = self
                        .signer
                        .hub()
                        .view(methods::channel(&outcome.user, &self.signer.account()))
                        .await?;
                    let confirmed = match channel {
                        Some(view) => self.confirmed(&outcome.user, view).await?,
                        None => None,
                    };
                    let user = outcome.user.clone();
                    if let Some(last) = confirmed.filter(|last| *last >= seq) {
                        self.on_store(move |s| s.mark_settled(&user, last)).await?;
                        report.already += 1;
                    } else {
                        self.on_store(move |s| s.mark_rejected(&user, seq, code.as_str()))
                            .await?;
                        report.rejected.push((outcome.user.to_string(), seq, code));
                    }
                }
                SettleResult::Rejected { code, reason } if transient(code) => {
                    tracing::info!(user = %outcome.user, seq, code = code.as_str(), "the hub refused a receipt for now, retrying later: {reason}");
                    self.defer(&outcome.user);
                    if code == RejectCode::Underfunded {
                        self.underfunded
                            .lock()
                            .expect("deferral lock")
                            .insert(outcome.user.clone());
                    }
                    report.deferred.push((outcome.user.to_string(), seq, code));
                }
                SettleResult::Rejected { code, reason } => {
                    tracing::warn!(user = %outcome.user, seq, code = code.as_str(), "the hub refused a receipt: {reason}");
                    let user = outcome.user.clone();
                    self.on_store(move |s| s.mark_rejected(&user, seq, code.as_str()))
                        .await?;
                    report.rejected.push((outcome.user.to_string(), seq, code));
                }
            }
        }
        Ok(())
    }

    /// The sequence the hub's record of the channel shows settled, if it is a receipt of
    /// this runner's store with the very cumulative amount the hub settled: a lagging or
    /// lying node's word alone never marks a receipt settled.
    async fn confirmed(
        &self,
        user: &AccountId,
        view: ChannelView,
    ) -> Result<Option<u64>, ChainError> {
        let last = view.channel.last_seq.0;
        let who = user.clone();
        let stored = self.on_store(move |s| s.receipt(&who, last)).await?;
        Ok(stored
            .filter(|r| r.receipt.amount == view.channel.settled)
            .map(|_| last))
    }

    /// Marks settled what the hub already settled: a transaction that landed while the
    /// runner did not learn its outcome (killed after broadcasting it, a lost answer) would
    /// otherwise be sent again, costing gas to be refused as stale. Reads the hub's
    /// channel of every pending receipt; run at start and after a failed round.
    pub async fn reconcile(&self) -> Result<usize, ChainError> {
        let runner = self.signer.account();
        let mut found = 0;
        for (user, record) in self.on_store(|s| s.pending(usize::MAX)).await? {
            let Some(view) = self
                .signer
                .hub()
                .view(methods::channel(&user, &runner))
                .await?
            else {
                continue;
            };
            match self.confirmed(&user, view).await? {
                Some(last) if last > record.settled_seq && last <= record.seq() => {
                    let who = user.clone();
                    self.on_store(move |s| s.mark_settled(&who, last)).await?;
                    found += 1;
                }
                _ => {}
            }
        }
        if found > 0 {
            tracing::info!(
                channels = found,
                "the hub had settled receipts this runner had not recorded"
            );
        }
        Ok(found)
    }

    /// Prunes settled history older than `keep_receipts` (issued by this machine's clock),
    /// off the async workers.
    async fn prune(&self) {
        let keep = u64::try_from(self.settings.keep_receipts.as_nanos()).unwrap_or(u64::MAX);
        let before = crate::state::wall_clock_ns().saturating_sub(keep);
        match self.on_store(move |s| s.prune(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(receipts = n, "pruned settled receipt history"),
            Err(e) => tracing::warn!("pruning the receipt history failed: {e}"),
        }
    }

    /// Settles batch after batch until nothing is due (deferred receipts wait).
    pub async fn drain(&self) -> Result<Report, ChainError> {
        let mut total = Report::default();
        loop {
            let r = self.settle_once().await?;
            let done = r.sent == 0;
            total.add(r);
            if done {
                return Ok(total);
            }
        }
    }

    /// The background task: drains every `interval`; after a failure waits with doubling
    /// backoff (RPC down, out of balance for gas) and tries again. Nothing is lost while
    /// it waits: receipts stay in the store until their outcome is final.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut wait = self.settings.interval;
        let mut reconciled = false;
        let mut pruned_at: Option<Instant> = None;
        loop {
            if !reconciled {
                reconciled = self
                    .reconcile()
                    .await
                    .inspect_err(|e| tracing::warn!("reconciling with the hub failed: {e}"))
                    .is_ok();
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.urgent.wake.notified() => {}
                _ = shutdown.changed() => {
                    // What was served is settled now rather than at the next start.
                    match tokio::time::timeout(FLUSH_TIMEOUT, self.drain()).await {
                        Ok(Ok(r)) => tracing::info!(sent = r.sent, settled = r.settled, "settled before exit"),
                        Ok(Err(e)) => tracing::warn!("settling before exit failed, the receipts stay for the next start: {e}"),
                        Err(_) => tracing::warn!("settling before exit took over {FLUSH_TIMEOUT:?}, the rest stays for the next start"),
                    }
                    return;
                }
            }
            match self.drain().await {
                Ok(r) => {
                    if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                        pruned_at = Some(Instant::now());
                        self.prune().await;
                    }
                    if r.sent > 0 {
                        tracing::info!(
                            sent = r.sent,
                            settled = r.settled,
                            already = r.already,
                            rejected = r.rejected.len(),
                            deferred = r.deferred.len(),
                            failed = r.failed.len(),
                            "settled a batch"
                        );
                    }
                    wait = self.settings.interval;
                }
                Err(e) => {
                    // Some of the round may have landed before the failure.
                    reconciled = false;
                    wait = (wait * 2).min(self.settings.max_backoff);
                    tracing::warn!("settlement failed, retrying in {wait:?}: {e}");
                }
            }
        }
    }
}

//! Settlement: the latest receipt of each channel with something unsettled goes to the
//! hub's `settle` in batches, sent by the runner's own account.
//!
//! Idempotent by construction: a receipt is marked settled only once its final outcome is
//! known, and the hub refuses any receipt whose sequence is not above the channel's last
//! settled one (`stale_sequence`). So after a crash, a timeout or a lost answer, resending
//! is always safe: what was settled pays nothing twice, and a `stale_sequence` answer is
//! resolved by reading the channel's last settled sequence from the hub.

use std::{sync::Arc, time::Duration};

use market_hub_api::{
    jsonrpc::{ChainError, Signer},
    methods, RejectCode, SettleResult,
};
use market_protocol::SettleItem;

use crate::{metrics::Metrics, store::Store};

/// Gas attached to every batch: the most a transaction may use. Unused gas is refunded.
pub const SETTLE_GAS: u64 = 300_000_000_000_000;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Receipts per transaction. The first receipt of a channel costs ~4 Tgas (the user's
    /// signature is verified), later ones ~0.2 Tgas (docs/benchmarks.md): 50 keeps a batch
    /// of first receipts within 300 Tgas.
    pub batch: usize,
    pub interval: Duration,
    /// Backoff after a failure doubles from `interval` up to this.
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            batch: 50,
            interval: Duration::from_secs(30),
            max_backoff: Duration::from_mins(5),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub settled: usize,
    /// Found already settled (an earlier attempt's answer was lost).
    pub already: usize,
    pub rejected: Vec<(String, u64, RejectCode)>,
}

pub struct Settler {
    pub store: Arc<Store>,
    /// Sends `settle` as the runner's account.
    pub signer: Signer,
    pub settings: Settings,
    /// Shared with the HTTP server's `/metrics`.
    pub metrics: Option<Arc<Metrics>>,
}

impl Settler {
    /// Sends one batch, if anything is pending, and records each outcome.
    pub async fn settle_once(&self) -> Result<Report, ChainError> {
        let pending = self
            .store
            .pending(self.settings.batch)
            .map_err(|e| ChainError::Unexpected(e.to_string()))?;
        let mut report = Report::default();
        if pending.is_empty() {
            return Ok(report);
        }
        let items: Vec<SettleItem> = pending
            .iter()
            .map(|(_, r)| SettleItem {
                receipt: r.receipt.clone(),
                authorization: Some(r.authorization.clone()),
            })
            .collect();
        report.sent = items.len();
        let outcomes = self
            .signer
            .call(methods::settle(&items).gas(SETTLE_GAS))
            .await;
        if let Some(m) = &self.metrics {
            Metrics::add(&m.settle_batches, 1);
            if outcomes.is_err() {
                Metrics::add(&m.settle_failures, 1);
            }
        }
        let outcomes = outcomes?;
        let store_err = |e: crate::error::Error| ChainError::Unexpected(e.to_string());
        for outcome in outcomes {
            let seq = outcome.seq.0;
            match outcome.result {
                SettleResult::Settled { .. } => {
                    self.store
                        .mark_settled(&outcome.user, seq)
                        .map_err(store_err)?;
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
                    if channel.is_some_and(|c| c.channel.last_seq.0 >= seq) {
                        self.store
                            .mark_settled(&outcome.user, seq)
                            .map_err(store_err)?;
                        report.already += 1;
                    } else {
                        self.store
                            .mark_rejected(&outcome.user, seq, code.as_str())
                            .map_err(store_err)?;
                        report.rejected.push((outcome.user.to_string(), seq, code));
                    }
                }
                SettleResult::Rejected { code, reason } => {
                    tracing::warn!(user = %outcome.user, seq, code = code.as_str(), "the hub refused a receipt: {reason}");
                    self.store
                        .mark_rejected(&outcome.user, seq, code.as_str())
                        .map_err(store_err)?;
                    report.rejected.push((outcome.user.to_string(), seq, code));
                }
            }
        }
        if let Some(m) = &self.metrics {
            Metrics::add(
                &m.receipts_settled,
                (report.settled + report.already) as u64,
            );
            Metrics::add(&m.receipts_rejected, report.rejected.len() as u64);
        }
        Ok(report)
    }

    /// Settles batch after batch until nothing is pending.
    pub async fn drain(&self) -> Result<Report, ChainError> {
        let mut total = Report::default();
        loop {
            let r = self.settle_once().await?;
            if r.sent == 0 {
                return Ok(total);
            }
            total.sent += r.sent;
            total.settled += r.settled;
            total.already += r.already;
            total.rejected.extend(r.rejected);
        }
    }

    /// The background task: drains every `interval`; after a failure waits with doubling
    /// backoff (RPC down, out of balance for gas) and tries again. Nothing is lost while
    /// it waits: receipts stay in the store until their outcome is final.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut wait = self.settings.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            match self.drain().await {
                Ok(r) => {
                    if r.sent > 0 {
                        tracing::info!(
                            sent = r.sent,
                            settled = r.settled,
                            already = r.already,
                            rejected = r.rejected.len(),
                            "settled a batch"
                        );
                    }
                    wait = self.settings.interval;
                }
                Err(e) => {
                    wait = (wait * 2).min(self.settings.max_backoff);
                    tracing::warn!("settlement failed, retrying in {wait:?}: {e}");
                }
            }
        }
    }
}

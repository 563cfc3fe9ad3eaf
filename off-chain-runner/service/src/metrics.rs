//! Counters for `GET /metrics`, in Prometheus' text format.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
};

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub tokens_in: AtomicU64,
    pub tokens_out: AtomicU64,
    pub receipts_signed: AtomicU64,
    pub settle_batches: AtomicU64,
    pub settle_failures: AtomicU64,
    pub receipts_settled: AtomicU64,
    pub receipts_rejected: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_owned(), status))
            .or_default() += 1;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The text exposition, with the settlement backlog as the store has it now.
    pub fn render(&self, backlog: &Backlog) -> String {
        let mut out = String::new();
        out.push_str("# TYPE runner_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "runner_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        for (name, counter) in [
            ("runner_tokens_in_total", &self.tokens_in),
            ("runner_tokens_out_total", &self.tokens_out),
            ("runner_receipts_signed_total", &self.receipts_signed),
            ("runner_settle_batches_total", &self.settle_batches),
            ("runner_settle_failures_total", &self.settle_failures),
            ("runner_receipts_settled_total", &self.receipts_settled),
            ("runner_receipts_rejected_total", &self.receipts_rejected),
        ] {
            let _ = writeln!(
                out,
                "# TYPE {name} counter\n{name} {}",
                counter.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# TYPE runner_views_stale_total counter\nrunner_views_stale_total {}",
            backlog.stale_views
        );
        let _ = writeln!(
            out,
            "# TYPE runner_settlement_backlog gauge\nrunner_settlement_backlog {}",
            backlog.channels
        );
        let _ = writeln!(
            out,
            "# TYPE runner_unsettled_yocto gauge\nrunner_unsettled_yocto {}",
            backlog.unsettled
        );
        // Seconds with millisecond precision, exact as integers are.
        let secs = |ns: u64| {
            format!(
                "{}.{:03}",
                ns / 1_000_000_000,
                ns % 1_000_000_000 / 1_000_000
            )
        };
        if let Some(at) = backlog.oldest_pending_ns {
            let _ = writeln!(
                out,
                "# TYPE runner_oldest_pending_receipt_seconds gauge\nrunner_oldest_pending_receipt_seconds {}",
                secs(backlog.now_ns.saturating_sub(at))
            );
        }
        if let Some(at) = backlog.nearest_expiry_ns {
            let _ = writeln!(
                out,
                "# TYPE runner_nearest_expiry_seconds gauge\nrunner_nearest_expiry_seconds {}",
                secs(at.saturating_sub(backlog.chain_now_ns))
            );
        }
        out
    }
}

/// What is at risk until settlement lands, read from the store per scrape.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Channels with a receipt to settle.
    pub channels: usize,
    /// Yocto signed for and not yet settled, over those channels.
    pub unsettled: u128,
    /// When the oldest unsettled receipt was issued (ns).
    pub oldest_pending_ns: Option<u64>,
    /// The soonest expiry of an authorization with something unsettled (ns): past it the
    /// hub settles nothing under it.
    pub nearest_expiry_ns: Option<u64>,
    /// This machine's time, which receipts are issued by.
    pub now_ns: u64,
    /// The chain's, which authorizations expire by.
    pub chain_now_ns: u64,
    /// Hub views served stale because the node failed.
    pub stale_views: u64,
}

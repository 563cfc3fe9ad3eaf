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

    /// The text exposition; `backlog` is the number of channels with a receipt to settle.
    pub fn render(&self, backlog: usize) -> String {
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
            "# TYPE runner_settlement_backlog gauge\nrunner_settlement_backlog {backlog}"
        );
        out
    }
}

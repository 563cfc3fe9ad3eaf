//! What the runner adds to each request, without inference: the authorization check
//! (token decoding, the user's signature, cached hub views), receipt signing and the
//! durable (fsynced) write, measured on the hub on the local chain with the echo backend
//! answering one token. Prints the figures and writes them as the "Runner overhead"
//! section of docs/benchmarks.md (replacing an earlier one).
//!
//! `cargo run -p off-chain-runner --example overhead_bench [requests]`

// Figures are converted to floats only to be printed with a few significant digits; nothing
// is computed back from them.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{Net, Opts};
use off_chain_runner::{
    http::auth,
    meter::{next_record, Charge},
    state::wall_clock_ns,
    token,
};
use sandbox_tests::{MODEL, NEAR};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

struct Row {
    what: String,
    samples: Vec<Duration>,
    per_second: Option<f64>,
}

impl Row {
    fn new(what: &str, mut samples: Vec<Duration>, per_second: Option<f64>) -> Self {
        samples.sort_unstable();
        Self {
            what: what.into(),
            samples,
            per_second,
        }
    }

    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} |",
            self.what,
            self.samples.len(),
            micros(percentile(&self.samples, 0.5)),
            micros(percentile(&self.samples, 0.99)),
            self.per_second.map_or(String::new(), |r| format!("{r:.0}")),
        )
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1000, |a| a.parse().expect("a request count"));
    let users = 16;
    let net = Net::start("bench", users).await;
    let running = net.runner("data", Opts::default()).await;
    let state = Arc::clone(&running.state);
    let tokens: Vec<String> =
        futures_util::future::join_all((0..users).map(|i| net.authorization(i, 1000 * NEAR)))
            .await
            .iter()
            .map(token::encode)
            .collect();
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/chat/completions", running.addr);
    let request = move |token: String| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let t = Instant::now();
            let resp = client
                .post(&url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
            t.elapsed()
        }
    };
    // Warm the caches and the connection pool.
    for t in &tokens {
        request(t.clone()).await;
    }

    let mut rows = Vec::new();
    // 1. Components, called directly.
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", tokens[0]).parse().unwrap(),
    );
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        auth::payer(&state, &headers).await.unwrap();
        samples.push(t.elapsed());
    }
    rows.push(Row::new(
        "authorization check (decode, ed25519 verify, cached hub views)",
        samples,
        None,
    ));

    let payer = auth::payer(&state, &headers).await.unwrap();
    let charge = Charge {
        model_id: MODEL.into(),
        version: 2,
        units_in: 10,
        units_out: 1,
        amount: 12,
        content: vec![],
        request_hash: [1; 32],
        output_hash: [2; 32],
    };
    let mut sign = Vec::with_capacity(n);
    let mut write = Vec::with_capacity(n);
    for _ in 0..n {
        let current = state.store.channel(payer.user()).unwrap();
        let t = Instant::now();
        let record = next_record(
            current.as_ref(),
            &payer.auth,
            payer.auth_id,
            &charge,
            &state.receipt_key,
            wall_clock_ns(),
        )
        .unwrap();
        sign.push(t.elapsed());
        let t = Instant::now();
        state.store.append(payer.user(), |_| Ok(record)).unwrap();
        write.push(t.elapsed());
    }
    rows.push(Row::new(
        "next receipt built and signed (ed25519)",
        sign,
        None,
    ));
    rows.push(Row::new("receipt committed to redb (fsync)", write, None));

    // 2. Whole requests over HTTP (keep-alive, 1 output token of the echo backend).
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        samples.push(request(tokens[i % users].clone()).await);
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    rows.push(Row::new(
        "whole request, one client, sequential",
        samples,
        Some(rate),
    ));

    for (label, channels) in [
        ("16 clients on 16 channels", users),
        ("16 clients on one channel", 1),
    ] {
        let t0 = Instant::now();
        let per_client = n / 16;
        let tasks: Vec<_> = (0..16)
            .map(|c| {
                let token = tokens[c % channels].clone();
                let request = request.clone();
                tokio::spawn(async move {
                    let mut s = Vec::with_capacity(per_client);
                    for _ in 0..per_client {
                        s.push(request(token.clone()).await);
                    }
                    s
                })
            })
            .collect();
        let samples: Vec<Duration> = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect();
        let rate = samples.len() as f64 / t0.elapsed().as_secs_f64();
        rows.push(Row::new(
            &format!("whole request, {label}"),
            samples,
            Some(rate),
        ));
    }
    running.stop().await;

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mut section = String::new();
    let _ = writeln!(section, "## Runner overhead\n");
    let _ = writeln!(
        section,
        "What the runner adds to a request besides inference: the authorization check, the receipt's \
         signature and its durable write (redb, fsync before the response). The echo backend answers one \
         token, so whole-request figures are the runner's overhead plus HTTP on loopback. Measured by \
         `cargo run -p off-chain-runner --example overhead_bench` ({} build: dependencies at opt-level 2, \
         the runner at {}), {cpu}, {cores} cores, the receipt store on this machine's disk. Times in µs.\n",
        if cfg!(debug_assertions) { "dev" } else { "release" },
        if cfg!(debug_assertions) { "opt-level 0" } else { "opt-level 3" },
    );
    let _ = writeln!(
        section,
        "| what | samples | p50 µs | p99 µs | requests/s |\n|---|---|---|---|---|"
    );
    for row in &rows {
        let _ = writeln!(section, "{}", row.line());
    }
    let _ = writeln!(
        section,
        "\nEvery receipt is its own fsynced write transaction, so a channel's requests, and the runner's \
         as a whole, are bounded by the disk's sync latency; grouping commits is the next step if that \
         matters more than per-request durability."
    );
    print!("{section}");
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    market_report::bench::write_section(&path, "## Runner overhead", &section).unwrap();
    eprintln!("wrote {}", path.display());
}

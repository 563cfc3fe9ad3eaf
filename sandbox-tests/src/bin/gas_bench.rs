//! Gas and size benchmark of the hub on the embedded chain (nearcore's VM and gas schedule):
//! gas per public method, and `settle` per receipt for batches of 1, 10, 100 and the
//! largest that fits in one 300 Tgas call. Prints the figures and writes docs/benchmarks.md.
//!
//!     cargo run -p sandbox-tests --bin gas_bench

// Figures are converted to floats only to be printed with a few significant digits; nothing
// is computed back from them.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
#![allow(clippy::similar_names)] // `spent` beside other figure names reads fine here

use std::{fmt::Write as _, path::PathBuf};

use local_chain::TxResult;
use market_hub_api::{
    methods, Call, License, ManifestEntry, ModelUpdate, RunnerPolicy, VersionInput,
};
use market_protocol::SettleItem;
use near_sdk::AccountId;
use sandbox_tests::{
    acc, publish_token_globally, version_input, wasm, yocto, Market, MODEL, NEAR, TGAS,
};
use serde_json::json;

const TGAS_F: f64 = 1e12;

/// Gas the receipts of a call burnt (the contract's execution and its fees), and the
/// whole transaction's.
fn gas(result: &TxResult) -> (u64, u64) {
    result
        .result()
        .unwrap_or_else(|e| panic!("benchmark call failed: {e}"));
    (result.receipts[0].gas_burnt, result.gas_burnt())
}

/// Sends `c` from `who` to the hub and records its gas in a row named after the method,
/// with `note` in parentheses after it.
fn measure<R>(
    m: &mut Market,
    rows: &mut Vec<(String, u64, u64)>,
    who: &AccountId,
    c: Call<R>,
    note: &str,
) {
    let name = if note.is_empty() {
        c.method.to_owned()
    } else {
        format!("{} ({note})", c.method)
    };
    let hub = m.hub.clone();
    let (a, b) = gas(&m.env.call(who, &hub, c));
    rows.push((name, a, b));
}

fn tgas(g: u64) -> String {
    format!("{:.2}", g as f64 / TGAS_F)
}

fn main() {
    let users = 2_000;
    eprintln!("setting up {users} funded channels on the local chain...");
    let mut m = Market::new(0);
    let mut rows: Vec<(String, u64, u64)> = Vec::new();
    let (hub, runner) = (m.hub.clone(), m.runner.clone());

    // Per-method gas, from fresh calls.
    let dev = acc("dev.near");
    measure(
        &mut m,
        &mut rows,
        &dev,
        methods::register_model("bench-model", 1, 1, 7000, &RunnerPolicy::Open).deposit(NEAR / 10),
        "",
    );
    let version = VersionInput {
        uri: "pypi:x==1".into(),
        size_bytes: 1.into(),
        sealed: None,
        ..version_input()
    };
    measure(
        &mut m,
        &mut rows,
        &dev,
        methods::add_model_version("bench-model", &version).deposit(NEAR / 10),
        "",
    );
    // A closed model: a sealed version, the runner's sealing key, a grant; with the bytes
    // each adds to the hub's storage (paid by the caller).
    let hub_bytes = |m: &Market| m.env.chain.account(&hub).map_or(0, |a| a.storage_usage);
    let sealed = VersionInput {
        sealed: Some(market_hub_api::SealedArtifact {
            scheme: "xchacha20poly1305-stream-be32".into(),
            ciphertext_sha256: [5; 32].into(),
            ciphertext_size: 1.into(),
        }),
        ..version.clone()
    };
    let before = hub_bytes(&m);
    measure(
        &mut m,
        &mut rows,
        &dev,
        methods::add_model_version("bench-model", &sealed).deposit(NEAR / 10),
        "sealed",
    );
    let sealed_bytes = hub_bytes(&m) - before;
    let _ = write!(
        rows.last_mut().expect("a row").0,
        ", stores {sealed_bytes} bytes"
    );
    let sealing = [9u8; 32];
    let binding = market_protocol::sealing::SealingKeyBinding {
        hub: hub.to_string(),
        chain_id: sandbox_tests::CHAIN_ID.into(),
        runner: runner.to_string(),
        sealing_key: sealing,
    }
    .prehash(&market_protocol::NativeCrypto);
    let signature = ed25519_dalek::Signer::sign(&m.runner_key.0, &binding).to_bytes();
    let before = hub_bytes(&m);
    let receipt_key = m.runner_key.public_key();
    measure(
        &mut m,
        &mut rows,
        &runner,
        methods::register_sealing_key(&sealing, &receipt_key, &signature, None).deposit(NEAR / 100),
        "",
    );
    let key_bytes = hub_bytes(&m) - before;
    let _ = write!(
        rows.last_mut().expect("a row").0,
        " (stores {key_bytes} bytes)"
    );
    let before = hub_bytes(&m);
    measure(
        &mut m,
        &mut rows,
        &dev,
        methods::grant_sealed_version("bench-model", 2, &runner, &sealing, &[1; 32], &[2; 48])
            .deposit(NEAR / 100),
        "",
    );
    let grant_bytes = hub_bytes(&m) - before;
    let _ = write!(
        rows.last_mut().expect("a row").0,
        " (stores {grant_bytes} bytes: {:.5} NEAR of storage)",
        grant_bytes as f64 * 1e-5
    );
    let update = ModelUpdate {
        price_in_per_1k: Some(2.into()),
        ..ModelUpdate::default()
    };
    measure(
        &mut m,
        &mut rows,
        &dev,
        methods::update_model("bench-model", &update),
        "",
    );

    for i in 0..users {
        let user = m.add_user(&format!("user{i}.near"), 10 * NEAR);
        if i == 0 {
            measure(
                &mut m,
                &mut rows,
                &user,
                methods::fund_channel(&runner).deposit(NEAR),
                "existing channel",
            );
        }
    }
    // The setup calls of the last user, re-measured on a fresh one.
    let probe = m.env.create_account("probe.near", 20 * NEAR);
    let key = market_protocol::crypto::native::KeyPair::from_seed([77; 32]);
    measure(
        &mut m,
        &mut rows,
        &probe,
        methods::register_user_key(&key.public_key()).deposit(NEAR / 10),
        "",
    );
    measure(
        &mut m,
        &mut rows,
        &probe,
        methods::fund_channel(&runner).deposit(5 * NEAR),
        "opening",
    );

    let auths: Vec<_> = (0..users)
        .map(|i| m.authorization(i, 1_000 * NEAR))
        .collect();
    let mut seq = vec![0u64; users];
    let batch = |m: &mut Market, n: usize, attach: bool, seq: &mut Vec<u64>| -> Vec<SettleItem> {
        (0..n)
            .map(|i| {
                seq[i] += 1;
                let mut item = m.receipt(&auths[i], seq[i], u128::from(seq[i]) * 1_000_000);
                if !attach {
                    item.authorization = None;
                }
                item
            })
            .collect()
    };

    let mut settle_rows = Vec::new();
    let relayer = m.env.create_account("relayer.near", 10 * NEAR);
    // (receipts, attach the authorization, relayed, label)
    let cases = [
        (
            1,
            true,
            false,
            "first receipt of a channel (authorization verified)",
        ),
        (1, false, false, "later receipt (authorization remembered)"),
        (10, false, false, "later receipts"),
        (100, false, false, "later receipts"),
        (
            100,
            false,
            true,
            "later receipts, relayed (runner signatures checked)",
        ),
    ];
    for (n, attach, relayed, label) in cases {
        let items = batch(&mut m, n, attach, &mut seq);
        let r = if relayed {
            m.settle_as(&relayer, &items, 300 * TGAS)
        } else {
            m.settle(&items, 300 * TGAS)
        };
        let (receipt_gas, _) = gas(&r);
        settle_rows.push((n, label, receipt_gas));
    }

    // The largest batch of later receipts that fits one 300 Tgas call: binary search.
    let (mut lo, mut hi) = (100usize, users);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let items = batch(&mut m, mid, false, &mut seq);
        let ok = m.settle(&items, 300 * TGAS).result().is_ok();
        if !ok {
            // A failed batch settled nothing: roll the sequence numbers back.
            for s in seq.iter_mut().take(mid) {
                *s -= 1;
            }
        }
        eprintln!(
            "  {mid} receipts: {}",
            if ok { "fit" } else { "over 300 Tgas" }
        );
        if ok {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // Measured again on fresh receipts: the state grew since the search, so the last
    // fitting size may now just miss; step down until it fits.
    let r = loop {
        let items = batch(&mut m, lo, false, &mut seq);
        let r = m.settle(&items, 300 * TGAS);
        if r.result().is_ok() {
            break r;
        }
        for s in seq.iter_mut().take(lo) {
            *s -= 1;
        }
        lo -= 1;
    };
    let (max_gas, _) = gas(&r);
    settle_rows.push((
        lo,
        "largest batch of later receipts in one 300 Tgas call",
        max_gas,
    ));
    if lo == users {
        eprintln!("note: every one of the {users} channels fit; the real ceiling is higher");
    }

    measure(
        &mut m,
        &mut rows,
        &runner,
        methods::withdraw_earnings(None),
        "with callback",
    );
    let user = m.users[0].0.clone();
    measure(
        &mut m,
        &mut rows,
        &user,
        methods::request_withdrawal(&runner),
        "",
    );
    m.env.chain.fast_forward(3 * 3_600);
    measure(
        &mut m,
        &mut rows,
        &user,
        methods::finish_withdrawal(&runner),
        "with callback",
    );

    // The model token.
    let mut token_rows: Vec<(String, u64, u64)> = Vec::new();
    let token = m.env.create_account("smol-token.near", 5 * NEAR);
    m.env.deploy(&token, wasm("model_token"));
    let r = m.env.call_json(&token, &token, "new", json!({
        "hub": hub, "metadata": {"spec": "ft-1.0.0", "name": "smollm2-135m", "symbol": "SMOL", "decimals": 18},
        "allocations": [["dev.near", "700"], ["runner.near", "300"]]}), 0);
    let (a, b) = gas(&r);
    token_rows.push(("new (two holders)".into(), a, b));
    let r = m
        .env
        .call_json(&hub, &token, "on_revenue", json!({}), 1_000_000);
    let (a, b) = gas(&r);
    token_rows.push(("on_revenue".into(), a, b));
    let bounds = m.env.view_json(&token, "storage_balance_bounds", json!({}));
    let r = m.env.call_json(
        &acc("user0.near"),
        &token,
        "storage_deposit",
        json!({}),
        yocto(&bounds["min"]),
    );
    let (a, b) = gas(&r);
    token_rows.push(("storage_deposit".into(), a, b));
    let r = m.env.call_json(
        &dev,
        &token,
        "ft_transfer",
        json!({"receiver_id": "user0.near", "amount": "100"}),
        1,
    );
    let (a, b) = gas(&r);
    token_rows.push(("ft_transfer (both positions updated)".into(), a, b));
    let r = m.env.call_json(&dev, &token, "claim", json!({}), 0);
    let (a, b) = gas(&r);
    token_rows.push(("claim (with callback)".into(), a, b));

    // Issuance by the hub, without global contract code: the token's code is stored on
    // its own account, so its storage dominates.
    let owner = acc("owner.near");
    let r = m.env.call(
        &owner,
        &hub,
        methods::set_token_code(&wasm("model_token")).deposit(3 * NEAR),
    );
    gas(&r);
    let before = m.env.balance(&dev);
    m.register_content(&dev, "corpus", &License::OpenForTraining);
    let manifest = [ManifestEntry {
        content_id: "corpus".into(),
        weight: 30,
    }];
    let r = m.env.call(
        &dev,
        &hub,
        methods::issue_token(MODEL, "SMOL", &manifest, 70).deposit(3 * NEAR),
    );
    let (a, b) = gas(&r);
    let spent = before
        - m.env.balance(&dev)
        - (r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>());
    let token_account = acc(&format!("{MODEL}.{hub}"));
    let used = m
        .env
        .chain
        .account(&token_account)
        .map_or(0, |a| a.storage_usage);
    rows.push((format!("issue_token (deploys {} bytes; token account stores {used} bytes: {:.3} NEAR of storage)", wasm("model_token").len(), spent as f64 / NEAR as f64), a, b));
    // The same with the token as a global contract, deployed once by hash.
    let publisher = m.env.create_account("publisher.near", 30 * NEAR);
    let code = wasm("model_token");
    let hash = publish_token_globally(&mut m.env, &publisher);
    m.env
        .call(&owner, &hub, methods::set_token_code_hash(hash.0.into()))
        .result()
        .unwrap();
    m.env
        .call(
            &dev,
            &hub,
            methods::register_model("second-model", 1, 1, 7000, &RunnerPolicy::Open)
                .deposit(NEAR / 10),
        )
        .result()
        .unwrap();
    let before = m.env.balance(&dev);
    let r = m.env.call(
        &dev,
        &hub,
        methods::issue_token("second-model", "TWO", &[], 1).deposit(NEAR / 10),
    );
    let (a, b) = gas(&r);
    let spent = before
        - m.env.balance(&dev)
        - (r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>());
    let used = m
        .env
        .chain
        .account(&acc(&format!("second-model.{hub}")))
        .map_or(0, |a| a.storage_usage);
    rows.push((format!("issue_token with global code (token account stores {used} bytes: {:.3} NEAR of storage; the code was published once for {:.1} NEAR)", spent as f64 / NEAR as f64, (code.len() as f64) * 1e-4), a, b));

    let auth = m.authorization(0, 1_000 * NEAR);
    seq[0] += 1;
    m.settle(
        &[m.receipt(&auth, seq[0], u128::from(seq[0]) * 1_000_000)],
        300 * TGAS,
    )
    .result()
    .unwrap();
    measure(
        &mut m,
        &mut rows,
        &runner,
        methods::flush(MODEL),
        "one call to the token, with callback",
    );

    let size = wasm("market_hub").len();
    let token_size = wasm("model_token").len();
    let mut out = String::new();
    writeln!(out, "# Benchmarks\n").unwrap();
    writeln!(out, "Measured by `cargo run -p sandbox-tests --bin gas_bench` (after `scripts/build.sh`) on the embedded").unwrap();
    writeln!(out, "local chain: the optimized wasm in nearcore's VM (near-vm-runner 0.38, wasmtime) with the gas").unwrap();
    writeln!(
        out,
        "schedule of protocol version {}, storage reads and writes charged for trie nodes as",
        near_primitives::version::PROTOCOL_VERSION
    )
    .unwrap();
    writeln!(
        out,
        "`local-chain/README.md` states. Gas does not depend on the machine.\n"
    )
    .unwrap();
    writeln!(out, "## Size\n\n| contract | bytes |\n|---|---|\n| `res/market_hub.wasm` | {size} |\n| `res/model_token.wasm` | {token_size} |\n").unwrap();
    writeln!(out, "## Gas per method\n\n\"Contract\" is what the hub's receipt burnt (execution and action fees); \"transaction\" adds the").unwrap();
    writeln!(
        out,
        "transaction's own fees and every receipt it caused (transfers, callbacks, refunds).\n"
    )
    .unwrap();
    writeln!(
        out,
        "| method | contract Tgas | transaction Tgas |\n|---|---|---|"
    )
    .unwrap();
    for (name, a, b) in &rows {
        writeln!(out, "| `{name}` | {} | {} |", tgas(*a), tgas(*b)).unwrap();
    }
    writeln!(out, "\n## `settle`\n\n| receipts | kind | Tgas | Tgas per receipt | receipts per 300 Tgas |\n|---|---|---|---|---|").unwrap();
    for (n, label, g) in &settle_rows {
        let per = *g as f64 / *n as f64;
        writeln!(
            out,
            "| {n} | {label} | {} | {:.3} | {:.0} |",
            tgas(*g),
            per / TGAS_F,
            300.0 * TGAS_F / per
        )
        .unwrap();
    }
    writeln!(out, "\nThe largest batch is found by binary search over real `settle` calls with 300 Tgas attached.").unwrap();
    writeln!(
        out,
        "\n## Model token\n\n| method | contract Tgas | transaction Tgas |\n|---|---|---|"
    )
    .unwrap();
    for (name, a, b) in &token_rows {
        writeln!(out, "| `{name}` | {} | {} |", tgas(*a), tgas(*b)).unwrap();
    }

    print!("{out}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    // Only this benchmark's sections: the off-chain ones are their own benchmarks'.
    market_report::bench::write_sections(&path, &out).expect("write docs/benchmarks.md");
    eprintln!("wrote {}", path.display());
}

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
use market_protocol::SettleItem;
use sandbox_tests::{acc, publish_token_globally, wasm, yocto, Market, MODEL, NEAR, TGAS};
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

fn tgas(g: u64) -> String {
    format!("{:.2}", g as f64 / TGAS_F)
}

fn main() {
    let users = 2_000;
    eprintln!("setting up {users} funded channels on the local chain...");
    let mut m = Market::new(0);
    let mut methods: Vec<(String, u64, u64)> = Vec::new();
    let (hub, runner) = (m.hub.clone(), m.runner.clone());

    // Per-method gas, from fresh calls.
    let dev = acc("dev.near");
    let r = m.env.call(&dev, &hub, "register_model", json!({"model_id": "bench-model", "price_in_per_1k": "1", "price_out_per_1k": "1", "runner_bps": 7000, "runner_policy": "Open"}), NEAR / 10);
    let (a, b) = gas(&r);
    methods.push(("register_model".into(), a, b));
    let r = m.env.call(&dev, &hub, "add_model_version", json!({"model_id": "bench-model", "version": {
        "weights_sha256": "11111111111111111111111111111111", "format": "gguf", "architecture": "llama",
        "tokenizer_sha256": "11111111111111111111111111111111", "uri": "pypi:x==1", "size_bytes": "1"}}), NEAR / 10);
    let (a, b) = gas(&r);
    methods.push(("add_model_version".into(), a, b));
    let r = m.env.call(
        &dev,
        &hub,
        "update_model",
        json!({"model_id": "bench-model", "update": {"price_in_per_1k": "2"}}),
        1,
    );
    let (a, b) = gas(&r);
    methods.push(("update_model".into(), a, b));

    for i in 0..users {
        let user = m.add_user(&format!("user{i}.near"), 10 * NEAR);
        if i == 0 {
            let r = m
                .env
                .call(&user, &hub, "fund_channel", json!({"runner": runner}), NEAR);
            let (a, b) = gas(&r);
            methods.push(("fund_channel (existing channel)".into(), a, b));
        }
    }
    // The setup calls of the last user, re-measured on a fresh one.
    let probe = m.env.create_account("probe.near", 20 * NEAR);
    let key = market_protocol::crypto::native::KeyPair::from_seed([77; 32]);
    let r = m.env.call(
        &probe,
        &hub,
        "register_user_key",
        json!({"key": String::from(&key.public_key())}),
        NEAR / 10,
    );
    let (a, b) = gas(&r);
    methods.push(("register_user_key".into(), a, b));
    let r = m.env.call(
        &probe,
        &hub,
        "fund_channel",
        json!({"runner": runner}),
        5 * NEAR,
    );
    let (a, b) = gas(&r);
    methods.push(("fund_channel (opening)".into(), a, b));

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

    let r = m.env.call(&runner, &hub, "withdraw_earnings", json!({}), 1);
    let (a, b) = gas(&r);
    methods.push(("withdraw_earnings (with callback)".into(), a, b));
    let user = m.users[0].0.clone();
    let r = m.env.call(
        &user,
        &hub,
        "request_withdrawal",
        json!({"runner": runner}),
        0,
    );
    let (a, b) = gas(&r);
    methods.push(("request_withdrawal".into(), a, b));
    m.env.chain.fast_forward(3 * 3_600);
    let r = m.env.call(
        &user,
        &hub,
        "finish_withdrawal",
        json!({"runner": runner}),
        1,
    );
    let (a, b) = gas(&r);
    methods.push(("finish_withdrawal (with callback)".into(), a, b));

    // The model token.
    let mut token_rows: Vec<(String, u64, u64)> = Vec::new();
    let token = m.env.create_account("smol-token.near", 5 * NEAR);
    m.env.deploy(&token, wasm("model_token"));
    let r = m.env.call(&token, &token, "new", json!({
        "hub": hub, "metadata": {"spec": "ft-1.0.0", "name": "smollm2-135m", "symbol": "SMOL", "decimals": 18},
        "allocations": [["dev.near", "700"], ["runner.near", "300"]]}), 0);
    let (a, b) = gas(&r);
    token_rows.push(("new (two holders)".into(), a, b));
    let r = m.env.call(&hub, &token, "on_revenue", json!({}), 1_000_000);
    let (a, b) = gas(&r);
    token_rows.push(("on_revenue".into(), a, b));
    let bounds = m.env.view(&token, "storage_balance_bounds", json!({}));
    let r = m.env.call(
        &acc("user0.near"),
        &token,
        "storage_deposit",
        json!({}),
        yocto(&bounds["min"]),
    );
    let (a, b) = gas(&r);
    token_rows.push(("storage_deposit".into(), a, b));
    let r = m.env.call(
        &dev,
        &token,
        "ft_transfer",
        json!({"receiver_id": "user0.near", "amount": "100"}),
        1,
    );
    let (a, b) = gas(&r);
    token_rows.push(("ft_transfer (both positions updated)".into(), a, b));
    let r = m.env.call(&dev, &token, "claim", json!({}), 0);
    let (a, b) = gas(&r);
    token_rows.push(("claim (with callback)".into(), a, b));

    // Issuance by the hub, without global contract code: the token's code is stored on
    // its own account, so its storage dominates.
    let owner = acc("owner.near");
    let r = m.env.call_raw(
        &owner,
        &hub,
        "set_token_code",
        borsh::to_vec(&wasm("model_token")).unwrap(),
        3 * NEAR,
        300 * TGAS,
    );
    gas(&r);
    let before = m.env.balance(&dev);
    m.env.call(&dev, &hub, "register_content", json!({"content_id": "corpus", "sha256": "11111111111111111111111111111111", "uri": "https://x/c", "license": "OpenForTraining"}), NEAR / 10).result().unwrap();
    let r = m.env.call(&dev, &hub, "issue_token", json!({"model_id": MODEL, "symbol": "SMOL", "manifest": [{"content_id": "corpus", "weight": 30}], "developer_weight": 70}), 3 * NEAR);
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
    methods.push((format!("issue_token (deploys {} bytes; token account stores {used} bytes: {:.3} NEAR of storage)", wasm("model_token").len(), spent as f64 / NEAR as f64), a, b));
    // The same with the token as a global contract, deployed once by hash.
    let publisher = m.env.create_account("publisher.near", 30 * NEAR);
    let code = wasm("model_token");
    let hash = publish_token_globally(&mut m.env, &publisher);
    m.env
        .call(
            &owner,
            &hub,
            "set_token_code_hash",
            json!({"code_hash": hash.to_string()}),
            1,
        )
        .result()
        .unwrap();
    m.env.call(&dev, &hub, "register_model", json!({"model_id": "second-model", "price_in_per_1k": "1", "price_out_per_1k": "1", "runner_bps": 7000, "runner_policy": "Open"}), NEAR / 10).result().unwrap();
    let before = m.env.balance(&dev);
    let r = m.env.call(
        &dev,
        &hub,
        "issue_token",
        json!({"model_id": "second-model", "symbol": "TWO", "manifest": [], "developer_weight": 1}),
        NEAR / 10,
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
    methods.push((format!("issue_token with global code (token account stores {used} bytes: {:.3} NEAR of storage; the code was published once for {:.1} NEAR)", spent as f64 / NEAR as f64, (code.len() as f64) * 1e-4), a, b));

    let auth = m.authorization(0, 1_000 * NEAR);
    seq[0] += 1;
    m.settle(
        &[m.receipt(&auth, seq[0], u128::from(seq[0]) * 1_000_000)],
        300 * TGAS,
    )
    .result()
    .unwrap();
    let r = m
        .env
        .call(&runner, &hub, "flush", json!({"model_id": MODEL}), 0);
    let (a, b) = gas(&r);
    methods.push(("flush (one call to the token, with callback)".into(), a, b));

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
    for (name, a, b) in &methods {
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
    // The off-chain sections are written by their own benchmarks (`overhead_bench` of
    // the runner, `engine_bench` of the engine): keep them.
    if let Some(runner) = std::fs::read_to_string(&path).ok().and_then(|old| {
        ["## Runner overhead", "## Inference engine"]
            .iter()
            .filter_map(|h| old.find(h))
            .min()
            .map(|i| old[i..].to_owned())
    }) {
        out = format!("{}\n\n{runner}", out.trim_end());
    }
    std::fs::write(&path, out).expect("write docs/benchmarks.md");
    eprintln!("wrote {}", path.display());
}

//! The local demo: the whole money flow on the embedded chain, no network or account
//! needed. Deploys the hub, registers open training content and paywalled inference-time
//! content, a model whose token is split by its training manifest, and a runner; lets
//! three users fund channels and sign spending authorizations; has the runner sign
//! cumulative receipts for their requests (some using the paywalled content); settles them
//! in one batch (with a forged receipt the hub refuses); pays everyone out, the token's
//! holders through one flush and their claims; and prints who earned what with the
//! conservation check.
//!
//!     scripts/demo.sh

use market_protocol::{
    receipt::next_transcript, NativeCrypto, SettleItem, SignedReceipt, UsageLine, UsageReceipt,
};
use near_primitives::types::AccountId;
use near_sdk::json_types::{U128, U64};
use sandbox_tests::*;
use serde_json::json;

const MILLI: u128 = NEAR / 1_000;

fn near(yocto: u128) -> String {
    format!("{:.6}", yocto as f64 / NEAR as f64)
}

fn step(text: &str) {
    println!("==> {text}");
}

/// Yocto for `units` at `price` per 1,000 units, rounded up (the runner's quote).
fn price(units: u64, per_1k: u128) -> u128 {
    (u128::from(units) * per_1k).div_ceil(1_000)
}

fn main() {
    step("starting the local chain and deploying res/market_hub.wasm");
    let mut m = Market::new(0);
    let (hub, runner) = (m.hub.clone(), m.runner.clone());
    // Market::new registers the model at placeholder prices; the demo's are set here.
    let dev = acc("dev.near");
    let (price_in, price_out) = (MILLI / 5, MILLI * 3 / 5);
    m.env
        .call(&dev, &hub, "update_model", json!({"model_id": MODEL, "update": {"price_in_per_1k": price_in.to_string(), "price_out_per_1k": price_out.to_string()}}), 0)
        .result()
        .expect("update_model");
    println!("    model {MODEL} v1 by dev.near: {} NEAR / 1k input tokens, {} NEAR / 1k output tokens, runner share 70 %, protocol 10 %, holders 20 %", near(price_in), near(price_out));
    println!("    runner runner.near registered with a receipt key and a 2 NEAR bond");

    step("content owners register content: an open corpus for training, a paywalled encyclopedia for inference");
    let corpus_owner = m.env.create_account("corpus-owner.near", 5 * NEAR);
    let encyclopedia = m.env.create_account("encyclopedia.near", 5 * NEAR);
    m.env.call(&corpus_owner, &hub, "register_content", json!({"content_id": "fineweb-edu-sample", "sha256": "11111111111111111111111111111111", "uri": "https://example.org/fineweb-edu-sample", "license": "OpenForTraining"}), NEAR / 10).result().expect("register_content");
    let price_per_use = MILLI / 10;
    m.env.call(&encyclopedia, &hub, "register_content", json!({"content_id": "encyclopedia-fr", "sha256": "11111111111111111111111111111111", "uri": "https://example.org/encyclopedia-fr", "license": {"InferenceOnly": {"price_per_use": price_per_use.to_string()}}}), NEAR / 10).result().expect("register_content");
    println!("    fineweb-edu-sample (open, owner corpus-owner.near); encyclopedia-fr (inference-only, {} NEAR per use)", near(price_per_use));

    step("dev.near issues the model's token: 70 % to itself, 30 % to the owner of its training content");
    let owner = acc("owner.near");
    m.env
        .call_raw(
            &owner,
            &hub,
            "set_token_code",
            borsh::to_vec(&wasm("model_token")).expect("borsh"),
            3 * NEAR,
            300 * TGAS,
        )
        .result()
        .expect("set_token_code");
    m.env.call(&dev, &hub, "issue_token", json!({"model_id": MODEL, "symbol": "SMOL", "manifest": [{"content_id": "fineweb-edu-sample", "weight": 30}], "developer_weight": 70}), 3 * NEAR)
        .result()
        .expect("issue_token");
    let token = acc(&format!("{MODEL}.{hub}"));
    println!(
        "    token {token}: dev.near {} / corpus-owner.near {} of 1,000,000 SMOL",
        yocto(
            &m.env
                .view(&token, "ft_balance_of", json!({"account_id": "dev.near"}))
        ) / 10u128.pow(18),
        yocto(&m.env.view(
            &token,
            "ft_balance_of",
            json!({"account_id": "corpus-owner.near"})
        )) / 10u128.pow(18)
    );

    step(
        "three users register keys, fund channels to runner.near and sign authorizations (NEP-413)",
    );
    let deposits = [3 * NEAR, 2 * NEAR, NEAR];
    for (i, funds) in deposits.iter().enumerate() {
        let user = m.add_user(&format!("{}.near", ["alice", "bob", "carol"][i]), *funds);
        println!("    {user}: channel funded with {} NEAR", near(*funds));
    }
    let auths: Vec<_> = (0..3).map(|i| m.authorization(i, NEAR / 2)).collect();

    step("the runner serves requests and signs a cumulative receipt after each (inference is simulated here: token counts only)");
    // (user, input tokens, output tokens, uses of the paywalled encyclopedia) per request.
    let requests = [
        (0, 1_200, 300, 2),
        (1, 800, 150, 0),
        (0, 2_000, 900, 1),
        (2, 400, 100, 0),
        (1, 3_000, 1_200, 3),
        (0, 600, 60, 0),
    ];
    let mut state = [(0u64, 0u64, 0u64, 0u128, [0u8; 32], 0u64); 3]; // seq, in, out, model amount, transcript, content uses
    let mut latest: [Option<SettleItem>; 3] = [None, None, None];
    for (n, (u, tin, tout, uses)) in requests.iter().enumerate() {
        let s = &mut state[*u];
        s.0 += 1;
        s.1 += tin;
        s.2 += tout;
        s.3 += price(*tin, price_in) + price(*tout, price_out);
        s.5 += uses;
        let royalty = u128::from(s.5) * price_per_use;
        let content = if s.5 > 0 {
            vec![market_protocol::ContentLine {
                content_id: "encyclopedia-fr".into(),
                uses: U64(s.5),
                amount: U128(royalty),
            }]
        } else {
            vec![]
        };
        let (request, output) = ([n as u8; 32], [n as u8 ^ 0x5a; 32]);
        s.4 = next_transcript(&NativeCrypto, &s.4, &request, &output);
        let a = &auths[*u].authorization;
        let receipt = UsageReceipt {
            user: a.user.clone(),
            runner: a.runner.clone(),
            authorization: auths[*u].prehash(&NativeCrypto).into(),
            seq: U64(s.0),
            lines: vec![UsageLine {
                model_id: MODEL.into(),
                version: 1,
                units_in: U64(s.1),
                units_out: U64(s.2),
                amount: U128(s.3),
            }],
            content,
            amount: U128(s.3 + royalty),
            request_hash: request.into(),
            output_hash: output.into(),
            transcript: s.4.into(),
            issued_at_ns: U64(m.env.chain.timestamp_ns()),
        };
        let with = if *uses > 0 {
            format!(", {uses} encyclopedia passage(s)")
        } else {
            String::new()
        };
        println!(
            "    request {}: {} {tin} in / {tout} out{with} -> receipt #{} for {} NEAR so far",
            n + 1,
            a.user,
            s.0,
            near(s.3 + royalty)
        );
        latest[*u] = Some(SettleItem {
            receipt: SignedReceipt::sign(receipt, &m.runner_key),
            authorization: Some(auths[*u].clone()),
        });
    }

    step("a relayer settles the latest receipt of each channel in one batch, plus a forged one");
    let mut batch: Vec<SettleItem> = latest.iter().flatten().cloned().collect();
    let mut forged = batch[0].clone();
    forged.receipt.receipt.seq = U64(99);
    forged.receipt.receipt.lines[0].amount = U128(NEAR / 3);
    let content_total: u128 = forged
        .receipt
        .receipt
        .content
        .iter()
        .map(|c| c.amount.0)
        .sum();
    forged.receipt.receipt.amount = U128(NEAR / 3 + content_total);
    batch.push(forged);
    let relayer = m.env.create_account("relayer.near", NEAR);
    let result = m.settle_as(&relayer, &batch, 300 * TGAS);
    let outcomes: serde_json::Value =
        serde_json::from_slice(&result.result().expect("settle")).unwrap();
    for o in outcomes.as_array().unwrap() {
        match (o["result"].get("settled"), o["result"].get("rejected")) {
            (Some(s), _) => println!(
                "    {} seq {}: settled {} NEAR",
                o["user"].as_str().unwrap(),
                o["seq"].as_str().unwrap(),
                near(yocto(&s["charge"]))
            ),
            (_, Some(r)) => println!(
                "    {} seq {}: refused ({})",
                o["user"].as_str().unwrap(),
                o["seq"].as_str().unwrap(),
                r["reason"].as_str().unwrap()
            ),
            _ => unreachable!(),
        }
    }
    println!(
        "    gas: {:.2} Tgas for {} receipts",
        result.gas_burnt() as f64 / 1e12,
        batch.len()
    );

    step("payouts: the runner withdraws its earnings, the owner the protocol fees");
    let before = m.env.balance(&runner);
    let w = m.env.call(&runner, &hub, "withdraw_earnings", json!({}), 0);
    w.result().expect("withdraw_earnings");
    let gas_paid: u128 =
        w.transaction.tokens_burnt + w.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    let runner_received = m.env.balance(&runner) + gas_paid - before;
    let owner = acc("owner.near");
    let before = m.env.balance(&owner);
    let w = m.env.call(
        &owner,
        &hub,
        "withdraw_protocol_fees",
        json!({"receiver": "owner.near"}),
        0,
    );
    w.result().expect("withdraw_protocol_fees");
    let gas_paid: u128 =
        w.transaction.tokens_burnt + w.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    let protocol_received = m.env.balance(&owner) + gas_paid - before;

    step("the holders' share goes to the token in one call; holders and the content owner claim");
    m.env
        .call(&relayer, &hub, "flush", json!({"model_id": MODEL}), 0)
        .result()
        .expect("flush");
    let claim = |m: &mut Market, who: &AccountId, contract: &AccountId, method: &str| -> u128 {
        let before = m.env.balance(who);
        let r = m.env.call(who, contract, method, json!({}), 0);
        r.result().unwrap_or_else(|e| panic!("{method}: {e}"));
        let gas: u128 =
            r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
        m.env.balance(who) + gas - before
    };
    let dev_claim = claim(&mut m, &dev, &token, "claim");
    let corpus_claim = claim(&mut m, &corpus_owner, &token, "claim");
    let royalties = claim(&mut m, &encyclopedia, &hub, "withdraw_content_earnings");
    let holders = dev_claim + corpus_claim;
    let undistributed =
        yocto(&m.env.view(&hub, "model", json!({"model_id": MODEL}))["model"]["holders_accrued"]);

    // The earnings table, from the chain's own state and the payouts received.
    let mut charged = 0;
    println!();
    println!("{:<34} {:>14}", "who", "NEAR");
    for (i, (user, _)) in m.users.iter().enumerate() {
        let c = m
            .env
            .view(&hub, "channel", json!({"user": user, "runner": runner}));
        let settled = yocto(&c["channel"]["settled"]);
        charged += settled;
        let unspent = yocto(&c["unspent"]);
        println!(
            "{:<34} {:>14}   (deposited {}, channel storage {}, unspent {})",
            format!("{user} paid"),
            near(settled),
            near(deposits[i]),
            near(deposits[i] - settled - unspent),
            near(unspent)
        );
    }
    println!(
        "{:<34} {:>14}",
        "runner.near earned (compute)",
        near(runner_received)
    );
    println!("{:<34} {:>14}", "dev.near (70 % of SMOL)", near(dev_claim));
    println!(
        "{:<34} {:>14}",
        "corpus-owner.near (30 % of SMOL)",
        near(corpus_claim)
    );
    println!(
        "{:<34} {:>14}",
        "encyclopedia.near (per use)",
        near(royalties)
    );
    println!(
        "{:<34} {:>14}",
        "protocol (owner.near)",
        near(protocol_received)
    );
    let paid = runner_received + holders + undistributed + royalties + protocol_received;
    println!();
    println!(
        "conservation: charged {charged} yocto = runner {runner_received} + token holders {holders} + content {royalties} + protocol {protocol_received}{} = {paid} yocto: {}",
        if undistributed > 0 { format!(" + not yet flushed {undistributed}") } else { String::new() },
        if paid == charged { "holds" } else { "BROKEN" }
    );
    assert_eq!(paid, charged, "conservation");
}

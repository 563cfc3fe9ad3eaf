//! Conservation across the hub and a model token, on the compiled wasm: a seeded random
//! sequence of settlements (with paid content), flushes, token transfers, claims and
//! withdrawals. After every step, what users were charged equals what the hub still owes
//! plus what it paid out, and each token's revenue equals what its holders claimed plus
//! what they can still claim, to the yocto (less a carried remainder below one yocto per
//! holder and event).

// Random choices are indices below 8: the casts to usize are exact.
#![allow(clippy::cast_possible_truncation)]

use market_hub_api::{methods, License, ManifestEntry};
use sandbox_tests::{harness::Rng, *};
use serde_json::json;

#[test]
fn charges_equal_what_is_owed_plus_what_was_paid() {
    let mut m = Market::new(3);
    let hub = m.hub.clone();
    let (dev, owner, runner) = (acc("dev.near"), acc("owner.near"), m.runner.clone());
    let curator = m.env.create_account("curator.near", 5 * NEAR);
    let wiki = m.env.create_account("wiki.near", 5 * NEAR);
    m.register_content(&curator, "corpus", &License::OpenForTraining);
    let per_use = License::InferenceOnly {
        price_per_use: 1000.into(),
    };
    m.env
        .call(
            &wiki,
            &hub,
            methods::register_content("wiki", [0; 32].into(), "https://x/w", &per_use)
                .deposit(NEAR / 10),
        )
        .result()
        .unwrap();
    m.env
        .call(
            &owner,
            &hub,
            methods::set_token_code(&wasm("model_token")).deposit(3 * NEAR),
        )
        .result()
        .unwrap();
    let manifest = [ManifestEntry {
        content_id: "corpus".into(),
        weight: 1,
    }];
    m.env
        .call(
            &dev,
            &hub,
            methods::issue_token(MODEL, "SMOL", &manifest, 2).deposit(3 * NEAR),
        )
        .result()
        .unwrap();
    let token = acc(&format!("{MODEL}.{hub}"));
    let holders = ["dev.near", "curator.near", "user0.near"];
    let bounds = m.env.view_json(&token, "storage_balance_bounds", json!({}));
    m.env
        .call_json(
            &acc("user0.near"),
            &token,
            "storage_deposit",
            json!({}),
            yocto(&bounds["min"]),
        )
        .result()
        .unwrap();

    let auths: Vec<_> = (0..3).map(|i| m.authorization(i, 5 * NEAR)).collect();
    let mut state = [(0u64, 0u128, 0u64); 3]; // seq, model amount, wiki uses
    let mut paid_out = 0u128; // withdrawn from the hub's ledgers, and flushed to the token
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut done = [0u32; 4]; // flushes, transfers, claims, withdrawals that happened
    for step in 0..60 {
        match rng.next(7) {
            0..=2 => {
                let u = rng.next(3) as usize;
                let s = &mut state[u];
                s.0 += 1;
                s.1 += u128::from(rng.next(5_000_000));
                s.2 += rng.next(2); // at most one use of the wiki per request
                let mut item = m.receipt(&auths[u], s.0, s.1);
                let royalty = u128::from(s.2) * 1_000;
                item.receipt.receipt.content = if s.2 > 0 {
                    vec![market_protocol::ContentLine {
                        content_id: "wiki".into(),
                        uses: s.2.into(),
                        amount: royalty.into(),
                    }]
                } else {
                    vec![]
                };
                item.receipt.receipt.amount = (s.1 + royalty).into();
                item.receipt =
                    market_protocol::SignedReceipt::sign(item.receipt.receipt, &m.runner_key);
                m.settle(&[item], 300 * TGAS).result().unwrap();
            }
            3 => {
                let accrued = holders_accrued(&m);
                if accrued > 0 {
                    m.env
                        .call(&runner, &hub, methods::flush(MODEL))
                        .result()
                        .unwrap();
                    paid_out += accrued;
                    done[0] += 1;
                }
            }
            4 => {
                let (from, to) = (holders[rng.next(3) as usize], holders[rng.next(3) as usize]);
                let balance = yocto(&m.env.view_json(
                    &token,
                    "ft_balance_of",
                    json!({"account_id": from}),
                ));
                if balance > 0 && from != to {
                    let amount = (u128::from(rng.next(1_000)) * balance / 1_000).max(1);
                    m.env
                        .call_json(
                            &acc(from),
                            &token,
                            "ft_transfer",
                            json!({"receiver_id": to, "amount": amount.to_string()}),
                            1,
                        )
                        .result()
                        .unwrap();
                    done[1] += 1;
                }
            }
            5 => {
                let who = holders[rng.next(3) as usize];
                if yocto(
                    &m.env
                        .view_json(&token, "claimable", json!({"account_id": who})),
                ) > 0
                {
                    m.env
                        .call_json(&acc(who), &token, "claim", json!({}), 0)
                        .result()
                        .unwrap();
                    done[2] += 1;
                }
            }
            _ => {
                let earnings = runner_earnings(&m);
                if earnings > 0 {
                    m.env
                        .call(&runner, &hub, methods::withdraw_earnings(None))
                        .result()
                        .unwrap();
                    paid_out += earnings;
                    done[3] += 1;
                }
                let royalties = m.env.view(&hub, methods::content_earnings(&wiki)).0;
                if royalties > 0 {
                    m.env
                        .call(&wiki, &hub, methods::withdraw_content_earnings(None))
                        .result()
                        .unwrap();
                    paid_out += royalties;
                }
            }
        }
        // The hub: charged = still owed + paid out (to runners, content owners, the token).
        let charged: u128 = m
            .users
            .iter()
            .map(|(u, _)| {
                m.env
                    .view(&hub, methods::channel(u, &runner))
                    .unwrap()
                    .channel
                    .settled
                    .0
            })
            .sum();
        let owed = runner_earnings(&m)
            + m.env.view(&hub, methods::hub_info()).protocol_earnings.0
            + m.env.view(&hub, methods::content_earnings(&wiki)).0
            + holders_accrued(&m);
        assert_eq!(
            charged,
            owed + paid_out,
            "hub conservation broken at step {step}"
        );
        // The token: revenue = claimed + claimable (+ remainders still being carried).
        let info = m.env.view_json(&token, "revenue_info", json!({}));
        let claimable: u128 = holders
            .iter()
            .map(|h| {
                yocto(
                    &m.env
                        .view_json(&token, "claimable", json!({"account_id": h})),
                )
            })
            .sum();
        let (revenue, claimed) = (yocto(&info["total_revenue"]), yocto(&info["total_claimed"]));
        assert!(
            claimed + claimable <= revenue,
            "token pays more than it received at step {step}"
        );
        assert!(
            revenue - claimed - claimable <= 3 * 60,
            "token lost {} yocto at step {step}",
            revenue - claimed - claimable
        );
    }
    // The sequence exercised every kind of step, so the checks above were not vacuous.
    assert!(
        done.iter().all(|&n| n > 0),
        "flushes, transfers, claims, withdrawals: {done:?}"
    );
}

fn runner_earnings(m: &Market) -> u128 {
    m.env
        .view(&m.hub, methods::runner(&m.runner))
        .unwrap()
        .earnings
        .0
}

fn holders_accrued(m: &Market) -> u128 {
    m.env
        .view(&m.hub, methods::model(MODEL))
        .unwrap()
        .model
        .holders_accrued
        .0
}

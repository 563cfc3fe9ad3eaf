//! Settlement rules beyond the attacks: cumulative charging, the split, batches with bad
//! receipts, remembered authorizations, events, simulation.

use super::*;

#[test]
fn cumulative_receipts_charge_the_difference() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    assert_eq!(charge(&w.settle_one(w.receipt(&auth, 1, 1_000))), 1_000);
    // Receipts 2..4 never reach the chain; 5 carries their total.
    assert_eq!(charge(&w.settle_one(w.receipt(&auth, 5, 3_500))), 2_500);
    let c = w
        .hub
        .channel(acc("alice.near"), acc("runner.near"))
        .unwrap();
    assert_eq!(
        (c.channel.settled.0, c.channel.last_seq.0, c.unspent.0),
        (3_500, 5, w.funded - 3_500)
    );
    assert_eq!(c.channel.lines[0].units_in.0, 500);
}

#[test]
fn split_is_exact_with_remainder_to_holders() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    // 1,001 yocto: runner 70 % → 700, protocol 10 % → 100, holders the rest → 201.
    let result = w.settle_one(w.receipt(&auth, 1, 1_001));
    assert_eq!(
        result,
        SettleResult::Settled {
            charge: U128(1_001),
            runner_share: U128(700),
            holders_share: U128(201),
            protocol_share: U128(100),
            content_share: U128(0)
        }
    );
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings.0, 700);
    assert_eq!(w.hub.hub_info().protocol_earnings.0, 100);
    assert_eq!(
        w.hub.model(MODEL.into()).unwrap().model.holders_accrued.0,
        201
    );
}

#[test]
fn a_bad_receipt_in_a_batch_changes_nothing_and_the_rest_settle() {
    let mut w = World::new();
    let bob_key = KeyPair::from_seed([9; 32]);
    w.as_("bob.near", NEAR / 10);
    w.hub.register_user_key(bob_key.public_key());
    w.as_("bob.near", NEAR);
    w.hub.fund_channel(acc("runner.near"));
    let alice = w.authorization(NEAR, START + HOUR);
    let bob = SignedAuthorization::sign(
        Authorization {
            user: acc("bob.near"),
            public_key: bob_key.public_key(),
            ..alice.authorization.clone()
        },
        [4; 32],
        &bob_key,
    );
    let mut forged = w.receipt(&bob, 1, 5_000);
    forged.receipt.signature.0[9] ^= 4;
    let outcomes = w.settle(vec![
        w.receipt(&alice, 1, 1_000),
        forged,
        w.receipt(&bob, 1, 2_000),
        w.receipt(&alice, 2, 1_500),
    ]);
    let codes: Vec<_> = outcomes
        .iter()
        .map(|o| match &o.result {
            SettleResult::Settled { charge, .. } => charge.0.to_string(),
            SettleResult::Rejected { code, .. } => code.to_string(),
        })
        .collect();
    assert_eq!(codes, ["1000", "bad_runner_signature", "2000", "500"]);
    assert_eq!(
        w.hub
            .channel(acc("bob.near"), acc("runner.near"))
            .unwrap()
            .channel
            .settled
            .0,
        2_000
    );
    assert_eq!(
        w.hub
            .channel(acc("alice.near"), acc("runner.near"))
            .unwrap()
            .channel
            .settled
            .0,
        1_500
    );
    // Events: one per receipt, then the batch total.
    let events = events();
    let names: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "receipt_settled",
            "receipt_rejected",
            "receipt_settled",
            "receipt_settled",
            "batch_settled"
        ]
    );
    assert_eq!(events[0]["standard"], "ai-market-hub");
    assert_eq!(events[0]["version"], "1.0.0");
    assert_eq!(events[1]["data"]["code"], "bad_runner_signature");
    assert_eq!(events[4]["data"]["settled"], 3);
    assert_eq!(events[4]["data"]["rejected"], 1);
}

#[test]
fn remembered_authorization_needs_not_be_attached_again() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let mut first = w.receipt(&auth, 1, 1_000);
    first.authorization = None;
    assert_eq!(
        rejected(&w.settle_one(first)),
        RejectCode::AuthorizationMissing
    );
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    let mut second = w.receipt(&auth, 2, 2_000);
    second.authorization = None;
    assert_eq!(charge(&w.settle_one(second)), 1_000);
}

#[test]
fn a_new_authorization_raises_the_cap() {
    let mut w = World::new();
    let small = w.authorization(1_000, START + HOUR);
    charge(&w.settle_one(w.receipt(&small, 1, 1_000)));
    assert_eq!(
        rejected(&w.settle_one(w.receipt(&small, 2, 1_001))),
        RejectCode::OverCap
    );
    let mut a = small.authorization.clone();
    a.cap = U128(5_000);
    let bigger = SignedAuthorization::sign(a, [5; 32], &w.user_key);
    assert_eq!(charge(&w.settle_one(w.receipt(&bigger, 2, 4_000))), 3_000);
}

#[test]
fn attached_authorization_must_be_the_one_the_receipt_names() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let other = w.authorization(2 * NEAR, START + HOUR);
    let mut item = w.receipt(&auth, 1, 1_000);
    item.authorization = Some(other);
    assert_eq!(
        rejected(&w.settle_one(item)),
        RejectCode::AuthorizationMismatch
    );
}

#[test]
fn cumulative_amounts_never_go_down() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    assert_eq!(
        rejected(&w.settle_one(w.receipt(&auth, 2, 999))),
        RejectCode::Decreased
    );
    let dropped = w.receipt_with(&auth, 2, 0, |r| r.lines.clear());
    assert_eq!(rejected(&w.settle_one(dropped)), RejectCode::Decreased);
    let fewer_units = w.receipt_with(&auth, 2, 2_000, |r| r.lines[0].units_out = U64(0));
    assert_eq!(rejected(&w.settle_one(fewer_units)), RejectCode::Decreased);
}

#[test]
fn unknown_model_version_and_content_are_rejected() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let v2 = w.receipt_with(&auth, 1, 1_000, |r| r.lines[0].version = 2);
    assert_eq!(rejected(&w.settle_one(v2)), RejectCode::UnknownVersion);
    let content = w.receipt_with(&auth, 1, 1_000, |r| {
        r.content.push(market_protocol::ContentLine {
            content_id: "wiki".into(),
            uses: U64(1),
            amount: U128(10),
        });
        r.amount = U128(1_010);
    });
    assert_eq!(rejected(&w.settle_one(content)), RejectCode::UnknownContent);
    let bad_total = w.receipt_with(&auth, 1, 1_000, |r| r.amount = U128(999));
    assert_eq!(rejected(&w.settle_one(bad_total)), RejectCode::Malformed);
}

#[test]
fn receipts_of_a_hidden_model_still_settle() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    w.as_("dev.near", 1);
    w.hub.update_model(MODEL.into(), hide(true));
    assert_eq!(charge(&w.settle_one(w.receipt(&auth, 1, 1_000))), 1_000);
}

#[test]
fn simulate_settle_reports_without_changing_anything() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let items = vec![w.receipt(&auth, 1, 1_000), w.receipt(&auth, 1, 2_000)];
    w.as_("anyone.near", 0);
    let simulated = w.hub.simulate_settle(acc("anyone.near"), items.clone());
    assert_eq!(charge(&simulated[0].result), 1_000);
    // The second sees the first's effect inside the batch.
    assert_eq!(rejected(&simulated[1].result), RejectCode::StaleSequence);
    assert_eq!(
        w.hub
            .channel(acc("alice.near"), acc("runner.near"))
            .unwrap()
            .channel
            .settled
            .0,
        0
    );
    assert_eq!(w.settle(items), simulated);
}

#[test]
fn large_batches_log_within_nearcores_limits() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let items: Vec<_> = (1..=100)
        .map(|i| w.receipt(&auth, i, u128::from(i) * 10))
        .collect();
    let outcomes = w.settle(items);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o.result, SettleResult::Settled { .. })));
    let logs = get_logs();
    assert!(logs.len() <= 100, "{} logs", logs.len());
    assert!(logs.iter().map(String::len).sum::<usize>() <= 16 * 1024);
    assert_eq!(events().last().unwrap()["data"]["settled"], 100);
}

#[test]
fn paused_hub_settles_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    w.as_("owner.near", 1);
    w.hub.pause();
    let item = w.receipt(&auth, 1, 1_000);
    w.as_("runner.near", 0);
    assert_eq!(
        panic_message(|| {
            w.hub.settle(vec![item.clone()]);
        }),
        "the hub is paused"
    );
    w.as_("owner.near", 1);
    w.hub.unpause();
    assert_eq!(charge(&w.settle_one(item)), 1_000);
}

#[test]
fn a_runner_submitting_its_own_receipts_is_not_checked_twice() {
    // The runner's transaction already proves what its signature would: a receipt with a
    // broken runner signature settles when the runner itself sends it, never when relayed.
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let mut item = w.receipt(&auth, 1, 1_000);
    item.receipt.signature.0[0] ^= 1;
    assert_eq!(
        rejected(
            &w.settle_as("relayer.near", vec![item.clone()])
                .remove(0)
                .result
        ),
        RejectCode::BadRunnerSignature
    );
    assert_eq!(
        rejected(&w.settle_as("bob.near", vec![item.clone()]).remove(0).result),
        RejectCode::BadRunnerSignature
    );
    assert_eq!(
        charge(&w.settle_as("runner.near", vec![item]).remove(0).result),
        1_000
    );
    // The user's signature is checked whoever submits.
    let mut forged = w.authorization(2 * NEAR, START + HOUR);
    forged.signature.0[0] ^= 1;
    assert_eq!(
        rejected(
            &w.settle_as("runner.near", vec![w.receipt(&forged, 2, 2_000)])
                .remove(0)
                .result
        ),
        RejectCode::BadUserSignature
    );
}

pub fn register_content(w: &mut World, id: &str, owner: &str, license: crate::state::License) {
    w.as_(owner, NEAR);
    w.hub.register_content(
        id.into(),
        [5; 32].into(),
        format!("https://content.example/{id}"),
        license,
    );
}

#[test]
fn inference_time_content_is_paid_per_use_to_its_owner() {
    use crate::state::License;
    let mut w = World::new();
    register_content(
        &mut w,
        "wiki",
        "wiki.near",
        License::InferenceOnly {
            price_per_use: U128(10),
        },
    );
    register_content(&mut w, "corpus", "news.near", License::OpenForTraining);
    let allow = |id: &str| market_protocol::authorization::ContentCeiling {
        content_id: id.into(),
        max_per_use: U128(u128::MAX),
    };
    let auth = w.authorization_with(
        |a| a.content = vec![allow("wiki"), allow("corpus"), allow("nothing")],
        NEAR,
        START + HOUR,
    );
    let with_content = |w: &World, seq: u64, model: u128, uses: u64, royalty: u128, id: &str| {
        w.receipt_with(&auth, seq, model, |r| {
            r.content.push(market_protocol::ContentLine {
                content_id: id.into(),
                uses: U64(uses),
                amount: U128(royalty),
            });
            r.amount = U128(model + royalty);
        })
    };
    // 1,000 for the model, 3 uses of the wiki at 10 each, in 3 requests.
    let result = w.settle_one(with_content(&w, 3, 1_000, 3, 30, "wiki"));
    assert_eq!(
        result,
        SettleResult::Settled {
            charge: U128(1_030),
            runner_share: U128(700),
            holders_share: U128(200),
            protocol_share: U128(100),
            content_share: U128(30)
        }
    );
    assert_eq!(w.hub.content_earnings(acc("wiki.near")).0, 30);
    // Cumulative: 2 more uses pay 20 more.
    assert_eq!(
        charge(&w.settle_one(with_content(&w, 5, 1_000, 5, 50, "wiki"))),
        20
    );
    assert_eq!(w.hub.content_earnings(acc("wiki.near")).0, 50);
    // More than the price allows, open content, unknown content: refused.
    assert_eq!(
        rejected(&w.settle_one(with_content(&w, 6, 1_000, 6, 61, "wiki"))),
        RejectCode::ContentOverpriced
    );
    assert_eq!(
        rejected(&w.settle_one(with_content(&w, 6, 1_000, 1, 0, "corpus"))),
        RejectCode::ContentNotPerUse
    );
    assert_eq!(
        rejected(&w.settle_one(with_content(&w, 6, 1_000, 1, 0, "nothing"))),
        RejectCode::UnknownContent
    );
    // The owner withdraws.
    w.as_("wiki.near", 1);
    w.hub.withdraw_content_earnings(None);
    assert_eq!(transfers(), 50);
    assert_eq!(w.hub.content_earnings(acc("wiki.near")).0, 0);
}

#[test]
fn content_registration_rules() {
    use crate::state::License;
    let mut w = World::new();
    register_content(&mut w, "wiki", "wiki.near", License::OpenForTraining);
    assert_eq!(
        w.hub.content("wiki".into()).unwrap().owner,
        acc("wiki.near")
    );
    w.as_("news.near", NEAR);
    let msg = panic_message(|| {
        w.hub.register_content(
            "wiki".into(),
            [1; 32].into(),
            "u".into(),
            License::OpenForTraining,
        );
    });
    assert_eq!(msg, "content `wiki` is already registered");
    w.as_("news.near", 0);
    let msg = panic_message(|| {
        w.hub.register_content(
            "news".into(),
            [1; 32].into(),
            "u".into(),
            License::OpenForTraining,
        );
    });
    assert!(msg.starts_with("registering content needs"), "{msg}");
}

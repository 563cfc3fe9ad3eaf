//! One named test per finding of the contracts audit (issue 12); each fails when its fix
//! is removed. The token's finding 1 is in `model-token` and in `sandbox-tests`.

use super::*;
use crate::{admin::ConfigUpdate, state::License, tokens::ManifestEntry};
use market_protocol::authorization::ModelCeiling;

fn allowlist(runners: &[&str]) -> ModelUpdate {
    ModelUpdate {
        runner_policy: Some(RunnerPolicy::Allowlist(
            runners.iter().map(|r| acc(r)).collect(),
        )),
        ..Default::default()
    }
}

fn register_open_model(w: &mut World, id: &str) {
    w.as_("dev.near", NEAR);
    w.hub
        .register_model(id.into(), U128(1), U128(1), 7_000, RunnerPolicy::Open);
    w.as_("dev.near", NEAR);
    w.hub.add_model_version(id.into(), version_input());
}

/// Finding 3: a model owner's later policy change cannot freeze a channel that once used
/// the model. The old line rides along unchanged and is not re-checked; the narrowing
/// itself waits for its notice, so usage served before it still settles.
#[test]
fn f3_a_policy_change_cannot_freeze_channels_or_unpaid_usage() {
    let mut w = World::new();
    register_open_model(&mut w, "other");
    let auth = w.authorization_with(|a| a.models.push(ceiling("other")), NEAR, START + 10 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    w.as_("dev.near", NEAR / 100);
    w.hub
        .update_model(MODEL.into(), allowlist(&["trusted.near"]));
    // Within the notice the runner is still allowed: what it served is paid.
    assert_eq!(charge(&w.settle_one(w.receipt(&auth, 2, 2_000))), 1_000);
    w.now += 2 * HOUR;
    // After it, new usage of the model is refused...
    let item = w.receipt(&auth, 3, 3_000);
    refused_code(&mut w, item, RejectCode::RunnerNotAllowed);
    // ...but the channel keeps working for other models, its old line carried as is.
    let item = w.receipt_with(&auth, 3, 2_500, |r| {
        r.lines[0].amount = U128(2_000);
        r.lines[0].units_in = U64(200);
        r.lines[0].units_out = U64(20);
        r.lines.push(market_protocol::UsageLine {
            model_id: "other".into(),
            version: 1,
            units_in: U64(5),
            units_out: U64(5),
            amount: U128(500),
        });
    });
    assert_eq!(charge(&w.settle_one(item)), 500);
}

fn refused_code(w: &mut World, item: market_protocol::SettleItem, code: RejectCode) {
    let result = w.settle_one(item);
    assert_eq!(rejected(&result), code, "{result:?}");
}

/// Finding 3: the runner's share is scheduled too; receipts settled before the change
/// takes effect are split on the old terms.
#[test]
fn f3_a_cut_of_the_runner_share_is_not_retroactive() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    w.as_("dev.near", NEAR / 100);
    w.hub.update_model(
        MODEL.into(),
        ModelUpdate {
            runner_bps: Some(5_000),
            ..Default::default()
        },
    );
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings.0, 7_000);
    w.now += 2 * HOUR;
    charge(&w.settle_one(w.receipt(&auth, 2, 20_000)));
    assert_eq!(
        w.hub.runner(acc("runner.near")).unwrap().earnings.0,
        7_000 + 5_000
    );
    // Widening an allowlist takes nothing from anyone: at once.
    w.as_("dev.near", NEAR);
    w.hub.register_model(
        "closed".into(),
        U128(1),
        U128(1),
        7_000,
        RunnerPolicy::Allowlist(vec![acc("runner.near")]),
    );
    w.as_("dev.near", NEAR / 100);
    w.hub
        .update_model("closed".into(), allowlist(&["runner.near", "b.near"]));
    let m = w.hub.model("closed".into()).unwrap().model;
    assert!(m.pending_terms.is_none(), "a widening is not scheduled");
    assert!(m.terms.runner_policy.allows(&acc("b.near")));
}

/// Finding 4: a revoked user key never comes back, and signs nothing new.
#[test]
fn f4_a_revoked_user_key_stays_revoked() {
    let mut w = World::new();
    let key = w.user_key.public_key();
    w.as_("alice.near", 0);
    w.hub.revoke_user_key(key.clone());
    w.as_("alice.near", NEAR);
    let msg = panic_message(|| w.hub.register_user_key(key.clone()));
    assert!(msg.contains("already registered (or was revoked)"), "{msg}");
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, 1_000);
    refused_code(&mut w, item, RejectCode::RevokedUserKey);
}

/// Finding 4: keys live in each account's namespace: registering someone else's public key
/// first (a user's wallet key, a runner's receipt key) blocks nobody.
#[test]
fn f4_nobody_can_squat_another_accounts_key() {
    let mut w = World::bare();
    let wallet = KeyPair::from_seed([1; 32]);
    w.as_("mallory.near", NEAR);
    w.hub.register_user_key(wallet.public_key());
    w.as_("mallory.near", 2 * NEAR);
    w.hub
        .register_runner(vec![KeyPair::from_seed([2; 32]).public_key()]);
    // The real owners register the very same keys and are paid as usual.
    w.populate();
    let auth = w.authorization(NEAR, START + HOUR);
    assert_eq!(charge(&w.settle_one(w.receipt(&auth, 1, 1_000))), 1_000);
}

/// Finding 5: a model id that cannot name its token account is refused at registration,
/// before any holders' share can accrue to it.
#[test]
fn f5_model_ids_must_name_a_token_account() {
    let mut w = World::new();
    for id in ["smollm2.q4", "a--b", &"m".repeat(64)] {
        w.as_("dev.near", NEAR);
        let msg = panic_message(|| {
            w.hub
                .register_model(id.into(), U128(1), U128(1), 7_000, RunnerPolicy::Open);
        });
        assert!(msg.contains("cannot name a token account"), "{id}: {msg}");
    }
}

/// Finding 6: the token account is recorded when issuance starts, so a second
/// `issue_token` before the callback cannot rewrite the manifest; a failed issuance
/// clears it and can be retried; flush waits for a live token.
#[test]
fn f6_issuance_cannot_race_itself() {
    let mut w = World::new();
    super::settlement::register_content(&mut w, "wiki", "wiki.near", License::OpenForTraining);
    w.as_("owner.near", 10 * NEAR);
    w.hub.set_token_code(vec![0; 1_000]);
    let manifest = |weight| {
        vec![ManifestEntry {
            content_id: "wiki".into(),
            weight,
        }]
    };
    w.as_("dev.near", NEAR);
    w.hub
        .issue_token(MODEL.into(), "SMOL".into(), manifest(1), 1)
        .detach();
    w.as_("dev.near", NEAR);
    let msg = panic_message(|| {
        w.hub
            .issue_token(MODEL.into(), "SMOL".into(), manifest(99), 1)
            .detach();
    });
    assert!(msg.contains("is issuing its token"), "{msg}");
    let m = w.hub.model(MODEL.into()).unwrap().model;
    assert_eq!(m.training_manifest, vec![("wiki".to_owned(), 1)]);
    w.as_("anyone.near", 0);
    let msg = panic_message(|| w.hub.flush(MODEL.into()).detach());
    assert!(msg.contains("has no token yet"), "{msg}");
    // The issuance fails: everything is forgotten and it can be tried again.
    w.callback(PromiseResult::Failed);
    let token = Hub::token_account(MODEL).unwrap();
    assert!(!w.hub.on_token_issued(
        MODEL.into(),
        token,
        acc("dev.near"),
        U128(1),
        vec![],
        Err(near_sdk::PromiseError::Failed)
    ));
    let m = w.hub.model(MODEL.into()).unwrap().model;
    assert!(m.token.is_none() && m.training_manifest.is_empty());
}

/// Finding 7: a pause blocks withdrawal requests (runners cannot settle meanwhile), ends
/// by itself, and stops the clocks: a withdrawal's ready time and an authorization's expiry
/// move later by the paused time.
#[test]
fn f7_a_pause_is_bounded_and_stops_the_clocks() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 3 * HOUR);
    let item = w.receipt(&auth, 1, 1_000);
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.now += HOUR;
    w.as_("owner.near", 1);
    w.hub.pause();
    w.as_("bob.near", 0);
    assert_eq!(
        panic_message(|| w.hub.request_withdrawal(acc("runner.near"))),
        "the hub is paused"
    );
    w.now += 5 * HOUR;
    w.as_("owner.near", 1);
    w.hub.unpause();
    // Five paused hours: the withdrawal is ready at 2 + 5 hours, the authorization
    // expires at 3 + 5 (minus the hour before the pause, already run).
    w.as_("alice.near", 1);
    assert!(
        panic_message(|| w.hub.finish_withdrawal(acc("runner.near")))
            .starts_with("withdrawal is possible from")
    );
    assert_eq!(charge(&w.settle_one(item)), 1_000);
    // A pause ends by itself after MAX_PAUSE_NS, and cannot be renewed at once.
    w.now += HOUR;
    w.as_("owner.near", 1);
    let msg = panic_message(|| w.hub.pause());
    assert!(msg.starts_with("a new pause is possible from"), "{msg}");
    w.now += crate::pause::PAUSE_COOLDOWN_NS;
    w.as_("owner.near", 1);
    w.hub.pause();
    w.now += crate::pause::MAX_PAUSE_NS;
    w.as_("anyone.near", 0);
    assert!(!w.hub.hub_info().paused);
}

/// Finding 7: every delay is bounded, so no setting can freeze escrow (`now + delay`
/// overflowed at `u64::MAX`).
#[test]
fn f7_delays_are_bounded() {
    let mut w = World::new();
    w.as_("owner.near", 1);
    let msg = panic_message(|| {
        w.hub.set_config(ConfigUpdate {
            withdrawal_delay_ns: Some(U64(u64::MAX)),
            ..Default::default()
        });
    });
    assert!(
        msg.starts_with("withdrawal delay 18446744073709551615 ns is above the ceiling"),
        "{msg}"
    );
}

/// Finding 7: money-moving and owner methods need a full-access key (one yocto).
#[test]
fn f7_function_call_keys_move_no_money() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    for (who, call) in [
        (
            "runner.near",
            Box::new(|h: &mut Hub| h.withdraw_earnings(None)) as Box<dyn Fn(&mut Hub)>,
        ),
        (
            "owner.near",
            Box::new(|h: &mut Hub| h.withdraw_protocol_fees(acc("owner.near"), None)),
        ),
        (
            "owner.near",
            Box::new(|h: &mut Hub| h.propose_owner(acc("thief.near"))),
        ),
        (
            "dev.near",
            Box::new(|h: &mut Hub| h.transfer_model(MODEL.into(), acc("thief.near"))),
        ),
    ] {
        w.as_(who, 0);
        let msg = panic_message(|| call(&mut w.hub));
        assert!(msg.contains("1 yocto"), "{who}: {msg}");
    }
}

/// Finding 8: a receipt whose units went down by values whose sum overflows u64 is
/// rejected on its own, not a panic of the whole batch.
#[test]
fn f8_a_units_overflow_rejects_one_receipt() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    // Two requests: the signed per-request limit (u64::MAX here) allows twice as many units.
    let big = w.receipt_with(&auth, 2, 1_000, |r| {
        r.lines[0].units_in = U64(u64::MAX);
        r.lines[0].units_out = U64(u64::MAX);
    });
    charge(&w.settle_one(big));
    let item = w.receipt_with(&auth, 3, 2_000, |r| {
        r.lines[0].units_in = U64(u64::MAX - 1);
        r.lines[0].units_out = U64(u64::MAX);
    });
    let good = w.receipt(&auth, 1, 1);
    let outcomes = w.settle(vec![item, good]);
    assert_eq!(rejected(&outcomes[0].result), RejectCode::Decreased);
}

/// Finding 9: a pending withdrawal keeps the ready time it was given, whatever the owner
/// schedules later; and a fee change waits for its notice.
#[test]
fn f9_owner_changes_do_not_reach_back() {
    let mut w = World::new();
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.as_("owner.near", 1);
    w.hub.set_config(ConfigUpdate {
        withdrawal_delay_ns: Some(U64(20 * HOUR)),
        protocol_fee_bps: Some(2_000),
        ..Default::default()
    });
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    assert_eq!(w.hub.hub_info().protocol_earnings.0, 1_000, "the old fee");
    w.now += 2 * HOUR;
    w.as_("alice.near", 1);
    w.hub.finish_withdrawal(acc("runner.near"));
    assert_eq!(w.channel_unspent(), 0);
}

fn tight(model_id: &str, max_in: u128, max_out: u128, max_units: u64) -> ModelCeiling {
    ModelCeiling {
        model_id: model_id.into(),
        max_in_per_1k: U128(max_in),
        max_out_per_1k: U128(max_out),
        max_units_per_request: U64(max_units),
    }
}

/// An authorization whose ceilings are the test model's prices (1,000 / 2,000 per 1k).
fn strict(w: &World, max_units: u64) -> market_protocol::SignedAuthorization {
    w.authorization_with(
        |a| a.models = vec![tight(MODEL, 1_000, 2_000, max_units)],
        NEAR,
        START + HOUR,
    )
}

/// Receipt `seq` at `amount` is exactly at the ceilings: one yocto more is refused, then it
/// settles for `charge`.
fn at_the_ceiling(
    w: &mut World,
    auth: &market_protocol::SignedAuthorization,
    seq: u64,
    amount: u128,
    charge_due: u128,
) {
    let item = w.receipt(auth, seq, amount + 1);
    refused_code(w, item, RejectCode::ModelOverpriced);
    assert_eq!(
        charge(&w.settle_one(w.receipt(auth, seq, amount))),
        charge_due
    );
}

fn with_content(
    w: &World,
    auth: &market_protocol::SignedAuthorization,
    seq: u64,
    model_amount: u128,
    content: (&str, u64, u128),
) -> market_protocol::SettleItem {
    w.receipt_with(auth, seq, model_amount, |r| {
        r.content.push(market_protocol::ContentLine {
            content_id: content.0.into(),
            uses: U64(content.1),
            amount: U128(content.2),
        });
        r.amount = U128(model_amount + content.2);
    })
}

/// Finding 2: a receipt with no model line and one content line (the runner's own content,
/// registered at any price) took the whole cap. Content must be named by the user.
#[test]
fn f2_content_the_user_did_not_allow_pays_nothing() {
    let mut w = World::new();
    super::settlement::register_content(
        &mut w,
        "runner-own",
        "runner.near",
        License::InferenceOnly {
            price_per_use: U128(NEAR),
        },
    );
    let auth = w.authorization(NEAR, START + HOUR);
    let mut item = with_content(&w, &auth, 1, 0, ("runner-own", 1, NEAR));
    item.receipt.receipt.lines.clear();
    item.receipt = SignedReceipt::sign(item.receipt.receipt, &w.runner_key);
    refused_code(&mut w, item, RejectCode::ContentNotAuthorized);
}

/// Signed price ceilings: a model line grows by at most
/// `⌊(Δin × max_in + Δout × max_out) / 1,000⌋` and
/// `Δunits ≤ requests × max_units_per_request`, from the pin.
#[test]
fn f2_model_lines_are_bounded_by_the_signed_prices() {
    let mut w = World::new();
    let auth = strict(&w, 150);
    // Receipt n has 100·n units in and 10·n out: 120·n yocto at the ceilings.
    at_the_ceiling(&mut w, &auth, 1, 120, 120);
    // Two more requests: 240 more at most.
    at_the_ceiling(&mut w, &auth, 3, 360, 240);
    // 640 units in four requests, over their 4 × 150.
    let item = w.receipt_with(&auth, 4, 380, |r| r.lines[0].units_in = U64(600));
    refused_code(&mut w, item, RejectCode::TooManyUnits);
}

/// Content is paid per use at the lower of its registered price and the user's ceiling,
/// at most one use per request.
#[test]
fn f2_content_is_bounded_by_its_ceiling_and_one_use_per_request() {
    let mut w = World::new();
    super::settlement::register_content(
        &mut w,
        "wiki",
        "wiki.near",
        License::InferenceOnly {
            price_per_use: U128(10),
        },
    );
    let auth = w.authorization_with(
        |a| {
            a.content = vec![market_protocol::authorization::ContentCeiling {
                content_id: "wiki".into(),
                max_per_use: U128(4),
            }];
        },
        NEAR,
        START + HOUR,
    );
    let item = with_content(&w, &auth, 1, 100, ("wiki", 1, 5));
    refused_code(&mut w, item, RejectCode::ContentOverpriced);
    let item = with_content(&w, &auth, 1, 100, ("wiki", 2, 8));
    refused_code(&mut w, item, RejectCode::TooManyUses);
    let item = with_content(&w, &auth, 1, 100, ("wiki", 1, 4));
    assert_eq!(charge(&w.settle_one(item)), 104);
}

/// A new authorization is judged from its own pin: what the channel settled before does
/// not count against (or for) its ceilings.
#[test]
fn f2_a_new_authorization_bounds_growth_from_its_pin() {
    let mut w = World::new();
    let generous = w.authorization(NEAR, START + HOUR);
    assert_eq!(charge(&w.settle_one(w.receipt(&generous, 1, 5_000))), 5_000);
    let strict = strict(&w, 1_000);
    // Receipt 2 adds 100 in and 10 out: 120 at most under the strict ceilings.
    at_the_ceiling(&mut w, &strict, 2, 5_120, 120);
}

/// Bonds that mean something: two receipts of one channel that cannot both be true are
/// proof; anyone reports them, the bond goes to the harmed user (95 %) and the reporter
/// (5 %), and the runner settles nothing more. Keys revoked since still count.
#[test]
fn contradictory_receipts_slash_the_bond() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let honest = w.receipt(&auth, 1, 1_000);
    let liar = w.receipt(&auth, 1, 5_000);
    charge(&w.settle_one(honest.clone()));
    w.as_("runner.near", NEAR);
    w.hub
        .add_runner_key(KeyPair::from_seed([44; 32]).public_key());
    w.as_("runner.near", 1);
    w.hub.revoke_runner_key(w.runner_key.public_key());
    let bond = w.hub.runner(acc("runner.near")).unwrap().bond.0;
    let escrow = w.channel_unspent();
    // Receipts that can both be true prove nothing.
    let later = w.receipt(&auth, 2, 2_000);
    w.as_("relayer.near", 0);
    let msg = panic_message(|| {
        w.hub
            .report_equivocation(honest.receipt.clone(), later.receipt.clone());
    });
    assert_eq!(msg, "the two receipts do not contradict each other");
    // A forged signature proves nothing either.
    let mut forged = liar.receipt.clone();
    forged.signature.0[3] ^= 1;
    w.as_("relayer.near", 0);
    let msg = panic_message(|| w.hub.report_equivocation(honest.receipt.clone(), forged));
    assert_eq!(msg, "the runner's signature does not verify");

    w.as_("relayer.near", 0);
    w.hub
        .report_equivocation(honest.receipt.clone(), liar.receipt.clone());
    // The reporter 5 %; the user what the runner charged it (1,000); the protocol the rest.
    let reporter = bond * 500 / 10_000;
    assert_eq!(transfers(), reporter);
    assert_eq!(w.channel_unspent(), escrow + 1_000);
    assert_eq!(
        w.hub.hub_info().protocol_earnings.0,
        100 + bond - reporter - 1_000
    );
    let runner = w.hub.runner(acc("runner.near")).unwrap();
    assert!(runner.slashed && runner.bond.0 == 0);
    refused_code_after_slash(&mut w, &auth);
    w.as_("relayer.near", 0);
    let msg = panic_message(|| w.hub.report_equivocation(honest.receipt, liar.receipt));
    assert!(msg.contains("already slashed"), "{msg}");
}

fn refused_code_after_slash(w: &mut World, auth: &market_protocol::SignedAuthorization) {
    // Signed with a key the runner still holds: refused because the runner was slashed.
    let mut item = w.receipt(auth, 2, 2_000);
    item.receipt = SignedReceipt::sign(item.receipt.receipt, &KeyPair::from_seed([44; 32]));
    refused_code(w, item, RejectCode::RunnerLeft);
}

/// What makes two receipts contradictory: written down and tested on its own.
#[test]
fn contradictions_are_what_cumulative_receipts_cannot_do() {
    use crate::disputes::contradiction;
    let w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let r = |seq, amount| w.receipt(&auth, seq, amount).receipt.receipt;
    assert!(
        contradiction(&r(1, 10), &r(1, 10)).is_none(),
        "the same receipt"
    );
    assert!(
        contradiction(&r(1, 10), &r(1, 11)).is_some(),
        "one sequence, two charges"
    );
    assert!(contradiction(&r(1, 10), &r(2, 11)).is_none(), "growth");
    assert!(
        contradiction(&r(2, 10), &r(1, 11)).is_some(),
        "a later receipt charging less"
    );
    let mut fewer_units = r(3, 20);
    fewer_units.lines[0].units_in = U64(1);
    assert!(
        contradiction(&r(2, 10), &fewer_units).is_some(),
        "units went down"
    );
    let mut other_user = r(1, 11);
    other_user.user = acc("bob.near");
    assert!(
        contradiction(&r(1, 10), &other_user).is_none(),
        "another channel"
    );
}

/// The per-request unit limit is the model's, whatever number of its versions a receipt
/// spreads the units over (a review found each version line checked on its own).
#[test]
fn f2_units_are_bounded_per_model_across_versions() {
    let mut w = World::new();
    w.as_("dev.near", NEAR);
    w.hub.add_model_version(MODEL.into(), version_input());
    let auth = strict(&w, 150);
    // One request, 110 units on each of two versions: 220 over the 150 signed.
    let item = w.receipt_with(&auth, 1, 200, |r| {
        let mut v2 = r.lines[0].clone();
        v2.version = 2;
        v2.amount = U128(100);
        r.lines[0].amount = U128(100);
        r.lines.push(v2);
    });
    refused_code(&mut w, item, RejectCode::TooManyUnits);
}

/// A pause moves a scheduled change later by the paused time, like every other deadline:
/// runners could not settle under the old terms while it lasted.
#[test]
fn f7_a_pause_delays_scheduled_changes_too() {
    let mut w = World::new();
    w.as_("dev.near", NEAR / 100);
    w.hub.update_model(
        MODEL.into(),
        ModelUpdate {
            runner_bps: Some(5_000),
            ..Default::default()
        },
    );
    w.now += HOUR;
    w.as_("owner.near", 1);
    w.hub.pause();
    w.now += HOUR;
    w.as_("owner.near", 1);
    w.hub.unpause();
    // Two hours of notice, one of them paused: the old share until three hours.
    w.now += HOUR - 1;
    w.as_("anyone.near", 0);
    assert_eq!(w.hub.model(MODEL.into()).unwrap().holders_bps, 2_000);
    w.now += 1;
    w.as_("anyone.near", 0);
    assert_eq!(w.hub.model(MODEL.into()).unwrap().holders_bps, 4_000);
}

/// The owner's function-call key cannot replace the token code either (a review found
/// `set_token_code` passing with nothing attached when the code did not grow).
#[test]
fn f7_token_code_needs_a_full_access_key() {
    let mut w = World::new();
    w.as_("owner.near", 0);
    let msg = panic_message(|| w.hub.set_token_code(vec![]));
    assert!(msg.contains("1 yocto"), "{msg}");
}

/// Finding 9: the holders' share no longer waits forever on an owner that never issues
/// the token: after `OPEN_ISSUANCE_AFTER_NS` anyone may issue it, without a manifest, the
/// whole supply to the owner.
#[test]
fn f9_anyone_may_issue_a_token_its_owner_never_did() {
    let mut w = World::new();
    w.as_("owner.near", 10 * NEAR);
    w.hub.set_token_code(vec![0; 1_000]);
    let issue = |w: &mut World, manifest: Vec<ManifestEntry>| {
        w.as_("mallory.near", 5 * NEAR);
        panic_message(|| {
            w.hub
                .issue_token(MODEL.into(), "SMOL".into(), manifest, 1)
                .detach();
        })
    };
    assert!(issue(&mut w, vec![]).contains("does not own model"));
    w.now += crate::tokens::OPEN_ISSUANCE_AFTER_NS;
    let with_manifest = vec![ManifestEntry {
        content_id: "wiki".into(),
        weight: 1,
    }];
    assert!(
        issue(&mut w, with_manifest).contains("does not own model"),
        "only the owner names a manifest"
    );
    w.as_("mallory.near", 5 * NEAR);
    w.hub
        .issue_token(MODEL.into(), "SCAM".into(), vec![], 1)
        .detach();
    let m = w.hub.model(MODEL.into()).unwrap().model;
    assert!(m.token.is_some() && m.training_manifest.is_empty());
    // The outsider's symbol is ignored: the token is named after the model.
    let init = get_created_receipts()
        .iter()
        .flat_map(|r| r.actions.iter())
        .find_map(|a| match a {
            near_sdk::mock::MockAction::FunctionCallWeight {
                method_name, args, ..
            } if method_name == b"new" => Some(String::from_utf8(args.clone()).unwrap()),
            _ => None,
        })
        .expect("the token's init call");
    assert!(init.contains("\"symbol\":\"SMOLLM2-135M\""), "{init}");
    assert!(
        init.contains("\"dev.near\""),
        "the whole supply to the owner: {init}"
    );
}

/// Bonds that mean something: a leaving runner's bond stays until every authorization the
/// hub pinned for its channels has expired and the settlement window after it passed, so
/// it is still there whenever contradictory receipts can surface.
#[test]
fn the_bond_outlives_every_pinned_authorization() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 100 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    w.as_("runner.near", 0);
    w.hub.request_leave();
    // The exit delay (24 hours) has passed, the authorization (100 hours) has not.
    w.now += 24 * HOUR;
    w.as_("runner.near", 1);
    let msg = panic_message(|| w.hub.finish_leave());
    assert_eq!(
        msg,
        format!(
            "leaving is possible from {} ns, it is {} ns",
            START + 101 * HOUR,
            w.now
        )
    );
    w.now = START + 101 * HOUR;
    w.as_("runner.near", 1);
    w.hub.finish_leave();
    assert!(w.hub.runner(acc("runner.near")).unwrap().left);
}

/// A user cannot lock a runner's bond for ever with an authorization that never expires:
/// the hub pins none that lives longer than `MAX_LIFETIME_NS`.
#[test]
fn an_endless_authorization_cannot_lock_the_bond() {
    let mut w = World::new();
    let endless = w.authorization(NEAR, u64::MAX);
    let item = w.receipt(&endless, 1, 1_000);
    refused_code(&mut w, item, RejectCode::LifetimeTooLong);
    let longest = w.authorization(
        NEAR,
        START + market_protocol::authorization::MAX_LIFETIME_NS,
    );
    charge(&w.settle_one(w.receipt(&longest, 1, 1_000)));
}

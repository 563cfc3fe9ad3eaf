//! One test per attack in DESIGN.md's "Money and trust". Each pays nothing and changes
//! nothing; each would pay if its check were removed.

use super::*;

/// Settles `item` expecting rejection `code`, and checks the channel did not move.
fn refused(w: &mut World, item: SettleItem, code: RejectCode) {
    let before = w
        .hub
        .channel(acc("alice.near"), acc("runner.near"))
        .unwrap()
        .channel;
    let earnings = w.hub.runner(acc("runner.near")).unwrap().earnings;
    let liabilities = w.liabilities();
    let result = w.settle_one(item);
    assert_eq!(rejected(&result), code, "{result:?}");
    assert_eq!(
        w.hub
            .channel(acc("alice.near"), acc("runner.near"))
            .unwrap()
            .channel,
        before
    );
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings, earnings);
    assert_eq!(w.liabilities(), liabilities);
}

#[test]
fn forged_runner_signature_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let mut item = w.receipt(&auth, 1, NEAR / 100);
    item.receipt.signature.0[5] ^= 1;
    refused(&mut w, item, RejectCode::BadRunnerSignature);
}

#[test]
fn receipt_signed_by_an_unregistered_key_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let mut item = w.receipt(&auth, 1, NEAR / 100);
    let impostor = KeyPair::from_seed([66; 32]);
    item.receipt = SignedReceipt::sign(item.receipt.receipt, &impostor);
    refused(&mut w, item, RejectCode::UnknownRunnerKey);
}

#[test]
fn forged_user_signature_pays_nothing() {
    let mut w = World::new();
    let mut auth = w.authorization(NEAR, START + HOUR);
    auth.signature.0[0] ^= 0x80;
    let item = w.receipt(&auth, 1, NEAR / 100);
    refused(&mut w, item, RejectCode::BadUserSignature);
}

#[test]
fn authorization_signed_by_an_unregistered_key_pays_nothing() {
    let mut w = World::new();
    let stranger = KeyPair::from_seed([77; 32]);
    let mut a = w.authorization(NEAR, START + HOUR).authorization;
    a.public_key = stranger.public_key();
    let auth = SignedAuthorization::sign(a, [3; 32], &stranger);
    let item = w.receipt(&auth, 1, NEAR / 100);
    refused(&mut w, item, RejectCode::UnknownUserKey);
}

#[test]
fn revoked_runner_key_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    w.as_("runner.near", 1);
    w.hub.revoke_runner_key(w.runner_key.public_key());
    refused(&mut w, item, RejectCode::RevokedRunnerKey);
}

#[test]
fn revoked_user_key_pays_nothing_after_its_notice() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, NEAR / 100)));
    w.as_("alice.near", 0);
    w.hub.revoke_user_key(w.user_key.public_key());
    // The pinned authorization settles through the notice (the settlement window)...
    let mut item = w.receipt(&auth, 2, NEAR / 50);
    item.authorization = None;
    w.now += HOUR - 1;
    assert_eq!(charge(&w.settle_one(item)), NEAR / 50 - NEAR / 100);
    // ...and never after it, attached or not.
    w.now += 1;
    let mut item = w.receipt(&auth, 3, NEAR / 20);
    refused(&mut w, item.clone(), RejectCode::RevokedUserKey);
    item.authorization = None;
    refused(&mut w, item, RejectCode::RevokedUserKey);
}

#[test]
fn settling_the_same_receipt_twice_pays_once() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    assert_eq!(charge(&w.settle_one(item.clone())), NEAR / 100);
    refused(&mut w, item, RejectCode::StaleSequence);
}

#[test]
fn an_older_receipt_after_a_newer_one_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let old = w.receipt(&auth, 1, NEAR / 100);
    charge(&w.settle_one(w.receipt(&auth, 2, NEAR / 50)));
    refused(&mut w, old, RejectCode::StaleSequence);
}

#[test]
fn authorization_for_another_hub_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization_with(|a| a.hub = acc("other-hub.near"), NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    refused(&mut w, item, RejectCode::WrongHub);
}

#[test]
fn authorization_for_another_chain_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization_with(|a| a.chain_id = "mainnet".into(), NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    refused(&mut w, item, RejectCode::WrongChain);
}

#[test]
fn receipt_over_the_cap_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR / 10, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 10 + 1);
    refused(&mut w, item, RejectCode::OverCap);
    // Exactly the cap settles.
    assert_eq!(
        charge(&w.settle_one(w.receipt(&auth, 1, NEAR / 10))),
        NEAR / 10
    );
}

#[test]
fn expired_authorization_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    w.now = START + HOUR;
    refused(&mut w, item, RejectCode::Expired);
}

#[test]
fn another_channels_authorization_pays_nothing() {
    let mut w = World::new();
    // Bob funds his own channel with the same runner; Alice's authorization cannot spend it.
    let bob_key = KeyPair::from_seed([9; 32]);
    w.as_("bob.near", NEAR / 10);
    w.hub.register_user_key(bob_key.public_key());
    w.as_("bob.near", 5 * NEAR);
    w.hub.fund_channel(acc("runner.near"));
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt_with(&auth, 1, NEAR / 100, |r| r.user = acc("bob.near"));
    let bob_before = w.hub.channel(acc("bob.near"), acc("runner.near")).unwrap();
    let result = w.settle_one(item);
    assert_eq!(rejected(&result), RejectCode::WrongChannel);
    assert_eq!(
        w.hub
            .channel(acc("bob.near"), acc("runner.near"))
            .unwrap()
            .channel,
        bob_before.channel
    );
}

#[test]
fn model_outside_the_authorization_pays_nothing() {
    let mut w = World::new();
    w.as_("dev.near", NEAR);
    w.hub.register_model(
        "other-model".into(),
        U128(1),
        U128(1),
        7_000,
        RunnerPolicy::Open,
    );
    w.as_("dev.near", NEAR);
    w.hub
        .add_model_version("other-model".into(), version_input());
    let auth = w.authorization(NEAR, START + HOUR);
    let item = w.receipt_with(&auth, 1, NEAR / 100, |r| {
        r.lines[0].model_id = "other-model".into();
    });
    refused(&mut w, item, RejectCode::ModelNotAuthorized);
}

#[test]
fn runner_outside_a_closed_models_allowlist_pays_nothing() {
    let mut w = World::new();
    w.as_("dev.near", NEAR);
    w.hub.update_model(
        MODEL.into(),
        ModelUpdate {
            runner_policy: Some(RunnerPolicy::Allowlist(vec![acc("trusted.near")])),
            ..Default::default()
        },
    );
    // Narrowing the policy is scheduled: in effect after the notice.
    w.now += 2 * HOUR;
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    refused(&mut w, item, RejectCode::RunnerNotAllowed);
}

#[test]
fn charge_beyond_the_escrow_pays_nothing() {
    let mut w = World::new();
    let auth = w.authorization(100 * NEAR, START + HOUR);
    let item = w.receipt(&auth, 1, w.funded + 1);
    refused(&mut w, item, RejectCode::Underfunded);
}

#[test]
fn withdrawal_before_the_delay_is_refused() {
    let mut w = World::new();
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.now += 2 * HOUR - 1;
    w.as_("alice.near", 1);
    let message = panic_message(|| w.hub.finish_withdrawal(acc("runner.near")));
    assert!(message.contains("withdrawal is possible from"), "{message}");
    assert_eq!(transfers(), 0);
    // One nanosecond later it goes through.
    w.now += 1;
    w.as_("alice.near", 1);
    w.hub.finish_withdrawal(acc("runner.near"));
    assert_eq!(transfers(), w.funded);
}

#[test]
fn earned_funds_settle_while_a_withdrawal_waits() {
    // Rule 4: served before the withdrawal request, settled within the window: paid.
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    let item = w.receipt(&auth, 1, NEAR / 100);
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.now += HOUR; // the whole settlement window
    assert_eq!(charge(&w.settle_one(item)), NEAR / 100);
    w.now += HOUR;
    w.as_("alice.near", 1);
    w.hub.finish_withdrawal(acc("runner.near"));
    assert_eq!(transfers(), w.funded - NEAR / 100);
}

#[test]
#[should_panic(expected = "mallory.near is not the hub owner")]
fn non_owner_cannot_change_fees() {
    let mut w = World::new();
    w.as_("mallory.near", 1);
    w.hub.set_config(crate::admin::ConfigUpdate {
        protocol_fee_bps: Some(2_000),
        ..Default::default()
    });
}

#[test]
#[should_panic(expected = "mallory.near is not the hub owner")]
fn non_owner_cannot_pause() {
    let mut w = World::new();
    w.as_("mallory.near", 1);
    w.hub.pause();
}

#[test]
#[should_panic(expected = "mallory.near is not the hub owner")]
fn non_owner_cannot_take_protocol_fees() {
    let mut w = World::new();
    w.as_("mallory.near", 1);
    w.hub.withdraw_protocol_fees(acc("mallory.near"), None);
}

#[test]
#[should_panic(expected = "registering a model needs")]
fn unpaid_storage_for_a_model_is_refused() {
    let mut w = World::new();
    w.as_("dev.near", 0);
    w.hub.register_model(
        "free-rider".into(),
        U128(1),
        U128(1),
        7_000,
        RunnerPolicy::Open,
    );
}

#[test]
#[should_panic(expected = "registering a user key needs")]
fn unpaid_storage_for_a_user_key_is_refused() {
    let mut w = World::new();
    w.as_("bob.near", 1);
    w.hub
        .register_user_key(KeyPair::from_seed([9; 32]).public_key());
}

#[test]
#[should_panic(expected = "opening a channel needs")]
fn unpaid_storage_for_a_channel_is_refused() {
    let mut w = World::new();
    let cost = w.hub.hub_info().channel_storage_cost.0;
    w.as_("bob.near", cost);
    w.hub.fund_channel(acc("runner.near"));
}

#[test]
fn storage_surplus_is_refunded() {
    let mut w = World::new();
    w.as_("bob.near", NEAR);
    w.hub
        .register_user_key(KeyPair::from_seed([9; 32]).public_key());
    let refund = transfers();
    let cost = NEAR - refund;
    // A key entry is ~ 100-200 bytes at 10^19 yocto per byte.
    assert!(cost > 0 && cost < NEAR / 100, "storage cost {cost}");
}

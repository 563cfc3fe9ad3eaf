//! Registries, runners, escrow, payouts and admin: each rule and its error message.

use super::*;
use crate::{
    admin::ConfigUpdate, payouts::Payout, state::AccountKey, storage::CHANNEL_STORAGE_BYTES,
};

#[test]
fn model_registry_life_cycle() {
    let mut w = World::new();
    let m = w.hub.model(MODEL.into()).unwrap();
    assert_eq!(
        (
            m.model.owner.as_str(),
            m.model.versions,
            m.model.terms.runner_bps,
            m.holders_bps
        ),
        ("dev.near", 1, 7_000, 2_000)
    );
    assert_eq!(w.hub.model_version(MODEL.into(), 1).unwrap().format, "gguf");
    assert!(w.hub.model_version(MODEL.into(), 2).is_none());

    w.as_("dev.near", NEAR);
    assert_eq!(w.hub.add_model_version(MODEL.into(), version_input()), 2);
    assert_eq!(events()[0]["event"], "model_version_added");

    // A scheduled change grows the record: its storage is attached.
    w.as_("dev.near", NEAR / 100);
    w.hub.update_model(
        MODEL.into(),
        ModelUpdate {
            price_in_per_1k: Some(U128(5)),
            runner_bps: Some(6_000),
            ..Default::default()
        },
    );
    // The price changes at once; the runner's share is scheduled after the notice (the
    // withdrawal delay, 2 hours here).
    let m = w.hub.model(MODEL.into()).unwrap();
    let pending = m.model.pending_terms.clone().unwrap();
    assert_eq!(
        (
            m.model.price_in_per_1k.0,
            m.model.price_out_per_1k.0,
            m.model.terms.runner_bps,
            pending.terms.runner_bps,
            pending.effective_at_ns.0
        ),
        (5, 2_000, 7_000, 6_000, START + 2 * HOUR)
    );
    w.now += 2 * HOUR;
    w.as_("dev.near", 0);
    assert_eq!(w.hub.model(MODEL.into()).unwrap().holders_bps, 3_000);

    w.as_("dev.near", 1);
    w.hub.update_model(MODEL.into(), hide(true));
    assert!(
        w.hub.models(None, None).is_empty(),
        "hidden models are not listed"
    );
    assert!(w.hub.model(MODEL.into()).is_some(), "but can be looked up");

    w.as_("dev.near", NEAR / 100);
    w.hub.transfer_model(MODEL.into(), acc("newdev.near"));
    w.as_("dev.near", 1);
    let msg = panic_message(|| w.hub.update_model(MODEL.into(), hide(false)));
    assert_eq!(msg, format!("dev.near does not own model `{MODEL}`"));
    w.as_("newdev.near", 1);
    w.hub.update_model(MODEL.into(), hide(false));
    assert_eq!(w.hub.models(None, None).len(), 1);
}

#[test]
fn model_registration_rules() {
    let mut w = World::new();
    w.as_("dev.near", NEAR);
    let msg = panic_message(|| {
        w.hub
            .register_model(MODEL.into(), U128(1), U128(1), 7_000, RunnerPolicy::Open);
    });
    assert_eq!(msg, format!("model `{MODEL}` is already registered"));
    w.as_("dev.near", NEAR);
    let msg = panic_message(|| {
        w.hub
            .register_model("Bad Id".into(), U128(1), U128(1), 7_000, RunnerPolicy::Open);
    });
    assert!(msg.contains("contains `B`"), "{msg}");
    w.as_("dev.near", NEAR);
    let msg = panic_message(|| {
        w.hub
            .register_model("cheap".into(), U128(1), U128(1), 4_999, RunnerPolicy::Open);
    });
    assert_eq!(msg, "runner share 4999 bps is outside 5000..=8000 bps");
    w.as_("dev.near", NEAR);
    let msg = panic_message(|| {
        w.hub
            .register_model("greedy".into(), U128(1), U128(1), 8_001, RunnerPolicy::Open);
    });
    assert_eq!(msg, "runner share 8001 bps is outside 5000..=8000 bps");
    w.as_("dev.near", NEAR);
    let long = RunnerPolicy::Allowlist((0..17).map(|i| acc(&format!("r{i}.near"))).collect());
    let msg = panic_message(|| {
        w.hub
            .register_model("closed".into(), U128(1), U128(1), 7_000, long);
    });
    assert_eq!(msg, "allowlist has 17 runners, at most 16");
    w.as_("dev.near", NEAR);
    let mut bad = version_input();
    bad.uri = String::new();
    let msg = panic_message(|| {
        w.hub.add_model_version(MODEL.into(), bad);
    });
    assert_eq!(msg, "uri must be 1 to 256 bytes, not 0");
}

#[test]
fn pagination_of_models_runners_and_channels() {
    let mut w = World::new();
    for i in 0..5 {
        w.as_("dev.near", NEAR);
        w.hub.register_model(
            format!("model-{i}"),
            U128(1),
            U128(1),
            7_000,
            RunnerPolicy::Open,
        );
    }
    let page: Vec<_> = w
        .hub
        .models(Some(2), Some(2))
        .into_iter()
        .map(|m| m.model_id)
        .collect();
    assert_eq!(page, ["model-1", "model-2"]);
    assert_eq!(w.hub.models(None, None).len(), 6);
    assert_eq!(w.hub.runners(None, Some(1)).len(), 1);
    assert_eq!(w.hub.channels(Some(1), None).len(), 0);
    assert_eq!(w.hub.hub_info().models, 6);
}

#[test]
fn runner_registration_bond_and_keys() {
    let mut w = World::new();
    let r = w.hub.runner(acc("runner.near")).unwrap();
    assert!(
        r.bond.0 > NEAR && r.bond.0 < 2 * NEAR,
        "bond is the deposit less storage: {}",
        r.bond.0
    );
    let active = Some(AccountKey {
        revoked_at_ns: None,
    });
    assert_eq!(
        w.hub
            .runner_key(acc("runner.near"), w.runner_key.public_key()),
        active
    );
    assert_eq!(
        w.hub.user_key(acc("alice.near"), w.user_key.public_key()),
        active
    );
    assert_eq!(
        w.hub
            .runner_key(acc("alice.near"), w.runner_key.public_key()),
        None,
        "keys live in their account's namespace"
    );

    let k = KeyPair::from_seed([30; 32]).public_key();
    // (A panicking call's partial writes are not reverted by the mock, as a chain would:
    // hence a key of its own.)
    w.as_("poor.near", NEAR / 2);
    let msg = panic_message(|| {
        w.hub
            .register_runner(vec![KeyPair::from_seed([31; 32]).public_key()]);
    });
    assert!(
        msg.starts_with("bond of ") && msg.ends_with(&format!("is below the minimum {NEAR}")),
        "{msg}"
    );

    w.as_("runner.near", NEAR);
    let msg = panic_message(|| w.hub.add_runner_key(w.runner_key.public_key()));
    assert!(msg.contains("is already registered"), "{msg}");

    w.as_("runner.near", NEAR);
    w.hub.add_runner_key(k.clone());
    assert!(transfers() > NEAR - NEAR / 100, "storage surplus refunded");
    w.as_("other.near", 1);
    let msg = panic_message(|| w.hub.revoke_runner_key(k.clone()));
    assert!(msg.ends_with("is not registered"), "{msg}");
    w.as_("runner.near", 0);
    let msg = panic_message(|| w.hub.revoke_runner_key(k.clone()));
    assert_eq!(msg, "Requires attached deposit of exactly 1 yoctoNEAR");
    w.as_("runner.near", 1);
    w.hub.revoke_runner_key(k.clone());
    assert_eq!(
        w.hub.runner_key(acc("runner.near"), k.clone()),
        Some(AccountKey {
            revoked_at_ns: Some(U64(w.now))
        })
    );
    w.as_("runner.near", NEAR);
    let msg = panic_message(|| w.hub.add_runner_key(k.clone()));
    assert!(
        msg.contains("already registered"),
        "a revoked key never comes back: {msg}"
    );

    w.as_("runner.near", NEAR);
    w.hub.add_bond();
    assert_eq!(
        w.hub.runner(acc("runner.near")).unwrap().bond.0,
        r.bond.0 + NEAR
    );
}

#[test]
fn runner_leaves_after_the_exit_delay_and_earnings_stay_withdrawable() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 10 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    let bond = w.hub.runner(acc("runner.near")).unwrap().bond.0;
    w.as_("runner.near", 1);
    assert_eq!(
        panic_message(|| w.hub.finish_leave()),
        "runner runner.near has not requested to leave"
    );
    w.as_("runner.near", 0);
    w.hub.request_leave();
    w.now += 24 * HOUR - 1;
    w.as_("runner.near", 1);
    assert!(panic_message(|| w.hub.finish_leave()).starts_with("leaving is possible from"));
    w.now += 1;
    w.as_("runner.near", 1);
    w.hub.finish_leave();
    assert_eq!(transfers(), bond);
    // A runner that left settles nothing more.
    assert_eq!(
        rejected(&w.settle_one(w.receipt(&auth, 2, 2_000))),
        RejectCode::RunnerLeft
    );
    w.as_("runner.near", 1);
    w.hub.withdraw_earnings(None);
    assert_eq!(transfers(), 700);
    w.as_("runner.near", 1);
    assert_eq!(
        panic_message(|| w.hub.withdraw_earnings(None)),
        "nothing to withdraw"
    );
}

#[test]
fn earnings_withdrawal_is_bounded() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    w.as_("runner.near", 1);
    assert_eq!(
        panic_message(|| w.hub.withdraw_earnings(Some(U128(7_001)))),
        "requested 7001 yocto, only 7000 available"
    );
    w.as_("runner.near", 1);
    w.hub.withdraw_earnings(Some(U128(1)));
    assert_eq!(transfers(), 1);
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings.0, 6_999);
}

#[test]
fn failed_payout_is_recredited() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    w.as_("runner.near", 1);
    w.hub.withdraw_earnings(None);
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings.0, 0);
    w.callback(PromiseResult::Failed);
    assert!(!w.hub.on_payout(
        Payout::RunnerEarnings {
            runner: acc("runner.near")
        },
        acc("runner.near"),
        U128(7_000),
        Err(near_sdk::PromiseError::Failed)
    ));
    assert_eq!(w.hub.runner(acc("runner.near")).unwrap().earnings.0, 7_000);
    assert_eq!(events()[0]["event"], "payout_failed");

    // A failed refund goes back into the channel.
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.now += 2 * HOUR;
    w.as_("alice.near", 1);
    w.hub.finish_withdrawal(acc("runner.near"));
    assert_eq!(w.channel_unspent(), 0);
    let channel = market_protocol::ChannelId {
        user: acc("alice.near"),
        runner: acc("runner.near"),
    };
    w.callback(PromiseResult::Failed);
    w.hub.on_payout(
        Payout::ChannelRefund { channel },
        acc("alice.near"),
        U128(w.funded - 10_000),
        Err(near_sdk::PromiseError::Failed),
    );
    assert_eq!(w.channel_unspent(), w.funded - 10_000);

    // A successful payout changes nothing.
    w.callback(PromiseResult::Successful(vec![]));
    assert!(w
        .hub
        .on_payout(Payout::ProtocolFees, acc("owner.near"), U128(5), Ok(())));
    assert_eq!(w.hub.hub_info().protocol_earnings.0, 1_000);
}

#[test]
fn escrow_funding_and_withdrawal() {
    let mut w = World::new();
    // The channel's record is charged at its largest size, its listing as measured.
    let storage = 10 * NEAR - w.channel_unspent();
    assert!(
        storage > w.hub.hub_info().channel_storage_cost.0
            && storage < 2 * w.hub.hub_info().channel_storage_cost.0,
        "{storage}"
    );
    w.as_("alice.near", NEAR);
    w.hub.fund_channel(acc("runner.near"));
    let unspent = w.channel_unspent();
    w.as_("alice.near", 1);
    assert_eq!(
        panic_message(|| w.hub.finish_withdrawal(acc("runner.near"))),
        "no withdrawal was requested on the channel from alice.near to runner.near"
    );
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    // Funding again cancels the request.
    w.as_("alice.near", 1);
    w.hub.fund_channel(acc("runner.near"));
    w.now += 3 * HOUR;
    w.as_("alice.near", 1);
    assert!(
        panic_message(|| w.hub.finish_withdrawal(acc("runner.near")))
            .starts_with("no withdrawal was requested")
    );
    w.as_("alice.near", 0);
    w.hub.request_withdrawal(acc("runner.near"));
    w.now += 2 * HOUR;
    w.as_("alice.near", 1);
    w.hub.finish_withdrawal(acc("runner.near"));
    assert_eq!(transfers(), unspent + 1);
    assert_eq!(w.channel_unspent(), 0);
    w.as_("bob.near", NEAR);
    assert_eq!(
        panic_message(|| w.hub.fund_channel(acc("nobody.near"))),
        "runner nobody.near is not registered"
    );
}

#[test]
fn channel_reserve_covers_the_largest_channel() {
    // A channel at its largest: longest account ids, four 64-byte model and content lines, and a
    // remembered authorization naming four 64-byte models. Its bytes must fit the reserve.
    let mut w = World::bare();
    let long = |c: char| acc(&format!("{}.near", c.to_string().repeat(59)));
    let id = market_protocol::ChannelId {
        user: long('u'),
        runner: long('r'),
    };
    let model = |i: u8| format!("{}{i}", "m".repeat(63));
    let channel = crate::state::Channel {
        deposited: U128(u128::MAX),
        settled: U128(u128::MAX),
        last_seq: U64(u64::MAX),
        lines: (0..4)
            .map(|i| crate::state::SettledLine {
                model_id: model(i),
                version: u32::MAX,
                units_in: U64(u64::MAX),
                units_out: U64(u64::MAX),
                amount: U128(u128::MAX),
                base_units_in: U64(u64::MAX),
                base_units_out: U64(u64::MAX),
                base_amount: U128(u128::MAX),
            })
            .collect(),
        content: (0..4)
            .map(|i| crate::state::SettledContent {
                content_id: model(i),
                uses: U64(u64::MAX),
                amount: U128(u128::MAX),
                base_uses: U64(u64::MAX),
                base_amount: U128(u128::MAX),
            })
            .collect(),
        authorization: Some(crate::state::ActiveAuthorization {
            id: [9; 32].into(),
            public_key: w.user_key.public_key(),
            cap: U128(u128::MAX),
            expires_at_ns: U64(u64::MAX),
            models: (0..4).map(|i| ceiling(&model(i))).collect(),
            content: (0..4)
                .map(|i| market_protocol::authorization::ContentCeiling {
                    content_id: model(i),
                    max_per_use: U128(u128::MAX),
                })
                .collect(),
            base_seq: U64(u64::MAX),
            revoked_until_ns: Some(U64(u64::MAX)),
        }),
        withdrawal: Some(crate::state::Deadline {
            requested_at_ns: U64(u64::MAX),
            ready_at_ns: U64(u64::MAX),
        }),
    };
    w.as_("hub.near", 0);
    let before = near_sdk::env::storage_usage();
    w.hub.channels.insert(&id, &channel);
    let used = near_sdk::env::storage_usage() - before;
    assert!(
        used <= CHANNEL_STORAGE_BYTES,
        "largest channel takes {used} bytes, reserve is {CHANNEL_STORAGE_BYTES}"
    );
    assert!(
        used * 2 > CHANNEL_STORAGE_BYTES,
        "reserve {CHANNEL_STORAGE_BYTES} is far above the {used} bytes needed"
    );
}

#[test]
fn config_rules_and_owner_powers() {
    let mut w = World::new();
    w.as_("owner.near", 1);
    let msg = panic_message(|| {
        w.hub.set_config(ConfigUpdate {
            withdrawal_delay_ns: Some(U64(HOUR)),
            ..Default::default()
        });
    });
    assert_eq!(
        msg,
        format!("withdrawal delay {HOUR} ns must be longer than the settlement window {HOUR} ns")
    );
    w.as_("owner.near", 1);
    let msg = panic_message(|| {
        w.hub.set_config(ConfigUpdate {
            protocol_fee_bps: Some(2_001),
            ..Default::default()
        });
    });
    assert_eq!(
        msg,
        "protocol fee 2001 bps is above the ceiling of 2000 bps"
    );
    w.as_("owner.near", 1);
    w.hub.set_config(ConfigUpdate {
        protocol_fee_bps: Some(500),
        min_runner_bond: Some(U128(5)),
        ..Default::default()
    });
    assert_eq!(events()[0]["event"], "config_scheduled");
    // Scheduled: in effect after the notice (the withdrawal delay, 2 hours).
    let info = w.hub.hub_info();
    assert_eq!(info.config.protocol_fee_bps, 1_000);
    assert_eq!(
        info.pending_config.unwrap().effective_at_ns.0,
        START + 2 * HOUR
    );
    w.now += 2 * HOUR;
    w.as_("anyone.near", 0);
    let info = w.hub.hub_info();
    assert_eq!(
        (
            info.config.protocol_fee_bps,
            info.config.min_runner_bond.0,
            info.config.min_runner_bps
        ),
        (500, 5, 5_000)
    );
    assert!(info.pending_config.is_none());

    // Protocol fees: settled at the new rate, withdrawn by the owner only.
    let auth = w.authorization(NEAR, START + 3 * HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    assert_eq!(w.hub.hub_info().protocol_earnings.0, 500);
    w.as_("owner.near", 1);
    w.hub.withdraw_protocol_fees(acc("treasury.near"), None);
    assert_eq!(transfers(), 500);

    // Ownership moves in two steps: a proposal, then the new owner's acceptance.
    w.as_("owner.near", 1);
    w.hub.propose_owner(acc("dao.near"));
    assert_eq!(w.hub.hub_info().owner, acc("owner.near"));
    w.as_("mallory.near", 1);
    assert_eq!(
        panic_message(|| w.hub.accept_owner()),
        "mallory.near was not proposed as the hub's owner"
    );
    w.as_("dao.near", 1);
    w.hub.accept_owner();
    assert_eq!(w.hub.hub_info().owner, acc("dao.near"));
    w.as_("owner.near", 1);
    assert_eq!(
        panic_message(|| w.hub.pause()),
        "owner.near is not the hub owner"
    );
}

#[test]
fn init_refuses_a_config_that_breaks_the_money_rules() {
    let mut bad = config();
    bad.withdrawal_delay_ns = bad.settlement_window_ns;
    testing_env!(VMContextBuilder::new()
        .current_account_id(acc("hub.near"))
        .build());
    let msg = panic_message(|| {
        Hub::new(acc("owner.near"), bad);
    });
    assert!(
        msg.contains("must be longer than the settlement window"),
        "{msg}"
    );
}

#[test]
fn migrate_keeps_the_state() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 1_000)));
    w.as_("hub.near", 0);
    near_sdk::env::state_write(&w.hub);
    let migrated = Hub::migrate();
    assert_eq!(migrated.hub_info(), w.hub.hub_info());
    assert_eq!(
        migrated
            .channel(acc("alice.near"), acc("runner.near"))
            .unwrap()
            .channel
            .settled
            .0,
        1_000
    );
    assert_eq!(events()[0]["data"]["to_version"], crate::STATE_VERSION);
}

#[test]
fn a_failed_flush_loses_nothing_and_can_be_retried() {
    use crate::state::Update;
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + HOUR);
    charge(&w.settle_one(w.receipt(&auth, 1, 10_000)));
    w.as_("dev.near", 0);
    let msg = panic_message(|| {
        w.hub.flush(MODEL.into()).detach();
    });
    assert_eq!(msg, format!("model `{MODEL}` has no token yet"));
    w.hub.models.update(&MODEL.to_owned(), |m| {
        m.token = Some(acc("smollm2-135m.hub.near"));
        m.token_issued = true;
    });
    w.as_("anyone.near", 0);
    w.hub.flush(MODEL.into()).detach();
    assert_eq!(
        w.hub.model(MODEL.into()).unwrap().model.holders_accrued.0,
        0
    );
    w.callback(PromiseResult::Failed);
    assert!(!w.hub.on_flushed(
        MODEL.into(),
        U128(2_000),
        Err(near_sdk::PromiseError::Failed)
    ));
    assert_eq!(
        w.hub.model(MODEL.into()).unwrap().model.holders_accrued.0,
        2_000
    );
    w.as_("anyone.near", 0);
    w.hub.flush(MODEL.into()).detach();
    w.callback(PromiseResult::Successful(vec![]));
    assert!(w.hub.on_flushed(MODEL.into(), U128(2_000), Ok(())));
    assert_eq!(
        w.hub.model(MODEL.into()).unwrap().model.holders_accrued.0,
        0
    );
    assert_eq!(events()[0]["event"], "revenue_flushed");
}

#[test]
fn token_issuance_refuses_bad_requests_before_anything_moves() {
    use crate::{state::License, tokens::ManifestEntry};
    let mut w = World::new();
    let issue =
        |w: &mut World, who: &str, model: &str, manifest: Vec<ManifestEntry>, deposit: u128| {
            w.as_(who, deposit);
            panic_message(|| {
                w.hub
                    .issue_token(model.into(), "SMOL".into(), manifest, 1)
                    .detach();
            })
        };
    assert_eq!(
        issue(&mut w, "mallory.near", MODEL, vec![], NEAR),
        format!("mallory.near does not own model `{MODEL}`")
    );
    assert_eq!(
        issue(&mut w, "dev.near", MODEL, vec![], NEAR),
        "the hub has no token code yet"
    );
    w.as_("news.near", NEAR);
    w.hub.register_content(
        "paywalled".into(),
        [1; 32].into(),
        "u".into(),
        License::InferenceOnly {
            price_per_use: U128(1),
        },
    );
    let paywalled = vec![ManifestEntry {
        content_id: "paywalled".into(),
        weight: 1,
    }];
    assert_eq!(
        issue(&mut w, "dev.near", MODEL, paywalled, NEAR),
        "content `paywalled` is inference-only and cannot be named in a training manifest"
    );
    let unknown = vec![ManifestEntry {
        content_id: "nothing".into(),
        weight: 1,
    }];
    assert_eq!(
        issue(&mut w, "dev.near", MODEL, unknown, NEAR),
        "content `nothing` is not registered"
    );
    // With code set but too little attached, nothing is created and the model has no token.
    w.as_("owner.near", 10 * NEAR);
    w.hub.set_token_code(vec![0; 1_000]);
    let msg = issue(&mut w, "dev.near", MODEL, vec![], 1);
    assert!(msg.starts_with("issuing a model token needs"), "{msg}");
    assert!(w.hub.model(MODEL.into()).unwrap().model.token.is_none());
    assert!(get_created_receipts().is_empty(), "no account was created");
}

//! Every method of the interface crate (`market_hub_api::methods`) reaches a method of the
//! compiled hub, and the contract parses the arguments it encodes: sent by a stranger, each
//! call fails (or succeeds) on the hub's own rules, never on an unknown method or arguments
//! it cannot read. A descriptor whose name or argument names drifted from the contract fails
//! here.

use market_hub_api::{
    methods, ConfigUpdate, License, ManifestEntry, ModelUpdate, RunnerPolicy, VersionInput,
};
use market_protocol::crypto::native::KeyPair;
use near_sdk::json_types::U64;
use sandbox_tests::{acc, Market, MODEL, NEAR};

/// What a runtime says when the method or its arguments are wrong, rather than the hub.
fn unread(message: &str) -> bool {
    [
        "MethodNotFound",
        "MethodResolveError",
        "deserialize",
        "Deserialize",
        "MethodEmptyName",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[test]
fn every_method_reaches_the_contract_with_arguments_it_reads() {
    let mut m = Market::new(1);
    let stranger = m.env.create_account("stranger.near", 10 * NEAR);
    let (hub, runner, user) = (m.hub.clone(), m.runner.clone(), m.users[0].0.clone());
    let key = KeyPair::from_seed([9; 32]).public_key();
    let auth = m.authorization(0, NEAR);
    let item = m.receipt(&auth, 1, 1_000);
    let version = VersionInput {
        weights_sha256: [1; 32].into(),
        format: "gguf".into(),
        architecture: "llama".into(),
        tokenizer_sha256: [1; 32].into(),
        uri: "pypi:x".into(),
        size_bytes: U64(1),
        sealed: None,
    };
    let license = License::InferenceOnly {
        price_per_use: near_sdk::json_types::U128(1),
    };
    let manifest = [ManifestEntry {
        content_id: "wiki".into(),
        weight: 1,
    }];
    let calls: Vec<(&str, Vec<u8>, u128)> = vec![
        wire(methods::new(&stranger, &sandbox_tests::config())),
        wire(methods::migrate()),
        wire(methods::register_model(
            "other",
            1,
            1,
            7000,
            &RunnerPolicy::Open,
        )),
        wire(methods::add_model_version(MODEL, &version)),
        wire(methods::update_model(MODEL, &ModelUpdate::default())),
        wire(methods::transfer_model(MODEL, &stranger)),
        wire(methods::register_runner(std::slice::from_ref(&key))),
        wire(methods::add_runner_key(&key)),
        wire(methods::revoke_runner_key(&key)),
        wire(methods::add_bond()),
        wire(methods::request_leave()),
        wire(methods::finish_leave()),
        wire(methods::withdraw_earnings(Some(1))),
        wire(methods::register_user_key(&key)),
        wire(methods::revoke_user_key(&key)),
        wire(methods::fund_channel(&runner)),
        wire(methods::request_withdrawal(&runner)),
        wire(methods::finish_withdrawal(&runner)),
        wire(methods::settle(std::slice::from_ref(&item))),
        wire(methods::report_equivocation(&item.receipt, &item.receipt)),
        wire(methods::register_content(
            "page",
            [1; 32].into(),
            "https://x",
            &license,
        )),
        wire(methods::withdraw_content_earnings(None)),
        wire(methods::register_sealing_key(
            &[1; 32], &key, &[2; 64], None,
        )),
        wire(methods::grant_sealed_version(
            MODEL, 1, &runner, &[3; 32], &[1; 32], &[2; 48],
        )),
        wire(methods::revoke_grant(MODEL, 1, &runner)),
        wire(methods::set_token_code(b"\0asm")),
        wire(methods::set_token_code_hash([1; 32].into())),
        wire(methods::issue_token(MODEL, "TOK", &manifest, 1)),
        wire(methods::flush(MODEL)),
        wire(methods::set_config(&ConfigUpdate::default())),
        wire(methods::pause()),
        wire(methods::unpause()),
        wire(methods::withdraw_protocol_fees(&stranger, None)),
        wire(methods::propose_owner(&stranger)),
        wire(methods::accept_owner()),
        wire(methods::propose_upgrade(b"\0asm")),
        wire(methods::cancel_upgrade()),
        wire(methods::apply_upgrade()),
    ];
    for (method, args, deposit) in calls {
        let result = m.env.call_raw(
            &stranger,
            &hub,
            method,
            args,
            deposit,
            300 * sandbox_tests::TGAS,
        );
        if let Err(e) = result.result() {
            assert!(!unread(&e), "`{method}` did not reach the hub's rules: {e}");
        }
    }

    // Views answer with what their decoders read.
    assert!(m.env.view(&hub, methods::model(MODEL)).is_some());
    assert!(!m.env.view(&hub, methods::models(None, Some(5))).is_empty());
    assert!(m.env.view(&hub, methods::model_version(MODEL, 1)).is_some());
    assert!(m.env.view(&hub, methods::runner(&runner)).is_some());
    assert!(!m.env.view(&hub, methods::runners(None, None)).is_empty());
    let runner_key = m.runner_key.public_key();
    assert!(m
        .env
        .view(&hub, methods::runner_key(&runner, &runner_key))
        .is_some());
    let user_key = m.users[0].1.public_key();
    assert!(m
        .env
        .view(&hub, methods::user_key(&user, &user_key))
        .is_some());
    assert!(m.env.view(&hub, methods::channel(&user, &runner)).is_some());
    assert!(!m.env.view(&hub, methods::channels(None, None)).is_empty());
    assert!(m.env.view(&hub, methods::content("nothing")).is_none());
    assert_eq!(
        m.env
            .view(&hub, methods::content_earnings(&acc("x.near")))
            .0,
        0
    );
    assert!(m.env.view(&hub, methods::sealing_key(&runner)).is_none());
    assert!(m
        .env
        .view(&hub, methods::grant(MODEL, 1, &runner))
        .is_none());
    assert!(m
        .env
        .view(&hub, methods::sealed_artifact(MODEL, 1))
        .is_none());
    assert_eq!(
        m.env.view(&hub, methods::hub_info()).owner,
        acc("owner.near")
    );
    let simulated = m.env.view(
        &hub,
        methods::simulate_settle(&runner, std::slice::from_ref(&item)),
    );
    assert_eq!(simulated.len(), 1);
}

/// A call as the bytes a transport sends.
fn wire<R>(call: market_hub_api::Call<R>) -> (&'static str, Vec<u8>, u128) {
    (call.method, call.args, call.deposit)
}

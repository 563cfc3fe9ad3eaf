//! The compiled hub wasm on the embedded chain: its life cycle, and what only a real VM
//! shows (a panic as a failed outcome, a failed transfer seen by its callback, invalid
//! transactions refused).

use local_chain::Status;
use market_hub_api::{
    methods, License, ManifestEntry, ReceiptOutcome, RejectCode, RunnerPolicy, SettleResult,
};
use near_primitives::errors::InvalidTxError;
use sandbox_tests::*;
use serde_json::json;

/// Each receipt's charge, or the code it was rejected with.
fn outcome_codes(result: &Called<Vec<ReceiptOutcome>>) -> Vec<Result<u128, RejectCode>> {
    result
        .result()
        .expect("settle runs")
        .into_iter()
        .map(|o| match o.result {
            SettleResult::Settled { charge, .. } => Ok(charge.0),
            SettleResult::Rejected { code, .. } => Err(code),
        })
        .collect()
}

#[test]
fn life_cycle_on_the_compiled_wasm() {
    let mut m = Market::new(2);
    let (hub, runner) = (m.hub.clone(), m.runner.clone());
    let auth0 = m.authorization(0, NEAR);
    let auth1 = m.authorization(1, NEAR);

    // A batch: two channels, a forged receipt in the middle, then a later receipt.
    let mut forged = m.receipt(&auth1, 9, NEAR);
    forged.receipt.signature.0[3] ^= 1;
    let batch = [
        m.receipt(&auth0, 1, 1_000_000),
        forged,
        m.receipt(&auth1, 1, 2_000_000),
        m.receipt(&auth0, 2, 3_000_000),
    ];
    // Relayed, so every runner signature is checked.
    let relayer = m.env.create_account("relayer.near", 10 * NEAR);
    let result = m.settle_as(&relayer, &batch, 300 * TGAS);
    assert_eq!(
        outcome_codes(&result),
        [
            Ok(1_000_000),
            Err(RejectCode::BadRunnerSignature),
            Ok(2_000_000),
            Ok(2_000_000)
        ]
    );
    let logs = result.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains(r#""event":"batch_settled""#)),
        "{logs:?}"
    );

    // Replaying the same batch pays nothing.
    let again = m.settle_as(&relayer, &batch, 300 * TGAS);
    assert_eq!(
        outcome_codes(&again),
        [
            Err(RejectCode::StaleSequence),
            Err(RejectCode::BadRunnerSignature),
            Err(RejectCode::StaleSequence),
            Err(RejectCode::StaleSequence)
        ]
    );

    // 5,000,000 yocto settled: runner 70 %, protocol 10 %, holders 20 %.
    let r = m.env.view(&hub, methods::runner(&runner)).unwrap();
    assert_eq!(r.earnings.0, 3_500_000);
    let info = m.env.view(&hub, methods::hub_info());
    assert_eq!(info.protocol_earnings.0, 500_000);
    let model = m.env.view(&hub, methods::model(MODEL)).unwrap();
    assert_eq!(model.model.holders_accrued.0, 1_000_000);

    // The runner withdraws its earnings: its balance grows by them less the gas it paid.
    let before = m.env.balance(&runner);
    let w = m.env.call(&runner, &hub, methods::withdraw_earnings(None));
    w.result().expect("withdraws");
    let spent_on_gas: u128 =
        w.transaction.tokens_burnt + w.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    assert_eq!(
        m.env.balance(&runner) + spent_on_gas,
        before + 3_500_000 - 1,
        "earnings arrived (less the yocto attached), gas refunded"
    );

    // User 0 leaves: not before the delay, then everything unspent comes back.
    let user = m.users[0].0.clone();
    m.env
        .call(&user, &hub, methods::request_withdrawal(&runner))
        .result()
        .unwrap();
    let early = m.env.call(&user, &hub, methods::finish_withdrawal(&runner));
    assert!(early
        .result()
        .unwrap_err()
        .contains("withdrawal is possible from"));
    m.env.chain.fast_forward(2 * 3_600);
    let unspent = m
        .env
        .view(&hub, methods::channel(&user, &runner))
        .unwrap()
        .unspent
        .0;
    let before = m.env.balance(&user);
    m.env
        .call(&user, &hub, methods::finish_withdrawal(&runner))
        .result()
        .unwrap();
    assert!(
        m.env.balance(&user) > before + unspent - NEAR / 100,
        "refund arrived"
    );
    assert_eq!(
        m.env
            .view(&hub, methods::channel(&user, &runner))
            .unwrap()
            .unspent
            .0,
        0
    );
}

#[test]
fn a_panic_is_a_failed_outcome_with_its_message() {
    let mut m = Market::new(0);
    let hub = m.hub.clone();
    let mallory = m.env.create_account("mallory.near", 10 * NEAR);
    let result = m.env.call(&mallory, &hub, methods::pause());
    assert_eq!(
        result.result().unwrap_err(),
        "Smart contract panicked: mallory.near is not the hub owner"
    );
    assert!(matches!(result.status(), Status::Failure(_)));
    // Deposits of a failed call come back.
    let before = m.env.balance(&mallory);
    let paid = m.env.call(
        &mallory,
        &hub,
        methods::register_model("Bad Id", 1, 1, 7000, &RunnerPolicy::Open).deposit(NEAR),
    );
    assert!(paid.result().unwrap_err().contains("contains `B`"));
    assert!(
        m.env.balance(&mallory) > before - NEAR / 100,
        "the 1 NEAR deposit was refunded"
    );
}

#[test]
fn a_failed_payout_is_seen_by_its_callback_and_recredited() {
    let mut m = Market::new(1);
    let hub = m.hub.clone();
    let auth = m.authorization(0, NEAR);
    m.settle(&[m.receipt(&auth, 1, 10_000_000)], 300 * TGAS)
        .result()
        .unwrap();
    let owner = acc("owner.near");
    // Paying protocol fees to an account that does not exist: the transfer fails, the
    // callback sees the failed promise and puts the fees back.
    let result = m.env.call(
        &owner,
        &hub,
        methods::withdraw_protocol_fees(&acc("ghost.near"), None),
    );
    result.result().expect("the call itself succeeds");
    assert_eq!(result.failures().len(), 1, "the transfer failed");
    assert!(
        result.logs().iter().any(|l| l.contains("payout_failed")),
        "{:?}",
        result.logs()
    );
    assert_eq!(
        m.env.view(&hub, methods::hub_info()).protocol_earnings.0,
        1_000_000
    );
    // To an account that exists, it is paid and gone from the ledger.
    m.env
        .call(&owner, &hub, methods::withdraw_protocol_fees(&owner, None))
        .result()
        .unwrap();
    assert_eq!(m.env.view(&hub, methods::hub_info()).protocol_earnings.0, 0);
}

#[test]
fn invalid_transactions_are_refused() {
    let mut env = Env::new();
    let root = acc("near");
    let signer = env.signer(&root).clone();
    let alice = env.create_account("alice.near", NEAR);
    let tx = |nonce: u64, env: &Env| {
        let t = near_primitives::transaction::Transaction::V0(
            near_primitives::transaction::TransactionV0 {
                signer_id: root.clone(),
                public_key: signer.public_key(),
                nonce,
                receiver_id: alice.clone(),
                block_hash: env.chain.block_hash(),
                actions: vec![near_primitives::action::Action::Transfer(
                    near_primitives::action::TransferAction {
                        deposit: near_primitives::types::Balance::from_yoctonear(1),
                    },
                )],
            },
        );
        let sig = signer.sign(t.get_hash_and_size().0.as_ref());
        near_primitives::transaction::SignedTransaction::new(sig, t)
    };
    // The root key's nonce is 1 after creating alice.
    assert_eq!(
        env.chain.submit(tx(1, &env)).unwrap_err(),
        InvalidTxError::InvalidNonce {
            tx_nonce: 1,
            ak_nonce: 1
        }
    );
    let mut bad = tx(2, &env);
    bad.signature = near_crypto::Signature::empty(near_crypto::KeyType::ED25519);
    assert_eq!(
        env.chain.submit(bad).unwrap_err(),
        InvalidTxError::InvalidSignature
    );
    let before = env.balance(&alice);
    env.chain.submit(tx(2, &env)).unwrap().result().unwrap();
    assert_eq!(env.balance(&alice), before + 1);
}

#[test]
fn attacks_on_the_wasm_pay_nothing() {
    let mut m = Market::new(2);
    let auth = m.authorization(0, 5_000);
    let mut other_chain = m.authorization(0, NEAR);
    other_chain.authorization.chain_id = "mainnet".into();
    let other_chain = market_protocol::SignedAuthorization::sign(
        other_chain.authorization,
        [9; 32],
        &m.users[0].1,
    );
    let foreign = m.authorization(1, NEAR); // user 1's authorization, receipt for user 0
    let mut wrong_channel = m.receipt(&foreign, 1, 100);
    wrong_channel.receipt = market_protocol::SignedReceipt::sign(
        market_protocol::UsageReceipt {
            user: m.users[0].0.as_str().parse().unwrap(),
            ..wrong_channel.receipt.receipt
        },
        &m.runner_key,
    );
    let result = m.settle(
        &[
            m.receipt(&auth, 1, 5_001),
            m.receipt(&other_chain, 1, 100),
            wrong_channel,
        ],
        300 * TGAS,
    );
    assert_eq!(
        outcome_codes(&result),
        [
            Err(RejectCode::OverCap),
            Err(RejectCode::WrongChain),
            Err(RejectCode::WrongChannel)
        ]
    );
    let channel = m
        .env
        .view(&m.hub, methods::channel(&m.users[0].0, &m.runner))
        .unwrap();
    assert_eq!(channel.channel.settled.0, 0);
}

#[test]
fn the_hub_issues_a_model_token_and_flushes_holders_revenue_to_it() {
    let mut m = Market::new(1);
    let hub = m.hub.clone();
    let owner = acc("owner.near");
    let code = wasm("model_token");
    let dev = acc("dev.near");
    // Without token code the hub refuses.
    let manifest = |content_id: &str| {
        [ManifestEntry {
            content_id: content_id.into(),
            weight: 30,
        }]
    };
    let issue = || methods::issue_token(MODEL, "SMOL", &manifest("corpus"), 70).deposit(3 * NEAR);
    // The training manifest names registered open content; inference-only content is refused.
    let curator = m.env.create_account("curator.near", 5 * NEAR);
    let paywalled = License::InferenceOnly {
        price_per_use: 10.into(),
    };
    m.env
        .call(
            &curator,
            &hub,
            methods::register_content("paywalled", [0; 32].into(), "https://x/p", &paywalled)
                .deposit(NEAR / 10),
        )
        .result()
        .unwrap();
    let err = m
        .env
        .call(
            &dev,
            &hub,
            methods::issue_token(MODEL, "SMOL", &manifest("paywalled"), 70).deposit(3 * NEAR),
        )
        .result()
        .unwrap_err();
    assert!(
        err.contains("inference-only and cannot be named in a training manifest"),
        "{err}"
    );
    m.register_content(&curator, "corpus", &License::OpenForTraining);
    let err = m.env.call(&dev, &hub, issue()).result().unwrap_err();
    assert!(err.contains("the hub has no token code yet"), "{err}");
    m.env
        .call(
            &owner,
            &hub,
            methods::set_token_code(&code).deposit(3 * NEAR),
        )
        .result()
        .expect("setting the token code");

    let before = m.env.balance(&dev);
    let issued = m.env.call(&dev, &hub, issue());
    issued.result().expect("issuing the token");
    let token = acc(&format!("{MODEL}.hub.near"));
    let gas_paid: u128 = issued.transaction.tokens_burnt
        + issued.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    let storage_paid = before - m.env.balance(&dev) - gas_paid;
    assert!(
        storage_paid > NEAR && storage_paid < 3 * NEAR,
        "the token account's storage: {storage_paid}"
    );
    assert_eq!(
        m.env.view(&hub, methods::model(MODEL)).unwrap().model.token,
        Some(token.clone())
    );
    // 70 % to the developer, 30 % to the owner of the training content.
    assert_eq!(
        yocto(
            &m.env
                .view_json(&token, "ft_balance_of", json!({"account_id": "dev.near"}))
        ),
        700_000 * 10u128.pow(18)
    );
    assert_eq!(
        yocto(&m.env.view_json(
            &token,
            "ft_balance_of",
            json!({"account_id": "curator.near"})
        )),
        300_000 * 10u128.pow(18)
    );

    // Usage accrues the holders' 20 %; one flush sends it; the developer claims it exactly.
    let auth = m.authorization(0, NEAR);
    m.settle(&[m.receipt(&auth, 1, 10_000_000)], 300 * TGAS)
        .result()
        .unwrap();
    m.settle(&[m.receipt(&auth, 2, 15_000_000)], 300 * TGAS)
        .result()
        .unwrap();
    let flushed = m.env.call(&acc("runner.near"), &hub, methods::flush(MODEL));
    flushed.result().expect("flushing the holders' share");
    assert!(
        flushed.logs().iter().any(|l| l.contains("revenue_flushed")),
        "{:?}",
        flushed.logs()
    );
    assert_eq!(
        m.env
            .view(&hub, methods::model(MODEL))
            .unwrap()
            .model
            .holders_accrued
            .0,
        0
    );
    assert_eq!(
        yocto(
            &m.env
                .view_json(&token, "claimable", json!({"account_id": "dev.near"}))
        ),
        2_100_000
    );
    assert_eq!(
        yocto(
            &m.env
                .view_json(&token, "claimable", json!({"account_id": "curator.near"}))
        ),
        900_000
    );
    let err = m
        .env
        .call(&dev, &hub, methods::flush(MODEL))
        .result()
        .unwrap_err();
    assert!(err.contains("nothing to withdraw"), "{err}");
    // A second token for the same model is refused.
    let err = m.env.call(&dev, &hub, issue()).result().unwrap_err();
    assert!(err.contains("has its token"), "{err}");
}

#[test]
fn with_global_token_code_issuance_costs_little_storage() {
    let mut m = Market::new(0);
    let hub = m.hub.clone();
    // The owner deploys the token once as a global contract (the chain burns its storage,
    // 10x the price per byte), and points the hub at its hash.
    let publisher = m.env.create_account("publisher.near", 30 * NEAR);
    let hash = publish_token_globally(&mut m.env, &publisher);
    m.env
        .call(
            &acc("owner.near"),
            &hub,
            methods::set_token_code_hash(hash.0.into()),
        )
        .result()
        .expect("setting the token code hash");

    let dev = acc("dev.near");
    let before = m.env.balance(&dev);
    let r = m.env.call(
        &dev,
        &hub,
        methods::issue_token(MODEL, "SMOL", &[], 1).deposit(NEAR / 10),
    );
    r.result().expect("issuing the token");
    let gas: u128 =
        r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    let storage_paid = before - m.env.balance(&dev) - gas;
    assert!(
        storage_paid <= NEAR / 20,
        "issuing costs {storage_paid} yocto of storage, at most 0.05 NEAR"
    );
    let token = acc(&format!("{MODEL}.hub.near"));
    assert_eq!(
        yocto(&m.env.view_json(&token, "ft_total_supply", json!({}))),
        1_000_000 * 10u128.pow(18)
    );
    assert!(
        m.env.chain.account(&token).unwrap().storage_usage < 2_000,
        "the token account holds no code"
    );
}

/// Code changes only through the owner's time lock: proposed, refused before the
/// withdrawal delay plus the settlement window, then deployed by the hub itself with its
/// `migrate` in the same receipt; the state carries over.
#[test]
fn upgrades_wait_for_the_time_lock_then_migrate() {
    let mut m = Market::new(1);
    let hub = m.hub.clone();
    let owner = acc("owner.near");
    let code = wasm("market_hub");
    let err = m
        .env
        .call(
            &owner,
            &hub,
            methods::propose_upgrade(&code).deposit(0).gas(100 * TGAS),
        )
        .result()
        .unwrap_err();
    assert!(err.contains("1 yocto"), "{err}");
    m.env
        .call(
            &owner,
            &hub,
            methods::propose_upgrade(&code).deposit(5 * NEAR),
        )
        .result()
        .expect("proposing the upgrade");
    let info = m.env.view(&hub, methods::hub_info());
    assert!(info.upgrade.is_some(), "{info:?}");
    let early = m.env.call(&owner, &hub, methods::apply_upgrade());
    assert!(
        early
            .result()
            .unwrap_err()
            .contains("upgrading is possible from"),
        "the time lock holds"
    );
    // The withdrawal delay (2 h) plus the settlement window (1 h).
    m.env.chain.fast_forward(3 * 3_600);
    let applied = m.env.call(&owner, &hub, methods::apply_upgrade());
    applied.result().expect("applying the upgrade");
    assert!(
        applied.logs().iter().any(|l| l.contains("\"migrated\"")),
        "{:?}",
        applied.logs()
    );
    let info = m.env.view(&hub, methods::hub_info());
    assert_eq!(info.state_version, 2);
    assert_eq!(info.channels, 1, "the state carried over");
    assert!(info.upgrade.is_none());
}

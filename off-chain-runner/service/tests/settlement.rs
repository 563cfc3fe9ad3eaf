//! Settlement under faults that are not the network's: a batch whose transaction fails as
//! a whole (here: more first receipts than one transaction's gas can verify, as a panic
//! on one poison receipt would fail it too), with a poison receipt among 200 channels, is
//! split until every other receipt settles,
//! and a receipt refused for a reason that may pass (an underfunded channel) is retried
//! later instead of being recorded as final.

mod common;

use std::sync::Arc;

use common::*;
use market_hub_api::{jsonrpc::Signer, methods};
use off_chain_runner::{
    settlement::{Settings, Settler, SETTLE_GAS},
    store::Store,
    token,
};
use sandbox_tests::NEAR;

const CHANNELS: usize = 200;
/// Gas per `settle` transaction: a tenth of the most one may use, so the whole batch of
/// first receipts cannot fit (each verifies its user's signature) and halves of it can.
const GAS: u64 = 30_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_too_heavy_for_one_transaction_is_split_until_every_channel_settles() {
    let net = Net::start("split", CHANNELS).await;
    let running = net.runner("data", Opts::default()).await;
    for i in 0..CHANNELS {
        let token = token::encode(&net.authorization(i, NEAR).await);
        let (status, body) = chat_once(running.addr, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    running.stop().await;

    // One poison receipt among them: its amount raised after signing (a bit flipped on
    // disk), so the runner's own signature on it fails on chain.
    let store = released_store(&net.dir.join("data")).await;
    let poisoned = net.users[CHANNELS / 3].0.clone();
    store
        .append(&poisoned, |current| {
            let mut record = current.expect("a channel").clone();
            record.receipt.receipt.seq.0 += 1;
            record.receipt.receipt.amount.0 += 1;
            Ok(record)
        })
        .unwrap();

    // Every receipt is the first of its channel, and the batch of all of them needs more
    // gas than each transaction gets: it runs out of gas in nearcore's VM as a whole.
    let settler = Settler::new(
        Arc::new(store),
        Signer::new(
            net.hub_client(),
            near_crypto::InMemorySigner::from_secret_key(net.runner.clone(), net.account_key()),
        ),
        Settings {
            batch: CHANNELS,
            gas: GAS,
            ..Settings::default()
        },
        None,
    );
    let report = settler
        .drain()
        .await
        .expect("the drain survives a failing batch");
    assert_eq!(
        (report.sent, report.settled),
        (CHANNELS, CHANNELS - 1),
        "{report:?}"
    );
    let refused: Vec<&str> = report
        .rejected
        .iter()
        .map(|(user, _, _)| user.as_str())
        .chain(report.failed.iter().map(|(user, _, _)| user.as_str()))
        .collect();
    assert_eq!(refused, [poisoned.as_str()], "only the poison: {report:?}");
    for (user, _) in net.users.iter().take(CHANNELS) {
        let channel = net.view(methods::channel(user, &net.runner)).await;
        if *user == poisoned {
            assert_eq!(
                channel.map_or(0, |c| c.channel.last_seq.0),
                0,
                "the poison settles nothing"
            );
            continue;
        }
        let channel = channel.unwrap_or_else(|| panic!("{user} has a channel; report {report:?}"));
        assert_eq!(channel.channel.last_seq.0, 1, "{user} settled");
    }
    assert_eq!(
        settler.drain().await.unwrap().sent,
        0,
        "nothing left to settle"
    );
}

/// Settlement rounds far apart: what settles in these tests was woken, not scheduled.
fn rarely() -> Opts {
    Opts {
        settle: true,
        interval: std::time::Duration::from_hours(1),
        view_ttl: std::time::Duration::from_millis(50),
        ..Opts::default()
    }
}

async fn settled(net: &Net, user: usize) -> u128 {
    net.view(methods::channel(&net.users[user].0, &net.runner))
        .await
        .expect("a funded channel")
        .channel
        .settled
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requested_withdrawal_stops_serving_the_channel_and_settles_it_first() {
    let net = Net::start("withdrawal", 1).await;
    let running = net.runner("data", rarely()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let ask = || chat_once(running.addr, &token);
    let (status, body) = ask().await;
    assert_eq!(status, 200, "{body}");
    let charged = yocto(&body["receipt"]["receipt"]["amount"]);

    let user = net.users[0].0.clone();
    net.call(&user, methods::request_withdrawal(&net.runner))
        .await
        .expect("the user asks for the escrow back");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = ask().await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "withdrawal_pending", "{body}");
    // Settled at once, long before the next scheduled round.
    eventually(30, || async { settled(&net, 0).await == charged }).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_mid_session_stops_serving_and_what_it_signed_settles_in_its_notice() {
    let net = Net::start("revoked", 1).await;
    let running = net.runner("data", rarely()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let ask = || chat_once(running.addr, &token);
    let data = net.dir.join("data");
    let wake = || settle_now(&data, running.addr);
    // The first receipt settles: the hub pins the authorization, which is what lets the
    // rest settle within a revocation's notice.
    let (status, body) = ask().await;
    assert_eq!(status, 200, "{body}");
    let first = yocto(&body["receipt"]["receipt"]["amount"]);
    wake().await;
    eventually(30, || async { settled(&net, 0).await == first }).await;
    let mut last = first;
    for _ in 0..2 {
        let (status, body) = ask().await;
        assert_eq!(status, 200, "{body}");
        last = yocto(&body["receipt"]["receipt"]["amount"]);
    }
    assert!(last > first);

    let (user, key) = (net.users[0].0.clone(), net.users[0].1.public_key());
    net.call(&user, methods::revoke_user_key(&key))
        .await
        .expect("the user revokes its key");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, body) = ask().await;
    assert_eq!(status, 401, "a revoked key is served no more: {body}");
    // Settled at once (the next scheduled round is an hour away), within the notice.
    eventually(30, || async { settled(&net, 0).await == last }).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_over_the_unsettled_limit_waits_for_its_settlement() {
    let net = Net::start("unsettled", 1).await;
    let running = net
        .runner(
            "data",
            Opts {
                max_unsettled: Some(1),
                ..rarely()
            },
        )
        .await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let ask = || chat_once(running.addr, &token);
    let (status, body) = ask().await;
    assert_eq!(status, 200, "{body}");
    let charged = yocto(&body["receipt"]["receipt"]["amount"]);
    let (status, body) = ask().await;
    assert_eq!(status, 402, "over the limit: {body}");
    assert_eq!(body["error"]["code"], "settlement_pending", "{body}");
    eventually(30, || async { settled(&net, 0).await == charged }).await;
    let (status, body) = ask().await;
    assert_eq!(status, 200, "served again once settled: {body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_whose_outcome_was_lost_is_found_on_the_hub_not_sent_again() {
    let net = Net::start("reconcile", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let (status, body) = chat_once(running.addr, &token).await;
    assert_eq!(status, 200, "{body}");
    running.stop().await;
    // The store as a runner killed after broadcasting `settle`, before its outcome, left it.
    let (data, lost) = (net.dir.join("data"), net.dir.join("lost"));
    let data_store = released_store(&data).await;
    std::fs::create_dir_all(&lost).unwrap();
    std::fs::copy(data.join("receipts.redb"), lost.join("receipts.redb")).unwrap();
    let lost_store = released_store(&lost).await;
    let settler = |store: Store| {
        Settler::new(
            Arc::new(store),
            Signer::new(
                net.hub_client(),
                near_crypto::InMemorySigner::from_secret_key(net.runner.clone(), net.account_key()),
            ),
            Settings::default(),
            None,
        )
    };
    assert_eq!(settler(data_store).drain().await.unwrap().settled, 1);

    let restarted = settler(lost_store);
    assert_eq!(
        restarted.reconcile().await.unwrap(),
        1,
        "found settled on the hub"
    );
    let report = restarted.drain().await.unwrap();
    assert_eq!(report.sent, 0, "nothing sent again: {report:?}");
}

#[cfg(feature = "engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_still_settle_when_the_models_fail_to_load() {
    let net = Net::start("noload", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let (status, body) = chat_once(running.addr, &token).await;
    assert_eq!(status, 200, "{body}");
    running.stop().await;
    // The test's weights files are registered but are no model the engine can load.
    let running = net
        .runner_with(
            "data",
            Opts {
                settle: true,
                ..Opts::default()
            },
            off_chain_runner::server::Backend::Engine(off_chain_runner::engine::EngineBackend::Cpu),
        )
        .await;
    let health = reqwest::get(format!("http://{}/health", running.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert!(
        health["checks"]["model"]
            .as_str()
            .unwrap()
            .contains("loading failed"),
        "{health}"
    );
    assert_eq!(health["checks"]["store"], "ok", "{health}");
    let charged = yocto(&body["charged"]);
    eventually(20, || async { settled(&net, 0).await == charged }).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settled_history_is_pruned_and_what_is_needed_is_kept() {
    let net = Net::start("prune", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let ask = |addr| post(addr, "/v1/chat/completions", Some(&token), chat("hi"));
    for _ in 0..3 {
        assert_eq!(ask(running.addr).await.0, 200);
    }
    running.stop().await;
    let store = Arc::new(released_store(&net.dir.join("data")).await);
    let settler = Settler::new(
        Arc::clone(&store),
        Signer::new(
            net.hub_client(),
            near_crypto::InMemorySigner::from_secret_key(net.runner.clone(), net.account_key()),
        ),
        Settings::default(),
        None,
    );
    assert_eq!(
        settler.drain().await.unwrap().settled,
        1,
        "receipt 3 settles"
    );
    drop(settler);
    let user = &net.users[0].0;
    let everything = u64::MAX;
    assert_eq!(store.prune(everything).unwrap(), 2, "receipts 1 and 2");
    assert!(store.receipt(user, 1).unwrap().is_none());
    assert!(store.receipt(user, 2).unwrap().is_none());
    assert!(
        store.receipt(user, 3).unwrap().is_some(),
        "the last settled is kept"
    );
    drop(store);

    // An unsettled receipt is never pruned, whatever its age.
    let running = net.runner("data", Opts::default()).await;
    assert_eq!(ask(running.addr).await.0, 200);
    running.stop().await;
    let store = released_store(&net.dir.join("data")).await;
    assert_eq!(store.prune(everything).unwrap(), 0);
    assert!(store.receipt(user, 4).unwrap().is_some());
    assert_eq!(store.channel(user).unwrap().unwrap().seq(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_receipt_whose_transaction_fails_is_retried_not_recorded_as_failed() {
    let net = Net::start("notpoison", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let (status, body) = chat_once(running.addr, &token).await;
    assert_eq!(status, 200, "{body}");
    running.stop().await;
    let store = Arc::new(released_store(&net.dir.join("data")).await);
    let settler = |gas| {
        Settler::new(
            Arc::clone(&store),
            Signer::new(
                net.hub_client(),
                near_crypto::InMemorySigner::from_secret_key(net.runner.clone(), net.account_key()),
            ),
            Settings {
                gas,
                ..Settings::default()
            },
            None,
        )
    };
    // Too little gas for even one receipt: every transaction fails, through no fault of
    // the receipt, which the hub's rules (the free view) pass.
    let starved = settler(1_000_000_000_000).drain().await.unwrap();
    assert!(starved.failed.is_empty(), "{starved:?}");
    assert_eq!(starved.deferred.len(), 1, "{starved:?}");
    assert!(
        store.channel(&net.users[0].0).unwrap().unwrap().pending(),
        "still to settle"
    );
    let report = settler(SETTLE_GAS).drain().await.unwrap();
    assert_eq!(report.settled, 1, "{report:?}");
    assert_eq!(settled(&net, 0).await, yocto(&body["charged"]));
}

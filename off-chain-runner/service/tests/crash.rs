//! The runner binary killed with SIGKILL while it serves and settles, then restarted on the
//! same data: every receipt it answered with is kept, and every channel settles exactly
//! the latest receipt's amount, once.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use market_hub_api::{methods, ChannelView};
use off_chain_runner::{store::Store, token};
use sandbox_tests::{MODEL, NEAR};

fn spawn_runner(net: &Net) -> (Child, SocketAddr) {
    spawn_runner_with(net, &["--settle-interval", "0.05"])
}

/// The runner binary serving the echo backend, with `extra` flags.
fn spawn_runner_with(net: &Net, extra: &[&str]) -> (Child, SocketAddr) {
    spawn_killable(net, Engine::Echo, None, extra)
}

#[derive(Clone, Copy, Debug)]
enum Engine {
    /// Both models, answered by the echo backend.
    Echo,
    /// The chat model only (the net's chat weights must be a real checkpoint), on wgpu.
    Gpu,
}

/// As [`spawn_runner_with`] on `engine`, killing itself by SIGKILL at the named point, if
/// any.
fn spawn_killable(
    net: &Net,
    engine: Engine,
    kill_at: Option<&str>,
    extra: &[&str],
) -> (Child, SocketAddr) {
    let (account, receipt) = net.key_files();
    let mut command = Command::new(env!("CARGO_BIN_EXE_off-chain-runner"));
    command
        .args([
            "serve",
            "--hub",
            net.hub.as_str(),
            "--chain",
            "localnet",
            "--rpc",
            &net.rpc,
        ])
        .arg("--account-key")
        .arg(&account)
        .arg("--receipt-key")
        .arg(&receipt)
        .arg("--model")
        .arg(format!("{MODEL}={}", net.chat_weights.display()));
    match engine {
        Engine::Echo => command
            .arg("--model")
            .arg(format!("{EMBED}={}", net.embed_weights.display()))
            .args(["--backend", "echo"]),
        Engine::Gpu => command.args(["--backend", "gpu"]),
    };
    let mut child = command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--batch",
            "2",
            "--view-ttl-ms",
            "500",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(net.dir.join("data"))
        .envs(kill_at.map(|point| ("RUNNER_KILL_AT", point)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the runner prints its address")
            .unwrap();
        if let Some(a) = line.strip_prefix("serving on http://") {
            break a.parse().unwrap();
        }
    };
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_settlement_then_restart_settles_every_receipt_exactly_once() {
    let users = 4;
    let net = Net::start("crash", users).await;
    let tokens: Vec<String> =
        futures_util::future::join_all((0..users).map(|i| net.authorization(i, NEAR)))
            .await
            .iter()
            .map(token::encode)
            .collect();
    // What each user was answered with (so charged for) while the first process lived.
    let answered = Arc::new(Mutex::new(vec![0u128; users]));

    let (mut child, addr) = spawn_runner(&net);
    let load: Vec<_> = (0..users)
        .map(|i| {
            let (token, answered) = (tokens[i].clone(), Arc::clone(&answered));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    let sent = client
                        .post(format!("http://{addr}/v1/chat/completions"))
                        .bearer_auth(&token)
                        .json(&chat(&format!("request {n} of user {i}")))
                        .send()
                        .await;
                    let Ok(resp) = sent else { return n };
                    let Ok(body) = resp.json::<serde_json::Value>().await else {
                        return n;
                    };
                    answered.lock().unwrap()[i] += yocto(&body["charged"]);
                }
                unreachable!()
            })
        })
        .collect();
    // Let it serve and settle a while, then kill it mid-flight.
    eventually(20, || async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .is_ok_and(|_| true)
            && net.view(methods::hub_info()).await.channels > 0
            && settled_channels(&net, users).await >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200 + u64::from(rand::random::<u8>()))).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let served: Vec<u32> = futures_util::future::join_all(load)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        served.iter().all(|n| *n > 2),
        "each user was served before the kill: {served:?}"
    );

    let (mut child, addr) = spawn_runner(&net);
    for (i, t) in tokens.iter().enumerate() {
        let (s, body) = post(
            addr,
            "/v1/chat/completions",
            Some(t),
            chat("after the restart"),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        answered.lock().unwrap()[i] += yocto(&body["charged"]);
    }
    eventually(30, || async {
        metrics_of(addr)
            .await
            .contains("runner_settlement_backlog 0")
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    let store = Store::open(&net.dir.join("data/receipts.redb")).unwrap();
    let mut total = 0u128;
    for (i, (user, _)) in net.users.iter().take(users).enumerate() {
        let record = store.channel(user).unwrap().expect("a channel per user");
        let c = channel(&net, user).await.expect("a channel on the hub");
        assert_eq!(
            c.channel.last_seq.0,
            record.seq(),
            "the latest receipt settled"
        );
        assert_eq!(
            c.channel.settled.0,
            record.amount(),
            "charged exactly its amount"
        );
        assert_eq!(
            (record.settled_seq, record.settled_amount),
            (record.seq(), record.amount())
        );
        assert!(
            record.amount() >= answered.lock().unwrap()[i],
            "every answered request is in the receipts (a request cut off by the kill may be too)"
        );
        // Every receipt is in the history, signed, with no gap.
        for seq in 1..=record.seq() {
            assert!(
                store.receipt(user, seq).unwrap().is_some(),
                "receipt {seq} of {user}"
            );
        }
        total += record.amount();
    }
    // Nothing paid twice: what the hub credited equals what the channels settled.
    let runner = net
        .view(methods::runner(&net.runner))
        .await
        .expect("the runner")
        .earnings
        .0;
    let protocol = net.view(methods::hub_info()).await.protocol_earnings.0;
    let holders = net
        .view(methods::model(MODEL))
        .await
        .expect("the model")
        .model
        .holders_accrued
        .0;
    assert_eq!(runner + protocol + holders, total);
}

async fn channel(net: &Net, user: &near_sdk::AccountId) -> Option<ChannelView> {
    net.view(methods::channel(user, &net.runner)).await
}

async fn settled_channels(net: &Net, users: usize) -> usize {
    let mut n = 0;
    for (user, _) in net.users.iter().take(users) {
        if channel(net, user)
            .await
            .is_some_and(|c| c.channel.last_seq.0 != 0)
        {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_the_request_in_flight_then_settles_before_exit() {
    let net = Net::start("sigterm", 1).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    // Settlement rounds an hour apart: only the flush at exit can settle.
    let (mut child, addr) = spawn_runner_with(
        &net,
        &["--settle-interval", "3600", "--echo-delay-ms", "800"],
    );
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&chat("answered even though the runner is stopping"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let body = in_flight.await.unwrap();
    let charged = yocto(&body["charged"]);
    assert!(charged > 0, "the request in flight was answered: {body}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "a clean exit: {status}");
    let channel = net
        .view(methods::channel(&net.users[0].0, &net.runner))
        .await
        .expect("the channel");
    assert_eq!(channel.channel.settled.0, charged, "settled before exit");
}

/// One request; its charge if it was answered.
async fn ask(addr: SocketAddr, token: &str, n: usize) -> Option<u128> {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&chat(&format!("request {n}")))
        .send()
        .await
        .ok()?;
    let body = resp.json::<serde_json::Value>().await.ok()?;
    Some(yocto(&body["charged"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_each_named_point_then_restart_pays_every_answered_request_exactly_once() {
    sigkill_at_each_named_point(Engine::Echo).await;
}

#[cfg(feature = "engine")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_each_named_point_with_the_wgpu_engine() {
    sigkill_at_each_named_point(Engine::Gpu).await;
}

async fn sigkill_at_each_named_point(engine: Engine) {
    for point in [
        "request_before_commit",
        "request_after_commit",
        "settle_after_broadcast",
        "settle_after_outcome",
    ] {
        let net = match engine {
            Engine::Echo => Net::start(point, 1).await,
            Engine::Gpu => {
                // The engine's tiny generated llama: real loading and generation on
                // wgpu, fast even on a CPU Vulkan driver.
                let weights = temp_dir("tiny-llama");
                market_engine::testing::write_tiny_llama(
                    &weights,
                    market_engine::quant::Format::F32,
                    7,
                )
                .unwrap();
                Net::start_with(point, 1, Some(weights), None).await
            }
        };
        let token = token::encode(&net.authorization(0, NEAR).await);
        let mut answered = 0u128;
        let (mut child, addr) =
            spawn_killable(&net, engine, Some(point), &["--settle-interval", "0.05"]);
        for n in 0..200 {
            match ask(addr, &token, n).await {
                Some(charged) => answered += charged,
                None => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let died = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&died),
            Some(9),
            "{point} ({engine:?}): killed there"
        );

        let (mut child, addr) = spawn_killable(&net, engine, None, &["--settle-interval", "0.05"]);
        answered += ask(addr, &token, 1_000)
            .await
            .expect("served after the restart");
        eventually(20, || async {
            metrics_of(addr)
                .await
                .contains("runner_settlement_backlog 0")
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let record = Store::open(&net.dir.join("data").join("receipts.redb"))
            .unwrap()
            .channel(&net.users[0].0)
            .unwrap()
            .expect("the channel's receipts");
        let settled = net
            .view(methods::channel(&net.users[0].0, &net.runner))
            .await
            .expect("the channel")
            .channel;
        assert_eq!(
            (settled.settled.0, settled.last_seq.0),
            (record.amount(), record.seq()),
            "{point} ({engine:?}): the latest receipt settled, once"
        );
        assert!(
            settled.settled.0 >= answered,
            "{point} ({engine:?}): every answered request paid"
        );
    }
}

/// The CLI with the hub's and node's flags, as an operator runs it beside `serve`.
fn cli(net: &Net, args: &[&str]) -> std::process::Output {
    let (account, _) = net.key_files();
    let mut command = Command::new(env!("CARGO_BIN_EXE_off-chain-runner"));
    command.args(args).args([
        "--hub",
        net.hub.as_str(),
        "--chain",
        "localnet",
        "--rpc",
        &net.rpc,
    ]);
    command.arg("--data-dir").arg(net.dir.join("data"));
    if args[0] == "settle" {
        command.arg("--account-key").arg(account);
    } else {
        command.args(["--runner", net.runner.as_str()]);
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_settle_work_while_serve_holds_the_store() {
    let net = Net::start("beside", 1).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let (mut child, addr) = spawn_runner_with(&net, &["--settle-interval", "3600"]);
    let charged = ask(addr, &token, 0).await.expect("served");
    let url = format!("http://{addr}");
    let bare = reqwest::get(format!("{url}/v1/runner/status"))
        .await
        .unwrap();
    assert_eq!(bare.status(), 401, "the operator's token is needed");

    let direct = cli(&net, &["status"]);
    assert!(!direct.status.success());
    let err = String::from_utf8_lossy(&direct.stderr);
    assert!(err.contains("--runner-url"), "says what to do: {err}");

    let through = cli(&net, &["status", "--runner-url", &url]);
    let out = String::from_utf8_lossy(&through.stdout);
    assert!(through.status.success(), "{out}");
    assert!(
        out.contains("backlog: 1 channels") && out.contains("pending"),
        "{out}"
    );

    assert!(cli(&net, &["settle", "--runner-url", &url])
        .status
        .success());
    eventually(20, || async {
        net.view(methods::channel(&net.users[0].0, &net.runner))
            .await
            .is_some_and(|c| c.channel.settled.0 == charged)
    })
    .await;
    let out = cli(&net, &["status", "--runner-url", &url]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("backlog: 0 channels"), "{out}");
    child.kill().unwrap();
    child.wait().unwrap();
}

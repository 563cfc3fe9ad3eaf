//! The runner's HTTP API end to end: the hub on the local chain over JSON-RPC, the runner
//! in this process (echo backend: everything but inference), a real HTTP client.

mod common;

use std::time::Duration;

use common::*;
use market_hub_api::{jsonrpc::Signer, methods};
use market_protocol::{NativeCrypto, SignedReceipt};
use off_chain_runner::{
    registry,
    settlement::{Settings, Settler},
    token,
};
use sandbox_tests::{MODEL, NEAR};
use serde_json::{json, Value};

fn receipt(v: &Value) -> SignedReceipt {
    serde_json::from_value(v["receipt"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_chat_and_embedding_are_metered_and_settled_by_the_hub() {
    let net = Net::start("paid", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);

    let (status, models) = reqwest::get(format!("http://{}/v1/models", running.addr))
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["data"][1]["id"], MODEL);

    let (status, body) = post(
        running.addr,
        "/v1/chat/completions",
        Some(&token),
        chat("say hello to the market"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let usage = &body["usage"];
    let (p_in, p_out) = prices();
    let (pt, ct) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(ct, 8, "max_tokens bounds the output");
    let expected = (u128::from(pt) * p_in + u128::from(ct) * p_out).div_ceil(1000);
    assert_eq!(yocto(&body["charged"]), expected);
    let r1 = receipt(&body);
    assert!(
        r1.verify(&NativeCrypto),
        "the receipt is signed by the runner's key"
    );
    assert_eq!(r1.runner_key, net.runner_key.public_key());
    assert_eq!((r1.receipt.seq.0, r1.receipt.amount.0), (1, expected));
    assert_eq!(
        r1.receipt.lines[0].version, 2,
        "the version whose weights are served"
    );

    let (status, body) = post(
        running.addr,
        "/v1/embeddings",
        Some(&token),
        json!({"model": EMBED, "input": ["one two three", "four"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let r2 = receipt(&body);
    assert_eq!(r2.receipt.seq.0, 2);
    assert_eq!(r2.receipt.lines.len(), 2, "one cumulative line per model");
    assert_eq!(
        r2.receipt.amount.0,
        expected + 2_000,
        "4 tokens at 500,000 per 1k"
    );
    let (status, b64) = post(
        running.addr,
        "/v1/embeddings",
        Some(&token),
        json!({"model": EMBED, "input": "four", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        b64["data"][0]["embedding"].as_str().unwrap().len(),
        44,
        "8 f32 in base64"
    );

    let store_dir = net.dir.join("data");
    running.stop().await;
    // The hub's own settlement accepts what the runner signed.
    let hub = net.hub_client();
    let signer =
        near_crypto::InMemorySigner::from_secret_key(net.runner.clone(), net.account_key());
    let settler = Settler::new(
        std::sync::Arc::new(released_store(&store_dir).await),
        Signer::new(hub, signer),
        Settings::default(),
        None,
    );
    let report = settler.drain().await.unwrap();
    assert_eq!(
        (report.sent, report.settled),
        (1, 1),
        "only the latest receipt is sent"
    );
    let channel = net
        .view(methods::channel(&net.users[0].0, &net.runner))
        .await
        .expect("the channel")
        .channel;
    assert_eq!(channel.settled.0, expected + 2_000 + 500);
    assert_eq!(channel.last_seq.0, 3);
    let again = settler.drain().await.unwrap();
    assert_eq!(again.sent, 0, "nothing left to settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_sends_pieces_then_usage_and_the_receipt() {
    let net = Net::start("stream", 1).await;
    let running = net.runner("data", Opts::default()).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let mut body = chat("alpha beta gamma");
    body["stream"] = json!(true);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", running.addr))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let stream = sandbox_tests::sse::ChatStream::parse(&resp.text().await.unwrap()).unwrap();
    assert!(stream.done, "the stream ends with [DONE]");
    let chunks = &stream.events;
    let last = chunks.last().unwrap();
    let streamed: String = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        streamed.split_whitespace().count() as u64,
        last["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    let r = receipt(last);
    assert!(r.verify(&NativeCrypto));
    assert_eq!(
        <[u8; 32]>::from(r.receipt.output_hash),
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(streamed.as_bytes())),
        "the receipt commits to exactly what was streamed"
    );
    // The text completion route streams too.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/completions", running.addr))
        .bearer_auth(&token)
        .json(
            &json!({"model": MODEL, "prompt": "once upon a time", "max_tokens": 3, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"object\":\"text_completion\""));
    assert!(text.contains("\"seq\":\"2\""), "{text}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_request_gets_an_openai_error_and_the_server_keeps_serving() {
    let mut net = Net::start("errors", 2).await;
    let running = net
        .runner(
            "data",
            Opts {
                queue: 0,
                delay: Duration::from_millis(400),
                ..Opts::default()
            },
        )
        .await;
    let addr = running.addr;
    let good = token::encode(&net.authorization(0, NEAR).await);
    let expect = |status: u16, code: &'static str| {
        move |(s, body): (u16, Value)| {
            assert_eq!(s, status, "{body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            assert!(body["error"]["type"].is_string());
        }
    };
    expect(401, "missing_api_key")(post(addr, "/v1/chat/completions", None, chat("hi")).await);
    expect(401, "invalid_api_key")(
        post(
            addr,
            "/v1/chat/completions",
            Some("sk-not-ours"),
            chat("hi"),
        )
        .await,
    );
    // A valid authorization with its cap raised after signing.
    let mut forged = net.authorization(0, 1).await;
    forged.authorization.cap = (1000 * NEAR).into();
    expect(401, "invalid_signature")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&forged)),
            chat("hi"),
        )
        .await,
    );
    let other_hub = net.authorization_with(
        0,
        NEAR,
        u64::MAX,
        vec![MODEL.into()],
        "other-hub.near".parse().unwrap(),
    );
    expect(401, "wrong_hub")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&other_hub)),
            chat("hi"),
        )
        .await,
    );
    let expired = net.authorization_with(
        0,
        NEAR,
        net.now_ns().await - 1,
        vec![MODEL.into()],
        net.hub.clone(),
    );
    expect(401, "expired")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&expired)),
            chat("hi"),
        )
        .await,
    );
    // Still valid, but too close to its expiry for the receipt to be settled in time.
    let expiring = net.authorization_with(
        0,
        NEAR,
        net.now_ns().await + u64::try_from(EXPIRY_MARGIN.as_nanos()).unwrap() / 2,
        vec![MODEL.into()],
        net.hub.clone(),
    );
    expect(401, "expires_soon")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&expiring)),
            chat("hi"),
        )
        .await,
    );
    // One that never expires: the hub would not pin it, so the runner does not serve it.
    let endless = net.authorization_with(0, NEAR, u64::MAX, vec![MODEL.into()], net.hub.clone());
    expect(401, "lifetime_too_long")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&endless)),
            chat("hi"),
        )
        .await,
    );
    // Signed by a key the user never registered.
    let stranger = market_protocol::crypto::native::KeyPair::from_seed([77; 32]);
    net.users[1].1 = stranger;
    let unknown_key = net.authorization(1, NEAR).await;
    expect(401, "unknown_user_key")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&token::encode(&unknown_key)),
            chat("hi"),
        )
        .await,
    );
    let tiny = token::encode(&net.authorization(0, 5).await);
    expect(402, "insufficient_quota")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&tiny),
            chat("a long enough prompt"),
        )
        .await,
    );
    expect(404, "model_not_found")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&good),
            json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
    );
    let chat_only = token::encode(&net.authorization_with(
        0,
        NEAR,
        net.now_ns().await + 24 * sandbox_tests::HOUR_NS,
        vec![MODEL.into()],
        net.hub.clone(),
    ));
    expect(403, "model_not_authorized")(
        post(
            addr,
            "/v1/embeddings",
            Some(&chat_only),
            json!({"model": EMBED, "input": "x"}),
        )
        .await,
    );
    expect(400, "model_not_supported")(
        post(
            addr,
            "/v1/embeddings",
            Some(&good),
            json!({"model": MODEL, "input": "x"}),
        )
        .await,
    );
    expect(400, "invalid_json")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&good),
            json!({"messages": "not a list"}),
        )
        .await,
    );
    expect(400, "invalid_messages")(
        post(
            addr,
            "/v1/chat/completions",
            Some(&good),
            json!({"model": MODEL, "messages": []}),
        )
        .await,
    );
    expect(400, "invalid_temperature")(post(addr, "/v1/chat/completions", Some(&good), json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9})).await);
    expect(404, "content_not_found")(post(addr, "/v1/chat/completions", Some(&good), json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "content": ["secret-book"]})).await);
    expect(400, "invalid_stop")(post(addr, "/v1/chat/completions", Some(&good), json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stop": "x".repeat(257)})).await);
    let huge = "word ".repeat(20_000);
    expect(400, "invalid_body")(post(addr, "/v1/chat/completions", Some(&good), chat(&huge)).await);
    let raw = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&good)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // One slot, no queue, 400 ms per request: of three at once, some get 429.
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..3).map(|_| post(addr, "/v1/chat/completions", Some(&good), chat("busy"))),
    )
    .await
    .into_iter()
    .map(|(s, body)| {
        if s == 429 {
            assert_eq!(body["error"]["code"], "model_overloaded");
        }
        s
    })
    .collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );

    let (status, body) = post(
        addr,
        "/v1/chat/completions",
        Some(&good),
        chat("still serving"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let metrics = metrics_of(addr).await;
    assert!(
        metrics.contains("runner_requests_total{route=\"/v1/chat/completions\",status=\"401\"} 8"),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unfunded_channel_and_a_spent_cap_are_refused_with_402() {
    let net = Net::start("quota", 1).await;
    let running = net.runner("data", Opts::default()).await;
    // Cap for about two requests: the third is refused before inference.
    let token = token::encode(&net.authorization(0, 50).await);
    let mut charged = 0;
    let mut refused = 0;
    for _ in 0..4 {
        let (s, body) = post(running.addr, "/v1/chat/completions", Some(&token), json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 8})).await;
        match s {
            200 => charged += yocto(&body["charged"]),
            402 => refused += 1,
            _ => panic!("{s} {body}"),
        }
    }
    assert!(
        refused >= 1 && charged <= 50,
        "charged {charged}, refused {refused}"
    );
    running.stop().await;

    // A user with a registered key and no channel.
    let running = net.runner("data2", Opts::default()).await;
    let token = token::encode(&net.authorization(1, NEAR).await);
    let (s, body) = post(
        running.addr,
        "/v1/chat/completions",
        Some(&token),
        chat("x"),
    )
    .await;
    assert_eq!(s, 402, "{body}");
    assert_eq!(body["error"]["code"], "channel_unfunded");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_one_channel_never_fork_the_sequence() {
    let net = Net::start("concurrent", 1).await;
    let running = net
        .runner(
            "data",
            Opts {
                settle: true,
                ..Opts::default()
            },
        )
        .await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let responses = futures_util::future::join_all((0..16).map(|i| {
        post(
            running.addr,
            "/v1/chat/completions",
            Some(&token),
            chat(&format!("request number {i}")),
        )
    }))
    .await;
    let mut seqs: Vec<u64> = Vec::new();
    let mut total = 0;
    for (s, body) in &responses {
        assert_eq!(*s, 200, "{body}");
        seqs.push(receipt(body).receipt.seq.0);
        total += yocto(&body["charged"]);
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=16).collect::<Vec<_>>(),
        "one receipt per request, no sequence twice"
    );
    let last = responses
        .iter()
        .map(|(_, b)| receipt(b))
        .max_by_key(|r| r.receipt.seq.0)
        .unwrap();
    assert_eq!(
        last.receipt.amount.0, total,
        "the latest receipt sums every request"
    );
    // The settlement task sends it; the hub takes exactly that amount.
    let channel = || net.view(methods::channel(&net.users[0].0, &net.runner));
    eventually(20, || async {
        channel().await.is_some_and(|c| c.channel.last_seq.0 == 16)
    })
    .await;
    let c = channel().await.expect("the channel");
    assert_eq!(c.channel.settled.0, total);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn content_used_at_inference_is_charged_per_use_and_paid_to_its_owner() {
    let net = Net::start("content", 1).await;
    let running = net
        .runner(
            "data",
            Opts {
                settle: true,
                ..Opts::default()
            },
        )
        .await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let mut body = chat("what is the capital of France?");
    body["content"] = json!([CONTENT]);
    for seq in 1..=2u64 {
        let (s, resp) = post(
            running.addr,
            "/v1/chat/completions",
            Some(&token),
            body.clone(),
        )
        .await;
        assert_eq!(s, 200, "{resp}");
        assert!(
            resp["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("France"),
            "the content is in the context"
        );
        let r = receipt(&resp).receipt;
        assert_eq!(
            (r.content[0].uses.0, r.content[0].amount.0),
            (seq, u128::from(seq) * CONTENT_PRICE)
        );
    }
    let press = sandbox_tests::acc("press.near");
    eventually(20, || async {
        net.view(methods::content_earnings(&press)).await.0 == 2 * CONTENT_PRICE
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runner_refuses_weights_or_a_policy_the_hub_does_not_register() {
    let net = Net::start("registry", 0).await;
    let hub = net.hub_client();
    let wrong = net.dir.join("other.gguf");
    std::fs::write(&wrong, b"some other weights").unwrap();
    let e = registry::check_model(&hub, &net.runner, MODEL, &wrong, |_, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("match no registered version of model `smollm2-135m`")
            && e.contains("v2 ")
            && e.contains("v1 "),
        "{e}"
    );
    let e = registry::check_model(
        &hub,
        &net.runner,
        "unknown-model",
        &net.chat_weights,
        |_, _| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("not registered"), "{e}");
    let stranger: near_sdk::AccountId = "stranger.near".parse().unwrap();
    let e = registry::check_runner(&hub, &stranger, &net.runner_key.public_key())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a registered runner"), "{e}");
    registry::check_runner(&hub, &net.runner, &net.runner_key.public_key())
        .await
        .unwrap();
    std::fs::write(net.content_dir.join("encyclopedia.txt"), "tampered").unwrap();
    let e = registry::load_content(&hub, &net.content_dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("the hub registered"), "{e}");
}

/// One user cannot take every place: past its per-channel limit it gets 429
/// `channel_busy` with a `Retry-After` in seconds, while another user is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_channel_cannot_take_every_place() {
    let net = Net::start("per-channel", 2).await;
    let running = net
        .runner(
            "data",
            Opts {
                queue: 8,
                per_channel: 1,
                delay: Duration::from_millis(400),
                ..Opts::default()
            },
        )
        .await;
    let addr = running.addr;
    let (greedy, other) = (
        token::encode(&net.authorization(0, NEAR).await),
        token::encode(&net.authorization(1, NEAR).await),
    );
    let first = tokio::spawn({
        let greedy = greedy.clone();
        async move { chat_once(addr, &greedy).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&greedy)
        .json(&chat("again"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "channel_busy", "{body}");
    let (s, body) = chat_once(addr, &other).await;
    assert_eq!(s, 200, "another channel is served: {body}");
    assert_eq!(first.await.unwrap().0, 200);
    let (s, _) = chat_once(addr, &greedy).await;
    assert_eq!(s, 200, "its place came back");
    running.stop().await;
}

/// Asks for a long stream (2,000 pieces of 5 KB, from a 60 KB prompt) on a socket with a
/// small receive buffer, and does not read it: the kernel's buffers (a few MB at most) fill
/// long before its end.
async fn long_stream_unread(addr: std::net::SocketAddr, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let word = format!("{} ", "w".repeat(5_000));
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 2000,
        "messages": [{"role": "user", "content": word.repeat(12)}]})
    .to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

/// A streaming client that stops reading does not hold the model: past the read bound
/// its request is cancelled, and another client's request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_does_not_hold_the_model() {
    let net = Net::start("stalled", 2).await;
    let running = net
        .runner(
            "data",
            Opts {
                client_read_timeout: Duration::from_secs(1),
                ..Opts::default()
            },
        )
        .await;
    let addr = running.addr;
    let stalled = token::encode(&net.authorization(0, NEAR).await);
    let stream = long_stream_unread(addr, &stalled).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = token::encode(&net.authorization(1, NEAR).await);
    let served = tokio::time::timeout(Duration::from_secs(20), chat_once(addr, &other))
        .await
        .expect("served while the stalled stream is cancelled");
    assert_eq!(served.0, 200, "{}", served.1);
    let metrics = metrics_of(addr).await;
    assert!(
        !metrics.contains("runner_client_disconnects_total 0"),
        "the stalled stream counts as a disconnect: {metrics}"
    );
    drop(stream);
    running.stop().await;
}

/// A client that hangs up before its answer still pays for the work it caused: the
/// request runs on to its receipt (a generation stops at its next piece), so closing the
/// connection early is never a way to be served for free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_hangs_up_still_pays_for_what_was_computed() {
    let net = Net::start("hangup", 1).await;
    let running = net
        .runner(
            "data",
            Opts {
                delay: Duration::from_millis(800),
                ..Opts::default()
            },
        )
        .await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let requests = [
        ("/v1/chat/completions", chat("alpha beta gamma")),
        (
            "/v1/embeddings",
            json!({"model": EMBED, "input": "alpha beta"}),
        ),
    ];
    for (seq, (path, body)) in (1..).zip(requests) {
        let gone = reqwest::Client::new()
            .post(format!("http://{}{path}", running.addr))
            .bearer_auth(&token)
            .json(&body)
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        assert!(
            gone.is_err(),
            "{path}: the client hung up before the answer"
        );
        let user = &net.users[0].0;
        eventually(10, || async {
            running
                .state
                .store
                .channel(user)
                .unwrap()
                .is_some_and(|c| c.seq() == seq && c.amount() > 0)
        })
        .await;
    }
    running.stop().await;
}

/// The body of a chunked HTTP/1.1 response, read to its end.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    raw = &raw[start..];
    let mut body = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line + 2..line + 2 + size]);
        raw = &raw[line + 2 + size + 2..];
    }
}

/// A streaming client that stalls past the read bound is cancelled, and what it is
/// charged for is what it gets: the piece whose send timed out, and anything generated
/// after it, come in the last chunk, so the text read to the end is the text the receipt
/// hashes and the usage counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_stream_gets_all_it_is_charged_for() {
    use tokio::io::AsyncReadExt;
    let net = Net::start("stalled-charge", 1).await;
    let running = net
        .runner(
            "data",
            Opts {
                client_read_timeout: Duration::from_secs(1),
                ..Opts::default()
            },
        )
        .await;
    let addr = running.addr;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let mut stream = long_stream_unread(addr, &token).await;
    // Stalled past the bound: the stream is cancelled.
    eventually(20, || async {
        !metrics_of(addr)
            .await
            .contains("runner_client_disconnects_total 0")
    })
    .await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_mins(1), stream.read_to_end(&mut raw))
        .await
        .expect("the stream ends")
        .unwrap();
    let body = String::from_utf8(dechunk(&raw)).unwrap();
    let stream = sandbox_tests::sse::ChatStream::parse(&body).unwrap();
    assert!(stream.done, "the stream ends with [DONE]");
    let last = stream.events.last().unwrap();
    let received: String = stream
        .events
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let tokens = last["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens < 2000, "cancelled before the end: {tokens}");
    assert_eq!(
        received.split_whitespace().count() as u64,
        tokens,
        "every token charged for was received"
    );
    assert_eq!(
        <[u8; 32]>::from(receipt(last).receipt.output_hash),
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(received.as_bytes())),
        "the receipt commits to exactly what was received"
    );
    running.stop().await;
}

//! The runner with the real inference engine (its CPU reference backend, on the engine's
//! tiny random llama checkpoint): chat over HTTP, streamed and not, metered and receipted.
#![cfg(feature = "engine")]

mod common;

use std::sync::Arc;

use common::*;
use market_protocol::{NativeCrypto, SignedReceipt};
use off_chain_runner::{engine::Engine, token};
use sandbox_tests::{MODEL, NEAR};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_llama_served_by_the_engine_is_paid_per_token() {
    let weights = temp_dir("tiny-llama");
    market_engine::testing::write_tiny_llama(&weights, market_engine::quant::Format::F32, 7)
        .unwrap();
    let net = Net::start_with("engine", 1, Some(weights.clone())).await;
    let hash = market_protocol::weights::weights_sha256(&weights, |_, _| {}).unwrap();
    let engine = Engine::load(
        &[(
            MODEL.to_owned(),
            market_engine::Source::Path(&weights),
            market_engine::Sha256::Expect(hash),
        )],
        market_engine::Backend::Cpu,
    )
    .unwrap();
    let wrong = Engine::load(
        &[(
            MODEL.to_owned(),
            market_engine::Source::Path(&weights),
            market_engine::Sha256::Expect([0; 32]),
        )],
        market_engine::Backend::Cpu,
    );
    assert!(
        wrong.is_err(),
        "the engine refuses weights whose hash is not the registered one"
    );
    let running = net
        .runner_with(
            "data",
            Opts::default(),
            off_chain_runner::server::Backend::Given(Arc::new(engine)),
        )
        .await;
    let token = token::encode(&net.authorization(0, NEAR).await);

    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "temperature": 0});
    let (s, resp) = post(
        running.addr,
        "/v1/chat/completions",
        Some(&token),
        body.clone(),
    )
    .await;
    assert_eq!(s, 200, "{resp}");
    let usage = &resp["usage"];
    let (pt, ct) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(pt > 5, "the chat template wraps the message: {pt} tokens");
    assert!((1..=5).contains(&ct), "{ct} tokens");
    let (p_in, p_out) = prices();
    assert_eq!(
        yocto(&resp["charged"]),
        (u128::from(pt) * p_in + u128::from(ct) * p_out).div_ceil(1000)
    );
    let receipt: SignedReceipt = serde_json::from_value(resp["receipt"].clone()).unwrap();
    assert!(receipt.verify(&NativeCrypto));
    let greedy = resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    // Streamed, greedy: the same text, piece by piece, then the receipt.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", running.addr))
        .bearer_auth(&token)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stream = sandbox_tests::sse::ChatStream::parse(&text).unwrap();
    let joined = stream.content();
    assert_eq!(
        joined, greedy,
        "greedy decoding is deterministic, streamed or not"
    );
    assert!(stream.done);
    assert_eq!(stream.last().unwrap()["receipt"]["receipt"]["seq"], "2");

    let (s, resp) = post(
        running.addr,
        "/v1/chat/completions",
        Some(&token),
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(5000)}]}),
    )
    .await;
    assert_eq!(s, 400, "longer than the context: {resp}");
    running.stop().await;
}

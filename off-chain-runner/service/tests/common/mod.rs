//! A market on the local chain served over JSON-RPC, and runners against it.
#![allow(dead_code)]

mod proxy;

pub use proxy::Fault;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::middleware;
use market_hub_api::{
    jsonrpc::HubClient, methods, Call, License, RunnerPolicy, VersionInput, View,
};
use market_protocol::{
    authorization::ModelCeiling, crypto::native::KeyPair, testing::AuthorizationBuilder, Crypto,
    Hash32, NativeCrypto, SignedAuthorization,
};
use near_crypto::{ED25519SecretKey, KeyType, SecretKey};
use near_sdk::json_types::{U128, U64};
use off_chain_runner::{
    keys::Credentials,
    server::{self, Running},
    settlement::Settings,
    state::LocalContent,
};
use sandbox_tests::{Market, HOUR_NS, MODEL, NEAR};
use serde_json::{json, Value};

pub const EMBED: &str = "minilm";
pub const CONTENT: &str = "encyclopedia";
pub const CONTENT_TEXT: &str = "Paris is the capital of France.";
pub const CONTENT_PRICE: u128 = 7_000_000;
/// The runner refuses authorizations that expire sooner than this.
pub const EXPIRY_MARGIN: Duration = Duration::from_mins(1);

pub fn hash32(bytes: &[u8]) -> Hash32 {
    Hash32::from(NativeCrypto.sha256(bytes))
}

/// The hub with `MODEL` (chat, version 2 = our weights file) and `EMBED`, inference-only
/// content, a runner, funded users, served over JSON-RPC with a switch to take it down.
pub struct Net {
    pub node: Arc<local_chain::rpc::Node>,
    /// The keys of the market's accounts, to act on the node's chain as they would.
    signers: sandbox_tests::Signers,
    pub rpc: String,
    /// How the RPC node in front of the chain misbehaves: `Net::fault`.
    faults: Arc<proxy::Faults>,
    pub hub: near_sdk::AccountId,
    pub runner: near_sdk::AccountId,
    pub runner_key: KeyPair,
    pub users: Vec<(near_sdk::AccountId, KeyPair)>,
    pub dir: PathBuf,
    pub chat_weights: PathBuf,
    pub embed_weights: PathBuf,
    pub content_dir: PathBuf,
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "runner-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Net {
    pub async fn start(name: &str, users: usize) -> Self {
        Self::start_with(name, users, None, None).await
    }

    /// As `start`, with `chat_weights` (a model file or directory) registered as `MODEL` v2
    /// and `embed_weights` as `EMBED`'s version.
    pub async fn start_with(
        name: &str,
        users: usize,
        chat_weights: Option<PathBuf>,
        embed_weights: Option<PathBuf>,
    ) -> Self {
        let dir = temp_dir(name);
        let chat_weights = chat_weights.unwrap_or_else(|| {
            let file = dir.join("chat.gguf");
            std::fs::write(&file, b"chat weights for the runner tests").unwrap();
            file
        });
        let embed_weights = embed_weights.unwrap_or_else(|| {
            let file = dir.join("embed.safetensors");
            std::fs::write(&file, b"embedding weights for the runner tests").unwrap();
            file
        });
        let content_dir = dir.join("content");
        std::fs::create_dir_all(&content_dir).unwrap();
        std::fs::write(content_dir.join(format!("{CONTENT}.txt")), CONTENT_TEXT).unwrap();

        let mut market = Market::new(users);
        let dev: near_sdk::AccountId = "dev.near".parse().unwrap();
        let hub = market.hub.clone();
        let env = &mut market.env;
        let version = |weights: &PathBuf, arch: &str| VersionInput {
            weights_sha256: Hash32::from(
                market_protocol::weights::weights_sha256(weights, |_, _| {}).unwrap(),
            ),
            format: "gguf".into(),
            architecture: arch.into(),
            tokenizer_sha256: hash32(b"tok"),
            uri: "test:weights".into(),
            size_bytes: U64(30),
            sealed: None,
        };
        env.call(
            &dev,
            &hub,
            methods::add_model_version(MODEL, &version(&chat_weights, "llama")).deposit(NEAR / 10),
        )
        .result()
        .expect("the version is added");
        env.call(
            &dev,
            &hub,
            methods::register_model(EMBED, 500_000, 0, 7000, &RunnerPolicy::Open)
                .deposit(NEAR / 10),
        )
        .result()
        .expect("the model is registered");
        env.call(
            &dev,
            &hub,
            methods::add_model_version(EMBED, &version(&embed_weights, "bert")).deposit(NEAR / 10),
        )
        .result()
        .expect("the version is added");
        let publisher = env.create_account("press.near", 10 * NEAR);
        env.call(
            &publisher,
            &hub,
            methods::register_content(
                CONTENT,
                hash32(CONTENT_TEXT.as_bytes()),
                "https://press.example/encyclopedia",
                &License::InferenceOnly {
                    price_per_use: U128(CONTENT_PRICE),
                },
            )
            .deposit(NEAR / 10),
        )
        .result()
        .expect("the content is registered");
        // The last user has a registered key and no channel.
        let lonely = market.env.create_account("lonely.near", 5 * NEAR);
        let lonely_key = KeyPair::from_seed(NativeCrypto.sha256(b"lonely.near"));
        market
            .env
            .call(
                &lonely,
                &hub,
                methods::register_user_key(&lonely_key.public_key()).deposit(NEAR / 10),
            )
            .result()
            .expect("the user key is registered");
        market.users.push((lonely, lonely_key));
        let sandbox_tests::Market {
            env,
            hub,
            runner,
            runner_key,
            users,
            ..
        } = market;
        let (chain, signers) = env.detach();
        let node = local_chain::rpc::Node::new(chain);
        let faults = Arc::new(proxy::Faults::default());
        let app = local_chain::rpc::router(Arc::clone(&node)).layer(
            middleware::from_fn_with_state(Arc::clone(&faults), proxy::inject),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            node,
            signers,
            rpc: format!("http://{addr}"),
            faults,
            hub: hub.as_str().parse().unwrap(),
            runner: runner.as_str().parse().unwrap(),
            runner_key,
            users: users
                .into_iter()
                .map(|(u, k)| (u.as_str().parse().unwrap(), k))
                .collect(),
            dir,
            chat_weights,
            embed_weights,
            content_dir,
        }
    }

    /// From now on the RPC node behaves as `fault` says.
    pub fn fault(&self, fault: Fault) {
        self.faults.set(fault);
    }

    pub fn hub_client(&self) -> HubClient {
        HubClient::new(&self.rpc, self.hub.clone(), sandbox_tests::CHAIN_ID.into())
    }

    /// A hub view on the node's chain directly (it answers while the RPC is down).
    pub async fn view<R>(&self, view: View<R>) -> R {
        let chain = self.node.chain().await;
        let (bytes, _) = chain
            .view(&self.hub, view.method, &view.args)
            .unwrap_or_else(|e| panic!("view {}: {e}", view.method));
        view.decode(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A hub call sent by `who` on the node's chain (a user acting while the runner serves).
    pub async fn call<R>(&self, who: &near_sdk::AccountId, call: Call<R>) -> Result<R, String> {
        let mut chain = self.node.chain().await;
        let mut env = self.signers.over(&mut chain);
        env.call(who, &self.hub, call).result()
    }

    pub async fn now_ns(&self) -> u64 {
        self.node.chain().await.timestamp_ns()
    }

    /// A signed authorization of user `i` for both models.
    pub async fn authorization(&self, i: usize, cap: u128) -> SignedAuthorization {
        let expires = self.now_ns().await + 1_000 * HOUR_NS;
        self.authorization_with(
            i,
            cap,
            expires,
            vec![MODEL.into(), EMBED.into()],
            self.hub.clone(),
        )
    }

    pub fn authorization_with(
        &self,
        i: usize,
        cap: u128,
        expires_at_ns: u64,
        models: Vec<String>,
        hub: near_sdk::AccountId,
    ) -> SignedAuthorization {
        let (user, key) = &self.users[i];
        let mut builder =
            AuthorizationBuilder::new(&hub, sandbox_tests::CHAIN_ID, user, &self.runner)
                .cap(cap)
                .expires_at(expires_at_ns)
                .content(CONTENT, u128::MAX);
        for model in &models {
            builder = builder.model(ModelCeiling::unbounded(model));
        }
        builder.sign(rand::random(), key)
    }

    pub fn account_key(&self) -> SecretKey {
        SecretKey::from_seed(KeyType::ED25519, self.runner.as_str())
    }

    /// The receipt key as a near-crypto secret key (seed ‖ public key).
    pub fn receipt_secret(&self) -> SecretKey {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.runner_key.0.to_bytes());
        bytes[32..].copy_from_slice(&self.runner_key.0.verifying_key().to_bytes());
        SecretKey::ED25519(ED25519SecretKey(bytes))
    }

    /// Credential files for the runner's account and receipt keys.
    pub fn key_files(&self) -> (PathBuf, PathBuf) {
        let account = self.dir.join("account.json");
        let receipt = self.dir.join("receipt.json");
        if !account.exists() {
            Credentials::from_secret(self.runner.clone(), &self.account_key())
                .write_new(&account)
                .unwrap();
            Credentials::from_secret(self.runner.clone(), &self.receipt_secret())
                .write_new(&receipt)
                .unwrap();
        }
        (account, receipt)
    }

    /// A runner in this process, with the echo backend.
    pub async fn runner(&self, data: &str, opts: Opts) -> Running {
        let delay = opts.delay;
        self.runner_with(data, opts, server::Backend::Echo { delay })
            .await
    }

    /// A runner in this process with `backend`, built as `serve` builds one.
    pub async fn runner_with(&self, data: &str, opts: Opts, backend: server::Backend) -> Running {
        let mut builder = server::Builder::new(
            self.hub_client(),
            self.runner.clone(),
            KeyPair::from_seed(self.runner_key.0.to_bytes()),
        )
        .model(MODEL, &self.chat_weights)
        .model(EMBED, &self.embed_weights)
        .backend(backend)
        .content_dir(&self.content_dir)
        .data_dir(&self.dir.join(data))
        .listen("127.0.0.1:0".parse().unwrap())
        .queue(opts.queue)
        .per_channel(opts.per_channel)
        .client_read_timeout(opts.client_read_timeout)
        .views(off_chain_runner::cache::Limits {
            ttl: opts.view_ttl,
            max_stale: opts.view_max_stale,
            timeout: opts.view_timeout,
            ..off_chain_runner::cache::Limits::default()
        })
        .expiry_margin(EXPIRY_MARGIN)
        .max_body_bytes(64 * 1024)
        .default_max_tokens(16);
        if let Some(max) = opts.max_unsettled {
            builder = builder.max_unsettled(max);
        }
        if opts.settle {
            builder = builder.settle_with(
                near_crypto::InMemorySigner::from_secret_key(
                    self.runner.clone(),
                    self.account_key(),
                ),
                Settings {
                    batch: opts.batch,
                    interval: opts.interval,
                    max_backoff: Duration::from_millis(400),
                    request_timeout: opts.request_timeout,
                    outcome_timeout: opts.outcome_timeout,
                    ..Settings::default()
                },
            );
        }
        let running = builder.start().await.unwrap();
        assert_eq!(
            running
                .state
                .content
                .get(CONTENT)
                .map(|c: &LocalContent| c.price_per_use),
            Some(CONTENT_PRICE)
        );
        running
    }
}

pub struct Opts {
    pub settle: bool,
    pub delay: Duration,
    pub queue: usize,
    /// Places one channel may hold per model.
    pub per_channel: usize,
    pub client_read_timeout: Duration,
    pub view_ttl: Duration,
    /// How long past `view_ttl` views are trusted while the node is down.
    pub view_max_stale: Duration,
    pub view_timeout: Duration,
    pub max_unsettled: Option<u128>,
    pub batch: usize,
    pub interval: Duration,
    /// Settlement's bound on one RPC request, and on the wait for a final outcome.
    pub request_timeout: Duration,
    pub outcome_timeout: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            settle: false,
            delay: Duration::ZERO,
            queue: 64,
            per_channel: 64,
            client_read_timeout: Duration::from_secs(30),
            view_ttl: Duration::from_secs(2),
            view_max_stale: Duration::from_mins(1),
            view_timeout: Duration::from_secs(5),
            max_unsettled: None,
            batch: 50,
            interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(2),
            outcome_timeout: Duration::from_secs(10),
        }
    }
}

pub async fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.post(format!("http://{addr}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

/// A short chat request paid with `token`.
pub async fn chat_once(addr: SocketAddr, token: &str) -> (u16, Value) {
    post(addr, "/v1/chat/completions", Some(token), chat("hi")).await
}

pub fn chat(text: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 8})
}

pub fn yocto(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

/// Waits until `cond` holds, up to `secs`.
/// The receipt store in `dir` once a stopped runner in this process has let go of it: a
/// connection task of its server may outlive the stop by a moment, holding the database.
pub async fn released_store(dir: &std::path::Path) -> off_chain_runner::store::Store {
    let path = dir.join("receipts.redb");
    for _ in 0..100 {
        if let Ok(store) = off_chain_runner::store::Store::open(&path) {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    off_chain_runner::store::Store::open(&path).expect("the stopped runner releases the store")
}

pub async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    mut cond: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn prices() -> (u128, u128) {
    (1000, 2000)
}

/// The runner's `/metrics` text.
pub async fn metrics_of(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to `secs`) until the runner's settlement backlog is empty.
pub async fn backlog_settled(addr: SocketAddr, secs: u64) {
    eventually(secs, || async {
        metrics_of(addr)
            .await
            .contains("runner_settlement_backlog 0")
    })
    .await;
}

/// Asks the runner at `addr`, whose data directory is `data`, to settle now (the operator
/// endpoint, with the token `serve` wrote there).
pub async fn settle_now(data: &std::path::Path, addr: SocketAddr) {
    let asked = reqwest::Client::new()
        .post(format!("http://{addr}/v1/runner/settle"))
        .bearer_auth(off_chain_runner::operator::read(data).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
}

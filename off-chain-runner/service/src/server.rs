//! Starting the runner, one way for `serve`, the demo and the tests ([`Builder`]): the
//! hub's checks (runner, receipt key, each model's weights hashed once, content), the
//! inference backend, the receipt store, the HTTP server and the settlement task; and
//! stopping them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use market_hub_api::jsonrpc::{HubClient, Signer};
use market_protocol::crypto::native::KeyPair;
use near_sdk::AccountId;
use tokio::sync::watch;

use crate::{
    cache::TtlCache,
    inference::{Echo, Inference, ModelSpec},
    meter::Budget,
    metrics::Metrics,
    metrics::RpcCall,
    registry::{self, Registered},
    settlement::{Settings, Settler},
    state::{AppState, ChainClock, LocalContent, ServedModel},
    store::Store,
};

struct Config {
    pub hub: HubClient,
    pub runner: AccountId,
    pub receipt_key: KeyPair,
    /// Signs `settle` transactions; `None` serves without settling (another process does).
    pub account_signer: Option<near_crypto::Signer>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub inference: Arc<dyn Inference>,
    /// The registry entry of each model `inference` serves.
    pub registered: Vec<Registered>,
    pub content: HashMap<String, LocalContent>,
    /// Requests that may wait for a model besides those running.
    pub queue: usize,
    /// Places one channel may hold per model.
    pub per_channel: usize,
    pub views: crate::cache::Limits,
    /// Requests are refused once their authorization expires within this margin: the hub
    /// settles nothing under an expired authorization, so the receipt of every request
    /// served must still reach `settle` before the expiry.
    pub expiry_margin: Duration,
    pub settle: Settings,
    pub max_body_bytes: usize,
    pub default_max_tokens: usize,
    pub client_read_timeout: Duration,
    pub max_unsettled: Option<u128>,
    /// How often each model's admission (runner policy, grants) is asked of the hub again.
    pub admission_interval: Duration,
    /// Why no model is served, when loading failed.
    pub model_error: Option<String>,
}

pub fn store_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("receipts.redb")
}

/// The longest a stop waits for the requests in flight.
pub const STOP_REQUESTS_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop_server: watch::Sender<bool>,
    stop_settler: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    settler: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops gracefully: no new requests, those in flight answered (their receipts
    /// stored), then one last settlement of everything pending (bounded in time), so
    /// what was served is paid now rather than at the next start.
    pub async fn stop(self) {
        let _ = self.stop_server.send(true);
        // A client that never finishes (a slow upload, a stream nobody reads) does not hold
        // the stop: past the limit the server is dropped with it.
        let mut server = self.server;
        if tokio::time::timeout(STOP_REQUESTS_TIMEOUT, &mut server)
            .await
            .is_err()
        {
            tracing::warn!("requests still running after {STOP_REQUESTS_TIMEOUT:?}: closing them");
            server.abort();
        }
        let _ = self.stop_settler.send(true);
        if let Some(mut settler) = self.settler {
            let limit = crate::settlement::FLUSH_TIMEOUT * 2;
            if tokio::time::timeout(limit, &mut settler).await.is_err() {
                tracing::warn!("settlement still running after {limit:?}: stopping it; the rest stays for the next start");
                settler.abort();
            }
        }
    }

    /// Serves until `signal` (SIGTERM, Ctrl-C), then [`Running::stop`]s; or until the
    /// server fails.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::select! {
            ended = &mut self.server => {
                return match ended {
                    Ok(r) => r,
                    Err(e) => Err(std::io::Error::other(e)),
                };
            }
            () = signal => {}
        }
        self.stop().await;
        Ok(())
    }
}

async fn start(config: Config) -> anyhow::Result<Running> {
    let store = Arc::new(Store::open(&store_path(&config.data_dir))?);
    let budget = Arc::new(Budget::new(
        store
            .channels()?
            .into_iter()
            .map(|(user, r)| (user, r.amount())),
    ));
    let mut models = HashMap::new();
    for spec in config.inference.models() {
        let registered = config
            .registered
            .iter()
            .find(|r| r.model_id == spec.id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "model `{}` was loaded but not checked against the hub",
                    spec.id
                )
            })?;
        models.insert(
            spec.id.clone(),
            ServedModel {
                version: registered.version,
                places: Arc::new(crate::admission::Places::new(
                    &spec.id,
                    config.queue + spec.concurrency,
                    spec.concurrency,
                    config.per_channel,
                )),
                refused: Arc::default(),
                spec,
            },
        );
    }
    let metrics = Arc::new(Metrics::default());
    let urgent = Arc::new(crate::settlement::Urgent::default());
    let state = Arc::new(AppState {
        hub: config.hub.clone(),
        runner: config.runner.clone(),
        receipt_key: config.receipt_key,
        store: Arc::clone(&store),
        budget,
        inference: config.inference,
        models,
        content: config.content,
        user_keys: TtlCache::new(config.views).timed(metrics.rpc_latency(RpcCall::View)),
        channels: TtlCache::new(config.views).timed(metrics.rpc_latency(RpcCall::View)),
        prices: TtlCache::new(config.views).timed(metrics.rpc_latency(RpcCall::View)),
        clock: ChainClock::new(config.views.ttl, config.views.timeout),
        metrics: Arc::clone(&metrics),
        default_max_tokens: config.default_max_tokens,
        client_read_timeout: config.client_read_timeout,
        expiry_margin_ns: u64::try_from(config.expiry_margin.as_nanos()).unwrap_or(u64::MAX),
        urgent: Arc::clone(&urgent),
        max_unsettled: config.max_unsettled,
        view_timeout: config.views.timeout,
        model_error: config.model_error,
        operator_token: crate::operator::create(&config.data_dir)?,
    });
    let (stop_server, mut stop) = watch::channel(false);
    tokio::spawn(watch_admission(
        Arc::clone(&state),
        config.admission_interval,
        config.views.timeout,
        stop.clone(),
    ));
    let (stop_settler, settler_stop) = watch::channel(false);
    let settler = config.account_signer.map(|signer| {
        let settler = Settler::new(
            store,
            Signer::new(config.hub.clone(), signer),
            config.settle.clone(),
            Some(metrics),
        )
        .with_urgent(urgent);
        tokio::spawn(settler.run(settler_stop))
    });
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = crate::http::router(Arc::clone(&state), config.max_body_bytes);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await
    });
    Ok(Running {
        addr,
        state,
        stop_server,
        stop_settler,
        server,
        settler,
    })
}

/// Asks the hub every `interval` whether it still pays this runner for each served model
/// (`registry::check_admitted`): a revoked grant or a narrowed runner policy stops new
/// requests (403) instead of serving work the hub would refuse to pay, and an admission
/// regained serves them again. A node that cannot answer changes nothing: the last answer
/// stands.
async fn watch_admission(
    state: Arc<AppState>,
    interval: Duration,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        for (id, served) in &state.models {
            let checked = tokio::time::timeout(timeout * 4, async {
                let view = state.hub.view(market_hub_api::methods::model(id)).await?;
                let view =
                    view.ok_or_else(|| anyhow::anyhow!("model `{id}` is gone from the hub"))?;
                registry::check_admitted(&state.hub, &state.runner, id, &view.model, served.version)
                    .await
            })
            .await;
            let refused = match checked {
                Ok(Ok(())) => None,
                Ok(Err(e)) if !is_unreachable(&e) => Some(format!("{e:#}")),
                _ => continue,
            };
            let mut current = served.refused.lock().expect("admission lock");
            if *current != refused {
                if let Some(why) = &refused {
                    tracing::warn!(model = %id, "no longer admitted: {why}");
                } else {
                    tracing::info!(model = %id, "admitted again");
                }
                *current = refused;
            }
        }
    }
}

/// Whether `e` is the node failing to answer rather than the hub saying no.
fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<market_hub_api::jsonrpc::ChainError>()
            .is_some()
    })
}

/// What answers the requests.
pub enum Backend {
    /// No model: echoes prompts, each request taking `delay`. Checks payments end to end.
    Echo { delay: Duration },
    /// The inference engine (`market-engine`): wgpu or its CPU reference.
    #[cfg(feature = "engine")]
    Engine(crate::engine::EngineBackend),
    /// A backend built by the caller (tests); its models must be the ones named.
    Given(Arc<dyn Inference>),
}

/// A runner to start: every setting has `serve`'s default until told otherwise.
pub struct Builder {
    hub: HubClient,
    runner: AccountId,
    receipt_key: KeyPair,
    account_signer: Option<near_crypto::Signer>,
    models: Vec<(String, PathBuf)>,
    backend: Backend,
    content_dir: Option<PathBuf>,
    data_dir: PathBuf,
    listen: SocketAddr,
    queue: usize,
    per_channel: usize,
    views: crate::cache::Limits,
    expiry_margin: Duration,
    settle: Settings,
    max_body_bytes: usize,
    default_max_tokens: usize,
    client_read_timeout: Duration,
    max_unsettled: Option<u128>,
    sealing_key: Option<market_sealing::SealingKey>,
    admission_interval: Duration,
    #[cfg(feature = "engine")]
    batching: crate::engine::Batching,
}

/// Where a served model's files are.
enum Weights {
    Path(PathBuf),
    /// A sealed model's, decrypted into memory; never written anywhere.
    #[cfg_attr(
        not(feature = "engine"),
        allow(dead_code, reason = "only the engine loads them")
    )]
    Memory(Vec<(String, Vec<u8>)>),
}

impl Builder {
    /// Runner `runner` on `hub`, signing receipts with `receipt_key`; it does not settle
    /// until given an account signer ([`Builder::settle_with`]).
    pub fn new(hub: HubClient, runner: AccountId, receipt_key: KeyPair) -> Self {
        Self {
            hub,
            runner,
            receipt_key,
            account_signer: None,
            models: Vec::new(),
            backend: Backend::Echo {
                delay: Duration::ZERO,
            },
            content_dir: None,
            data_dir: PathBuf::from("runner-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            queue: 8,
            per_channel: 4,
            views: crate::cache::Limits::default(),
            expiry_margin: Duration::from_mins(5),
            settle: Settings::default(),
            max_body_bytes: crate::http::DEFAULT_MAX_BODY_BYTES,
            default_max_tokens: 256,
            client_read_timeout: Duration::from_secs(30),
            max_unsettled: None,
            sealing_key: None,
            admission_interval: Duration::from_secs(30),
            #[cfg(feature = "engine")]
            batching: crate::engine::Batching::default(),
        }
    }

    /// How the engine batches chat models (`serve --kv-slots`, `--prefill-chunk`).
    #[cfg(feature = "engine")]
    #[must_use]
    pub fn batching(mut self, batching: crate::engine::Batching) -> Self {
        self.batching = batching;
        self
    }

    /// How often the hub is asked again whether it pays for each served model (`serve
    /// --admission-interval-secs`).
    #[must_use]
    pub fn admission_interval(mut self, interval: Duration) -> Self {
        self.admission_interval = interval;
        self
    }

    /// The X25519 key sealed models' grants are wrapped to (`register-sealing-key`).
    #[must_use]
    pub fn sealing_key(mut self, key: market_sealing::SealingKey) -> Self {
        self.sealing_key = Some(key);
        self
    }

    /// Serves `model_id` with the weights at `path`, which must be a registered version's.
    #[must_use]
    pub fn model(mut self, model_id: &str, path: &Path) -> Self {
        self.models.push((model_id.to_owned(), path.to_path_buf()));
        self
    }

    #[must_use]
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Settles in the background, sending `settle` as this account.
    #[must_use]
    pub fn settle_with(mut self, signer: near_crypto::Signer, settings: Settings) -> Self {
        self.account_signer = Some(signer);
        self.settle = settings;
        self
    }

    /// Inference-only content files (`<content_id>.txt`), each registered on the hub.
    #[must_use]
    pub fn content_dir(mut self, dir: &Path) -> Self {
        self.content_dir = Some(dir.to_path_buf());
        self
    }

    #[must_use]
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = dir.to_path_buf();
        self
    }

    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Requests that may wait for a model besides the one running.
    #[must_use]
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// Requests one channel may have running or waiting per model (`serve
    /// --max-per-channel`).
    #[must_use]
    pub fn per_channel(mut self, n: usize) -> Self {
        self.per_channel = n;
        self
    }

    #[must_use]
    /// How long hub views are cached, trusted while the node fails, and waited for.
    pub fn views(mut self, limits: crate::cache::Limits) -> Self {
        self.views = limits;
        self
    }

    /// Authorizations expiring within this margin are refused (see `serve --help`).
    #[must_use]
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin;
        self
    }

    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// `max_tokens` when a request names none.
    #[must_use]
    pub fn default_max_tokens(mut self, tokens: usize) -> Self {
        self.default_max_tokens = tokens;
        self
    }

    /// How long a streaming client may leave a piece unread before its request is
    /// cancelled (`serve --client-read-timeout-secs`).
    #[must_use]
    pub fn client_read_timeout(mut self, timeout: Duration) -> Self {
        self.client_read_timeout = timeout;
        self
    }

    /// Stops serving a channel that owes this much unsettled (yocto) until its settlement
    /// lands, and settles it at once.
    #[must_use]
    pub fn max_unsettled(mut self, yocto: u128) -> Self {
        self.max_unsettled = Some(yocto);
        self
    }

    /// Checks everything against the hub, loads the models, and starts serving and
    /// settling. The weights are hashed once: the hash that found the registered version
    /// is the one the engine commits to.
    pub async fn start(self) -> anyhow::Result<Running> {
        registry::check_runner(&self.hub, &self.runner, &self.receipt_key.public_key()).await?;
        let mut registered = Vec::with_capacity(self.models.len());
        // What each model's files were before hashing: the engine refuses them if they
        // changed by the time it loads them (they are hashed once, here).
        #[cfg(feature = "engine")]
        let mut stamps = Vec::with_capacity(self.models.len());
        for (id, path) in &self.models {
            if registry::is_sealed(path) {
                let (r, files) = registry::open_sealed_model(
                    &self.hub,
                    &self.runner,
                    id,
                    path,
                    self.sealing_key.as_ref(),
                )
                .await?;
                tracing::info!(model = %id, version = r.version, architecture = %r.architecture, "sealed weights unsealed into memory, matching the registered version");
                #[cfg(feature = "engine")]
                stamps.push(None);
                registered.push((r, Weights::Memory(files)));
                continue;
            }
            #[cfg(feature = "engine")]
            stamps.push(Some(market_engine::weights::Stamp::of(path)?));
            // A bar on a terminal only: hidden in logs and tests.
            let (bar, progress) = market_report::progress::bytes_callback("hashing");
            let r = registry::check_model(&self.hub, &self.runner, id, path, progress).await;
            bar.finish_and_clear();
            let r = r?;
            tracing::info!(model = %id, version = r.version, architecture = %r.architecture, format = %r.format, "weights match a registered version");
            registered.push((r, Weights::Path(path.clone())));
        }
        let content = match &self.content_dir {
            Some(dir) => registry::load_content(&self.hub, dir).await?,
            None => HashMap::new(),
        };
        #[cfg_attr(
            not(feature = "engine"),
            allow(unused_mut, reason = "only the engine can fail to load")
        )]
        let mut model_error = None;
        let inference: Arc<dyn Inference> = match self.backend {
            Backend::Echo { delay } => Arc::new(Echo::new(
                registered
                    .iter()
                    .map(|(r, _)| ModelSpec::for_architecture(&r.model_id, &r.architecture))
                    .collect(),
                delay,
            )),
            #[cfg(feature = "engine")]
            Backend::Engine(backend) => {
                let batching = self.batching;
                // The decrypted files move into the engine's own buffers; the rest of the
                // runner keeps only what the hub registered.
                let list = registered
                    .iter_mut()
                    .zip(stamps)
                    .map(|((r, weights), stamp)| {
                        let weights = std::mem::replace(weights, Weights::Memory(Vec::new()));
                        (r.model_id.clone(), r.weights_sha256, weights, stamp)
                    })
                    .collect::<Vec<_>>();
                let loaded = tokio::task::spawn_blocking(move || {
                    let held = list
                        .into_iter()
                        .map(|(id, sha256, weights, stamp)| {
                            let files = match weights {
                                Weights::Path(path) => crate::engine::Files::Path(
                                    path,
                                    stamp.expect("a model on disk is stamped when hashed"),
                                ),
                                Weights::Memory(files) => crate::engine::Files::Memory(
                                    market_engine::ModelFiles::new(files)?,
                                ),
                            };
                            Ok((id, sha256, files))
                        })
                        .collect::<Result<Vec<_>, market_engine::Error>>()?;
                    let sources = held
                        .iter()
                        .map(|(id, sha256, files)| {
                            let sha256 = market_engine::Sha256::Known {
                                sha256: *sha256,
                                stamp: files.stamp()?,
                            };
                            Ok((id.clone(), files.source(), sha256))
                        })
                        .collect::<Result<Vec<_>, market_engine::Error>>()?;
                    crate::engine::Engine::load(&sources, backend, batching)
                })
                .await?;
                match loaded {
                    Ok(engine) => Arc::new(engine),
                    // What was served before still gets paid: the runner starts without
                    // models (`/health` says why) and settles.
                    Err(e) => {
                        tracing::error!(
                            "loading the models failed, serving none and settling: {e}"
                        );
                        model_error = Some(format!("loading the models failed: {e}"));
                        Arc::new(Echo::new(Vec::new(), Duration::ZERO))
                    }
                }
            }
            Backend::Given(inference) => inference,
        };
        start(Config {
            hub: self.hub,
            runner: self.runner,
            receipt_key: self.receipt_key,
            account_signer: self.account_signer,
            data_dir: self.data_dir,
            listen: self.listen,
            inference,
            registered: registered.into_iter().map(|(r, _)| r).collect(),
            content,
            queue: self.queue,
            per_channel: self.per_channel,
            views: self.views,
            expiry_margin: self.expiry_margin,
            settle: self.settle,
            max_body_bytes: self.max_body_bytes,
            default_max_tokens: self.default_max_tokens,
            client_read_timeout: self.client_read_timeout,
            max_unsettled: self.max_unsettled,
            admission_interval: self.admission_interval,
            model_error,
        })
        .await
    }
}

//! Starting the runner: the receipt store, the HTTP server and the settlement task, and
//! stopping them.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use market_protocol::crypto::native::KeyPair;
use near_sdk::AccountId;
use tokio::sync::{watch, Semaphore};

use crate::{
    cache::TtlCache,
    hub::{Hub, TxSender},
    inference::Inference,
    meter::Budget,
    metrics::Metrics,
    registry::Registered,
    settlement::{Settings, Settler},
    state::{AppState, ChainClock, LocalContent, ServedModel},
    store::Store,
};

pub struct Config {
    pub hub: Hub,
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
    /// Requests that may wait for a model besides the one running.
    pub queue: usize,
    pub view_ttl: Duration,
    /// Requests are refused once their authorization expires within this margin: the hub
    /// settles nothing under an expired authorization, so the receipt of every request
    /// served must still reach `settle` before the expiry.
    pub expiry_margin: Duration,
    pub settle: Settings,
    pub max_body_bytes: usize,
    pub default_max_tokens: usize,
}

pub fn store_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("receipts.redb")
}

pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    settler: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting requests and the settlement task; waits for both.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        if let Some(s) = self.settler {
            let _ = s.await;
        }
    }

    /// Waits until the server ends (it only ends on error or `stop`).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

pub async fn start(config: Config) -> anyhow::Result<Running> {
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
                slots: Arc::new(Semaphore::new(config.queue + 1)),
                spec,
            },
        );
    }
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        hub: config.hub.clone(),
        runner: config.runner.clone(),
        receipt_key: config.receipt_key,
        store: Arc::clone(&store),
        budget,
        inference: config.inference,
        models,
        content: config.content,
        user_keys: TtlCache::new(config.view_ttl),
        channels: TtlCache::new(config.view_ttl),
        prices: TtlCache::new(config.view_ttl),
        clock: ChainClock::new(config.view_ttl),
        metrics: Arc::clone(&metrics),
        default_max_tokens: config.default_max_tokens,
        expiry_margin_ns: u64::try_from(config.expiry_margin.as_nanos()).unwrap_or(u64::MAX),
    });
    let (shutdown, rx) = watch::channel(false);
    let settler = config.account_signer.map(|signer| {
        let settler = Settler {
            store,
            hub: config.hub.clone(),
            sender: TxSender::new(config.hub.clone(), signer),
            settings: config.settle.clone(),
            metrics: Some(metrics),
        };
        tokio::spawn(settler.run(rx.clone()))
    });
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = crate::http::router(Arc::clone(&state), config.max_body_bytes);
    let mut stop = rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
    });
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        settler,
    })
}

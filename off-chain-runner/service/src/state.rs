//! What every request handler shares: the hub and its cached views, the receipt store and
//! budget, the served models with their queues, and the runner's receipt key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use market_hub_api::{jsonrpc::HubClient, AccountKey, ChannelView, ModelView};
use market_protocol::crypto::native::KeyPair;
use near_sdk::AccountId;

use crate::{
    cache::TtlCache,
    inference::{Inference, ModelSpec},
    meter::Budget,
    metrics::Metrics,
    store::Store,
};

/// A model this runner serves, as registered on the hub.
#[derive(Clone)]
pub struct ServedModel {
    pub spec: ModelSpec,
    /// The registered version whose weights' hash the loaded weights have.
    pub version: u32,
    /// Places for requests, running or waiting (`admission`): a request that finds none
    /// is answered 429 at once instead of waiting without bound.
    pub places: Arc<crate::admission::Places>,
    /// Why the hub would not pay for this model now, when it would not (re-checked every
    /// `serve --admission-interval-secs`): requests get 403 `runner_not_allowed` meanwhile.
    pub refused: Arc<std::sync::Mutex<Option<String>>>,
}

/// Registered inference-only content the runner holds locally (checked against its hash).
#[derive(Clone, Debug)]
pub struct LocalContent {
    pub text: String,
    pub price_per_use: u128,
}

/// The chain's clock: the final block's timestamp plus local time since it was read, so
/// expiry is judged as the hub will judge it without asking the node on every request.
/// A read is bounded by `timeout`, and a failed one is not retried within `ttl`: a node
/// that hangs costs one timeout per `ttl`, not one per request (the time extrapolated from
/// the last read stands in meanwhile).
pub struct ChainClock {
    ttl: Duration,
    timeout: Duration,
    last: Mutex<Reads>,
}

/// The last read (chain ns, when), and when reading last failed.
type Reads = (Option<(u64, Instant)>, Option<Instant>);

fn extrapolate((ns, at): (u64, Instant)) -> u64 {
    ns.saturating_add(u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

impl ChainClock {
    pub fn new(ttl: Duration, timeout: Duration) -> Self {
        Self {
            ttl,
            timeout,
            last: Mutex::new((None, None)),
        }
    }

    /// The chain's time as last read and extrapolated, without asking the node (this
    /// machine's clock if it never answered): for `/metrics`, which must stay cheap.
    pub fn known_ns(&self) -> u64 {
        self.last
            .lock()
            .expect("clock lock")
            .0
            .map_or_else(wall_clock_ns, extrapolate)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the node answered a read of the clock within `recent`.
    pub fn answered_within(&self, recent: Duration) -> bool {
        self.last
            .lock()
            .expect("clock lock")
            .0
            .is_some_and(|(_, at)| at.elapsed() < recent)
    }

    /// The chain's time now: read from the node at most once per TTL, extrapolated from
    /// the last read while the node fails. `None` while it has never answered: this
    /// machine's clock is no stand-in for the chain's (a local chain's, or a skewed host's,
    /// differs), so authorizations are not judged until the chain says what time it is.
    pub async fn now_ns(&self, hub: &HubClient) -> Option<u64> {
        let (known, failed) = *self.last.lock().expect("clock lock");
        let fresh = known.filter(|(_, at)| at.elapsed() < self.ttl);
        let failed_recently = failed.is_some_and(|at| at.elapsed() < self.ttl);
        if let Some(k) = fresh {
            return Some(extrapolate(k));
        }
        if failed_recently {
            return known.map(extrapolate);
        }
        match tokio::time::timeout(self.timeout, hub.block_time_ns()).await {
            Ok(Ok(ns)) => {
                *self.last.lock().expect("clock lock") = (Some((ns, Instant::now())), None);
                Some(ns)
            }
            Ok(Err(e)) => {
                tracing::warn!("reading the chain's clock: {e}");
                self.last.lock().expect("clock lock").1 = Some(Instant::now());
                known.map(extrapolate)
            }
            Err(_) => {
                tracing::warn!(
                    "reading the chain's clock: no answer within {:?}",
                    self.timeout
                );
                self.last.lock().expect("clock lock").1 = Some(Instant::now());
                known.map(extrapolate)
            }
        }
    }
}

impl AppState {
    /// Runs `read` on the receipt store off the async workers: redb calls block on disk.
    pub async fn with_store<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> crate::error::Result<T> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|e| crate::error::Error::internal("join", e.to_string()))
    }
}

pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub struct AppState {
    pub hub: HubClient,
    pub runner: AccountId,
    pub receipt_key: KeyPair,
    pub store: Arc<Store>,
    pub budget: Arc<Budget>,
    pub inference: Arc<dyn Inference>,
    pub models: HashMap<String, ServedModel>,
    pub content: HashMap<String, LocalContent>,
    pub user_keys: TtlCache<String, Option<AccountKey>>,
    pub channels: TtlCache<AccountId, Option<ChannelView>>,
    pub prices: TtlCache<String, Option<ModelView>>,
    pub clock: ChainClock,
    pub metrics: Arc<Metrics>,
    /// `max_tokens` when a request names none; bounds the budget a request reserves.
    pub default_max_tokens: usize,
    /// How long a streamed piece may wait for a client that does not read before the
    /// request is cancelled (charged for what was generated).
    pub client_read_timeout: std::time::Duration,
    /// See `server::Builder::expiry_margin`.
    pub expiry_margin_ns: u64,
    /// Channels the settlement task must settle first (shared with it).
    pub urgent: Arc<crate::settlement::Urgent>,
    /// The most a channel may owe unsettled (signed, not settled) before the runner stops
    /// serving it until settlement lands; `None`: the signed cap is the only bound.
    pub max_unsettled: Option<u128>,
    /// The longest a call to the node may take (`/health`'s check).
    pub view_timeout: Duration,
    /// Why no model is served, when loading failed (the runner still settles).
    pub model_error: Option<String>,
    /// The bearer token of the operator's endpoints (`operator`).
    pub operator_token: String,
}

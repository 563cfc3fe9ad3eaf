//! Hub views cached with a short lifetime. Every request's authorization check reads the
//! user's key and channel; asking the node each time would put an RPC round trip (and the
//! node's availability) in every request's path.
//!
//! Staleness is bounded. An entry older than `ttl` is refreshed on the next read, each
//! fetch bounded by `timeout`. If the refresh fails (the node is down or hangs), the stale
//! value is used, but only while it is younger than `ttl + max_stale`: a revoked key or a
//! withdrawn escrow is never trusted longer than that (the hub's notices, a settlement
//! window and more, are far longer). Past it, or with nothing known, the caller gets the
//! error (the runner answers 503). A failure is remembered for `ttl`, so while the node is
//! down each key costs one timed-out call per `ttl`, not one per request. At most
//! `capacity` keys are held (a self-signed key costs one entry): when full, expired ones go
//! first, then the oldest.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long and how much a cache trusts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub ttl: Duration,
    /// How long past `ttl` a value may still be served while refreshing it fails.
    pub max_stale: Duration,
    /// The longest one fetch may take.
    pub timeout: Duration,
    pub capacity: usize,
}

impl Default for Limits {
    /// `serve`'s defaults: see its `--view-*` flags.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(2),
            max_stale: Duration::from_mins(1),
            timeout: Duration::from_secs(5),
            capacity: 100_000,
        }
    }
}

/// The node could not answer, and nothing recent enough is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Entry<V> {
    /// The last value fetched, and when.
    value: Option<(Instant, V)>,
    /// The last failed fetch since, and why.
    failed: Option<(Instant, String)>,
}

pub struct TtlCache<K, V> {
    limits: Limits,
    entries: Mutex<HashMap<K, Entry<V>>>,
    /// Reads answered with a stale value because the node failed (`/metrics`).
    stale_served: std::sync::atomic::AtomicU64,
    /// Where each fetch's duration goes, if anywhere (`/metrics`).
    latency: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
            stale_served: std::sync::atomic::AtomicU64::new(0),
            latency: None,
        }
    }

    /// Records each fetch's duration, answered or not, in `histogram`.
    #[must_use]
    pub fn timed(mut self, histogram: prometheus_client::metrics::histogram::Histogram) -> Self {
        self.latency = Some(histogram);
        self
    }

    /// The cached value if fresh; otherwise `fetch`es it (within `timeout`), falling back
    /// to a value not older than `ttl + max_stale` if the fetch fails. Concurrent misses
    /// may fetch twice; views are idempotent.
    pub async fn get<E: std::fmt::Display, F: Future<Output = Result<V, E>>>(
        &self,
        key: &K,
        fetch: impl FnOnce() -> F,
    ) -> Result<V, Unavailable> {
        let Limits { ttl, max_stale, .. } = self.limits;
        let usable = |e: &Entry<V>| {
            e.value
                .as_ref()
                .filter(|(at, _)| at.elapsed() < ttl + max_stale)
                .map(|(_, v)| v.clone())
        };
        {
            let entries = self.entries.lock().expect("cache lock");
            if let Some(e) = entries.get(key) {
                if let Some((_, v)) = e.value.as_ref().filter(|(at, _)| at.elapsed() < ttl) {
                    return Ok(v.clone());
                }
                // The node failed recently: do not ask it again for every request.
                if let Some((_, why)) = e.failed.as_ref().filter(|(at, _)| at.elapsed() < ttl) {
                    let stale = usable(e).ok_or_else(|| Unavailable(why.clone()));
                    if stale.is_ok() {
                        self.stale_served
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return stale;
                }
            }
        }
        let started = Instant::now();
        let fetched = tokio::time::timeout(self.limits.timeout, fetch()).await;
        if let Some(h) = &self.latency {
            h.observe(started.elapsed().as_secs_f64());
        }
        let fetched = match fetched {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the node did not answer within {:?}",
                self.limits.timeout
            )),
        };
        let mut entries = self.entries.lock().expect("cache lock");
        if !entries.contains_key(key) {
            self.make_room(&mut entries);
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            value: None,
            failed: None,
        });
        match fetched {
            Ok(v) => {
                *entry = Entry {
                    value: Some((Instant::now(), v.clone())),
                    failed: None,
                };
                Ok(v)
            }
            Err(why) => {
                entry.failed = Some((Instant::now(), why.clone()));
                match usable(entry) {
                    Some(v) => {
                        tracing::warn!("using a stale hub view: {why}");
                        self.stale_served
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(v)
                    }
                    None => Err(Unavailable(why)),
                }
            }
        }
    }

    /// Keeps the map under `capacity`: expired entries go first, then the oldest eighth,
    /// so a full cache pays one scan per `capacity / 8` insertions, not one each.
    fn make_room(&self, entries: &mut HashMap<K, Entry<V>>) {
        if entries.len() < self.limits.capacity {
            return;
        }
        let horizon = self.limits.ttl + self.limits.max_stale;
        let touched = |e: &Entry<V>| {
            let value = e.value.as_ref().map(|(at, _)| *at);
            let failed = e.failed.as_ref().map(|(at, _)| *at);
            value.max(failed)
        };
        entries.retain(|_, e| touched(e).is_some_and(|at| at.elapsed() < horizon));
        if entries.len() >= self.limits.capacity {
            let mut by_age: Vec<(Option<Instant>, K)> = entries
                .iter()
                .map(|(k, e)| (touched(e), k.clone()))
                .collect();
            by_age.sort_unstable_by_key(|(at, _)| *at);
            let excess = entries.len() + 1 - self.limits.capacity;
            let evict = excess.max(self.limits.capacity / 8);
            for (_, key) in by_age.into_iter().take(evict) {
                entries.remove(&key);
            }
        }
    }

    /// Forgets `key`, so the next read asks the node (after the runner learns the view
    /// changed, e.g. a settlement).
    pub fn invalidate(&self, key: &K) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    /// Reads answered with a stale value because the node failed.
    pub fn stale_served(&self) -> u64 {
        self.stale_served.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits(ttl: u32, max_stale: u32) -> Limits {
        Limits {
            ttl: MS * ttl,
            max_stale: MS * max_stale,
            timeout: MS * 30,
            capacity: 1_000,
        }
    }

    #[tokio::test]
    async fn fresh_values_are_served_stale_ones_refreshed_or_used_when_the_node_is_down() {
        let cache = TtlCache::new(limits(300, 10_000));
        let got = cache.get(&"k", || async { Ok::<_, String>(1) }).await;
        assert_eq!(got, Ok(1));
        let got = cache.get(&"k", || async { Ok::<_, String>(2) }).await;
        assert_eq!(got, Ok(1), "fresh: no fetch");
        tokio::time::sleep(MS * 350).await;
        let got = cache.get(&"k", || async { Ok::<_, String>(3) }).await;
        assert_eq!(got, Ok(3), "stale: refreshed");
        tokio::time::sleep(MS * 350).await;
        let got = cache.get(&"k", || async { Err("down".to_owned()) }).await;
        assert_eq!(got, Ok(3), "node down: the stale value");
        let got = cache
            .get(&"other", || async { Err::<u32, _>("down".to_owned()) })
            .await;
        assert_eq!(
            got,
            Err(Unavailable("down".into())),
            "nothing known: the error"
        );
    }

    #[tokio::test]
    async fn a_value_is_never_trusted_past_its_maximum_age() {
        let cache = TtlCache::new(limits(20, 40));
        cache
            .get(&"k", || async { Ok::<_, String>(1) })
            .await
            .unwrap();
        tokio::time::sleep(MS * 30).await;
        let got = cache.get(&"k", || async { Err("down".to_owned()) }).await;
        assert_eq!(got, Ok(1), "within ttl + max_stale");
        tokio::time::sleep(MS * 40).await;
        let got = cache.get(&"k", || async { Err("down".to_owned()) }).await;
        assert_eq!(got, Err(Unavailable("down".into())), "past it: refused");
    }

    #[tokio::test]
    async fn a_hanging_node_costs_one_timeout_per_ttl_not_one_per_read() {
        let cache = TtlCache::new(Limits {
            timeout: MS * 200,
            ..limits(5_000, 1_000)
        });
        let calls = AtomicU32::new(0);
        let hang = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<u32, String>>().await
        };
        let started = Instant::now();
        let first = cache.get(&"k", hang).await;
        assert!(first.unwrap_err().0.contains("did not answer"));
        for _ in 0..5 {
            assert!(cache.get(&"k", hang).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the failure is remembered");
        assert!(started.elapsed() < MS * 1_000, "one timeout, not six");
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        let cache = TtlCache::new(Limits {
            capacity: 8,
            ..limits(10_000, 0)
        });
        for k in 0..100u32 {
            cache
                .get(&k, || async { Ok::<_, String>(k) })
                .await
                .unwrap();
        }
        assert!(cache.len() <= 8, "{} entries", cache.len());
        assert_eq!(
            cache.get(&99, || async { Ok::<_, String>(0) }).await,
            Ok(99),
            "the newest kept"
        );
    }
}

//! Hub views cached with a short lifetime. Every request's authorization check reads the
//! user's key and channel; asking the node each time would put an RPC round trip (and the
//! node's availability) in every request's path.
//!
//! An entry older than its lifetime is refreshed on the next read. If the refresh fails
//! (the node is down), the stale value is used and the failure logged: the runner keeps
//! serving through an RPC outage on what it last knew, which is safe because everything it
//! serves is still bounded by the user's signed cap, and it checks escrow again when the
//! node is back. Nothing known at all and no node: the caller gets the error.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value if fresh; otherwise `fetch`es it, falling back to a stale value if
    /// the fetch fails. Concurrent misses may fetch twice; views are idempotent.
    pub async fn get<E: std::fmt::Display, F: Future<Output = Result<V, E>>>(
        &self,
        key: &K,
        fetch: impl FnOnce() -> F,
    ) -> Result<V, E> {
        let stale = {
            let entries = self.entries.lock().expect("cache lock");
            match entries.get(key) {
                Some((at, v)) if at.elapsed() < self.ttl => return Ok(v.clone()),
                Some((_, v)) => Some(v.clone()),
                None => None,
            }
        };
        match fetch().await {
            Ok(v) => {
                self.entries
                    .lock()
                    .expect("cache lock")
                    .insert(key.clone(), (Instant::now(), v.clone()));
                Ok(v)
            }
            Err(e) => match stale {
                Some(v) => {
                    tracing::warn!("using a stale hub view: {e}");
                    Ok(v)
                }
                None => Err(e),
            },
        }
    }

    /// Forgets `key`, so the next read asks the node (after the runner learns the view
    /// changed, e.g. a settlement).
    pub fn invalidate(&self, key: &K) {
        self.entries.lock().expect("cache lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fresh_values_are_served_stale_ones_refreshed_or_used_when_the_node_is_down() {
        let cache = TtlCache::new(Duration::from_millis(50));
        let got: Result<u32, String> = cache.get(&"k", || async { Ok(1) }).await;
        assert_eq!(got, Ok(1));
        let got: Result<u32, String> = cache.get(&"k", || async { Ok(2) }).await;
        assert_eq!(got, Ok(1), "fresh: no fetch");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let got: Result<u32, String> = cache.get(&"k", || async { Ok(3) }).await;
        assert_eq!(got, Ok(3), "stale: refreshed");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let got = cache.get(&"k", || async { Err("down".to_owned()) }).await;
        assert_eq!(got, Ok(3), "node down: the stale value");
        let got = cache
            .get(&"other", || async { Err::<u32, _>("down".to_owned()) })
            .await;
        assert_eq!(got, Err("down".into()), "nothing known: the error");
    }
}

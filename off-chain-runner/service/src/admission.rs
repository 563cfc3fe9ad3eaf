//! Who gets a model's places: a bounded number of requests per model (those running plus
//! those waiting), at most `per_channel` of them from one user's channel, so one user
//! cannot take every place; a request that finds none is answered 429 at once, with a
//! `Retry-After` computed from the queue ahead and the model's measured time per request.
//!
//! Waiting requests are served first come, first served by the model's backend (the
//! engine's scheduler queue); this module only decides who may wait.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use near_sdk::AccountId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// `Retry-After` is at least this, and at most `MAX_RETRY_AFTER`.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_mins(5);

/// One model's places.
pub struct Places {
    model_id: String,
    permits: Arc<Semaphore>,
    capacity: usize,
    /// Requests the backend runs at once (the engine's batch); the rest wait.
    running: usize,
    per_channel: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_channel: HashMap<AccountId, usize>,
    /// Exponentially weighted mean of a request's time holding a place, in seconds.
    mean_secs: Option<f64>,
}

/// A place held: released (and its time measured) when dropped.
pub struct Ticket {
    places: Arc<Places>,
    user: AccountId,
    since: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let took = self.since.elapsed().as_secs_f64();
        let mut inner = self.places.inner.lock().expect("places lock");
        if let Some(n) = inner.by_channel.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                inner.by_channel.remove(&self.user);
            }
        }
        // Weight 1/8: follows a change of load within a few dozen requests.
        inner.mean_secs = Some(inner.mean_secs.map_or(took, |m| m + (took - m) / 8.0));
    }
}

impl Places {
    /// `capacity` places, `running` of them served at once, at most `per_channel` held by
    /// one channel.
    pub fn new(model_id: &str, capacity: usize, running: usize, per_channel: usize) -> Self {
        Self {
            model_id: model_id.to_owned(),
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            running: running.max(1),
            per_channel: per_channel.max(1),
            inner: Mutex::default(),
        }
    }

    /// Places held now.
    pub fn busy(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// A place for `user`'s request, or 429.
    pub fn take(self: &Arc<Self>, user: &AccountId) -> Result<Ticket> {
        let mut inner = self.inner.lock().expect("places lock");
        let held = inner.by_channel.get(user).copied().unwrap_or(0);
        if held >= self.per_channel {
            return Err(Error::overloaded(
                "channel_busy",
                format!(
                    "this channel already has {held} requests running or waiting for model `{}` (at most {}); retry when one ends",
                    self.model_id, self.per_channel
                ),
            )
            .retry_after(self.retry_after(&inner, self.per_channel.min(self.busy()))));
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return Err(Error::overloaded(
                "model_overloaded",
                format!(
                    "model `{}` is saturated (every running and waiting place is taken); retry later",
                    self.model_id
                ),
            )
            .retry_after(self.retry_after(&inner, self.busy())));
        };
        *inner.by_channel.entry(user.clone()).or_insert(0) += 1;
        Ok(Ticket {
            places: Arc::clone(self),
            user: user.clone(),
            since: Instant::now(),
            _permit: permit,
        })
    }

    /// How long until a place is likely free: the requests ahead, served `running` at a
    /// time, each taking the measured mean (one second before anything was measured).
    fn retry_after(&self, inner: &Inner, ahead: usize) -> Duration {
        let mean = inner.mean_secs.unwrap_or(1.0);
        let rounds =
            f64::from(u32::try_from(ahead.div_ceil(self.running).max(1)).unwrap_or(u32::MAX));
        Duration::from_secs_f64((rounds * mean).ceil()).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(i: usize) -> AccountId {
        format!("user{i}.near").parse().unwrap()
    }

    #[test]
    fn one_channel_cannot_take_every_place() {
        let places = Arc::new(Places::new("m", 4, 1, 2));
        let a = [
            places.take(&user(0)).unwrap(),
            places.take(&user(0)).unwrap(),
        ];
        let refused = places.take(&user(0)).err().unwrap();
        assert_eq!(refused.code, "channel_busy");
        let b = [
            places.take(&user(1)).unwrap(),
            places.take(&user(2)).unwrap(),
        ];
        let full = places.take(&user(3)).err().unwrap();
        assert_eq!(full.code, "model_overloaded");
        drop(a);
        assert!(places.take(&user(0)).is_ok(), "its places came back");
        drop(b);
        assert_eq!(places.busy(), 0);
    }

    #[test]
    fn retry_after_grows_with_the_queue_and_the_measured_time() {
        let places = Arc::new(Places::new("m", 8, 2, 8));
        let inner = Inner {
            mean_secs: Some(3.0),
            ..Inner::default()
        };
        assert_eq!(places.retry_after(&inner, 1), Duration::from_secs(3));
        assert_eq!(places.retry_after(&inner, 8), Duration::from_secs(12));
        let fresh = Inner::default();
        assert_eq!(places.retry_after(&fresh, 0), MIN_RETRY_AFTER);
        let slow = Inner {
            mean_secs: Some(1e6),
            ..Inner::default()
        };
        assert_eq!(places.retry_after(&slow, 8), MAX_RETRY_AFTER);
    }
}

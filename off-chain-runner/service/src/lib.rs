//! The runner: serves registered models over an OpenAI-compatible HTTP API to users who pay
//! with a signed spending authorization (the bearer token), signs a cumulative usage
//! receipt per request, keeps receipts in a crash-safe store, and settles them on the hub.
//!
//! * `http`: the API, one module per route; `http::auth` checks the authorization.
//! * `admission`: a model's places: per channel, and `Retry-After` from the queue.
//! * `meter`: prices, the per-channel budget, the next receipt.
//! * `store`: receipts in redb, durable before each response.
//! * `settlement`: batches to the hub's `settle`, idempotent.
//! * `hub`: the hub over NEAR JSON-RPC; `cache`: its views with a short lifetime.
//! * `registry`: checks against the hub before serving.
//! * `operator`: the token for the operator's endpoints.
//! * `sealed`: closed models' keys and grants from the command line.
//! * `inference`: the engine behind a trait; `scheduler`: continuous batching of a chat
//!   model.

pub mod admission;
pub mod cache;
#[cfg(feature = "engine")]
pub mod embedder;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod http;
pub mod inference;
pub mod keys;
pub mod killpoint;
pub mod meter;
pub mod metrics;
pub mod operator;
pub mod registry;
#[cfg(feature = "engine")]
pub mod scheduler;
pub mod sealed;
pub mod server;
pub mod settlement;
pub mod state;
pub mod store;
pub mod token;

//! The OpenAI-compatible HTTP API, one module per route; `error` maps failures to statuses.

pub mod auth;
mod chat;
mod completions;
mod embeddings;
pub mod error;
pub mod generate;
mod ops;
pub mod request;

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};

use crate::{error::Error, state::AppState};

/// Default request body limit: generous for long chats, small enough that one client cannot
/// make the runner buffer without bound.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/models", get(ops::models))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/v1/runner/status", get(ops::status))
        .route("/v1/runner/settle", post(ops::settle))
        .fallback(|| async {
            Error::not_found("unknown_route", "no such endpoint; see /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings").into_response()
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

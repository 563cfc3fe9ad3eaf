//! `GET /v1/models`, `GET /health`, `GET /metrics`: no payment needed.

use std::sync::Arc;

use axum::{extract::State, response::IntoResponse, Json};
use serde_json::json;

use crate::state::AppState;

pub async fn models(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut data: Vec<_> = state
        .models
        .values()
        .map(|m| {
            json!({"id": m.spec.id, "object": "model", "created": 0, "owned_by": state.runner,
                   "version": m.version, "context_length": m.spec.context_length,
                   "kind": if m.spec.kind == crate::inference::Kind::Chat { "chat" } else { "embedding" }})
        })
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({"object": "list", "data": data}))
}

pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(
        json!({"status": "ok", "runner": state.runner, "hub": state.hub.account,
                "chain_id": state.hub.chain_id, "models": state.models.len()}),
    )
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let backlog = state.store.pending(usize::MAX).map_or(0, |p| p.len());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(backlog),
    )
}

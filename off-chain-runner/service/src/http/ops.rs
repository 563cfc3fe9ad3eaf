//! `GET /v1/models`, `GET /health`, `GET /metrics`: no payment needed.

use std::sync::Arc;

use axum::{extract::State, response::IntoResponse, Json};
use serde_json::json;

use crate::{state::AppState, store::Store};

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

/// Whether each part the runner needs is usable now: the models (loaded, each with a
/// place for requests), the receipt store (a read succeeds) and the RPC node (it answers
/// within the view timeout). 200 when all are, 503 naming what is not.
pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let served = state.inference.models();
    // Public, so what failed is named and the details (paths, the node's address) stay
    // in the runner's log; each check is cheap: the node is asked at most once per TTL.
    let model = match &state.model_error {
        Some(_) => Err("loading failed (the runner's log says why)".to_owned()),
        None if served.is_empty() || !served.iter().all(|m| state.models.contains_key(&m.id)) => {
            Err("no model is served".to_owned())
        }
        None => Ok(()),
    };
    let store = match state.with_store(Store::check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!("/health: the receipt store: {e}");
            Err("unreadable (the runner's log says why)".to_owned())
        }
        Err(e) => {
            tracing::error!("/health: the receipt store: {e}");
            Err("unreadable (the runner's log says why)".to_owned())
        }
    };
    state.clock.now_ns(&state.hub).await;
    let recent = state.clock.ttl() + state.view_timeout;
    let rpc = if state.clock.answered_within(recent) {
        Ok(())
    } else {
        Err(format!("the node has not answered for over {recent:?}"))
    };
    let healthy = model.is_ok() && store.is_ok() && rpc.is_ok();
    let check = |r: &Result<(), String>| r.as_ref().err().map_or_else(|| json!("ok"), |e| json!(e));
    (
        if healthy {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "status": if healthy { "ok" } else { "unavailable" },
            "checks": {"model": check(&model), "store": check(&store), "rpc": check(&rpc)},
            "runner": state.runner, "hub": state.hub.account,
            "chain_id": state.hub.chain_id, "models": state.models.len(),
        })),
    )
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    // Everything from memory: no store scan, no RPC call per scrape.
    let mut queue_depth: Vec<(String, u64)> = state
        .models
        .values()
        .map(|m| (m.spec.id.clone(), m.places.busy() as u64))
        .collect();
    queue_depth.sort();
    let scraped = crate::metrics::Scraped {
        unsettled: state.store.unsettled(),
        now_ns: crate::state::wall_clock_ns(),
        chain_now_ns: state.clock.known_ns(),
        stale_views: state.user_keys.stale_served()
            + state.channels.stale_served()
            + state.prices.stale_served(),
        queue_depth,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(scraped),
    )
}

/// The operator's endpoints answer only this machine, and only with the operator's token
/// (`operator`): they show who pays this runner and start transactions.
fn operator(
    peer: std::net::SocketAddr,
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> crate::error::Result<()> {
    if !peer.ip().is_loopback() {
        return Err(crate::error::Error::forbidden(
            "operator_only",
            "this endpoint answers only requests from the runner's own machine",
        ));
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if crate::operator::matches(&state.operator_token, presented) {
        Ok(())
    } else {
        Err(crate::error::Error::unauthorized(
            "operator_token",
            "this endpoint needs the operator's token from <data-dir>/operator.token as the bearer token",
        ))
    }
}

/// `GET /v1/runner/status`: every channel's receipts and settlement, what `status`
/// prints, while `serve` holds the store.
pub async fn status(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    State(state): State<Arc<AppState>>,
) -> crate::error::Result<Json<Vec<crate::store::ChannelStatus>>> {
    operator(peer, &headers, &state)?;
    Ok(Json(state.with_store(Store::status).await??))
}

/// `POST /v1/runner/settle`: a settlement round now, not at the next interval.
pub async fn settle(
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    State(state): State<Arc<AppState>>,
) -> crate::error::Result<axum::http::StatusCode> {
    operator(peer, &headers, &state)?;
    state.urgent.wake();
    Ok(axum::http::StatusCode::ACCEPTED)
}

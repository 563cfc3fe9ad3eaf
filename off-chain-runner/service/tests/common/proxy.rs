//! A fault-injecting proxy in front of the local chain's JSON-RPC: the node itself answers
//! at once and with final outcomes, so every way a real node fails is played here.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Rewrites the answer (JSON) to a request of the JSON-RPC method named.
pub type Forgery = Arc<dyn Fn(&str, &serde_json::Value, &mut serde_json::Value) + Send + Sync>;

/// How the node behaves now.
#[derive(Clone, Default)]
pub enum Fault {
    #[default]
    None,
    /// Refuses at once (503).
    Down,
    /// Accepts and never answers.
    Hang,
    /// Answers every request after the delay.
    Slow(Duration),
    /// Runs every request, and loses the answer of about half of them (502): a transaction
    /// sent may have landed with its sender never told.
    DropHalf,
    /// Runs every request; answers those that return a transaction's outcome after the
    /// delay.
    LateFinal(Duration),
    /// Runs every request and lies in its answer: `forgery(method, params, answer)`.
    Lies(Forgery),
}

/// The switch a test turns.
#[derive(Default)]
pub struct Faults {
    now: Mutex<Fault>,
}

impl Faults {
    pub fn set(&self, fault: Fault) {
        *self.now.lock().unwrap() = fault;
    }

    fn get(&self) -> Fault {
        self.now.lock().unwrap().clone()
    }
}

/// The JSON-RPC methods whose answer is a transaction's outcome.
const OUTCOME_METHODS: [&str; 5] = [
    "send_tx",
    "broadcast_tx_commit",
    "tx",
    "tx_status",
    "EXPERIMENTAL_tx_status",
];

/// Middleware for the node's router.
pub async fn inject(State(faults): State<Arc<Faults>>, req: Request, next: Next) -> Response {
    match faults.get() {
        Fault::None => next.run(req).await,
        Fault::Down => (StatusCode::SERVICE_UNAVAILABLE, "node down").into_response(),
        Fault::Hang => std::future::pending().await,
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        Fault::DropHalf => {
            let answer = next.run(req).await;
            if rand::random::<bool>() {
                answer
            } else {
                (StatusCode::BAD_GATEWAY, "answer lost").into_response()
            }
        }
        Fault::Lies(forgery) => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let request: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let answer = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (parts, body) = answer.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return Response::from_parts(parts, Body::from(bytes));
            };
            forgery(
                request["method"].as_str().unwrap_or_default(),
                &request["params"],
                &mut value,
            );
            let mut parts = parts;
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(value.to_string()))
        }
        Fault::LateFinal(delay) => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let method = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["method"].as_str().map(str::to_owned));
            let answer = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if method.is_some_and(|m| OUTCOME_METHODS.contains(&m.as_str())) {
                tokio::time::sleep(delay).await;
            }
            answer
        }
    }
}

//! `POST /v1/embeddings`. `encoding_format` `float` or `base64` (little-endian f32, what
//! OpenAI's Python client asks for by default). Units in = input tokens, out = 0.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{Error, Result},
    http::{
        auth,
        generate::{commit, detached, prices, sha256, take_slot},
        request,
    },
    inference::Kind,
    meter::{self, price, Charge},
    metrics::Metrics,
};

/// Inputs per request; bounds one request's hold on the model.
const MAX_INPUTS: usize = 256;

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

pub async fn handle(
    State(state): State<Arc<crate::state::AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match detached(run(state, headers, body)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: Arc<crate::state::AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value> {
    let payer = auth::payer(&state, &headers).await?;
    let (req, bytes): (EmbeddingRequest, _) = request::json_body(body)?;
    let model = request::model(&state, &payer, &req.model, Kind::Embedding)?;
    let inputs: Vec<String> =
        match req.input {
            Value::String(s) => vec![s],
            Value::Array(a) if a.iter().all(Value::is_string) => a
                .into_iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => return Err(Error::bad_input(
                "invalid_input",
                "`input` must be a string or an array of strings (token arrays are not supported)",
            )),
        };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS || inputs.iter().any(String::is_empty) {
        return Err(Error::bad_input(
            "invalid_input",
            format!("`input` holds 1 to {MAX_INPUTS} non-empty strings"),
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::bad_input(
                "invalid_encoding_format",
                format!("encoding_format is `float` or `base64`, not `{other}`"),
            ))
        }
    };
    if req.dimensions.is_some() {
        return Err(Error::bad_input(
            "unsupported_dimensions",
            "`dimensions` is not supported",
        ));
    }
    let permit = take_slot(&model, &payer)?;
    let (p_in, _, max_units) = prices(&state, &payer, &model.spec.id).await?;
    let model_id_for_units = model.spec.id.clone();
    let (budget, inference, user, limit, id) = (
        Arc::clone(&state.budget),
        Arc::clone(&state.inference),
        payer.user().clone(),
        payer.limit,
        model.spec.id.clone(),
    );
    let (embedded, reservation) = tokio::task::spawn_blocking(move || {
        let mut reservation = None;
        let result = {
            let mut admit = |tokens: u64, _: u64| -> Result<()> {
                meter::within_units(&model_id_for_units, tokens, 0, max_units)?;
                reservation = Some(budget.reserve(&user, price(tokens, 0, p_in, 0)?, limit)?);
                Ok(())
            };
            inference.embed(&id, &inputs, &mut admit)
        };
        drop(permit);
        (result, reservation)
    })
    .await
    .map_err(|e| Error::internal("join", e.to_string()))?;
    let embedded = embedded?;
    let mut output = Vec::with_capacity(embedded.vectors.iter().map(Vec::len).sum::<usize>() * 4);
    for v in &embedded.vectors {
        for x in v {
            output.extend_from_slice(&x.to_le_bytes());
        }
    }
    let charge = Charge {
        model_id: model.spec.id.clone(),
        version: model.version,
        units_in: embedded.tokens,
        units_out: 0,
        amount: price(embedded.tokens, 0, p_in, 0)?,
        content: Vec::new(),
        request_hash: sha256(&bytes),
        output_hash: sha256(&output),
    };
    let charged = charge.total()?;
    let record = commit(&state, &payer, charge).await?;
    drop(reservation);
    Metrics::add(&state.metrics.tokens_in, embedded.tokens);
    let data: Vec<Value> = embedded
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(STANDARD.encode(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list", "data": data, "model": model.spec.id,
        "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens},
        "charged": charged.to_string(), "receipt": record.receipt,
    }))
}

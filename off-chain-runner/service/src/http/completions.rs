//! `POST /v1/completions`: a plain text prompt, no chat template. `content` as in chat:
//! the named content is put before the prompt.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    error::{Error, Result},
    http::{
        auth,
        generate::{respond, sha256, Flavor, Job},
        request::{self, SamplingFields},
    },
    inference::{Kind, Prompt},
    state::AppState,
};

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: serde_json::Value,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    content: Vec<String>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match prepare(&state, &headers, body).await {
        Ok((job, flavor, stream)) => respond(state, job, flavor, stream).await,
        Err(e) => e.into_response(),
    }
}

async fn prepare(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Job, Flavor, bool)> {
    let payer = auth::payer(state, headers).await?;
    let (req, bytes): (CompletionRequest, _) = request::json_body(body)?;
    let model = request::model(state, &payer, &req.model, Kind::Chat)?;
    // OpenAI also takes a list of prompts (n completions) or token arrays; one text
    // prompt per request keeps one receipt per response.
    let prompt = match req.prompt {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(Error::bad_input(
                "invalid_prompt",
                "`prompt` must be one string",
            ))
        }
    };
    let content = request::content(state, &payer, &req.content)?;
    let mut text = String::new();
    for (_, body, _) in &content {
        text.push_str(body);
        text.push_str("\n\n");
    }
    text.push_str(&prompt);
    let sampling = req.sampling.sampling(state.default_max_tokens)?;
    let flavor = Flavor::new(false, &req.model);
    let job = Job {
        payer,
        model,
        prompt: Prompt::Text(text),
        sampling,
        content: content
            .into_iter()
            .map(|(id, _, price)| (id, price))
            .collect(),
        request_hash: sha256(&bytes),
    };
    Ok((job, flavor, req.stream))
}

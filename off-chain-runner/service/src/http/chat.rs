//! `POST /v1/chat/completions`. Besides OpenAI's fields, `content` names registered
//! inference-only content this runner holds: it is put into the context as a system
//! message and charged per use in the same receipt.

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
    inference::{Kind, Message, Prompt},
    state::AppState,
};

/// Messages per request; bounds the work of rendering the template.
const MAX_MESSAGES: usize = 256;

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    content: Vec<String>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: MessageContent,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

impl MessageContent {
    fn text(self) -> Result<String> {
        match self {
            Self::Text(t) => Ok(t),
            Self::Parts(parts) => parts
                .into_iter()
                .map(|p| match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => Ok(t),
                    (kind, _) => Err(Error::bad_input(
                        "unsupported_content_part",
                        format!("message parts of type `{kind}` are not supported; only `text`"),
                    )),
                })
                .collect(),
        }
    }
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
    let (req, bytes): (ChatRequest, _) = request::json_body(body)?;
    let model = request::model(state, &payer, &req.model, Kind::Chat)?;
    if req.messages.is_empty() || req.messages.len() > MAX_MESSAGES {
        return Err(Error::bad_input(
            "invalid_messages",
            format!(
                "a chat has 1 to {MAX_MESSAGES} messages, not {}",
                req.messages.len()
            ),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    let content = request::content(state, &payer, &req.content)?;
    if !content.is_empty() {
        let reference = content
            .iter()
            .map(|(id, text, _)| format!("[{id}]\n{text}"))
            .collect::<Vec<_>>()
            .join("\n\n");
        messages.push(Message {
            role: "system".into(),
            content: format!("Answer using this reference material.\n\n{reference}"),
        });
    }
    for m in req.messages {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(Error::bad_input(
                "invalid_role",
                format!("unknown message role `{}`", m.role),
            ));
        }
        let role = if m.role == "developer" {
            "system".to_owned()
        } else {
            m.role
        };
        messages.push(Message {
            role,
            content: m.content.text()?,
        });
    }
    let sampling = req.sampling.sampling(state.default_max_tokens)?;
    let flavor = Flavor::new(true, &req.model);
    let job = Job {
        payer,
        model,
        prompt: Prompt::Chat(messages),
        sampling,
        content: content
            .into_iter()
            .map(|(id, _, price)| (id, price))
            .collect(),
        request_hash: sha256(&bytes),
    };
    Ok((job, flavor, req.stream))
}

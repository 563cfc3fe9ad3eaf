//! Reading a request: the JSON body (400 for malformed or oversize input), the model
//! (404 unknown, 403 not covered by the authorization), content ids, sampling settings.

use axum::{body::Bytes, extract::rejection::BytesRejection};
use serde::{de::DeserializeOwned, Deserialize};

use crate::{
    error::{Error, Result},
    http::auth::Payer,
    inference::{Kind, Sampling},
    state::{AppState, ServedModel},
};

/// Content items one request may name.
pub const MAX_CONTENT_PER_REQUEST: usize = 4;

/// Bytes of one stop sequence at most.
pub const MAX_STOP_BYTES: usize = 256;

pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<(T, Bytes)> {
    let bytes = body.map_err(|e| {
        Error::bad_input(
            "invalid_body",
            format!("the request body could not be read: {e} (bodies are limited in size)"),
        )
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bad_input(
            "invalid_json",
            format!("the request body is not valid: {e}"),
        )
    })?;
    Ok((value, bytes))
}

pub fn model(state: &AppState, payer: &Payer, id: &str, kind: Kind) -> Result<ServedModel> {
    let served = state
        .models
        .get(id)
        .ok_or_else(|| Error::model_not_served(id))?;
    if served.spec.kind != kind {
        return Err(Error::bad_input(
            "model_not_supported",
            format!(
                "model `{id}` is {} model",
                if kind == Kind::Chat {
                    "an embedding"
                } else {
                    "a chat"
                }
            ),
        ));
    }
    if let Some(why) = served.refused.lock().expect("admission lock").clone() {
        return Err(Error::forbidden("runner_not_allowed", why));
    }
    if !payer.auth.authorization.covers(id) {
        return Err(Error::forbidden(
            "model_not_authorized",
            format!("the authorization does not cover model `{id}`"),
        ));
    }
    Ok(served.clone())
}

/// Resolves named content: (id, text, price of one use); each must be held by this runner
/// and allowed by the payer's authorization at its price.
pub fn content(
    state: &AppState,
    payer: &Payer,
    ids: &[String],
) -> Result<Vec<(String, String, u128)>> {
    if ids.len() > MAX_CONTENT_PER_REQUEST {
        return Err(Error::bad_input(
            "too_much_content",
            format!(
                "a request names at most {MAX_CONTENT_PER_REQUEST} content items, not {}",
                ids.len()
            ),
        ));
    }
    let mut out: Vec<(String, String, u128)> = Vec::with_capacity(ids.len());
    for id in ids {
        if out.iter().any(|(c, _, _)| c == id) {
            return Err(Error::bad_input(
                "duplicate_content",
                format!("content `{id}` is named twice"),
            ));
        }
        let item = state.content.get(id).ok_or_else(|| {
            Error::not_found(
                "content_not_found",
                format!("content `{id}` is not held by this runner"),
            )
        })?;
        crate::meter::content_allowed(&payer.auth.authorization, id, item.price_per_use)?;
        out.push((id.clone(), item.text.clone(), item.price_per_use));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Sampling fields shared by chat and text completions.
#[derive(Deserialize, Default)]
pub struct SamplingFields {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub n: Option<u32>,
}

impl SamplingFields {
    pub fn sampling(&self, default_max_tokens: usize) -> Result<Sampling> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(Error::bad_input("unsupported_n", "only n = 1 is supported"));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(Error::bad_input(
                "invalid_temperature",
                format!("temperature must be within 0 to 2, not {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::bad_input(
                "invalid_top_p",
                format!("top_p must be within (0, 1], not {top_p}"),
            ));
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(0) => {
                return Err(Error::bad_input(
                    "invalid_max_tokens",
                    "max_tokens must be at least 1",
                ))
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => default_max_tokens,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) if v.len() <= 4 => v.clone(),
            Some(Stop::Many(v)) => {
                return Err(Error::bad_input(
                    "invalid_stop",
                    format!("at most 4 stop sequences, not {}", v.len()),
                ))
            }
        };
        if stop.iter().any(String::is_empty) {
            return Err(Error::bad_input(
                "invalid_stop",
                "stop sequences may not be empty",
            ));
        }
        // Each step searches the new text for every stop and holds back a tail that could
        // begin one, on the model's shared thread: bounded so no request can slow others.
        if let Some(long) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(Error::bad_input(
                "invalid_stop",
                format!(
                    "a stop sequence of {} bytes: at most {MAX_STOP_BYTES}",
                    long.len()
                ),
            ));
        }
        Ok(Sampling {
            max_tokens,
            temperature,
            top_p,
            seed: self.seed,
            stop,
        })
    }
}

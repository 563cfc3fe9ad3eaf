//! The one place errors become HTTP: a status per kind and OpenAI's JSON error body,
//! `{"error": {"message", "type", "param", "code"}}`, which stock clients parse into their
//! own exception types.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::error::{Error, Kind};

pub fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadInput => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// OpenAI's `type` field.
pub fn openai_type(kind: Kind) -> &'static str {
    match kind {
        Kind::BadInput | Kind::NotFound => "invalid_request_error",
        Kind::Unauthorized => "authentication_error",
        Kind::Forbidden => "permission_error",
        Kind::PaymentRequired => "insufficient_quota",
        Kind::Overloaded => "rate_limit_error",
        Kind::Unavailable | Kind::Internal => "server_error",
    }
}

pub fn body(error: &Error) -> serde_json::Value {
    json!({"error": {
        "message": error.message,
        "type": openai_type(error.kind),
        "param": null,
        "code": error.code,
    }})
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.kind == Kind::Internal {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut response = (status(self.kind), Json(body(&self))).into_response();
        if self.kind == Kind::Overloaded {
            // Stock clients back off and retry on 429; tell them how soon.
            let secs = self.retry_after.map_or(1, |d| d.as_secs().max(1));
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(secs));
        }
        response
    }
}

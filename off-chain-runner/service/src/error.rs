//! What can go wrong while serving a request, independent of HTTP. `http::error` maps each
//! kind to one status and OpenAI's JSON error shape, in one `match`.

/// A failed request: its kind, a stable machine-readable code, and a message that names
/// the offending value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: Kind,
    pub code: &'static str,
    pub message: String,
    /// When to try again (`Retry-After`), for an overloaded answer.
    pub retry_after: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Malformed or oversize input.
    BadInput,
    /// The bearer token is missing, malformed, or not a valid authorization for this runner.
    Unauthorized,
    /// The authorization does not cover what was asked (a model it does not name).
    Forbidden,
    /// Over the signed cap, or the channel's escrow is spent or missing.
    PaymentRequired,
    /// An unknown model or content item.
    NotFound,
    /// Every inference slot and queue place is taken.
    Overloaded,
    /// The chain could not be asked and nothing is known from before.
    Unavailable,
    Internal,
}

macro_rules! constructor {
    ($name:ident, $kind:ident) => {
        pub fn $name(code: &'static str, message: impl Into<String>) -> Self {
            Self {
                kind: Kind::$kind,
                code,
                message: message.into(),
                retry_after: None,
            }
        }
    };
}

impl Error {
    /// A model this runner does not serve (whether asked by the client or reached by a
    /// backend): one code and message everywhere.
    pub fn model_not_served(id: &str) -> Self {
        Self::not_found(
            "model_not_found",
            format!("model `{id}` is not served here (see GET /v1/models)"),
        )
    }

    #[must_use]
    pub fn retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    constructor!(bad_input, BadInput);
    constructor!(unauthorized, Unauthorized);
    constructor!(forbidden, Forbidden);
    constructor!(payment_required, PaymentRequired);
    constructor!(not_found, NotFound);
    constructor!(overloaded, Overloaded);
    constructor!(unavailable, Unavailable);
    constructor!(internal, Internal);
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything sealing, unsealing and granting can refuse, each naming the bad value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("reading or writing the sealed artifact: {0}")]
    Artifact(io::Error),
    #[error("{} is not a model: {reason}", path.display())]
    NotAModel { path: PathBuf, reason: String },
    #[error("{name} changed while being sealed: it is no longer {expected} bytes long")]
    FileChanged { name: String, expected: u64 },

    #[error("not a sealed artifact: it starts with {found:02x?}, not {expected:02x?}")]
    BadMagic { found: [u8; 8], expected: [u8; 8] },
    #[error("sealed artifact format version {found} is not supported (only {supported})")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("sealing scheme `{found}` is not supported (only `{supported}`)")]
    UnsupportedScheme {
        found: String,
        supported: &'static str,
    },
    #[error("chunk size {found} is not supported (only {supported})")]
    UnsupportedChunkSize { found: u32, supported: u32 },
    #[error("malformed sealed artifact header: {0}")]
    BadHeader(String),
    /// The chunk's tag does not verify. For chunk 0 that is also what a wrong key or an
    /// edited header looks like: AEAD cannot tell them apart, and must not.
    #[error("chunk {chunk} of the sealed artifact fails authentication: wrong key, or the artifact was altered")]
    Tampered { chunk: u32 },
    #[error("the sealed artifact ends inside chunk {chunk} of {chunks}: truncated")]
    Truncated { chunk: u32, chunks: u32 },
    #[error("the sealed artifact goes on after its last chunk")]
    TrailingData,
    #[error("the unsealed weights hash to {actual}, not to the registered {expected}")]
    WeightsMismatch { expected: String, actual: String },

    #[error("bad {what}: {reason}")]
    BadKey { what: &'static str, reason: String },
    #[error("the grant does not open with this sealing key for {context}: another runner's key, another context, or an altered grant")]
    GrantRefused { context: String },
    #[error("cannot wrap a content key to sealing public key {0}: it is a low-order point")]
    BadSealingKey(String),
    #[error("the binding of sealing key {sealing_key} to {runner}'s receipt key does not verify")]
    BindingInvalid { runner: String, sealing_key: String },

    #[error(transparent)]
    Attestation(#[from] AttestationError),
}

/// Why a TEE quote does not vouch for a runner's sealing key ([`crate::attestation`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("the attestation collateral is not dcap-qvl's QuoteCollateralV3 JSON: {0}")]
    BadCollateral(String),
    /// Parsing, signatures, certificate chains, CRLs, collateral dates, or TD attributes
    /// (debug, migratable): dcap-qvl's message, with its causes.
    #[error("the quote does not verify: {0}")]
    QuoteInvalid(String),
    #[error("the quote comes from a {found} TEE, not {expected}")]
    WrongTee { expected: String, found: String },
    #[error(
        "TCB status {status} (advisories {advisory_ids:?}) is not among the allowed {allowed:?}"
    )]
    TcbStatusNotAllowed {
        status: String,
        advisory_ids: Vec<String>,
        allowed: Vec<String>,
    },
    #[error("measurement {measurement} is not among the {allowed} allowed")]
    MeasurementNotAllowed { measurement: String, allowed: usize },
    #[error("the quote's report data {found} does not bind this sealing key: expected {expected}")]
    ReportDataMismatch { expected: String, found: String },
    #[error("the hub's attestation record says {field} {recorded}, the quote {actual}")]
    RecordMismatch {
        field: &'static str,
        recorded: String,
        actual: String,
    },
}

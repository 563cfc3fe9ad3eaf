//! Every way a hub call can fail, with the bad value and the limit it broke: each variant's
//! message next to it (`thiserror`), its code in [`Error::code`] (the strings are
//! `RejectCode`'s). Contract methods panic with the message; `settle` returns code and
//! message per rejected receipt instead.

use market_hub_api::RejectCode;
use near_sdk::{AccountId, PublicKey};

fn key(k: &PublicKey) -> String {
    String::from(k)
}

fn hex(h: &[u8; 32]) -> String {
    near_sdk::bs58::encode(h).into_string()
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // Access and configuration.
    #[error("{caller} is not the hub owner")]
    NotOwner { caller: AccountId },
    #[error("the hub is paused")]
    Paused,
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidInput(String),
    // Storage deposits.
    #[error("{what} needs {required} yocto attached, got {attached}")]
    InsufficientDeposit {
        attached: u128,
        required: u128,
        what: &'static str,
    },
    // Registry.
    #[error("model `{0}` is already registered")]
    ModelExists(String),
    #[error("model `{0}` is not registered")]
    UnknownModel(String),
    #[error("{caller} does not own model `{model_id}`")]
    NotModelOwner { model_id: String, caller: AccountId },
    #[error("model `{model_id}` has no version {version} (it has 1..={versions})")]
    UnknownVersion {
        model_id: String,
        version: u32,
        versions: u32,
    },
    #[error("runner share {runner_bps} bps is outside {min}..={max} bps")]
    RunnerBpsOutOfRange { runner_bps: u16, min: u16, max: u16 },
    // Runners.
    #[error("runner {0} is already registered")]
    RunnerExists(AccountId),
    #[error("runner {0} is not registered")]
    UnknownRunner(AccountId),
    #[error("runner {0} has left the hub")]
    RunnerLeft(AccountId),
    #[error("bond of {bond} yocto is below the minimum {min}")]
    BondTooSmall { bond: u128, min: u128 },
    #[error("key {} is already registered (or was revoked) for this account", key(.0))]
    KeyTaken(PublicKey),
    #[error("key {} is not an ed25519 key", key(.0))]
    NotEd25519(PublicKey),
    #[error("runner key {} is not registered", key(.0))]
    UnknownRunnerKey(PublicKey),
    #[error("runner key {} was revoked", key(.0))]
    RevokedRunnerKey(PublicKey),
    #[error("runner {0} has not requested to leave")]
    LeaveNotRequested(AccountId),
    #[error("{what} is possible from {ready_at_ns} ns, it is {now_ns} ns")]
    TooEarly {
        what: &'static str,
        ready_at_ns: u64,
        now_ns: u64,
    },
    #[error("nothing to withdraw")]
    NothingToWithdraw,
    #[error("requested {requested} yocto, only {available} available")]
    AmountTooLarge { requested: u128, available: u128 },
    // Users and channels.
    #[error("no channel from {user} to {runner}")]
    UnknownChannel { user: AccountId, runner: AccountId },
    #[error("no withdrawal was requested on the channel from {user} to {runner}")]
    WithdrawalNotRequested { user: AccountId, runner: AccountId },
    // Settlement, one per check in the order the engine makes them.
    /// The attached authorization is refused (the checks a runner makes too).
    #[error("{0}")]
    Inadmissible(market_protocol::Inadmissible),
    #[error("{0}")]
    Malformed(String),
    #[error("the runner's signature does not verify")]
    BadRunnerSignature,
    #[error("sequence {seq} is not above the last settled {last_seq}")]
    StaleSequence { seq: u64, last_seq: u64 },
    #[error("authorization {} is not known for this channel and was not attached", hex(.0))]
    AuthorizationMissing([u8; 32]),
    #[error("the receipt names authorization {} but {} is attached", hex(.named), hex(.attached))]
    AuthorizationMismatch { named: [u8; 32], attached: [u8; 32] },
    #[error("authorization expired at {expires_at_ns} ns, it is {now_ns} ns")]
    Expired { expires_at_ns: u64, now_ns: u64 },
    #[error("the authorization does not cover model `{0}`")]
    ModelNotAuthorized(String),
    #[error("model `{model_id}` charges {amount} yocto since the authorization was pinned, its signed ceilings allow {max}")]
    ModelOverpriced {
        model_id: String,
        amount: u128,
        max: u128,
    },
    #[error("model `{model_id}` used {units} units since the authorization was pinned, its signed per-request limit allows {max}")]
    TooManyUnits {
        model_id: String,
        units: u128,
        max: u128,
    },
    #[error("the authorization does not allow content `{0}`")]
    ContentNotAuthorized(String),
    #[error("content `{content_id}` was used {uses} times since the authorization was pinned, in at most {max} requests")]
    TooManyUses {
        content_id: String,
        uses: u64,
        max: u64,
    },
    #[error("model `{model_id}` does not allow runner {runner}")]
    RunnerNotAllowed { model_id: String, runner: AccountId },
    #[error("content `{0}` is not registered")]
    UnknownContent(String),
    #[error("content `{0}` is open for training, not paid per use")]
    ContentNotPerUse(String),
    #[error("content `{content_id}` charges {amount} yocto since the authorization was pinned, its uses at the lower of its price and the signed ceiling allow {max}")]
    ContentOverpriced {
        content_id: String,
        amount: u128,
        max: u128,
    },
    #[error("content `{0}` is already registered")]
    ContentExists(String),
    #[error("cumulative {what} went down: {receipt} < {settled} already settled")]
    Decreased {
        what: String,
        settled: u128,
        receipt: u128,
    },
    #[error("the channel would have {lines} model lines, at most {max}")]
    TooManyLines { lines: usize, max: usize },
    #[error("cumulative amount {amount} yocto is over the authorized cap {cap}")]
    OverCap { amount: u128, cap: u128 },
    #[error("charge of {charge} yocto exceeds the channel's unspent {unspent}")]
    Underfunded { charge: u128, unspent: u128 },
    #[error("invariant violated: {0}")]
    InvariantViolated(String),
}

impl Error {
    /// Panics with this error's message: how contract methods fail.
    pub fn panic(self) -> ! {
        near_sdk::env::panic_str(&self.to_string())
    }

    /// A stable machine-readable name, for settlement outcomes and events.
    pub fn code(&self) -> RejectCode {
        match self {
            Self::NotOwner { .. } => RejectCode::NotOwner,
            Self::Paused => RejectCode::Paused,
            Self::InvalidConfig(_) => RejectCode::InvalidConfig,
            Self::InvalidInput(_) => RejectCode::InvalidInput,
            Self::InsufficientDeposit { .. } => RejectCode::InsufficientDeposit,
            Self::ModelExists(_) => RejectCode::ModelExists,
            Self::UnknownModel(_) => RejectCode::UnknownModel,
            Self::NotModelOwner { .. } => RejectCode::NotModelOwner,
            Self::UnknownVersion { .. } => RejectCode::UnknownVersion,
            Self::RunnerBpsOutOfRange { .. } => RejectCode::RunnerBpsOutOfRange,
            Self::RunnerExists(_) => RejectCode::RunnerExists,
            Self::UnknownRunner(_) => RejectCode::UnknownRunner,
            Self::RunnerLeft(_) => RejectCode::RunnerLeft,
            Self::BondTooSmall { .. } => RejectCode::BondTooSmall,
            Self::KeyTaken(_) => RejectCode::KeyTaken,
            Self::NotEd25519(_) => RejectCode::NotEd25519,
            Self::UnknownRunnerKey(_) => RejectCode::UnknownRunnerKey,
            Self::RevokedRunnerKey(_) => RejectCode::RevokedRunnerKey,
            Self::LeaveNotRequested(_) => RejectCode::LeaveNotRequested,
            Self::TooEarly { .. } => RejectCode::TooEarly,
            Self::NothingToWithdraw => RejectCode::NothingToWithdraw,
            Self::AmountTooLarge { .. } => RejectCode::AmountTooLarge,
            Self::UnknownChannel { .. } => RejectCode::UnknownChannel,
            Self::WithdrawalNotRequested { .. } => RejectCode::WithdrawalNotRequested,
            Self::Inadmissible(e) => RejectCode::from(e),
            Self::Malformed(_) => RejectCode::Malformed,
            Self::BadRunnerSignature => RejectCode::BadRunnerSignature,
            Self::StaleSequence { .. } => RejectCode::StaleSequence,
            Self::AuthorizationMissing(_) => RejectCode::AuthorizationMissing,
            Self::AuthorizationMismatch { .. } => RejectCode::AuthorizationMismatch,
            Self::Expired { .. } => RejectCode::Expired,
            Self::ModelNotAuthorized(_) => RejectCode::ModelNotAuthorized,
            Self::ModelOverpriced { .. } => RejectCode::ModelOverpriced,
            Self::TooManyUnits { .. } => RejectCode::TooManyUnits,
            Self::ContentNotAuthorized(_) => RejectCode::ContentNotAuthorized,
            Self::TooManyUses { .. } => RejectCode::TooManyUses,
            Self::RunnerNotAllowed { .. } => RejectCode::RunnerNotAllowed,
            Self::UnknownContent(_) => RejectCode::UnknownContent,
            Self::ContentNotPerUse(_) => RejectCode::ContentNotPerUse,
            Self::ContentOverpriced { .. } => RejectCode::ContentOverpriced,
            Self::ContentExists(_) => RejectCode::ContentExists,
            Self::Decreased { .. } => RejectCode::Decreased,
            Self::TooManyLines { .. } => RejectCode::TooManyLines,
            Self::OverCap { .. } => RejectCode::OverCap,
            Self::Underfunded { .. } => RejectCode::Underfunded,
            Self::InvariantViolated(_) => RejectCode::InvariantViolated,
        }
    }
}

impl From<market_protocol::Inadmissible> for Error {
    fn from(e: market_protocol::Inadmissible) -> Self {
        Self::Inadmissible(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Every way a hub call can fail, with the bad value and the limit it broke. Contract
//! methods panic with the message; `settle` returns it per rejected receipt instead.

use near_sdk::{AccountId, PublicKey};
use std::fmt;

fn key(k: &PublicKey) -> String {
    String::from(k)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    // Access and configuration.
    NotOwner {
        caller: AccountId,
    },
    Paused,
    InvalidConfig(String),
    InvalidInput(String),
    // Storage deposits.
    InsufficientDeposit {
        attached: u128,
        required: u128,
        what: &'static str,
    },
    // Registry.
    ModelExists(String),
    UnknownModel(String),
    NotModelOwner {
        model_id: String,
        caller: AccountId,
    },
    UnknownVersion {
        model_id: String,
        version: u32,
        versions: u32,
    },
    RunnerBpsOutOfRange {
        runner_bps: u16,
        min: u16,
        max: u16,
    },
    // Runners.
    RunnerExists(AccountId),
    UnknownRunner(AccountId),
    RunnerLeft(AccountId),
    BondTooSmall {
        bond: u128,
        min: u128,
    },
    KeyTaken(PublicKey),
    NotEd25519(PublicKey),
    UnknownRunnerKey(PublicKey),
    RevokedRunnerKey(PublicKey),
    LeaveNotRequested(AccountId),
    TooEarly {
        what: &'static str,
        ready_at_ns: u64,
        now_ns: u64,
    },
    NothingToWithdraw,
    AmountTooLarge {
        requested: u128,
        available: u128,
    },
    // Users and channels.
    UnknownUserKey {
        key: PublicKey,
        user: AccountId,
    },
    RevokedUserKey {
        key: PublicKey,
        user: AccountId,
    },
    UnknownChannel {
        user: AccountId,
        runner: AccountId,
    },
    WithdrawalNotRequested {
        user: AccountId,
        runner: AccountId,
    },
    // Settlement, one per check in the order the engine makes them.
    Malformed(String),
    BadRunnerSignature,
    StaleSequence {
        seq: u64,
        last_seq: u64,
    },
    AuthorizationMissing([u8; 32]),
    AuthorizationMismatch {
        named: [u8; 32],
        attached: [u8; 32],
    },
    WrongHub {
        signed_for: AccountId,
        this_hub: AccountId,
    },
    WrongChain {
        signed_for: String,
        this_chain: String,
    },
    WrongChannel {
        authorized: (AccountId, AccountId),
        receipt: (AccountId, AccountId),
    },
    BadUserSignature,
    LifetimeTooLong {
        expires_at_ns: u64,
        max_ns: u64,
    },
    Expired {
        expires_at_ns: u64,
        now_ns: u64,
    },
    ModelNotAuthorized(String),
    ModelOverpriced {
        model_id: String,
        amount: u128,
        max: u128,
    },
    TooManyUnits {
        model_id: String,
        units: u128,
        max: u128,
    },
    ContentNotAuthorized(String),
    TooManyUses {
        content_id: String,
        uses: u64,
        max: u64,
    },
    RunnerNotAllowed {
        model_id: String,
        runner: AccountId,
    },
    UnknownContent(String),
    ContentNotPerUse(String),
    ContentOverpriced {
        content_id: String,
        amount: u128,
        max: u128,
    },
    ContentExists(String),
    Decreased {
        what: String,
        settled: u128,
        receipt: u128,
    },
    TooManyLines {
        lines: usize,
        max: usize,
    },
    OverCap {
        amount: u128,
        cap: u128,
    },
    Underfunded {
        charge: u128,
        unspent: u128,
    },
    InvariantViolated(String),
}

impl Error {
    /// Panics with this error's message: how contract methods fail.
    pub fn panic(self) -> ! {
        near_sdk::env::panic_str(&self.to_string())
    }

    /// A stable machine-readable name, for settlement outcomes and events.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotOwner { .. } => "not_owner",
            Self::Paused => "paused",
            Self::InvalidConfig(_) => "invalid_config",
            Self::InvalidInput(_) => "invalid_input",
            Self::InsufficientDeposit { .. } => "insufficient_deposit",
            Self::ModelExists(_) => "model_exists",
            Self::UnknownModel(_) => "unknown_model",
            Self::NotModelOwner { .. } => "not_model_owner",
            Self::UnknownVersion { .. } => "unknown_version",
            Self::RunnerBpsOutOfRange { .. } => "runner_bps_out_of_range",
            Self::RunnerExists(_) => "runner_exists",
            Self::UnknownRunner(_) => "unknown_runner",
            Self::RunnerLeft(_) => "runner_left",
            Self::BondTooSmall { .. } => "bond_too_small",
            Self::KeyTaken(_) => "key_taken",
            Self::NotEd25519(_) => "not_ed25519",
            Self::UnknownRunnerKey(_) => "unknown_runner_key",
            Self::RevokedRunnerKey(_) => "revoked_runner_key",
            Self::LeaveNotRequested(_) => "leave_not_requested",
            Self::TooEarly { .. } => "too_early",
            Self::NothingToWithdraw => "nothing_to_withdraw",
            Self::AmountTooLarge { .. } => "amount_too_large",
            Self::UnknownUserKey { .. } => "unknown_user_key",
            Self::RevokedUserKey { .. } => "revoked_user_key",
            Self::UnknownChannel { .. } => "unknown_channel",
            Self::WithdrawalNotRequested { .. } => "withdrawal_not_requested",
            Self::Malformed(_) => "malformed",
            Self::BadRunnerSignature => "bad_runner_signature",
            Self::StaleSequence { .. } => "stale_sequence",
            Self::AuthorizationMissing(_) => "authorization_missing",
            Self::AuthorizationMismatch { .. } => "authorization_mismatch",
            Self::WrongHub { .. } => "wrong_hub",
            Self::WrongChain { .. } => "wrong_chain",
            Self::WrongChannel { .. } => "wrong_channel",
            Self::BadUserSignature => "bad_user_signature",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
            Self::Expired { .. } => "expired",
            Self::ModelNotAuthorized(_) => "model_not_authorized",
            Self::ModelOverpriced { .. } => "model_overpriced",
            Self::TooManyUnits { .. } => "too_many_units",
            Self::ContentNotAuthorized(_) => "content_not_authorized",
            Self::TooManyUses { .. } => "too_many_uses",
            Self::RunnerNotAllowed { .. } => "runner_not_allowed",
            Self::UnknownContent(_) => "unknown_content",
            Self::ContentNotPerUse(_) => "content_not_per_use",
            Self::ContentOverpriced { .. } => "content_overpriced",
            Self::ContentExists(_) => "content_exists",
            Self::Decreased { .. } => "decreased",
            Self::TooManyLines { .. } => "too_many_lines",
            Self::OverCap { .. } => "over_cap",
            Self::Underfunded { .. } => "underfunded",
            Self::InvariantViolated(_) => "invariant_violated",
        }
    }
}

impl fmt::Display for Error {
    #[allow(clippy::too_many_lines)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |h: &[u8; 32]| near_sdk::bs58::encode(h).into_string();
        match self {
            Self::NotOwner { caller } => write!(f, "{caller} is not the hub owner"),
            Self::Paused => write!(f, "the hub is paused"),
            Self::InvalidConfig(m) | Self::InvalidInput(m) | Self::Malformed(m) => f.write_str(m),
            Self::InsufficientDeposit {
                attached,
                required,
                what,
            } => {
                write!(f, "{what} needs {required} yocto attached, got {attached}")
            }
            Self::ModelExists(id) => write!(f, "model `{id}` is already registered"),
            Self::UnknownModel(id) => write!(f, "model `{id}` is not registered"),
            Self::NotModelOwner { model_id, caller } => {
                write!(f, "{caller} does not own model `{model_id}`")
            }
            Self::UnknownVersion {
                model_id,
                version,
                versions,
            } => {
                write!(
                    f,
                    "model `{model_id}` has no version {version} (it has 1..={versions})"
                )
            }
            Self::RunnerBpsOutOfRange {
                runner_bps,
                min,
                max,
            } => {
                write!(
                    f,
                    "runner share {runner_bps} bps is outside {min}..={max} bps"
                )
            }
            Self::RunnerExists(r) => write!(f, "runner {r} is already registered"),
            Self::UnknownRunner(r) => write!(f, "runner {r} is not registered"),
            Self::RunnerLeft(r) => write!(f, "runner {r} has left the hub"),
            Self::BondTooSmall { bond, min } => {
                write!(f, "bond of {bond} yocto is below the minimum {min}")
            }
            Self::KeyTaken(k) => write!(
                f,
                "key {} is already registered (or was revoked) for this account",
                key(k)
            ),
            Self::NotEd25519(k) => write!(f, "key {} is not an ed25519 key", key(k)),
            Self::UnknownRunnerKey(k) => write!(f, "runner key {} is not registered", key(k)),
            Self::RevokedRunnerKey(k) => write!(f, "runner key {} was revoked", key(k)),
            Self::LeaveNotRequested(r) => write!(f, "runner {r} has not requested to leave"),
            Self::TooEarly {
                what,
                ready_at_ns,
                now_ns,
            } => {
                write!(
                    f,
                    "{what} is possible from {ready_at_ns} ns, it is {now_ns} ns"
                )
            }
            Self::NothingToWithdraw => write!(f, "nothing to withdraw"),
            Self::AmountTooLarge {
                requested,
                available,
            } => {
                write!(f, "requested {requested} yocto, only {available} available")
            }
            Self::UnknownUserKey { key: k, user } => {
                write!(f, "key {} is not registered to user {user}", key(k))
            }
            Self::RevokedUserKey { key: k, user } => {
                write!(
                    f,
                    "key {} of user {user} was revoked: it authorizes nothing new, and its pinned authorizations settle only until the revocation's notice ends",
                    key(k)
                )
            }
            Self::UnknownChannel { user, runner } => {
                write!(f, "no channel from {user} to {runner}")
            }
            Self::WithdrawalNotRequested { user, runner } => {
                write!(
                    f,
                    "no withdrawal was requested on the channel from {user} to {runner}"
                )
            }
            Self::BadRunnerSignature => write!(f, "the runner's signature does not verify"),
            Self::StaleSequence { seq, last_seq } => {
                write!(f, "sequence {seq} is not above the last settled {last_seq}")
            }
            Self::AuthorizationMissing(h) => {
                write!(
                    f,
                    "authorization {} is not known for this channel and was not attached",
                    hex(h)
                )
            }
            Self::AuthorizationMismatch { named, attached } => write!(
                f,
                "the receipt names authorization {} but {} is attached",
                hex(named),
                hex(attached)
            ),
            Self::WrongHub {
                signed_for,
                this_hub,
            } => {
                write!(
                    f,
                    "authorization was signed for hub {signed_for}, this is {this_hub}"
                )
            }
            Self::WrongChain {
                signed_for,
                this_chain,
            } => {
                write!(
                    f,
                    "authorization was signed for chain `{signed_for}`, this is `{this_chain}`"
                )
            }
            Self::WrongChannel {
                authorized,
                receipt,
            } => write!(
                f,
                "authorization covers {} -> {}, the receipt is for {} -> {}",
                authorized.0, authorized.1, receipt.0, receipt.1
            ),
            Self::LifetimeTooLong {
                expires_at_ns,
                max_ns,
            } => write!(
                f,
                "authorization expires at {expires_at_ns} ns, after the longest lifetime the hub pins ({max_ns} ns)"
            ),
            Self::BadUserSignature => write!(
                f,
                "the user's signature on the authorization does not verify"
            ),
            Self::Expired {
                expires_at_ns,
                now_ns,
            } => {
                write!(
                    f,
                    "authorization expired at {expires_at_ns} ns, it is {now_ns} ns"
                )
            }
            Self::ModelNotAuthorized(m) => {
                write!(f, "the authorization does not cover model `{m}`")
            }
            Self::ModelOverpriced {
                model_id,
                amount,
                max,
            } => write!(
                f,
                "model `{model_id}` charges {amount} yocto since the authorization was pinned, its signed ceilings allow {max}"
            ),
            Self::TooManyUnits {
                model_id,
                units,
                max,
            } => write!(
                f,
                "model `{model_id}` used {units} units since the authorization was pinned, its signed per-request limit allows {max}"
            ),
            Self::ContentNotAuthorized(c) => {
                write!(f, "the authorization does not allow content `{c}`")
            }
            Self::TooManyUses {
                content_id,
                uses,
                max,
            } => write!(
                f,
                "content `{content_id}` was used {uses} times since the authorization was pinned, in at most {max} requests"
            ),
            Self::RunnerNotAllowed { model_id, runner } => {
                write!(f, "model `{model_id}` does not allow runner {runner}")
            }
            Self::UnknownContent(c) => write!(f, "content `{c}` is not registered"),
            Self::ContentNotPerUse(c) => {
                write!(f, "content `{c}` is open for training, not paid per use")
            }
            Self::ContentOverpriced {
                content_id,
                amount,
                max,
            } => {
                write!(f, "content `{content_id}` charges {amount} yocto since the authorization was pinned, its uses at the lower of its price and the signed ceiling allow {max}")
            }
            Self::ContentExists(c) => write!(f, "content `{c}` is already registered"),
            Self::Decreased {
                what,
                settled,
                receipt,
            } => {
                write!(
                    f,
                    "cumulative {what} went down: {receipt} < {settled} already settled"
                )
            }
            Self::TooManyLines { lines, max } => write!(
                f,
                "the channel would have {lines} model lines, at most {max}"
            ),
            Self::OverCap { amount, cap } => {
                write!(
                    f,
                    "cumulative amount {amount} yocto is over the authorized cap {cap}"
                )
            }
            Self::Underfunded { charge, unspent } => {
                write!(
                    f,
                    "charge of {charge} yocto exceeds the channel's unspent {unspent}"
                )
            }
            Self::InvariantViolated(m) => write!(f, "invariant violated: {m}"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

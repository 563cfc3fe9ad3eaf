//! Why the hub refused something: a stable machine-readable code per failure, the same
//! `snake_case` strings the hub has always returned (in `settle`'s outcomes and in events).
//! A code this build does not know (a newer hub's) decodes as [`RejectCode::Unknown`], so
//! an older runner keeps working against a newer hub.

use std::{fmt, str::FromStr};

/// Declares the codes once: the enum, its strings, and serde through those strings.
/// Hand-written because serde's derive has no catch-all for unknown string variants.
macro_rules! reject_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RejectCode {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know.
            Unknown,
        }

        impl RejectCode {
            /// Every known code.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                    Self::Unknown => "unknown",
                }
            }
        }

        impl FromStr for RejectCode {
            type Err = std::convert::Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($code => Self::$variant,)*
                    _ => Self::Unknown,
                })
            }
        }
    };
}

reject_codes! {
    NotOwner = "not_owner",
    Paused = "paused",
    InvalidConfig = "invalid_config",
    InvalidInput = "invalid_input",
    InsufficientDeposit = "insufficient_deposit",
    ModelExists = "model_exists",
    UnknownModel = "unknown_model",
    NotModelOwner = "not_model_owner",
    UnknownVersion = "unknown_version",
    RunnerBpsOutOfRange = "runner_bps_out_of_range",
    RunnerExists = "runner_exists",
    UnknownRunner = "unknown_runner",
    RunnerLeft = "runner_left",
    BondTooSmall = "bond_too_small",
    KeyTaken = "key_taken",
    NotEd25519 = "not_ed25519",
    UnknownRunnerKey = "unknown_runner_key",
    RevokedRunnerKey = "revoked_runner_key",
    LeaveNotRequested = "leave_not_requested",
    TooEarly = "too_early",
    NothingToWithdraw = "nothing_to_withdraw",
    AmountTooLarge = "amount_too_large",
    UnknownUserKey = "unknown_user_key",
    RevokedUserKey = "revoked_user_key",
    UnknownChannel = "unknown_channel",
    WithdrawalNotRequested = "withdrawal_not_requested",
    Malformed = "malformed",
    BadRunnerSignature = "bad_runner_signature",
    /// The receipt's sequence is not above the channel's last settled one: settled before.
    StaleSequence = "stale_sequence",
    AuthorizationMissing = "authorization_missing",
    AuthorizationMismatch = "authorization_mismatch",
    WrongHub = "wrong_hub",
    WrongChain = "wrong_chain",
    WrongChannel = "wrong_channel",
    BadUserSignature = "bad_user_signature",
    LifetimeTooLong = "lifetime_too_long",
    Expired = "expired",
    ModelNotAuthorized = "model_not_authorized",
    ModelOverpriced = "model_overpriced",
    TooManyUnits = "too_many_units",
    ContentNotAuthorized = "content_not_authorized",
    TooManyUses = "too_many_uses",
    RunnerNotAllowed = "runner_not_allowed",
    UnknownContent = "unknown_content",
    ContentNotPerUse = "content_not_per_use",
    ContentOverpriced = "content_overpriced",
    ContentExists = "content_exists",
    Decreased = "decreased",
    TooManyLines = "too_many_lines",
    OverCap = "over_cap",
    /// The channel's unspent escrow is below the charge: it may be funded later.
    Underfunded = "underfunded",
    InvariantViolated = "invariant_violated",
}

impl From<&market_protocol::Inadmissible> for RejectCode {
    fn from(e: &market_protocol::Inadmissible) -> Self {
        use market_protocol::Inadmissible as I;
        match e {
            I::Malformed(_) => Self::Malformed,
            I::WrongHub { .. } => Self::WrongHub,
            I::WrongChain { .. } => Self::WrongChain,
            I::WrongChannel { .. } => Self::WrongChannel,
            I::LifetimeTooLong { .. } => Self::LifetimeTooLong,
            I::BadUserSignature => Self::BadUserSignature,
            I::UnknownUserKey { .. } => Self::UnknownUserKey,
            I::RevokedUserKey { .. } => Self::RevokedUserKey,
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RejectCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(s.parse().unwrap_or(Self::Unknown))
    }
}

#[cfg(feature = "abi")]
impl near_sdk::schemars::JsonSchema for RejectCode {
    fn schema_name() -> String {
        "RejectCode".into()
    }

    fn json_schema(
        g: &mut near_sdk::schemars::gen::SchemaGenerator,
    ) -> near_sdk::schemars::schema::Schema {
        String::json_schema(g)
    }
}

#[cfg(test)]
mod tests {
    use super::RejectCode;

    #[test]
    fn codes_round_trip_and_unknown_ones_survive() {
        for &code in RejectCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<RejectCode>(&json).unwrap(), code);
        }
        let newer: RejectCode = serde_json::from_str("\"a_code_from_a_newer_hub\"").unwrap();
        assert_eq!(newer, RejectCode::Unknown);
        assert_eq!(
            serde_json::to_string(&RejectCode::StaleSequence).unwrap(),
            "\"stale_sequence\""
        );
    }
}

//! Whether a signed authorization may be trusted, checked once for both sides: the hub runs
//! these checks before it pins an authorization to a channel, a runner before it serves
//! anything under one, so a runner never serves on an authorization the hub would refuse.
//!
//! Expiry is not here: the hub judges it with the pauses counted out and on every receipt,
//! a runner with a margin for settling; both compare with the same `expires_at_ns`.

use std::fmt;

use near_sdk::{AccountId, PublicKey};

use crate::{authorization::MAX_LIFETIME_NS, crypto::Crypto, SignedAuthorization};

/// What an authorization is checked against.
pub struct Admission<'a> {
    pub hub: &'a AccountId,
    pub chain_id: &'a str,
    /// The channel it must pay from: the hub knows the user from the receipt; a runner
    /// serves whoever signed, so it passes `None`.
    pub user: Option<&'a AccountId>,
    pub runner: &'a AccountId,
}

/// The signing key as the hub records it in the user's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Unknown,
    Active,
    Revoked,
}

/// Why an authorization is not admitted, with the values that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inadmissible {
    Malformed(String),
    WrongHub {
        signed_for: AccountId,
        this_hub: AccountId,
    },
    WrongChain {
        signed_for: String,
        this_chain: String,
    },
    /// Signed for another channel (user → runner).
    WrongChannel {
        authorized: (AccountId, AccountId),
        expected: (Option<AccountId>, AccountId),
    },
    LifetimeTooLong {
        expires_at_ns: u64,
        max_ns: u64,
    },
    BadUserSignature,
    UnknownUserKey {
        key: PublicKey,
        user: AccountId,
    },
    RevokedUserKey {
        key: PublicKey,
        user: AccountId,
    },
}

impl Admission<'_> {
    /// The checks that need nothing but the message, in order, one error each:
    /// well-formed, this hub, this chain, this channel, the user's signature. Returns the
    /// authorization's id (its NEP-413 prehash), which receipts name. Then the two that
    /// need the chain: [`Admission::lifetime`] (its clock) and [`Admission::key`] (the
    /// key's state, which a runner has to look up), so nothing unauthenticated costs a
    /// runner a call to its node.
    pub fn admit<C: Crypto>(
        &self,
        signed: &SignedAuthorization,
        crypto: &C,
    ) -> Result<[u8; 32], Inadmissible> {
        let a = &signed.authorization;
        a.validate().map_err(Inadmissible::Malformed)?;
        if &a.hub != self.hub {
            return Err(Inadmissible::WrongHub {
                signed_for: a.hub.clone(),
                this_hub: self.hub.clone(),
            });
        }
        if a.chain_id != self.chain_id {
            return Err(Inadmissible::WrongChain {
                signed_for: a.chain_id.clone(),
                this_chain: self.chain_id.to_owned(),
            });
        }
        if self.user.is_some_and(|u| u != &a.user) || &a.runner != self.runner {
            return Err(Inadmissible::WrongChannel {
                authorized: (a.user.clone(), a.runner.clone()),
                expected: (self.user.cloned(), self.runner.clone()),
            });
        }
        signed.verify(crypto).ok_or(Inadmissible::BadUserSignature)
    }

    /// A lifetime the hub pins at `now_ns`, the chain's time: at most `MAX_LIFETIME_NS`.
    pub fn lifetime(signed: &SignedAuthorization, now_ns: u64) -> Result<(), Inadmissible> {
        let expires_at_ns = signed.authorization.expires_at_ns.0;
        let max_ns = now_ns.saturating_add(MAX_LIFETIME_NS);
        if expires_at_ns > max_ns {
            return Err(Inadmissible::LifetimeTooLong {
                expires_at_ns,
                max_ns,
            });
        }
        Ok(())
    }

    /// A revoked key signs nothing new (only authorizations the hub pinned before the
    /// revocation keep settling, until its notice ends).
    pub fn key(signed: &SignedAuthorization, state: KeyState) -> Result<(), Inadmissible> {
        let a = &signed.authorization;
        match state {
            KeyState::Active => Ok(()),
            KeyState::Unknown => Err(Inadmissible::UnknownUserKey {
                key: a.public_key.clone(),
                user: a.user.clone(),
            }),
            KeyState::Revoked => Err(Inadmissible::RevokedUserKey {
                key: a.public_key.clone(),
                user: a.user.clone(),
            }),
        }
    }
}

impl fmt::Display for Inadmissible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed authorization: {m}"),
            Self::WrongHub {
                signed_for,
                this_hub,
            } => write!(
                f,
                "authorization was signed for hub {signed_for}, this is {this_hub}"
            ),
            Self::WrongChain {
                signed_for,
                this_chain,
            } => write!(
                f,
                "authorization was signed for chain `{signed_for}`, this is `{this_chain}`"
            ),
            Self::WrongChannel {
                authorized,
                expected,
            } => {
                let user = expected.0.as_ref().map_or("its user", |u| u.as_str());
                write!(
                    f,
                    "authorization covers {} -> {}, this is {user} -> {}",
                    authorized.0, authorized.1, expected.1
                )
            }
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
            Self::UnknownUserKey { key, user } => write!(
                f,
                "key {} is not registered to user {user}",
                String::from(key)
            ),
            Self::RevokedUserKey { key, user } => write!(
                f,
                "key {} of user {user} was revoked: it authorizes nothing new, and its pinned authorizations settle only until the revocation's notice ends",
                String::from(key)
            ),
        }
    }
}

//! The bearer token is the user's signed spending authorization. Everything is checked
//! before any inference, in this order, one error each: a well-formed token, the user's
//! signature, this hub, this chain, this runner, not expired nor about to (within the
//! settlement margin, so the receipt can still be settled), the key registered to the
//! user on the hub, a funded channel, and something left under the cap and the escrow.
//! Model coverage and the request's worst-case cost are checked once the request is read.

use axum::http::HeaderMap;
use market_protocol::{NativeCrypto, SignedAuthorization};

use crate::{
    error::{Error, Result},
    state::AppState,
    token,
};

/// Who pays for a request, and how much the channel may reach in total.
#[derive(Clone, Debug)]
pub struct Payer {
    pub auth: SignedAuthorization,
    /// The authorization's id (its NEP-413 prehash), which receipts name.
    pub auth_id: [u8; 32],
    /// min(signed cap, escrow deposited): what the channel's cumulative receipt may reach.
    pub limit: u128,
}

impl Payer {
    pub fn user(&self) -> &near_sdk::AccountId {
        &self.auth.authorization.user
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            Error::unauthorized(
                "missing_api_key",
                "no API key: send your signed authorization as `Authorization: Bearer aimk_...`",
            )
        })?
        .to_str()
        .map_err(|_| {
            Error::unauthorized("invalid_api_key", "the Authorization header is not ASCII")
        })?;
    value.strip_prefix("Bearer ").map(str::trim).ok_or_else(|| {
        Error::unauthorized(
            "invalid_api_key",
            "the Authorization header must be `Bearer <key>`",
        )
    })
}

pub async fn payer(state: &AppState, headers: &HeaderMap) -> Result<Payer> {
    let auth =
        token::decode(bearer(headers)?).map_err(|e| Error::unauthorized("invalid_api_key", e))?;
    let a = &auth.authorization;
    a.validate().map_err(|e| {
        Error::unauthorized("invalid_api_key", format!("malformed authorization: {e}"))
    })?;
    let auth_id = auth.verify(&NativeCrypto).ok_or_else(|| {
        Error::unauthorized(
            "invalid_signature",
            format!(
                "the authorization's signature by {} does not verify",
                String::from(&a.public_key)
            ),
        )
    })?;
    if a.hub != state.hub.account {
        return Err(Error::unauthorized(
            "wrong_hub",
            format!(
                "the authorization is for hub {}; this runner settles on {}",
                a.hub, state.hub.account
            ),
        ));
    }
    if a.chain_id != state.hub.chain_id {
        return Err(Error::unauthorized(
            "wrong_chain",
            format!(
                "the authorization is for chain `{}`; this runner is on `{}`",
                a.chain_id, state.hub.chain_id
            ),
        ));
    }
    if a.runner != state.runner {
        return Err(Error::unauthorized(
            "wrong_runner",
            format!(
                "the authorization pays runner {}; this is {}",
                a.runner, state.runner
            ),
        ));
    }
    let now = state.clock.now_ns(&state.hub).await;
    if now >= a.expires_at_ns.0 {
        return Err(Error::unauthorized(
            "expired",
            format!(
                "the authorization expired at {} ns; the chain's time is {now} ns",
                a.expires_at_ns.0
            ),
        ));
    }
    if now.saturating_add(state.expiry_margin_ns) >= a.expires_at_ns.0 {
        return Err(Error::unauthorized(
            "expires_soon",
            format!(
                "the authorization expires at {} ns, {} s from the chain's time: this runner \
                 needs {} s to settle what it serves, sign a new authorization",
                a.expires_at_ns.0,
                (a.expires_at_ns.0 - now) / 1_000_000_000,
                state.expiry_margin_ns / 1_000_000_000
            ),
        ));
    }
    // The hub pins no authorization that lives longer: receipts under it would never settle.
    if a.expires_at_ns.0 > now.saturating_add(market_protocol::authorization::MAX_LIFETIME_NS) {
        return Err(Error::unauthorized(
            "lifetime_too_long",
            format!(
                "the authorization expires at {} ns, more than {} days from the chain's time: sign one that expires sooner",
                a.expires_at_ns.0,
                market_protocol::authorization::MAX_LIFETIME_NS / 86_400_000_000_000
            ),
        ));
    }
    let key = String::from(&a.public_key);
    // Keys live in each user's namespace on the hub: cached per (user, key).
    let info = state
        .user_keys
        .get(&format!("{}/{key}", a.user), || {
            state.hub.user_key(&a.user, &a.public_key)
        })
        .await
        .map_err(|e| {
            Error::unavailable("rpc_unavailable", format!("checking the user's key: {e}"))
        })?;
    match info {
        Some(k) if !k.revoked() => {}
        Some(_) => {
            return Err(Error::unauthorized(
                "revoked_user_key",
                format!(
                    "key {key} of {} was revoked on hub {}: sign with another key",
                    a.user, state.hub.account
                ),
            ))
        }
        None => {
            return Err(Error::unauthorized(
                "unknown_user_key",
                format!(
                    "key {key} is not registered to {} on hub {}",
                    a.user, state.hub.account
                ),
            ))
        }
    }
    let channel = state
        .channels
        .get(&a.user, || state.hub.channel(&a.user, &state.runner))
        .await
        .map_err(|e| Error::unavailable("rpc_unavailable", format!("checking the channel: {e}")))?
        .ok_or_else(|| {
            Error::payment_required(
                "channel_unfunded",
                format!(
                    "{} has no channel to {} on hub {}: call fund_channel first",
                    a.user, state.runner, state.hub.account
                ),
            )
        })?;
    let limit = a.cap.0.min(channel.channel.deposited.0);
    let committed = state.budget.committed(&a.user);
    if committed >= limit {
        return Err(Error::payment_required(
            "insufficient_quota",
            format!(
                "the channel has used {committed} yocto of {limit} (signed cap {}, escrow {}): sign a higher cap or fund the channel",
                a.cap.0, channel.channel.deposited.0
            ),
        ));
    }
    Ok(Payer {
        auth,
        auth_id,
        limit,
    })
}

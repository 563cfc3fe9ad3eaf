//! The bearer token is the user's signed spending authorization. Everything is checked
//! before any inference, in this order, one error each: a well-formed token, then the
//! hub's own admission checks (`market_protocol::Admission`: this hub, this chain, this
//! runner, a lifetime the hub pins, the user's signature), not expired nor about to
//! (within the settlement margin, so the receipt can still be settled), the key registered
//! to the user on the hub, a funded channel, and something left under the cap and the
//! escrow.
//! Model coverage and the request's worst-case cost are checked once the request is read.

use axum::http::HeaderMap;
use market_hub_api::{methods, RejectCode};
use market_protocol::{Admission, Inadmissible, KeyState, NativeCrypto, SignedAuthorization};

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

/// The hub's reason as a 401, in its own code but for the three a client knows by
/// OpenAI's or this API's names: a token that does not parse as one, a signature that does
/// not verify, and an authorization for another runner.
fn inadmissible(e: &Inadmissible) -> Error {
    let code = match e {
        Inadmissible::Malformed(_) => "invalid_api_key",
        Inadmissible::BadUserSignature => "invalid_signature",
        Inadmissible::WrongChannel { .. } => "wrong_runner",
        other => RejectCode::from(other).as_str(),
    };
    Error::unauthorized(code, e.to_string())
}

pub async fn payer(state: &AppState, headers: &HeaderMap) -> Result<Payer> {
    let auth =
        token::decode(bearer(headers)?).map_err(|e| Error::unauthorized("invalid_api_key", e))?;
    let a = &auth.authorization;
    // The hub's own admission checks, before anything costs a call to the node.
    let admission = Admission {
        hub: &state.hub.account,
        chain_id: &state.hub.chain_id,
        user: None,
        runner: &state.runner,
    };
    let auth_id = admission
        .admit(&auth, &NativeCrypto)
        .map_err(|e| inadmissible(&e))?;
    let now = state.clock.now_ns(&state.hub).await.ok_or_else(|| {
        Error::unavailable(
            "rpc_unavailable",
            "the chain's clock is not known yet (the node has not answered): retry shortly",
        )
    })?;
    Admission::lifetime(&auth, now).map_err(|e| inadmissible(&e))?;
    if now >= a.expires_at_ns.0 {
        return Err(Error::unauthorized(
            RejectCode::Expired.as_str(),
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
    // Keys live in each user's namespace on the hub: cached per (user, key).
    let key = state
        .user_keys
        .get(
            &format!("{}/{}", a.user, String::from(&a.public_key)),
            || state.hub.view(methods::user_key(&a.user, &a.public_key)),
        )
        .await
        .map_err(|e| {
            Error::unavailable("rpc_unavailable", format!("checking the user's key: {e}"))
        })?;
    let key = match key {
        None => KeyState::Unknown,
        Some(k) if k.revoked() => {
            // What it signed before settles only within the revocation's notice: now.
            state.urgent.mark(&a.user, now);
            KeyState::Revoked
        }
        Some(_) => KeyState::Active,
    };
    Admission::key(&auth, key).map_err(|e| inadmissible(&e))?;
    let channel = state
        .channels
        .get(&a.user, || {
            state.hub.view(methods::channel(&a.user, &state.runner))
        })
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
    // The user asked for the unspent escrow back: what is served now could only be paid
    // if settled before the withdrawal's ready time, so nothing more is, and what was is
    // settled first.
    if let Some(w) = &channel.channel.withdrawal {
        state.urgent.mark(&a.user, w.ready_at_ns.0);
        return Err(Error::payment_required(
            "withdrawal_pending",
            format!(
                "{} asked for the channel's unspent escrow back (ready at {} ns): this runner serves the channel no more until the withdrawal is finished and the channel funded again",
                a.user, w.ready_at_ns.0
            ),
        ));
    }
    let limit = a.cap.0.min(channel.channel.deposited.0);
    let committed = state.budget.committed(&a.user);
    if let Some(max) = state.max_unsettled {
        let user = a.user.clone();
        let settled = state
            .with_store(move |store| store.channel(&user))
            .await??
            .map_or(0, |r| r.settled_amount);
        let unsettled = committed.saturating_sub(settled);
        if unsettled >= max {
            state.urgent.mark(&a.user, now);
            return Err(Error::payment_required(
                "settlement_pending",
                format!(
                    "the channel owes {unsettled} yocto not yet settled on the hub, this runner's limit is {max}: retry once it settles (seconds)"
                ),
            ));
        }
    }
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

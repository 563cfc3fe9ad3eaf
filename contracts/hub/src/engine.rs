//! Settlement as pure logic: checks a signed receipt against a [`Ledger`] and applies its
//! charge, with no `env` in sight. The contract's ledger is [`crate::ledger::Overlay`]
//! (used by `settle`, and by `simulate_settle` without committing); unit tests use an
//! in-memory one. Modelled on near/intents' `Engine` over `State`.
//!
//! Checks run in a fixed order, one error per step, and nothing is written until all of
//! them pass, so a rejected receipt changes nothing.

use market_protocol::{
    crypto::Crypto, receipt::MAX_LINES, Admission, ChannelId, Inadmissible, KeyState, SettleItem,
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId, PublicKey,
};

use crate::{
    error::{Error, Result},
    fees::Split,
    pause::Pauses,
    state::{AccountKey, ActiveAuthorization, Channel, RunnerTerms, SettledContent, SettledLine},
};

/// What settlement needs to know about a content item.
#[derive(Clone, Debug)]
pub struct ContentTerms {
    pub owner: AccountId,
    /// `None` for open content, which is never paid per use.
    pub price_per_use: Option<u128>,
}

/// What settlement needs to know about a model: its versions and the runner terms in
/// effect at the settlement's time (scheduled changes already applied when due).
#[derive(Clone, Debug)]
pub struct ModelTerms {
    pub versions: u32,
    pub terms: RunnerTerms,
}

pub trait Ledger {
    /// A key in `runner`'s own namespace.
    fn runner_key(&self, runner: &AccountId, key: &PublicKey) -> Option<AccountKey>;
    /// `None` if the runner is unknown, `Some(true)` if it has left.
    fn runner_left(&self, runner: &AccountId) -> Option<bool>;
    /// A key in `user`'s own namespace.
    fn user_key(&self, user: &AccountId, key: &PublicKey) -> Option<AccountKey>;
    fn channel(&self, id: &ChannelId) -> Option<Channel>;
    fn model_terms(&self, model_id: &str) -> Option<ModelTerms>;
    /// Whether sealing lets `runner` serve the version: always for an open model; for a
    /// closed one, only with a grant in force now (`crate::sealing`).
    fn sealed_admits(&self, model_id: &str, version: u32, runner: &AccountId) -> bool;
    fn content_terms(&self, content_id: &str) -> Option<ContentTerms>;

    fn put_channel(&mut self, id: ChannelId, channel: Channel);
    fn credit_runner(&mut self, runner: &AccountId, amount: u128);
    /// The runner's receipts may settle under an authorization valid until `until_ns`:
    /// its bond stays until then plus the settlement window (`finish_leave`).
    fn extend_exposure(&mut self, runner: &AccountId, until_ns: u64);
    fn credit_holders(&mut self, model_id: &str, amount: u128);
    fn credit_protocol(&mut self, amount: u128);
    fn credit_content_owner(&mut self, owner: &AccountId, amount: u128);
}

pub struct Context<'a> {
    pub hub: &'a AccountId,
    /// Who sent the batch. A runner sending its own receipts is already authenticated by
    /// its transaction, so their signatures are not checked again (about 0.2 Tgas each);
    /// a batch relayed by anyone else has every signature checked.
    pub submitter: &'a AccountId,
    pub chain_id: &'a str,
    pub now_ns: u64,
    pub protocol_fee_bps: u16,
    /// Deadlines (an authorization's expiry, a revoked key's notice) move later by the
    /// paused time within the settlement window before them and after.
    pub pauses: &'a Pauses,
    pub settlement_window_ns: u64,
}

impl Context<'_> {
    /// Whether `deadline_ns` has passed, pauses counted out.
    fn passed(&self, deadline_ns: u64) -> bool {
        let since = deadline_ns.saturating_sub(self.settlement_window_ns);
        self.now_ns >= self.pauses.extended(deadline_ns, since, self.now_ns)
    }
}

/// The result of one settled receipt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub charge: u128,
    /// The model lines' split.
    pub split: Split,
    /// Paid to content owners for inference-time use.
    pub content: u128,
}

pub struct Engine<'a, L, C> {
    ledger: &'a mut L,
    crypto: &'a C,
    ctx: Context<'a>,
    charged: u128,
    escrow_spent: u128,
    paid: Split,
    content_paid: u128,
}

impl<'a, L: Ledger, C: Crypto> Engine<'a, L, C> {
    pub fn new(ledger: &'a mut L, crypto: &'a C, ctx: Context<'a>) -> Self {
        Self {
            ledger,
            crypto,
            ctx,
            charged: 0,
            escrow_spent: 0,
            paid: Split::default(),
            content_paid: 0,
        }
    }

    pub fn ledger(&mut self) -> &mut L {
        self.ledger
    }

    #[allow(clippy::too_many_lines)]
    pub fn settle(&mut self, item: &SettleItem) -> Result<Settled> {
        let signed = &item.receipt;
        let receipt = &signed.receipt;
        receipt.validate().map_err(Error::Malformed)?;

        // 1. The runner's key: registered by this runner, not revoked, runner still here.
        let key = self
            .ledger
            .runner_key(&receipt.runner, &signed.runner_key)
            .ok_or_else(|| Error::UnknownRunnerKey(signed.runner_key.clone()))?;
        if key.revoked_at_ns.is_some() {
            return Err(Error::RevokedRunnerKey(signed.runner_key.clone()));
        }
        match self.ledger.runner_left(&receipt.runner) {
            None => return Err(Error::UnknownRunner(receipt.runner.clone())),
            Some(true) => return Err(Error::RunnerLeft(receipt.runner.clone())),
            Some(false) => {}
        }
        // 2. The runner's signature, unless the runner itself submits.
        if self.ctx.submitter != &receipt.runner && !signed.verify(self.crypto) {
            return Err(Error::BadRunnerSignature);
        }
        // 3. The channel, and replay.
        let channel_id = ChannelId {
            user: receipt.user.clone(),
            runner: receipt.runner.clone(),
        };
        let mut channel =
            self.ledger
                .channel(&channel_id)
                .ok_or_else(|| Error::UnknownChannel {
                    user: receipt.user.clone(),
                    runner: receipt.runner.clone(),
                })?;
        if receipt.seq.0 <= channel.last_seq.0 {
            return Err(Error::StaleSequence {
                seq: receipt.seq.0,
                last_seq: channel.last_seq.0,
            });
        }
        // 4. The user's authorization: remembered, or verified now.
        let named: [u8; 32] = receipt.authorization.into();
        // Pinning an authorization takes a baseline: its ceilings bound what the channel's
        // lines grow from here (`base_*` in the channel's lines).
        let (auth, pinned_now) = match channel
            .authorization
            .as_ref()
            .filter(|a| <[u8; 32]>::from(a.id) == named)
        {
            Some(remembered) => (remembered.clone(), false),
            None => (
                self.verify_authorization(item, &channel_id, named, channel.last_seq)?,
                true,
            ),
        };
        // A remembered authorization whose key was revoked carries the revocation's
        // notice (`revoke_user_key`). Both deadlines are checked every time.
        if let Some(until) = auth.revoked_until_ns {
            if self.ctx.passed(until.0) {
                return Err(Error::Inadmissible(Inadmissible::RevokedUserKey {
                    key: auth.public_key.clone(),
                    user: receipt.user.clone(),
                }));
            }
        }
        if self.ctx.passed(auth.expires_at_ns.0) {
            return Err(Error::Expired {
                expires_at_ns: auth.expires_at_ns.0,
                now_ns: self.ctx.now_ns,
            });
        }
        // Requests served since the pin: the receipt's sequence is cumulative too.
        let requests = receipt.seq.0 - auth.base_seq.0;
        // 5. Inference-time content: never decreasing; a line that grew must be allowed by
        //    the authorization, registered and paid per use, with at most one use per
        //    request, each at the lower of its price and the signed ceiling.
        let mut royalties = Vec::with_capacity(receipt.content.len());
        let mut content_bases = Vec::with_capacity(receipt.content.len());
        for line in &receipt.content {
            let before = channel
                .content
                .iter()
                .find(|c| c.content_id == line.content_id);
            let (uses0, amount0) = before.map_or((0, 0), |c| (c.uses.0, c.amount.0));
            if line.uses.0 < uses0 || line.amount.0 < amount0 {
                return Err(Error::Decreased {
                    what: format!("uses or amount of content `{}`", line.content_id),
                    settled: amount0,
                    receipt: line.amount.0,
                });
            }
            let (base_uses, base_amount) = match before {
                Some(c) if pinned_now => (c.uses.0, c.amount.0),
                Some(c) => (c.base_uses.0, c.base_amount.0),
                None => (0, 0),
            };
            content_bases.push((base_uses, base_amount));
            if before.is_some() && line.uses.0 == uses0 && line.amount.0 == amount0 {
                continue;
            }
            let ceiling = auth
                .content
                .iter()
                .find(|c| c.content_id == line.content_id)
                .ok_or_else(|| Error::ContentNotAuthorized(line.content_id.clone()))?;
            let terms = self
                .ledger
                .content_terms(&line.content_id)
                .ok_or_else(|| Error::UnknownContent(line.content_id.clone()))?;
            let price = terms
                .price_per_use
                .ok_or_else(|| Error::ContentNotPerUse(line.content_id.clone()))?;
            let uses = line.uses.0 - base_uses;
            if uses > requests {
                return Err(Error::TooManyUses {
                    content_id: line.content_id.clone(),
                    uses,
                    max: requests,
                });
            }
            let grown = line.amount.0 - base_amount;
            let max = u128::from(uses).saturating_mul(price.min(ceiling.max_per_use.0));
            if grown > max {
                return Err(Error::ContentOverpriced {
                    content_id: line.content_id.clone(),
                    amount: grown,
                    max,
                });
            }
            royalties.push((terms.owner, line.amount.0 - amount0));
        }
        if let Some(dropped) = channel
            .content
            .iter()
            .find(|c| !receipt.content.iter().any(|r| r.content_id == c.content_id))
        {
            return Err(Error::Decreased {
                what: format!("amount of content `{}` (line missing)", dropped.content_id),
                settled: dropped.amount.0,
                receipt: 0,
            });
        }
        // 6. Each model line: never decreasing; a line that grew is checked against the
        //    model's terms in effect now (known version, runner allowed) and against the
        //    authorization's signed ceilings for the model. A line that did not grow is
        //    settled history: it is never re-checked, so no later change of a model's terms
        //    can freeze a channel that once used it.
        let mut deltas = Vec::with_capacity(receipt.lines.len());
        let mut line_bases = Vec::with_capacity(receipt.lines.len());
        for line in &receipt.lines {
            let before = channel
                .lines
                .iter()
                .find(|l| l.model_id == line.model_id && l.version == line.version);
            let (amount0, in0, out0) =
                before.map_or((0, 0, 0), |l| (l.amount.0, l.units_in.0, l.units_out.0));
            let what = |field: &str| format!("{field} of `{}` v{}", line.model_id, line.version);
            if line.amount.0 < amount0 {
                return Err(Error::Decreased {
                    what: what("amount"),
                    settled: amount0,
                    receipt: line.amount.0,
                });
            }
            if line.units_in.0 < in0 || line.units_out.0 < out0 {
                // Summed in u128: u64 units cannot overflow it, whatever the receipt says.
                return Err(Error::Decreased {
                    what: what("units"),
                    settled: u128::from(in0) + u128::from(out0),
                    receipt: u128::from(line.units_in.0) + u128::from(line.units_out.0),
                });
            }
            let base = match before {
                Some(l) if pinned_now => (l.units_in.0, l.units_out.0, l.amount.0),
                Some(l) => (l.base_units_in.0, l.base_units_out.0, l.base_amount.0),
                None => (0, 0, 0),
            };
            line_bases.push(base);
            if before.is_some()
                && line.amount.0 == amount0
                && line.units_in.0 == in0
                && line.units_out.0 == out0
            {
                continue;
            }
            let terms = self
                .ledger
                .model_terms(&line.model_id)
                .ok_or_else(|| Error::UnknownModel(line.model_id.clone()))?;
            if line.version == 0 || line.version > terms.versions {
                return Err(Error::UnknownVersion {
                    model_id: line.model_id.clone(),
                    version: line.version,
                    versions: terms.versions,
                });
            }
            let ceiling = auth
                .models
                .iter()
                .find(|m| m.model_id == line.model_id)
                .ok_or_else(|| Error::ModelNotAuthorized(line.model_id.clone()))?;
            if !terms.terms.runner_policy.allows(&receipt.runner)
                || !self
                    .ledger
                    .sealed_admits(&line.model_id, line.version, &receipt.runner)
            {
                return Err(Error::RunnerNotAllowed {
                    model_id: line.model_id.clone(),
                    runner: receipt.runner.clone(),
                });
            }
            // Growth since the pin: an amount at most ⌊(Δin × max_in + Δout × max_out) /
            // 1,000⌋. A runner that charges each request ⌊units × price / 1,000⌋ at a price
            // within the ceiling always passes (a sum of floors never exceeds the floor of
            // the sum). Saturating products: a bound past u128 bounds nothing anyway. The
            // units are bounded per model below, over all its versions.
            let (d_in, d_out) = (line.units_in.0 - base.0, line.units_out.0 - base.1);
            let max = u128::from(d_in)
                .saturating_mul(ceiling.max_in_per_1k.0)
                .saturating_add(u128::from(d_out).saturating_mul(ceiling.max_out_per_1k.0))
                / 1_000;
            let grown = line.amount.0 - base.2;
            if grown > max {
                return Err(Error::ModelOverpriced {
                    model_id: line.model_id.clone(),
                    amount: grown,
                    max,
                });
            }
            deltas.push((
                line.model_id.as_str(),
                line.amount.0 - amount0,
                terms.terms.runner_bps,
            ));
        }
        check_units(receipt, &auth, &line_bases, requests)?;
        // A cumulative receipt carries every line the channel ever settled.
        if let Some(dropped) = channel.lines.iter().find(|l| {
            !receipt
                .lines
                .iter()
                .any(|r| r.model_id == l.model_id && r.version == l.version)
        }) {
            return Err(Error::Decreased {
                what: format!(
                    "amount of `{}` v{} (line missing)",
                    dropped.model_id, dropped.version
                ),
                settled: dropped.amount.0,
                receipt: 0,
            });
        }
        if receipt.lines.len() > MAX_LINES {
            return Err(Error::TooManyLines {
                lines: receipt.lines.len(),
                max: MAX_LINES,
            });
        }
        // 7. Money: within the signed cap, and within what the user escrowed.
        if receipt.amount.0 > auth.cap.0 {
            return Err(Error::OverCap {
                amount: receipt.amount.0,
                cap: auth.cap.0,
            });
        }
        let charge = receipt
            .amount
            .0
            .checked_sub(channel.settled.0)
            .ok_or_else(|| {
                Error::InvariantViolated(format!(
                    "lines grew but the total {} fell below {}",
                    receipt.amount.0, channel.settled.0
                ))
            })?;
        let unspent_before = channel.unspent();
        if charge > unspent_before {
            return Err(Error::Underfunded {
                charge,
                unspent: unspent_before,
            });
        }

        // All checks passed: apply.
        let mut split = Split::default();
        for (model_id, delta, runner_bps) in deltas {
            let s = Split::of(delta, runner_bps, self.ctx.protocol_fee_bps);
            self.ledger.credit_holders(model_id, s.holders);
            split = split
                .checked_add(s)
                .ok_or_else(|| Error::InvariantViolated("split overflow".into()))?;
        }
        // Content lines go wholly to their owners: the user pays the owner's price per use.
        let mut content_paid = 0u128;
        for (owner, amount) in royalties {
            self.ledger.credit_content_owner(&owner, amount);
            content_paid = content_paid
                .checked_add(amount)
                .ok_or_else(|| Error::InvariantViolated("content overflow".into()))?;
        }
        self.ledger.credit_runner(&receipt.runner, split.runner);
        if pinned_now {
            self.ledger
                .extend_exposure(&receipt.runner, auth.expires_at_ns.0);
        }
        self.ledger.credit_protocol(split.protocol);
        channel.settled = receipt.amount;
        channel.last_seq = receipt.seq;
        channel.lines = receipt
            .lines
            .iter()
            .zip(line_bases)
            .map(|(l, (base_in, base_out, base_amount))| SettledLine {
                model_id: l.model_id.clone(),
                version: l.version,
                units_in: l.units_in,
                units_out: l.units_out,
                amount: l.amount,
                base_units_in: U64(base_in),
                base_units_out: U64(base_out),
                base_amount: U128(base_amount),
            })
            .collect();
        channel.content = receipt
            .content
            .iter()
            .zip(content_bases)
            .map(|(c, (base_uses, base_amount))| SettledContent {
                content_id: c.content_id.clone(),
                uses: c.uses,
                amount: c.amount,
                base_uses: U64(base_uses),
                base_amount: U128(base_amount),
            })
            .collect();
        channel.authorization = Some(auth);
        let channel_unspent_after = channel.unspent();
        self.ledger.put_channel(channel_id, channel);

        self.charged = self
            .charged
            .checked_add(charge)
            .ok_or_else(|| Error::InvariantViolated("charge overflow".into()))?;
        self.escrow_spent = self
            .escrow_spent
            .checked_add(unspent_before - channel_unspent_after)
            .ok_or_else(|| Error::InvariantViolated("escrow overflow".into()))?;
        self.paid = self
            .paid
            .checked_add(split)
            .ok_or_else(|| Error::InvariantViolated("paid overflow".into()))?;
        self.content_paid = self
            .content_paid
            .checked_add(content_paid)
            .ok_or_else(|| Error::InvariantViolated("content overflow".into()))?;
        Ok(Settled {
            charge,
            split,
            content: content_paid,
        })
    }

    fn verify_authorization(
        &self,
        item: &SettleItem,
        channel: &ChannelId,
        named: [u8; 32],
        base_seq: U64,
    ) -> Result<ActiveAuthorization> {
        let signed = item
            .authorization
            .as_ref()
            .ok_or(Error::AuthorizationMissing(named))?;
        let auth = &signed.authorization;
        let admission = Admission {
            hub: self.ctx.hub,
            chain_id: self.ctx.chain_id,
            user: Some(&channel.user),
            runner: &channel.runner,
        };
        let id = admission.admit(signed, self.crypto)?;
        Admission::lifetime(signed, self.ctx.now_ns)?;
        let key = match self.ledger.user_key(&auth.user, &auth.public_key) {
            None => KeyState::Unknown,
            Some(k) if k.revoked_at_ns.is_some() => KeyState::Revoked,
            Some(_) => KeyState::Active,
        };
        Admission::key(signed, key)?;
        if id != named {
            return Err(Error::AuthorizationMismatch {
                named,
                attached: id,
            });
        }
        Ok(ActiveAuthorization {
            id: id.into(),
            public_key: auth.public_key.clone(),
            cap: auth.cap,
            expires_at_ns: auth.expires_at_ns,
            models: auth.models.clone(),
            content: auth.content.clone(),
            base_seq,
            revoked_until_ns: None,
        })
    }

    /// The batch's final check: every yocto taken from escrow went to exactly one payee.
    pub fn finalize(self) -> Result<(u128, Split)> {
        let paid = self
            .paid
            .total()
            .and_then(|p| p.checked_add(self.content_paid))
            .ok_or_else(|| Error::InvariantViolated("paid overflow".into()))?;
        if paid != self.charged || self.escrow_spent != self.charged {
            return Err(Error::InvariantViolated(format!(
                "charged {} yocto, took {} from escrow, paid out {paid}",
                self.charged, self.escrow_spent
            )));
        }
        Ok((self.charged, self.paid))
    }
}

/// Units since the pin: each model's (summed over its versions) at most `requests` ×
/// its signed per-request limit, and all models' together at most `requests` × the
/// widest limit, since one request uses one model.
fn check_units(
    receipt: &market_protocol::UsageReceipt,
    auth: &ActiveAuthorization,
    line_bases: &[(u64, u64, u128)],
    requests: u64,
) -> Result<()> {
    let mut per_model: Vec<(&str, u128)> = Vec::with_capacity(receipt.lines.len());
    for (line, base) in receipt.lines.iter().zip(line_bases) {
        let units = u128::from(line.units_in.0 - base.0) + u128::from(line.units_out.0 - base.1);
        if units == 0 {
            continue;
        }
        match per_model.iter_mut().find(|(m, _)| *m == line.model_id) {
            Some(entry) => entry.1 += units,
            None => per_model.push((&line.model_id, units)),
        }
    }
    let (mut total, mut widest) = (0u128, 0u64);
    for (model_id, units) in per_model {
        let limit = auth
            .models
            .iter()
            .find(|m| m.model_id == model_id)
            .ok_or_else(|| Error::ModelNotAuthorized(model_id.to_owned()))?
            .max_units_per_request
            .0;
        let max = u128::from(requests) * u128::from(limit);
        if units > max {
            return Err(Error::TooManyUnits {
                model_id: model_id.to_owned(),
                units,
                max,
            });
        }
        total += units;
        widest = widest.max(limit);
    }
    let max = u128::from(requests) * u128::from(widest);
    if total > max {
        return Err(Error::TooManyUnits {
            model_id: "(all models)".to_owned(),
            units: total,
            max,
        });
    }
    Ok(())
}

//! Metering: what a request costs, the channel's budget while requests are in flight, and
//! the next cumulative receipt.
//!
//! Money is integer yocto with checked arithmetic throughout; an overflow is refused as
//! over the cap, never wrapped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use market_protocol::{
    crypto::native::KeyPair, receipt::next_transcript, ContentLine, NativeCrypto,
    SignedAuthorization, SignedReceipt, UsageLine, UsageReceipt,
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId,
};

use crate::{
    error::{Error, Result},
    store::ChannelRecord,
};

/// yocto for `units_in` and `units_out` at the model's prices per 1,000 units, rounded
/// down. The hub bounds a line's growth by `⌊(Δin × max_in + Δout × max_out) / 1,000⌋` under
/// the user's signed ceilings; a sum of per-request floors never exceeds that, so a receipt
/// priced this way within the ceilings always settles (rounding up could not).
pub fn price(
    units_in: u64,
    units_out: u64,
    price_in_per_1k: u128,
    price_out_per_1k: u128,
) -> Result<u128> {
    let overflow =
        || Error::payment_required("over_cap", "the price of this request overflows u128");
    let total = u128::from(units_in)
        .checked_mul(price_in_per_1k)
        .and_then(|a| a.checked_add(u128::from(units_out).checked_mul(price_out_per_1k)?))
        .ok_or_else(overflow)?;
    Ok(total / 1000)
}

/// The most units one request of `model_id` may use, if the user's signed ceilings allow
/// the model's current prices: a runner charging above them would hold receipts the hub
/// refuses, so it refuses the request instead (402, sign a new authorization).
pub fn within_ceilings(
    auth: &market_protocol::Authorization,
    model_id: &str,
    price_in_per_1k: u128,
    price_out_per_1k: u128,
) -> Result<u64> {
    let ceiling = auth.ceiling(model_id).ok_or_else(|| {
        Error::forbidden(
            "model_not_authorized",
            format!("the authorization does not cover model `{model_id}`"),
        )
    })?;
    if price_in_per_1k > ceiling.max_in_per_1k.0 || price_out_per_1k > ceiling.max_out_per_1k.0 {
        return Err(Error::payment_required(
            "price_above_ceiling",
            format!(
                "model `{model_id}` costs {price_in_per_1k} / {price_out_per_1k} yocto per 1,000 units in / out, above the authorization's ceilings of {} / {}; sign one at the current prices",
                ceiling.max_in_per_1k.0, ceiling.max_out_per_1k.0
            ),
        ));
    }
    Ok(ceiling.max_units_per_request.0)
}

/// A request's units against the signed per-request limit.
pub fn within_units(model_id: &str, units_in: u64, max_out: u64, limit: u64) -> Result<()> {
    let units = u128::from(units_in) + u128::from(max_out);
    if units > u128::from(limit) {
        return Err(Error::bad_input(
            "too_many_units",
            format!(
                "this request may use {units} units of model `{model_id}` ({units_in} in, up to {max_out} out), over the authorization's {limit} per request; lower max_tokens or shorten the input"
            ),
        ));
    }
    Ok(())
}

/// Content the user's authorization allows, at a price within its ceiling.
pub fn content_allowed(
    auth: &market_protocol::Authorization,
    content_id: &str,
    price_per_use: u128,
) -> Result<()> {
    let ceiling = auth.content_ceiling(content_id).ok_or_else(|| {
        Error::forbidden(
            "content_not_authorized",
            format!("the authorization does not allow content `{content_id}`"),
        )
    })?;
    if price_per_use > ceiling {
        return Err(Error::payment_required(
            "price_above_ceiling",
            format!(
                "content `{content_id}` costs {price_per_use} yocto per use, above the authorization's ceiling of {ceiling}"
            ),
        ));
    }
    Ok(())
}

/// What one request used and costs.
#[derive(Clone, Debug)]
pub struct Charge {
    pub model_id: String,
    pub version: u32,
    pub units_in: u64,
    pub units_out: u64,
    /// yocto for the model's units.
    pub amount: u128,
    /// Content put into the context: (content id, price of one use).
    pub content: Vec<(String, u128)>,
    pub request_hash: [u8; 32],
    pub output_hash: [u8; 32],
}

impl Charge {
    pub fn total(&self) -> Result<u128> {
        self.content.iter().try_fold(self.amount, |sum, (_, p)| {
            sum.checked_add(*p).ok_or_else(|| {
                Error::payment_required("over_cap", "the request's total overflows u128")
            })
        })
    }
}

/// The channel's next record: the previous receipt plus `charge`, under `auth`, signed.
pub fn next_record(
    current: Option<&ChannelRecord>,
    auth: &SignedAuthorization,
    auth_id: [u8; 32],
    charge: &Charge,
    key: &KeyPair,
    now_ns: u64,
) -> Result<ChannelRecord> {
    let a = &auth.authorization;
    let over = |what: &str| Error::payment_required("over_cap", format!("{what} overflows u128"));
    let (mut lines, mut content, seq, transcript, settled_seq, settled_amount) = match current {
        Some(c) => {
            let r = &c.receipt.receipt;
            (
                r.lines.clone(),
                r.content.clone(),
                r.seq.0,
                <[u8; 32]>::from(r.transcript),
                c.settled_seq,
                c.settled_amount,
            )
        }
        None => (Vec::new(), Vec::new(), 0, [0; 32], 0, 0),
    };
    let full = lines.len() >= market_protocol::receipt::MAX_LINES;
    match lines
        .iter_mut()
        .find(|l| l.model_id == charge.model_id && l.version == charge.version)
    {
        Some(line) => {
            line.units_in = U64(line.units_in.0.checked_add(charge.units_in).ok_or_else(|| over("units"))?);
            line.units_out = U64(line.units_out.0.checked_add(charge.units_out).ok_or_else(|| over("units"))?);
            line.amount = U128(line.amount.0.checked_add(charge.amount).ok_or_else(|| over("amount"))?);
        }
        None if full => {
            return Err(Error::bad_input(
                "too_many_models",
                format!(
                    "a channel's receipts carry at most {} model versions; this one already used them all",
                    market_protocol::receipt::MAX_LINES
                ),
            ))
        }
        None => lines.push(UsageLine {
            model_id: charge.model_id.clone(),
            version: charge.version,
            units_in: U64(charge.units_in),
            units_out: U64(charge.units_out),
            amount: U128(charge.amount),
        }),
    }
    for (content_id, price) in &charge.content {
        let full = content.len() >= market_protocol::receipt::MAX_LINES;
        match content.iter_mut().find(|c| &c.content_id == content_id) {
            Some(line) => {
                line.uses = U64(line.uses.0.checked_add(1).ok_or_else(|| over("uses"))?);
                line.amount = U128(line.amount.0.checked_add(*price).ok_or_else(|| over("amount"))?);
            }
            None if full => {
                return Err(Error::bad_input(
                    "too_much_content",
                    format!(
                        "a channel's receipts carry at most {} content items; this one already used them all",
                        market_protocol::receipt::MAX_LINES
                    ),
                ))
            }
            None => content.push(ContentLine {
                content_id: content_id.clone(),
                uses: U64(1),
                amount: U128(*price),
            }),
        }
    }
    let amount = lines
        .iter()
        .map(|l| l.amount.0)
        .chain(content.iter().map(|c| c.amount.0))
        .try_fold(0u128, u128::checked_add)
        .ok_or_else(|| over("the receipt total"))?;
    if amount > a.cap.0 {
        return Err(Error::payment_required(
            "over_cap",
            format!("this request would bring the channel to {amount} yocto, over the authorization's cap of {}", a.cap.0),
        ));
    }
    let receipt = UsageReceipt {
        user: a.user.clone(),
        runner: a.runner.clone(),
        authorization: auth_id.into(),
        seq: U64(seq + 1),
        lines,
        content,
        amount: U128(amount),
        request_hash: charge.request_hash.into(),
        output_hash: charge.output_hash.into(),
        transcript: next_transcript(
            &NativeCrypto,
            &transcript,
            &charge.request_hash,
            &charge.output_hash,
        )
        .into(),
        issued_at_ns: U64(now_ns),
    };
    receipt
        .validate()
        .map_err(|e| Error::internal("receipt", format!("built an invalid receipt: {e}")))?;
    Ok(ChannelRecord {
        receipt: SignedReceipt::sign(receipt, key),
        authorization: auth.clone(),
        settled_seq,
        settled_amount,
        rejected: None,
    })
}

/// Per channel: the cumulative amount of the latest receipt, and the worst-case cost of
/// requests in flight. A request reserves its worst case (prompt plus `max_tokens`) before
/// inference, so concurrent requests on one channel can never together exceed the cap or
/// the escrow, and gives back the difference when its receipt is committed.
#[derive(Default)]
pub struct Budget {
    channels: Mutex<HashMap<AccountId, Entry>>,
}

#[derive(Default, Clone, Copy)]
struct Entry {
    committed: u128,
    reserved: u128,
}

impl Budget {
    pub fn new(committed: impl IntoIterator<Item = (AccountId, u128)>) -> Self {
        Self {
            channels: Mutex::new(
                committed
                    .into_iter()
                    .map(|(user, committed)| {
                        (
                            user,
                            Entry {
                                committed,
                                reserved: 0,
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    pub fn committed(&self, user: &AccountId) -> u128 {
        self.channels
            .lock()
            .expect("budget lock")
            .get(user)
            .map_or(0, |e| e.committed)
    }

    /// Reserves `amount` if committed + reserved + `amount` stays within `limit`.
    pub fn reserve(
        self: &Arc<Self>,
        user: &AccountId,
        amount: u128,
        limit: u128,
    ) -> Result<Reservation> {
        let mut channels = self.channels.lock().expect("budget lock");
        let entry = channels.entry(user.clone()).or_default();
        let after = entry
            .committed
            .checked_add(entry.reserved)
            .and_then(|s| s.checked_add(amount));
        match after {
            Some(after) if after <= limit => {
                entry.reserved += amount;
                Ok(Reservation {
                    budget: Arc::clone(self),
                    user: user.clone(),
                    amount,
                })
            }
            _ => Err(Error::payment_required(
                "insufficient_quota",
                format!(
                    "this request may cost up to {amount} yocto; the channel has {} of {limit} left (signed cap and escrow) with {} reserved by requests in flight",
                    limit.saturating_sub(entry.committed),
                    entry.reserved
                ),
            )),
        }
    }

    /// The channel's latest receipt now totals `total`.
    pub fn commit(&self, user: &AccountId, total: u128) {
        let mut channels = self.channels.lock().expect("budget lock");
        let entry = channels.entry(user.clone()).or_default();
        entry.committed = entry.committed.max(total);
    }
}

/// A request's worst-case cost, held until the request ends (committed or failed).
pub struct Reservation {
    budget: Arc<Budget>,
    user: AccountId,
    amount: u128,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut channels = self.budget.channels.lock().expect("budget lock");
        if let Some(entry) = channels.get_mut(&self.user) {
            entry.reserved -= self.amount;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use market_protocol::{authorization::ModelCeiling, Authorization};

    #[test]
    fn prices_round_up_and_refuse_overflow() {
        assert_eq!(price(1, 0, 1000, 0).unwrap(), 1);
        assert_eq!(price(1, 1, 1, 1).unwrap(), 0, "2/1000 rounds down to 0");
        assert_eq!(price(1, 1, 999, 1).unwrap(), 1);
        assert_eq!(price(0, 0, 5, 5).unwrap(), 0);
        assert_eq!(price(1500, 500, 1000, 2000).unwrap(), 2500);
        assert_eq!(
            price(u64::MAX, 0, u128::MAX, 0).unwrap_err().code,
            "over_cap"
        );
    }

    #[test]
    fn reservations_bound_concurrent_requests_and_are_released() {
        let budget = Arc::new(Budget::new([("a.near".parse().unwrap(), 40u128)]));
        let a: AccountId = "a.near".parse().unwrap();
        let r1 = budget.reserve(&a, 30, 100).unwrap();
        assert_eq!(
            budget.reserve(&a, 31, 100).err().map(|e| e.code),
            Some("insufficient_quota")
        );
        let r2 = budget.reserve(&a, 30, 100).unwrap();
        drop(r1);
        budget.commit(&a, 50);
        drop(r2);
        assert!(budget.reserve(&a, 51, 100).is_err());
        assert!(budget.reserve(&a, 50, 100).is_ok());
    }

    #[test]
    fn receipts_accumulate_per_model_and_content_and_chain_the_transcript() {
        let user_key = KeyPair::from_seed([1; 32]);
        let runner_key = KeyPair::from_seed([2; 32]);
        let auth = SignedAuthorization::sign(
            Authorization {
                hub: "hub.near".parse().unwrap(),
                chain_id: "localnet".into(),
                user: "a.near".parse().unwrap(),
                runner: "r.near".parse().unwrap(),
                cap: U128(1_000),
                expires_at_ns: U64(u64::MAX),
                models: vec![ModelCeiling::unbounded("m"), ModelCeiling::unbounded("e")],
                content: vec![],
                public_key: user_key.public_key(),
            },
            [0; 32],
            &user_key,
        );
        let id = auth.verify(&NativeCrypto).unwrap();
        let charge = |model: &str, amount, content: Vec<(String, u128)>| Charge {
            model_id: model.into(),
            version: 1,
            units_in: 10,
            units_out: 5,
            amount,
            content,
            request_hash: [7; 32],
            output_hash: [8; 32],
        };
        let r1 = next_record(None, &auth, id, &charge("m", 100, vec![]), &runner_key, 1).unwrap();
        let r2 = next_record(
            Some(&r1),
            &auth,
            id,
            &charge("m", 50, vec![("c".into(), 20)]),
            &runner_key,
            2,
        )
        .unwrap();
        let r3 = next_record(
            Some(&r2),
            &auth,
            id,
            &charge("e", 1, vec![("c".into(), 20)]),
            &runner_key,
            3,
        )
        .unwrap();
        let r = &r3.receipt.receipt;
        assert_eq!(r.seq.0, 3);
        assert_eq!(r.amount.0, 191);
        assert_eq!((r.lines[0].units_in.0, r.lines[0].amount.0), (20, 150));
        assert_eq!((r.content[0].uses.0, r.content[0].amount.0), (2, 40));
        assert!(r3.receipt.verify(&NativeCrypto));
        let t1 = next_transcript(&NativeCrypto, &[0; 32], &[7; 32], &[8; 32]);
        let t2 = next_transcript(&NativeCrypto, &t1, &[7; 32], &[8; 32]);
        assert_eq!(
            <[u8; 32]>::from(r3.receipt.receipt.transcript),
            next_transcript(&NativeCrypto, &t2, &[7; 32], &[8; 32])
        );
        let over = next_record(
            Some(&r3),
            &auth,
            id,
            &charge("m", 810, vec![]),
            &runner_key,
            4,
        )
        .unwrap_err();
        assert_eq!(over.code, "over_cap");
    }
}

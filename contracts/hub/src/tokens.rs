//! Model tokens: the hub issues each model's token on a sub-account (`<model>.<hub>`) and
//! sends it the holders' share of usage fees, one call per model per flush (`flush`), not
//! one per receipt. A failed issuance refunds its deposit; a failed flush loses nothing:
//! the amount goes back into the model's accrual and the flush can be retried.

use near_sdk::{
    env, json_types::U128, near, serde::Serialize, AccountId, Gas, NearToken, Promise, PromiseError,
};

use crate::{error::Error, events::Event, state::Update, storage::refund, Hub, HubExt};
pub use market_hub_api::ManifestEntry;
use market_hub_api::Tokens;

/// Gas for the token's `new` and `on_revenue`, and for the hub's callbacks.
const TOKEN_INIT_GAS: Gas = Gas::from_tgas(20);
const ON_REVENUE_GAS: Gas = Gas::from_tgas(10);
const CALLBACK_GAS: Gas = Gas::from_tgas(10);
/// Bytes a token account needs besides its code and its holders: the account record and
/// the token's state (metadata with a 64-byte name, the hub's id, the revenue pool).
pub const TOKEN_BASE_BYTES: u64 = 1_400;
/// Bytes per initial holder: its balance and its revenue position, for a 64-byte account
/// id: two trie entries of 40 bytes each plus 69-byte keys, a 16-byte balance and a
/// 64-byte position, 298 bytes, rounded up. (A fixed 2,000 bytes for every token did not
/// cover a 16-entry manifest.)
pub const TOKEN_HOLDER_BYTES: u64 = 320;

/// What a token account with `holders` initial holders needs besides its code.
pub fn token_state_bytes(holders: usize) -> u64 {
    TOKEN_BASE_BYTES + TOKEN_HOLDER_BYTES * holders as u64
}
/// Every token has this supply (10^6 tokens of 18 decimals), issued to the developer.
pub const TOKEN_SUPPLY: u128 = 1_000_000 * 10u128.pow(18);

/// The token's `new` arguments (a typed struct: `serde_json::Value` would cost the hub
/// some 20 KB of wasm).
#[derive(Serialize)]
#[serde(crate = "near_sdk::serde")]
struct TokenInit<'a> {
    hub: AccountId,
    metadata: TokenMetadata<'a>,
    allocations: &'a [(AccountId, U128)],
}

enum TokenCode {
    Global([u8; 32]),
    Local(Vec<u8>),
}

/// From this long after a model's registration, anyone may issue its token (without a
/// manifest) if its owner has not.
pub const OPEN_ISSUANCE_AFTER_NS: u64 = crate::admin::MAX_DELAY_NS;

/// Entries per manifest; bounds the issuance's work and the model record.
pub const MAX_MANIFEST: usize = 16;

/// The initial supply's split: each content owner gets ⌊supply × weight / total⌋ (entries of
/// one owner add up), the developer the rest, so the whole supply is always issued.
pub fn allocations(
    developer: &AccountId,
    developer_weight: u32,
    manifest: &[(AccountId, u32)],
) -> Result<Vec<(AccountId, U128)>, Error> {
    let total: u64 =
        u64::from(developer_weight) + manifest.iter().map(|(_, w)| u64::from(*w)).sum::<u64>();
    if total == 0 {
        return Err(Error::InvalidInput("the weights add up to zero".into()));
    }
    let mut out: Vec<(AccountId, U128)> = Vec::new();
    let mut given = 0u128;
    for (owner, weight) in manifest {
        // TOKEN_SUPPLY × weight < 2^80 × 2^32: no overflow.
        let share = TOKEN_SUPPLY * u128::from(*weight) / u128::from(total);
        given += share;
        match out.iter_mut().find(|(a, _)| a == owner) {
            Some((_, amount)) => amount.0 += share,
            None => out.push((owner.clone(), U128(share))),
        }
    }
    let rest = TOKEN_SUPPLY - given;
    match out.iter_mut().find(|(a, _)| a == developer) {
        Some((_, amount)) => amount.0 += rest,
        None => out.insert(0, (developer.clone(), U128(rest))),
    }
    out.retain(|(_, a)| a.0 > 0);
    Ok(out)
}

#[derive(Serialize)]
#[serde(crate = "near_sdk::serde")]
struct TokenMetadata<'a> {
    spec: &'static str,
    name: &'a str,
    symbol: &'a str,
    decimals: u8,
}

impl Hub {
    /// The token account of `model_id`, if the id can name a sub-account of the hub.
    pub(crate) fn token_account(model_id: &str) -> Result<AccountId, Error> {
        let id = format!("{model_id}.{}", env::current_account_id());
        match id.parse::<AccountId>() {
            Ok(account) if !model_id.contains('.') => Ok(account),
            _ => Err(Error::InvalidInput(format!("model id `{model_id}` cannot name a token account: use a-z, 0-9 and single `-` or `_` between them"))),
        }
    }
}

#[near]
impl Tokens for Hub {
    #[payable]
    fn set_token_code(&mut self, #[serializer(borsh)] code: Vec<u8>) {
        // At least one yocto even when the new code needs no more storage: only a
        // full-access key may change the code every later token is deployed with.
        let attached = crate::storage::full_access_deposit();
        self.assert_owner_caller();
        let ((), surplus) = self.paying_storage(attached, "storing the token code", |s| {
            s.token_code.set(&code);
        });
        refund(&env::predecessor_account_id(), surplus);
    }

    #[payable]
    fn set_token_code_hash(&mut self, code_hash: market_protocol::Hash32) {
        self.assert_owner();
        self.token_code_hash = Some(code_hash.into());
    }

    #[payable]
    fn issue_token(
        &mut self,
        model_id: String,
        symbol: String,
        manifest: Vec<ManifestEntry>,
        developer_weight: u32,
    ) -> Promise {
        self.assert_active();
        let caller = env::predecessor_account_id();
        let model = self
            .models
            .get(&model_id)
            .unwrap_or_else(|| Error::UnknownModel(model_id.clone()).panic());
        // The holders' share accrues from the first receipt: if the owner never issues the
        // token, anyone may after `OPEN_ISSUANCE_AFTER_NS`, with no manifest (the whole
        // supply to the owner), so the share is never stranded on the hub.
        let open_to_anyone = manifest.is_empty()
            && env::block_timestamp()
                >= model
                    .registered_at_ns
                    .0
                    .saturating_add(OPEN_ISSUANCE_AFTER_NS);
        if model.owner != caller && !open_to_anyone {
            Error::NotModelOwner { model_id, caller }.panic();
        }
        let developer = model.owner.clone();
        // Someone else's issuance names nothing of its own: the symbol is the model's id.
        let symbol = if caller == developer {
            symbol
        } else {
            model_id.to_ascii_uppercase()
        };
        if let Some(token) = model.token {
            let state = if model.token_issued {
                "has"
            } else {
                "is issuing"
            };
            Error::InvalidInput(format!("model `{model_id}` {state} its token {token}")).panic();
        }
        let account = Self::token_account(&model_id).unwrap_or_else(|e| e.panic());
        if manifest.len() > MAX_MANIFEST {
            Error::InvalidInput(format!(
                "a manifest has at most {MAX_MANIFEST} entries, not {}",
                manifest.len()
            ))
            .panic();
        }
        let mut owners = Vec::with_capacity(manifest.len());
        for entry in &manifest {
            let item = self
                .content
                .get(&entry.content_id)
                .unwrap_or_else(|| Error::UnknownContent(entry.content_id.clone()).panic());
            if item.license != crate::state::License::OpenForTraining {
                Error::InvalidInput(format!(
                    "content `{}` is inference-only and cannot be named in a training manifest",
                    entry.content_id
                ))
                .panic();
            }
            owners.push((item.owner, entry.weight));
        }
        let allocations =
            allocations(&developer, developer_weight, &owners).unwrap_or_else(|e| e.panic());
        // Global code when the owner set it, else the stored code deployed on the account.
        let code = match self.token_code_hash {
            Some(hash) => TokenCode::Global(hash),
            None => TokenCode::Local(self.token_code.get().unwrap_or_else(|| {
                Error::InvalidInput("the hub has no token code yet".into()).panic()
            })),
        };
        let code_bytes = match &code {
            TokenCode::Global(_) => 32,
            TokenCode::Local(bytes) => bytes.len() as u64,
        };
        let required = crate::storage::cost_of(code_bytes + token_state_bytes(allocations.len()));
        let attached = env::attached_deposit().as_yoctonear();
        if attached < required {
            Error::InsufficientDeposit {
                attached,
                required,
                what: "issuing a model token",
            }
            .panic();
        }
        let recorded: Vec<(String, u32)> = manifest
            .iter()
            .map(|e| (e.content_id.clone(), e.weight))
            .collect();
        let ((), left) = self.paying_storage(
            attached - required,
            "recording the token and its training manifest",
            |s| {
                s.models.update(&model_id, |m| {
                    m.training_manifest = recorded;
                    m.token = Some(account.clone());
                });
            },
        );
        refund(&caller, left);
        let args = near_sdk::serde_json::to_vec(&TokenInit {
            hub: env::current_account_id(),
            metadata: TokenMetadata {
                spec: "ft-1.0.0",
                name: &model_id,
                symbol: &symbol,
                decimals: 18,
            },
            allocations: &allocations,
        })
        .expect("plain fields serialize");
        let promise = Promise::new(account.clone())
            .create_account()
            .transfer(NearToken::from_yoctonear(required));
        let promise = match code {
            TokenCode::Global(hash) => promise.use_global_contract(hash),
            TokenCode::Local(bytes) => promise.deploy_contract(bytes),
        };
        promise
            .function_call("new", args, NearToken::from_yoctonear(0), TOKEN_INIT_GAS)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(CALLBACK_GAS)
                    .on_token_issued(model_id, account, caller, U128(required), allocations),
            )
    }

    fn flush(&mut self, model_id: String) -> Promise {
        let mut model = self
            .models
            .get(&model_id)
            .unwrap_or_else(|| Error::UnknownModel(model_id.clone()).panic());
        let token = model
            .token
            .clone()
            .filter(|_| model.token_issued)
            .unwrap_or_else(|| {
                Error::InvalidInput(format!("model `{model_id}` has no token yet")).panic()
            });
        let amount = std::mem::take(&mut model.holders_accrued.0);
        if amount == 0 {
            Error::NothingToWithdraw.panic();
        }
        self.models.insert(&model_id, &model);
        Promise::new(token.clone())
            .function_call(
                "on_revenue",
                b"{}".to_vec(),
                NearToken::from_yoctonear(amount),
                ON_REVENUE_GAS,
            )
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(CALLBACK_GAS)
                    .on_flushed(model_id, U128(amount)),
            )
    }
}

#[near]
impl Hub {
    #[private]
    pub fn on_token_issued(
        &mut self,
        #[serializer(borsh)] model_id: String,
        #[serializer(borsh)] token: AccountId,
        #[serializer(borsh)] owner: AccountId,
        #[serializer(borsh)] deposit: U128,
        #[serializer(borsh)] allocations: Vec<(AccountId, U128)>,
        #[callback_result] result: Result<(), PromiseError>,
    ) -> bool {
        if result.is_err() {
            // The failed receipt refunded its deposit to the hub; it goes back to the owner
            // with the storage the record no longer needs. Issuing again is possible.
            let ((), freed) = self.paying_storage(0, "forgetting a failed issuance", |s| {
                s.models.update(&model_id, |m| {
                    m.token = None;
                    m.training_manifest = Vec::new();
                });
            });
            refund(&owner, deposit.0 + freed);
            return false;
        }
        self.models.update(&model_id, |m| m.token_issued = true);
        Event::TokenIssued {
            model_id,
            token,
            supply: U128(TOKEN_SUPPLY),
            allocations,
        }
        .emit();
        true
    }

    /// A failed flush puts the amount back into the model's accrual.
    #[private]
    pub fn on_flushed(
        &mut self,
        #[serializer(borsh)] model_id: String,
        #[serializer(borsh)] amount: U128,
        #[callback_result] result: Result<(), PromiseError>,
    ) -> bool {
        if result.is_ok() {
            Event::RevenueFlushed { model_id, amount }.emit();
            return true;
        }
        self.models
            .update(&model_id, |m| m.holders_accrued.0 += amount.0);
        Event::PayoutFailed {
            receiver: env::current_account_id(),
            amount,
            recredited_to: format!("holders of `{model_id}`"),
        }
        .emit();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    #[test]
    fn the_whole_supply_is_issued_by_weight() {
        // Developer 50, two items of one owner 20 + 10, another owner 20: 50/20/30 split,
        // rounding down for content, the remainder to the developer.
        let a = allocations(
            &acc("dev.near"),
            50,
            &[
                (acc("wiki.near"), 20),
                (acc("news.near"), 10),
                (acc("news.near"), 20),
            ],
        )
        .unwrap();
        assert_eq!(a[0], (acc("dev.near"), U128(TOKEN_SUPPLY / 2)));
        assert_eq!(a[1], (acc("wiki.near"), U128(TOKEN_SUPPLY / 5)));
        assert_eq!(a[2], (acc("news.near"), U128(TOKEN_SUPPLY * 3 / 10)));
        assert_eq!(a.iter().map(|(_, x)| x.0).sum::<u128>(), TOKEN_SUPPLY);
        // Uneven thirds: the developer absorbs the rounding.
        let a = allocations(
            &acc("dev.near"),
            1,
            &[(acc("x.near"), 1), (acc("y.near"), 1)],
        )
        .unwrap();
        assert_eq!(a.iter().map(|(_, x)| x.0).sum::<u128>(), TOKEN_SUPPLY);
        assert_eq!(a[0].1 .0, TOKEN_SUPPLY - 2 * (TOKEN_SUPPLY / 3));
        assert!(allocations(&acc("dev.near"), 0, &[]).is_err());
        // A developer with no weight of its own still gets the rounding remainder only.
        let a = allocations(&acc("dev.near"), 0, &[(acc("x.near"), 1)]).unwrap();
        assert_eq!(a, vec![(acc("x.near"), U128(TOKEN_SUPPLY))]);
    }
}

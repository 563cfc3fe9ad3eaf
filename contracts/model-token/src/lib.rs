//! A model's token: NEP-141 (fungible token), NEP-145 (storage), NEP-148 (metadata), plus
//! revenue sharing: the hub sends each model's holders' share of usage fees here
//! (`on_revenue`), and every holder can `claim` its pro-rata part in NEAR. Standards are
//! delegated to near-contract-standards; this crate adds only the revenue accounting
//! (`revenue.rs`), updated on every balance change.

pub mod revenue;

use near_contract_standards::{
    fungible_token::{
        events::FtMint,
        metadata::{FungibleTokenMetadata, FungibleTokenMetadataProvider},
        FungibleToken, FungibleTokenCore, FungibleTokenResolver,
    },
    storage_management::{StorageBalance, StorageBalanceBounds, StorageManagement},
};
use near_sdk::{
    collections::{LazyOption, LookupMap},
    env,
    json_types::U128,
    near, require, AccountId, BorshStorageKey, Gas, NearToken, PanicOnDefault, Promise,
    PromiseError, PromiseOrValue,
};

use crate::revenue::{Pool, Position};

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
enum StorageKey {
    Accounts,
    Metadata,
    Positions,
}

#[near(event_json(standard = "ai-market-model-token"))]
pub enum Event {
    #[event_version("1.0.0")]
    RevenueReceived { amount: U128, supply: U128 },
    #[event_version("1.0.0")]
    Claimed { account_id: AccountId, amount: U128 },
    #[event_version("1.0.0")]
    ClaimFailed { account_id: AccountId, amount: U128 },
}

#[near(
    contract_state,
    contract_metadata(
        standard(standard = "nep141", version = "1.0.0"),
        standard(standard = "nep145", version = "1.0.0"),
        standard(standard = "nep148", version = "1.0.0"),
        standard(standard = "nep297", version = "1.0.0"),
    )
)]
#[derive(PanicOnDefault)]
pub struct ModelToken {
    token: FungibleToken,
    metadata: LazyOption<FungibleTokenMetadata>,
    /// The hub that issued the token and sends its revenue.
    hub: AccountId,
    pool: Pool,
    positions: LookupMap<AccountId, Position>,
}

/// Gas for `on_claim`.
const ON_CLAIM_GAS: Gas = Gas::from_tgas(5);

#[near(serializers = [json])]
pub struct RevenueInfo {
    pub hub: AccountId,
    pub total_supply: U128,
    pub total_revenue: U128,
    pub total_claimed: U128,
    /// Revenue that arrived while nobody held the token, shared at the next revenue event.
    pub unallocated: U128,
}

impl ModelToken {
    /// Brings an account's revenue position up to date before its balance changes.
    ///
    /// The invariant this keeps: an account has a position exactly while it is registered
    /// (registration pays for both), written when it is registered, at the accumulator of
    /// that moment. An unregistered account holds nothing and gets no record: settling it
    /// (the sender of a refunded `ft_transfer_call` that unregistered meanwhile) writes
    /// nothing nobody paid for.
    fn settle(&mut self, account_id: &AccountId) {
        let Some(balance) = self.token.accounts.get(account_id) else {
            return;
        };
        let mut position = self.positions.get(account_id).unwrap_or_else(|| {
            env::panic_str(&format!(
                "{account_id} is registered without a revenue position"
            ))
        });
        self.pool.settle(&mut position, balance);
        self.positions.insert(account_id, &position);
    }

    /// near-contract-standards' `internal_storage_unregister` without its refund: an
    /// allocation holder's storage was paid by the issuance, not by the holder, so the
    /// freed bytes stay with the token account. Written here because the standard always
    /// refunds.
    fn unregister_sponsored(
        &mut self,
        account_id: &AccountId,
        force: Option<bool>,
    ) -> Option<(AccountId, u128)> {
        near_sdk::assert_one_yocto();
        let balance = self.token.accounts.get(account_id)?;
        require!(
            balance == 0 || force.unwrap_or(false),
            "Can't unregister the account with the positive balance without force"
        );
        self.token.accounts.remove(account_id);
        self.token.total_supply -= balance;
        Some((account_id.clone(), balance))
    }

    /// The position of an account registered now: it earns only what arrives later.
    fn open_position(&mut self, account_id: &AccountId) {
        self.positions.insert(
            account_id,
            &Position {
                checkpoint: self.pool.acc,
                ..Position::default()
            },
        );
    }
}

#[near]
impl ModelToken {
    /// Issues the token: `allocations` (the developer and the owners of the open content the
    /// model was trained on, by the manifest's weights) get the whole supply.
    #[init]
    pub fn new(
        hub: AccountId,
        metadata: FungibleTokenMetadata,
        allocations: Vec<(AccountId, U128)>,
    ) -> Self {
        metadata.assert_valid();
        require!(
            !allocations.is_empty(),
            "the initial supply needs at least one holder"
        );
        let mut this = Self {
            token: FungibleToken::new(StorageKey::Accounts),
            metadata: LazyOption::new(StorageKey::Metadata, Some(&metadata)),
            hub,
            pool: Pool::default(),
            positions: LookupMap::new(StorageKey::Positions),
        };
        // Registration pays for the balance entry and the revenue position alike.
        let before = env::storage_usage();
        let longest: AccountId = "a".repeat(64).parse().expect("valid account id");
        this.positions.insert(
            &longest,
            &Position {
                owed: u128::MAX,
                dust: u128::MAX,
                ..Position::default()
            },
        );
        this.token.account_storage_usage += env::storage_usage() - before;
        this.positions.remove(&longest);
        for (account_id, amount) in allocations {
            if !this.token.accounts.contains_key(&account_id) {
                this.token.internal_register_account(&account_id);
                this.open_position(&account_id);
                this.positions.insert(
                    &account_id,
                    &Position {
                        sponsored: true,
                        ..this.positions.get(&account_id).expect("just opened")
                    },
                );
            }
            this.token.internal_deposit(&account_id, amount.0);
            FtMint {
                owner_id: &account_id,
                amount,
                memo: Some("issuance"),
            }
            .emit();
        }
        // The token is never minted again: its issued supply is the accumulator's scale.
        this.pool = Pool::new(this.token.total_supply);
        this
    }

    /// The hub sends the holders' share of usage fees with this call.
    #[payable]
    pub fn on_revenue(&mut self) {
        require!(
            env::predecessor_account_id() == self.hub,
            "only the hub sends revenue"
        );
        let amount = env::attached_deposit().as_yoctonear();
        self.pool.distribute(amount, self.token.total_supply);
        Event::RevenueReceived {
            amount: U128(amount),
            supply: U128(self.token.total_supply),
        }
        .emit();
    }

    /// Pays the caller everything it has earned so far.
    pub fn claim(&mut self) -> U128 {
        let account_id = env::predecessor_account_id();
        self.settle(&account_id);
        let mut position = self.positions.get(&account_id).unwrap_or_default();
        let amount = std::mem::take(&mut position.owed);
        require!(amount > 0, "nothing to claim");
        self.positions.insert(&account_id, &position);
        self.pool.total_claimed += amount;
        Event::Claimed {
            account_id: account_id.clone(),
            amount: U128(amount),
        }
        .emit();
        Promise::new(account_id.clone())
            .transfer(NearToken::from_yoctonear(amount))
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(ON_CLAIM_GAS)
                    .on_claim(account_id, U128(amount)),
            )
            .detach();
        U128(amount)
    }

    /// A failed claim transfer puts the amount back into the holder's position.
    #[private]
    pub fn on_claim(
        &mut self,
        account_id: AccountId,
        amount: U128,
        #[callback_result] result: Result<(), PromiseError>,
    ) {
        if result.is_err() {
            self.pool.total_claimed -= amount.0;
            if let Some(mut position) = self.positions.get(&account_id) {
                position.owed += amount.0;
                self.positions.insert(&account_id, &position);
            } else {
                // The account unregistered (and was deleted) before its transfer ran: no
                // position to put it back in, and none may be written unpaid. It goes to
                // the holders with the next revenue, like revenue nobody could hold.
                self.pool.unallocated += amount.0;
            }
            Event::ClaimFailed { account_id, amount }.emit();
        }
    }

    pub fn claimable(&self, account_id: AccountId) -> U128 {
        let balance = self.token.accounts.get(&account_id).unwrap_or(0);
        U128(self.pool.claimable(
            &self.positions.get(&account_id).unwrap_or_default(),
            balance,
        ))
    }

    pub fn revenue_info(&self) -> RevenueInfo {
        RevenueInfo {
            hub: self.hub.clone(),
            total_supply: U128(self.token.total_supply),
            total_revenue: U128(self.pool.total_revenue),
            total_claimed: U128(self.pool.total_claimed),
            unallocated: U128(self.pool.unallocated),
        }
    }
}

#[near]
impl FungibleTokenCore for ModelToken {
    #[payable]
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>) {
        self.settle(&env::predecessor_account_id());
        self.settle(&receiver_id);
        self.token.ft_transfer(receiver_id, amount, memo);
    }

    #[payable]
    fn ft_transfer_call(
        &mut self,
        receiver_id: AccountId,
        amount: U128,
        memo: Option<String>,
        msg: String,
    ) -> PromiseOrValue<U128> {
        self.settle(&env::predecessor_account_id());
        self.settle(&receiver_id);
        self.token.ft_transfer_call(receiver_id, amount, memo, msg)
    }

    fn ft_total_supply(&self) -> U128 {
        self.token.ft_total_supply()
    }

    fn ft_balance_of(&self, account_id: AccountId) -> U128 {
        self.token.ft_balance_of(account_id)
    }
}

#[near]
impl FungibleTokenResolver for ModelToken {
    #[private]
    fn ft_resolve_transfer(
        &mut self,
        sender_id: AccountId,
        receiver_id: AccountId,
        amount: U128,
    ) -> U128 {
        // Tokens may move back from the receiver (or be burnt): both positions first.
        self.settle(&sender_id);
        self.settle(&receiver_id);
        let (used, burned) =
            self.token
                .internal_ft_resolve_transfer(&sender_id, receiver_id, amount);
        if burned > 0 {
            near_sdk::log!("Account @{} burned {}", sender_id, burned);
        }
        used.into()
    }
}

#[near]
impl StorageManagement for ModelToken {
    #[payable]
    fn storage_deposit(
        &mut self,
        account_id: Option<AccountId>,
        registration_only: Option<bool>,
    ) -> StorageBalance {
        let account = account_id
            .clone()
            .unwrap_or_else(env::predecessor_account_id);
        // Only a registration opens a position: for an account already registered the
        // standard just refunds, and its position (with what it earned) stays untouched.
        let registered = self.token.accounts.contains_key(&account);
        let balance = self.token.storage_deposit(account_id, registration_only);
        if !registered {
            self.open_position(&account);
        }
        balance
    }

    #[payable]
    fn storage_withdraw(&mut self, amount: Option<NearToken>) -> StorageBalance {
        self.token.storage_withdraw(amount)
    }

    /// Refused while the account has unclaimed revenue: claim first.
    #[payable]
    fn storage_unregister(&mut self, force: Option<bool>) -> bool {
        let account_id = env::predecessor_account_id();
        self.settle(&account_id);
        let owed = self.positions.get(&account_id).map_or(0, |p| p.owed);
        require!(
            owed == 0,
            format!("{account_id} has {owed} yocto of revenue to claim first")
        );
        let sponsored = self.positions.get(&account_id).is_some_and(|p| p.sponsored);
        let unregistered = if sponsored {
            self.unregister_sponsored(&account_id, force)
        } else {
            self.token.internal_storage_unregister(force)
        };
        if unregistered.is_some() {
            self.positions.remove(&account_id);
        }
        unregistered.is_some()
    }

    fn storage_balance_bounds(&self) -> StorageBalanceBounds {
        self.token.storage_balance_bounds()
    }

    fn storage_balance_of(&self, account_id: AccountId) -> Option<StorageBalance> {
        self.token.storage_balance_of(account_id)
    }
}

#[near]
impl FungibleTokenMetadataProvider for ModelToken {
    fn ft_metadata(&self) -> FungibleTokenMetadata {
        self.metadata.get().expect("set at init")
    }
}

#[cfg(test)]
mod tests;

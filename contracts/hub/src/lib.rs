//! The hub contract of the AI marketplace: registries of models and runners, users'
//! escrow channels, settlement of signed usage receipts, and payouts.
//! See `README.md` for the story and the method list; `engine.rs` for the settlement rules.

pub mod engine;
pub mod error;
pub mod events;
pub mod fees;
pub mod ledger;
pub use market_hub_api::pause;
pub mod state;
pub mod storage;

mod admin;
mod content;
mod disputes;
mod escrow;
mod payouts;
mod registry;
mod runners;
mod sealing;
mod settlement;
mod tokens;
mod upgrade;

#[cfg(test)]
mod tests;

use std::ops::{Deref, DerefMut};

use near_sdk::{env, near, AccountId, PanicOnDefault};

pub use crate::error::Error;
use crate::state::{Config, HubState, VersionedState};

/// The NEAR host functions as the protocol crate's `Crypto`.
pub struct EnvCrypto;

impl market_protocol::Crypto for EnvCrypto {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        env::sha256_array(data)
    }

    fn ed25519_verify(&self, signature: &[u8; 64], message: &[u8], public_key: &[u8; 32]) -> bool {
        env::ed25519_verify(signature, message, public_key)
    }
}

#[near(
    contract_state,
    contract_metadata(
        standard(standard = "nep297", version = "1.0.0"),
        standard(standard = "nep330", version = "1.1.0"),
    )
)]
#[derive(PanicOnDefault)]
pub struct Hub {
    state: VersionedState,
}

impl Deref for Hub {
    type Target = HubState;

    fn deref(&self) -> &HubState {
        match &self.state {
            VersionedState::V2(state) => state,
            VersionedState::V1 => env::panic_str("the hub's state is layout 1: call `migrate`"),
        }
    }
}

impl DerefMut for Hub {
    fn deref_mut(&mut self) -> &mut HubState {
        match &mut self.state {
            VersionedState::V2(state) => state,
            VersionedState::V1 => env::panic_str("the hub's state is layout 1: call `migrate`"),
        }
    }
}

/// The layout version `migrate` produces.
pub const STATE_VERSION: u16 = 2;

#[near]
impl Hub {
    #[init]
    pub fn new(owner: AccountId, config: Config) -> Self {
        admin::validate_config(&config).unwrap_or_else(|e| e.panic());
        Self {
            state: VersionedState::V2(HubState::new(owner, config)),
        }
    }

    /// Rewrites the stored state in the latest layout; called right after deploying new
    /// code (in the same transaction, as a function call action) by the hub account itself.
    #[private]
    #[init(ignore_state)]
    pub fn migrate() -> Self {
        let old: Self =
            env::state_read().unwrap_or_else(|| env::panic_str("no hub state to migrate"));
        let (from, state) = match old.state {
            VersionedState::V2(state) => (2, state),
            VersionedState::V1 => env::panic_str(
                "layout 1 cannot be migrated: it predates scheduled terms and per-account keys; deploy a new hub (docs/decisions.md)",
            ),
        };
        events::Event::Migrated {
            from_version: from,
            to_version: STATE_VERSION,
        }
        .emit();
        Self {
            state: VersionedState::V2(state),
        }
    }
}

//! Storage staking: whoever adds bytes to the hub pays for them from the deposit attached
//! to the call, and gets the surplus back (the NEP-145 rule, applied per call rather than
//! through a prepaid storage balance, so there is no balance to manage).

use near_sdk::{env, NearToken, Promise};

use crate::{error::Error, state::HubState, Hub};

/// Bytes reserved for a channel when it is created: its record at the largest size it can
/// reach (longest account ids, the most model lines, a remembered authorization with the
/// most models), so settling never adds storage that nobody paid for.
/// `tests::channel_reserve_covers_the_largest_channel` measures that bound.
pub const CHANNEL_STORAGE_BYTES: u64 = 2_400;

pub fn cost_of(bytes: u64) -> u128 {
    env::storage_byte_cost().as_yoctonear() * u128::from(bytes)
}

/// The deposit of a call that must come from a full-access key (at least one yocto: a
/// function-call key cannot attach any) and may also pay for storage.
pub fn full_access_deposit() -> u128 {
    let attached = env::attached_deposit().as_yoctonear();
    if attached == 0 {
        env::panic_str("attach at least 1 yocto: this call needs a full-access key");
    }
    attached
}

pub fn refund(to: &near_sdk::AccountId, amount: u128) {
    if amount > 0 {
        Promise::new(to.clone())
            .transfer(NearToken::from_yoctonear(amount))
            .detach();
    }
}

impl Hub {
    /// Runs `change`, then takes the cost of the bytes it added out of `attached`
    /// (panicking if that is not enough) and returns what is left of `attached`, plus the
    /// cost of any bytes it freed.
    pub(crate) fn paying_storage<R>(
        &mut self,
        attached: u128,
        what: &'static str,
        change: impl FnOnce(&mut HubState) -> R,
    ) -> (R, u128) {
        let before = env::storage_usage();
        let result = change(self);
        let after = env::storage_usage();
        let required = cost_of(after.saturating_sub(before));
        if required > attached {
            Error::InsufficientDeposit {
                attached,
                required,
                what,
            }
            .panic();
        }
        (
            result,
            attached - required + cost_of(before.saturating_sub(after)),
        )
    }
}

//! Revenue per token, as an accumulator (the "reward per token" scheme of staking pools):
//! every revenue event adds revenue × SCALE / supply to `acc`; each holder's checkpoint
//! records `acc` when its balance last changed, so what it earned since is
//! balance × (acc − checkpoint) / SCALE. Every operation is O(1) in the number of holders.
//!
//! Rounding: nothing is lost. SCALE is the supply at issuance (the token is never minted
//! again), so while no tokens are burnt each event divides exactly, and a holder's earnings
//! are balance × revenue / supply with its own remainder carried in its record: a holder of
//! the whole supply gets every yocto. After burns, each event's remainder is carried into
//! the next. The sum of claims never exceeds the revenue, and the dust is paid out as it
//! accumulates. 256-bit arithmetic: revenue (< 2^100 yocto) × SCALE (< 2^100) fits easily.

use near_sdk::near;

mod u256 {
    // The macro's expansion is the crate's, not ours to restyle.
    #![allow(clippy::manual_div_ceil)]
    uint::construct_uint! {
        /// 256-bit unsigned integer for the accumulator.
        pub struct U256(4);
    }
}
pub use u256::U256;

/// U256 as stored: 32 little-endian bytes.
#[near(serializers = [borsh])]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acc(pub [u8; 32]);

impl From<U256> for Acc {
    fn from(v: U256) -> Self {
        Self(v.to_little_endian())
    }
}

impl From<Acc> for U256 {
    fn from(a: Acc) -> Self {
        U256::from_little_endian(&a.0)
    }
}

/// One holder's position in the revenue stream.
#[near(serializers = [borsh])]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub checkpoint: Acc,
    /// Earned and not yet claimed, yocto.
    pub owed: u128,
    /// Rounding remainder carried to the next update, in SCALE units.
    pub dust: u128,
    /// Registered at issuance, its storage paid by the issuer: unregistering refunds
    /// nothing to it.
    pub sponsored: bool,
}

#[near(serializers = [borsh])]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// Fixed-point scale of the accumulator: the supply at issuance.
    pub scale: u128,
    pub acc: Acc,
    /// revenue × SCALE not yet divided out (always < supply).
    pub remainder: u128,
    /// Revenue that arrived while nobody held the token, shared at the next event.
    pub unallocated: u128,
    pub total_revenue: u128,
    pub total_claimed: u128,
}

impl Pool {
    pub fn new(scale: u128) -> Self {
        Self {
            scale: scale.max(1),
            ..Self::default()
        }
    }

    /// Adds `revenue` for `supply` tokens held.
    pub fn distribute(&mut self, revenue: u128, supply: u128) {
        self.total_revenue = self
            .total_revenue
            .checked_add(revenue)
            .expect("revenue overflows u128");
        if supply == 0 {
            self.unallocated += revenue;
            return;
        }
        let revenue = revenue + std::mem::take(&mut self.unallocated);
        let scaled = U256::from(revenue) * U256::from(self.scale) + U256::from(self.remainder);
        let supply = U256::from(supply);
        let acc = U256::from(self.acc) + scaled / supply;
        self.acc = acc.into();
        self.remainder = (scaled % supply).as_u128();
    }

    /// Brings `position` up to date for a holder of `balance` tokens.
    pub fn settle(&self, position: &mut Position, balance: u128) {
        let delta = U256::from(self.acc) - U256::from(position.checkpoint);
        let earned = U256::from(balance) * delta + U256::from(position.dust);
        let scale = U256::from(self.scale);
        position.owed = position
            .owed
            .checked_add((earned / scale).as_u128())
            .expect("owed overflows u128");
        position.dust = (earned % scale).as_u128();
        position.checkpoint = self.acc;
    }

    /// What `position` could claim now with `balance` tokens.
    pub fn claimable(&self, position: &Position, balance: u128) -> u128 {
        let mut p = *position;
        self.settle(&mut p, balance);
        p.owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pro_rata_with_carried_remainders() {
        let mut pool = Pool::new(3);
        let (mut a, mut b) = (Position::default(), Position::default());
        // 1 : 2 split of 10 yocto: 3 and 6, one yocto carried.
        pool.distribute(10, 3);
        assert_eq!((pool.claimable(&a, 1), pool.claimable(&b, 2)), (3, 6));
        // The carried yocto is paid once the dust adds up.
        pool.distribute(2, 3);
        pool.settle(&mut a, 1);
        pool.settle(&mut b, 2);
        assert_eq!(a.owed + b.owed, 12);
    }

    #[test]
    fn a_holder_of_the_whole_supply_gets_every_yocto() {
        let supply = 1_000_000 * 10u128.pow(18);
        let mut pool = Pool::new(supply);
        let mut p = Position::default();
        for revenue in [3_000_000u128, 7, 1, 999_999_999_999_999_999_999] {
            pool.distribute(revenue, supply);
        }
        pool.settle(&mut p, supply);
        assert_eq!(p.owed, 3_000_000 + 7 + 1 + 999_999_999_999_999_999_999);
    }

    #[test]
    fn revenue_without_holders_is_not_stranded() {
        let mut pool = Pool::new(10);
        pool.distribute(100, 0);
        assert_eq!(pool.unallocated, 100);
        pool.distribute(50, 10);
        assert_eq!(pool.claimable(&Position::default(), 10), 150);
    }

    proptest! {
        /// Claims never exceed revenue, and miss it by less than one yocto per holder
        /// and event, whatever the balances and revenues.
        #[test]
        fn conservation(balances in proptest::collection::vec(1u128..1_000_000_000_000_000_000_000_000, 1..6),
                        revenues in proptest::collection::vec(0u128..1_000_000_000_000_000_000_000_000_000, 1..8)) {
            let supply: u128 = balances.iter().sum();
            let mut pool = Pool::new(supply);
            let mut positions = vec![Position::default(); balances.len()];
            for r in &revenues {
                pool.distribute(*r, supply);
                for (p, b) in positions.iter_mut().zip(&balances) {
                    pool.settle(p, *b);
                }
            }
            let total: u128 = revenues.iter().sum();
            let claimed: u128 = positions.iter().map(|p| p.owed).sum();
            prop_assert!(claimed <= total);
            prop_assert!(total - claimed <= (balances.len() as u128) + 1, "lost {} of {}", total - claimed, total);
        }
    }
}

//! The fee split. Rounding rule: the runner's and the protocol's shares are rounded down,
//! the model's token holders get the remainder, so the three always sum to the charge.

/// Basis points in a whole.
pub const BPS: u16 = 10_000;
/// Hard ceilings in code, whatever the owner sets: the protocol never takes more than
/// 20 %, and no model gives runners more than 80 %, so the shares always fit in a whole.
pub const MAX_PROTOCOL_FEE_BPS: u16 = 2_000;
pub const MAX_RUNNER_BPS: u16 = BPS - MAX_PROTOCOL_FEE_BPS;

/// floor(amount × bps / 10,000) without overflow for any u128 amount: splitting the
/// amount at 10,000 keeps every product below 2^128.
pub fn bps_of(amount: u128, bps: u16) -> u128 {
    let bps = u128::from(bps.min(BPS));
    let whole = u128::from(BPS);
    (amount / whole) * bps + (amount % whole) * bps / whole
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub runner: u128,
    pub holders: u128,
    pub protocol: u128,
}

impl Split {
    pub fn of(charge: u128, runner_bps: u16, protocol_bps: u16) -> Self {
        debug_assert!(u32::from(runner_bps) + u32::from(protocol_bps) <= u32::from(BPS));
        let runner = bps_of(charge, runner_bps);
        let protocol = bps_of(charge, protocol_bps);
        // Cannot underflow: runner_bps + protocol_bps <= 10,000 and both round down.
        let holders = charge - runner - protocol;
        Self {
            runner,
            holders,
            protocol,
        }
    }

    pub fn total(&self) -> Option<u128> {
        self.runner
            .checked_add(self.holders)?
            .checked_add(self.protocol)
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        Some(Self {
            runner: self.runner.checked_add(other.runner)?,
            holders: self.holders.checked_add(other.holders)?,
            protocol: self.protocol.checked_add(other.protocol)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn remainder_goes_to_holders() {
        // 1,001 yocto at 70 % / 10 %: runner 700 (700.7 down), protocol 100 (100.1 down).
        assert_eq!(
            Split::of(1_001, 7_000, 1_000),
            Split {
                runner: 700,
                holders: 201,
                protocol: 100
            }
        );
        assert_eq!(
            Split::of(1, 7_000, 1_000),
            Split {
                runner: 0,
                holders: 1,
                protocol: 0
            }
        );
        assert_eq!(Split::of(0, 7_000, 1_000), Split::default());
    }

    #[test]
    fn no_overflow_at_u128_max() {
        let s = Split::of(u128::MAX, MAX_RUNNER_BPS, MAX_PROTOCOL_FEE_BPS);
        assert_eq!(s.total(), Some(u128::MAX));
        assert_eq!(
            s.holders, 0,
            "80 % + 20 % of a multiple-free amount leaves at most rounding"
        );
    }

    proptest! {
        #[test]
        fn split_is_exact(charge in any::<u128>(), runner in 0..=MAX_RUNNER_BPS, protocol in 0..=MAX_PROTOCOL_FEE_BPS) {
            let s = Split::of(charge, runner, protocol);
            prop_assert_eq!(s.total(), Some(charge));
            // Each rounded-down share is within one yocto of the exact product.
            let exact = |bps: u16| primitive_exact(charge, bps);
            prop_assert_eq!(s.runner, exact(runner));
            prop_assert_eq!(s.protocol, exact(protocol));
        }
    }

    /// The same floor computed independently in 256 bits (two u128 halves).
    fn primitive_exact(amount: u128, bps: u16) -> u128 {
        let (hi, lo) = (amount >> 64, amount & u128::from(u64::MAX));
        let bps = u128::from(bps);
        let (p_hi, p_lo) = (hi * bps, lo * bps);
        // value = p_hi * 2^64 + p_lo; divide by 10,000 with long division.
        let q_hi = p_hi / 10_000;
        let r_hi = p_hi % 10_000;
        let rest = (r_hi << 64) + p_lo;
        (q_hi << 64) + rest / 10_000
    }
}

//! Conservation over random sequences of deposits, settlements (good and bad) and
//! withdrawals: after every step, what the hub owes equals what came in minus what went
//! out, to the yocto.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Fund {
        bob: bool,
        amount: u128,
    },
    Settle {
        bob: bool,
        increment: u128,
        tamper: bool,
    },
    RequestWithdrawal {
        bob: bool,
    },
    FinishWithdrawal {
        bob: bool,
    },
    WithdrawEarnings,
    WithdrawProtocolFees,
    Wait {
        hours: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 1..5 * NEAR).prop_map(|(bob, amount)| Op::Fund { bob, amount }),
        (any::<bool>(), 0..3 * NEAR, proptest::bool::weighted(0.2)).prop_map(
            |(bob, increment, tamper)| Op::Settle {
                bob,
                increment,
                tamper
            }
        ),
        any::<bool>().prop_map(|bob| Op::RequestWithdrawal { bob }),
        any::<bool>().prop_map(|bob| Op::FinishWithdrawal { bob }),
        Just(Op::WithdrawEarnings),
        Just(Op::WithdrawProtocolFees),
        (0..3u64).prop_map(|hours| Op::Wait { hours }),
    ]
}

fn user(bob: bool) -> &'static str {
    if bob {
        "bob.near"
    } else {
        "alice.near"
    }
}

fn try_call(f: impl FnOnce()) {
    // Calls that panic (too early, nothing to withdraw) are reverted by the chain; here
    // they must not have changed anything either, which the invariant below checks.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn liabilities_equal_deposits_minus_payouts(ops in proptest::collection::vec(op(), 1..24)) {
        let mut w = World::new();
        let bob_key = KeyPair::from_seed([9; 32]);
        w.as_("bob.near", NEAR / 10);
        w.hub.register_user_key(bob_key.public_key());
        w.as_("bob.near", 3 * NEAR);
        w.hub.fund_channel(acc("runner.near"));
        w.take_transfers();
        let alice = w.authorization(1_000 * NEAR, START + 1_000 * HOUR);
        let bob = SignedAuthorization::sign(
            Authorization { user: acc("bob.near"), public_key: bob_key.public_key(), ..alice.authorization.clone() },
            [4; 32],
            &bob_key,
        );
        let start = w.liabilities();
        let (mut deposited, mut seq, mut cumulative) = (0u128, [0u64; 2], [0u128; 2]);
        w.paid_out = 0;

        for op in ops {
            match op {
                Op::Fund { bob, amount } => {
                    w.as_(user(bob), amount);
                    w.hub.fund_channel(acc("runner.near"));
                    deposited += amount;
                }
                Op::Settle { bob: b, increment, tamper } => {
                    let i = usize::from(b);
                    let auth = if b { &bob } else { &alice };
                    let mut item = w.receipt(auth, seq[i] + 1, cumulative[i] + increment);
                    if tamper {
                        item.receipt.signature.0[1] ^= 1;
                    }
                    if let SettleResult::Settled { .. } = w.settle_one(item) {
                        seq[i] += 1;
                        cumulative[i] += increment;
                    } else {
                        prop_assert!(tamper || increment > 0, "only tampered or unaffordable receipts fail");
                    }
                }
                Op::RequestWithdrawal { bob } => {
                    w.as_(user(bob), 0);
                    w.hub.request_withdrawal(acc("runner.near"));
                }
                Op::FinishWithdrawal { bob } => {
                    w.as_(user(bob), 1);
                    try_call(|| w.hub.finish_withdrawal(acc("runner.near")));
                }
                Op::WithdrawEarnings => {
                    w.as_("runner.near", 1);
                    try_call(|| w.hub.withdraw_earnings(None));
                }
                Op::WithdrawProtocolFees => {
                    w.as_("owner.near", 1);
                    try_call(|| w.hub.withdraw_protocol_fees(acc("owner.near"), None));
                }
                Op::Wait { hours } => {
                    w.now += hours * HOUR;
                    continue;
                }
            }
            w.take_transfers();
            prop_assert_eq!(w.liabilities(), start + deposited - w.paid_out);
        }
        prop_assert_eq!(w.liabilities(), start + deposited - w.paid_out);
    }
}

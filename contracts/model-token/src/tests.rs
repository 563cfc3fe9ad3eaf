//! The token in near-sdk's mocked blockchain: issuance, revenue between transfers, claims.

use near_contract_standards::fungible_token::{metadata::FT_METADATA_SPEC, FungibleTokenCore};
use near_sdk::{test_utils::VMContextBuilder, testing_env, NearToken};

use super::*;

const ALICE: &str = "alice.near";
const BOB: &str = "bob.near";
const CAROL: &str = "carol.near";

fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

fn call(who: &str, deposit: u128) {
    testing_env!(VMContextBuilder::new()
        .current_account_id(acc("model.hub.near"))
        .predecessor_account_id(acc(who))
        .attached_deposit(NearToken::from_yoctonear(deposit))
        .account_balance(NearToken::from_near(1_000))
        .storage_usage(10_000_000)
        .build());
}

fn token() -> ModelToken {
    drop(near_sdk::mock::with_mocked_blockchain(
        near_sdk::MockedBlockchain::take_storage,
    ));
    call("hub.near", 0);
    let metadata = FungibleTokenMetadata {
        spec: FT_METADATA_SPEC.into(),
        name: "smollm2-135m".into(),
        symbol: "SMOL".into(),
        icon: None,
        reference: None,
        reference_hash: None,
        decimals: 18,
    };
    // Developer 70 %, the training content's owners 30 %.
    ModelToken::new(
        acc("hub.near"),
        metadata,
        vec![(acc(ALICE), U128(700)), (acc(BOB), U128(300))],
    )
}

/// The next call is the token's own callback, seeing a failed promise.
fn failed_callback() {
    testing_env!(
        VMContextBuilder::new()
            .current_account_id(acc("model.hub.near"))
            .predecessor_account_id(acc("model.hub.near"))
            .build(),
        near_sdk::test_vm_config(),
        near_sdk::RuntimeFeesConfig::test(),
        std::collections::HashMap::default(),
        vec![near_sdk::PromiseResult::Failed],
    );
}

fn claimable(t: &ModelToken, who: &str) -> u128 {
    t.claimable(acc(who)).0
}

#[test]
fn issuance_follows_the_manifest() {
    let t = token();
    assert_eq!(t.ft_total_supply().0, 1_000);
    assert_eq!(t.ft_balance_of(acc(ALICE)).0, 700);
    assert_eq!(t.ft_balance_of(acc(BOB)).0, 300);
}

#[test]
fn holders_earn_for_the_time_they_hold() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    assert_eq!((claimable(&t, ALICE), claimable(&t, BOB)), (700, 300));

    // Carol registers and buys 200 from Alice: she earns only from the next revenue on.
    call(CAROL, t.storage_balance_bounds().min.as_yoctonear());
    t.storage_deposit(None, None);
    call(ALICE, 1);
    t.ft_transfer(acc(CAROL), U128(200), None);
    assert_eq!((claimable(&t, ALICE), claimable(&t, CAROL)), (700, 0));

    call("hub.near", 2_000);
    t.on_revenue();
    // Alice 500/1000 of 2,000, Bob 300/1000, Carol 200/1000.
    assert_eq!(
        (
            claimable(&t, ALICE),
            claimable(&t, BOB),
            claimable(&t, CAROL)
        ),
        (1_700, 900, 400)
    );

    call(CAROL, 0);
    assert_eq!(t.claim().0, 400);
    assert_eq!(claimable(&t, CAROL), 0);
    let info = t.revenue_info();
    assert_eq!((info.total_revenue.0, info.total_claimed.0), (3_000, 400));
}

#[test]
#[should_panic(expected = "only the hub sends revenue")]
fn only_the_hub_sends_revenue() {
    let mut t = token();
    call("mallory.near", 5);
    t.on_revenue();
}

#[test]
#[should_panic(expected = "has 700 yocto of revenue to claim first")]
fn unclaimed_revenue_blocks_unregistering() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    call(ALICE, 1);
    t.storage_unregister(Some(true));
}

#[test]
fn a_failed_claim_is_put_back() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    call(BOB, 0);
    assert_eq!(t.claim().0, 300);
    assert_eq!(claimable(&t, BOB), 0);
    failed_callback();
    t.on_claim(acc(BOB), U128(300), Err(PromiseError::Failed));
    assert_eq!(claimable(&t, BOB), 300);
    assert_eq!(t.revenue_info().total_claimed.0, 0);
}

/// Audit finding 1: a free `storage_deposit` naming an allocation holder must not move its
/// revenue checkpoint (it used to write a fresh position at the current accumulator,
/// wiping everything the holder had earned since issuance).
#[test]
fn registering_an_existing_holder_keeps_its_revenue() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    call("mallory.near", 0);
    t.storage_deposit(Some(acc(ALICE)), None);
    call(
        "mallory.near",
        t.storage_balance_bounds().min.as_yoctonear(),
    );
    t.storage_deposit(Some(acc(BOB)), Some(true));
    assert_eq!((claimable(&t, ALICE), claimable(&t, BOB)), (700, 300));
    // And the holders' positions exist from issuance: a transfer between them settles both.
    call(ALICE, 1);
    t.ft_transfer(acc(BOB), U128(100), None);
    assert_eq!((claimable(&t, ALICE), claimable(&t, BOB)), (700, 300));
}

/// A settle of an account that holds nothing and is not registered leaves no record behind
/// (a refund to an unregistered sender used to create an unpaid, orphan position).
#[test]
fn unregistered_accounts_get_no_position() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    let before = env::storage_usage();
    t.settle(&acc("ghost.near"));
    assert_eq!(env::storage_usage(), before);
    assert!(t.positions.get(&acc("ghost.near")).is_none());
}

/// A claim whose account unregistered (and was deleted) before its transfer failed writes
/// no unpaid position: the amount goes to the holders with the next revenue.
#[test]
fn a_failed_claim_of_an_unregistered_account_goes_back_to_the_holders() {
    let mut t = token();
    call("hub.near", 1_000);
    t.on_revenue();
    call(BOB, 0);
    assert_eq!(t.claim().0, 300);
    call(BOB, 1);
    t.storage_unregister(Some(true));
    failed_callback();
    t.on_claim(acc(BOB), U128(300), Err(PromiseError::Failed));
    assert!(t.positions.get(&acc(BOB)).is_none());
    assert_eq!(t.revenue_info().unallocated.0, 300);
    // Bob's tokens were burnt on unregistering: Alice holds the whole supply now and gets
    // the 300 at the next revenue, less a remainder below one yocto carried forward (the
    // accumulator's scale is the supply at issuance).
    call("hub.near", 0);
    t.on_revenue();
    assert!((999..=1_000).contains(&claimable(&t, ALICE)));
}

/// Finding 8: allocation holders paid no storage (the issuance did), so unregistering
/// refunds them nothing; an account that paid its own registration gets its deposit back.
#[test]
fn only_paid_registrations_are_refunded() {
    let mut t = token();
    call(BOB, 1);
    assert!(t.storage_unregister(Some(true)));
    assert!(
        near_sdk::test_utils::get_created_receipts().is_empty(),
        "no refund"
    );
    call(CAROL, t.storage_balance_bounds().min.as_yoctonear());
    t.storage_deposit(None, None);
    call(CAROL, 1);
    assert!(t.storage_unregister(None));
    assert_eq!(
        near_sdk::test_utils::get_created_receipts().len(),
        1,
        "a refund"
    );
}

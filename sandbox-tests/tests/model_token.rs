//! The compiled model token on the local chain: issuance, revenue between transfers, exact
//! claims. (A claim whose transfer fails is covered by the contract's unit tests: no
//! account can be deleted between a claim and its transfer here.)

use sandbox_tests::*;
use serde_json::json;

fn issue(env: &mut Env) -> near_primitives::types::AccountId {
    env.create_account("hub.near", 50 * NEAR);
    let token = env.create_account("smol-token.near", 5 * NEAR);
    env.deploy(&token, wasm("model_token"));
    env.call_json(&token, &token, "new", json!({
        "hub": "hub.near",
        "metadata": {"spec": "ft-1.0.0", "name": "smollm2-135m", "symbol": "SMOL", "decimals": 18},
        "allocations": [["dev.near", "700"], ["content.near", "300"]],
    }), 0).result().expect("init");
    token
}

#[test]
fn revenue_reaches_holders_pro_rata_across_transfers() {
    let mut env = Env::new();
    let dev = env.create_account("dev.near", 10 * NEAR);
    let content = env.create_account("content.near", 10 * NEAR);
    let buyer = env.create_account("buyer.near", 10 * NEAR);
    let token = issue(&mut env);
    let hub = acc("hub.near");
    let claimable = |env: &Env, who: &str| {
        yocto(&env.view_json(&token, "claimable", json!({"account_id": who})))
    };

    env.call_json(&hub, &token, "on_revenue", json!({}), 1_000_000)
        .result()
        .unwrap();
    assert_eq!(
        (claimable(&env, "dev.near"), claimable(&env, "content.near")),
        (700_000, 300_000)
    );

    // The buyer registers (NEP-145) and buys 200 tokens; it earns from then on only.
    let bounds = env.view_json(&token, "storage_balance_bounds", json!({}));
    env.call_json(
        &buyer,
        &token,
        "storage_deposit",
        json!({}),
        yocto(&bounds["min"]),
    )
    .result()
    .unwrap();
    env.call_json(
        &dev,
        &token,
        "ft_transfer",
        json!({"receiver_id": "buyer.near", "amount": "200"}),
        1,
    )
    .result()
    .unwrap();
    env.call_json(&hub, &token, "on_revenue", json!({}), 2_000_000)
        .result()
        .unwrap();
    assert_eq!(claimable(&env, "dev.near"), 700_000 + 1_000_000);
    assert_eq!(claimable(&env, "content.near"), 300_000 + 600_000);
    assert_eq!(claimable(&env, "buyer.near"), 400_000);

    // Claims pay exactly what was earned (the balance grows by it less the gas paid).
    let before = env.balance(&content);
    let r = env.call_json(&content, &token, "claim", json!({}), 0);
    r.result().unwrap();
    let gas: u128 =
        r.transaction.tokens_burnt + r.receipts.iter().map(|o| o.tokens_burnt).sum::<u128>();
    assert_eq!(env.balance(&content) + gas, before + 900_000);
    assert_eq!(claimable(&env, "content.near"), 0);
    let info = env.view_json(&token, "revenue_info", json!({}));
    assert_eq!(
        (yocto(&info["total_revenue"]), yocto(&info["total_claimed"])),
        (3_000_000, 900_000)
    );

    // Only the hub sends revenue.
    let err = env
        .call_json(&buyer, &token, "on_revenue", json!({}), 5)
        .result()
        .unwrap_err();
    assert_eq!(err, "Smart contract panicked: only the hub sends revenue");
}

#[test]
fn a_second_claim_finds_nothing() {
    let mut env = Env::new();
    let dev = env.create_account("dev.near", 10 * NEAR);
    env.create_account("content.near", 10 * NEAR);
    let token = issue(&mut env);
    env.call_json(&acc("hub.near"), &token, "on_revenue", json!({}), 1_000)
        .result()
        .unwrap();
    env.call_json(&dev, &token, "claim", json!({}), 0)
        .result()
        .unwrap();
    let err = env
        .call_json(&dev, &token, "claim", json!({}), 0)
        .result()
        .unwrap_err();
    assert_eq!(err, "Smart contract panicked: nothing to claim");
}

/// Audit finding 1 on the compiled token: anyone's free `storage_deposit` naming a holder
/// (or a wallet pre-registering it) leaves what the holder earned untouched.
#[test]
fn registering_a_holder_again_wipes_nothing() {
    let mut env = Env::new();
    env.create_account("dev.near", 10 * NEAR);
    env.create_account("content.near", 10 * NEAR);
    let mallory = env.create_account("mallory.near", 10 * NEAR);
    let token = issue(&mut env);
    env.call_json(&acc("hub.near"), &token, "on_revenue", json!({}), 1_000)
        .result()
        .unwrap();
    let bounds = env.view_json(&token, "storage_balance_bounds", json!({}));
    for deposit in [0, yocto(&bounds["min"])] {
        env.call_json(
            &mallory,
            &token,
            "storage_deposit",
            json!({"account_id": "dev.near"}),
            deposit,
        )
        .result()
        .unwrap();
    }
    let claimable = |env: &Env, who: &str| {
        yocto(&env.view_json(&token, "claimable", json!({"account_id": who})))
    };
    assert_eq!(claimable(&env, "dev.near"), 700);
    assert_eq!(claimable(&env, "content.near"), 300);
}

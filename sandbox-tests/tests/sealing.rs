//! Closed models on the compiled hub: a sealed version, a runner's sealing key bound by its
//! receipt key, the owner's grant, and settlement that pays only a granted runner for the
//! sealed version, until a revocation's notice ends.

use ed25519_dalek::Signer as _;
use market_hub_api::{methods, ReceiptOutcome, RejectCode, SealedArtifact, SettleResult};
use market_protocol::{
    crypto::native::KeyPair, sealing::SealingKeyBinding, testing::ReceiptBuilder, NativeCrypto,
    SettleItem, SignedAuthorization,
};
use near_sdk::{json_types::U64, AccountId};
use sandbox_tests::*;

const SEALING_KEY: [u8; 32] = [7; 32];

fn codes(outcomes: &[ReceiptOutcome]) -> Vec<Result<(), RejectCode>> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            SettleResult::Settled { .. } => Ok(()),
            SettleResult::Rejected { code, .. } => Err(*code),
        })
        .collect()
}

/// The runner's binding of `key`, signed with `receipt_key`.
fn binding(m: &Market, runner: &AccountId, key: [u8; 32], receipt_key: &KeyPair) -> Vec<u8> {
    let prehash = SealingKeyBinding {
        hub: m.hub.to_string(),
        chain_id: CHAIN_ID.into(),
        runner: runner.to_string(),
        sealing_key: key,
    }
    .prehash(&NativeCrypto);
    receipt_key.0.sign(&prehash).to_bytes().to_vec()
}

/// A receipt for the sealed version 2 of `MODEL`.
fn sealed_receipt(
    m: &Market,
    auth: &SignedAuthorization,
    key: &KeyPair,
    seq: u64,
    amount: u128,
) -> SettleItem {
    ReceiptBuilder::new(auth)
        .seq(seq)
        .line(MODEL, 2, seq * 100, seq * 20, amount)
        .issued_at(m.env.chain.timestamp_ns())
        .sign(key)
}

#[test]
fn only_a_granted_runner_is_paid_for_a_sealed_version_until_its_grant_is_revoked() {
    let mut m = Market::new(2);
    let (hub, runner, dev) = (m.hub.clone(), m.runner.clone(), acc("dev.near"));
    let artifact = SealedArtifact {
        scheme: "test-scheme".into(),
        ciphertext_sha256: [3; 32].into(),
        ciphertext_size: U64(1_000),
    };
    let sealed = market_hub_api::VersionInput {
        sealed: Some(artifact.clone()),
        ..version_input()
    };
    let v = m
        .env
        .call(
            &dev,
            &hub,
            methods::add_model_version(MODEL, &sealed).deposit(NEAR / 10),
        )
        .result()
        .expect("a sealed version");
    assert_eq!(v, 2);
    assert_eq!(
        m.env.view(&hub, methods::sealed_artifact(MODEL, 2)),
        Some(artifact)
    );
    assert_eq!(m.env.view(&hub, methods::sealed_artifact(MODEL, 1)), None);

    // The sealing key is bound by a receipt key of this runner, for this hub only.
    let runner_key = KeyPair::from_seed([2; 32]);
    let stranger = KeyPair::from_seed([9; 32]);
    for (signature, why) in [
        (
            binding(&m, &runner, [8; 32], &runner_key),
            "another key's binding",
        ),
        (
            binding(&m, &acc("other.near"), SEALING_KEY, &runner_key),
            "another runner's binding",
        ),
    ] {
        let refused = m
            .env
            .call(
                &runner,
                &hub,
                methods::register_sealing_key(
                    &SEALING_KEY,
                    &runner_key.public_key(),
                    &signature,
                    None,
                )
                .deposit(NEAR / 10),
            )
            .result();
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("does not verify")),
            "{why}: {refused:?}"
        );
    }
    let unregistered = m
        .env
        .call(
            &runner,
            &hub,
            methods::register_sealing_key(
                &SEALING_KEY,
                &stranger.public_key(),
                &binding(&m, &runner, SEALING_KEY, &stranger),
                None,
            )
            .deposit(NEAR / 10),
        )
        .result();
    assert!(unregistered.is_err_and(|e| e.contains("is not registered")));
    m.env
        .call(
            &runner,
            &hub,
            methods::register_sealing_key(
                &SEALING_KEY,
                &runner_key.public_key(),
                &binding(&m, &runner, SEALING_KEY, &runner_key),
                None,
            )
            .deposit(NEAR / 10),
        )
        .result()
        .expect("a bound sealing key");
    assert_eq!(
        m.env
            .view(&hub, methods::sealing_key(&runner))
            .expect("recorded")
            .key
            .0,
        SEALING_KEY
    );

    // Before any grant: the sealed version is not payable, the clear one is.
    let auth = m.authorization(0, NEAR);
    let outcomes = m
        .settle(
            &[sealed_receipt(&m, &auth, &runner_key, 1, 1_000)],
            300 * TGAS,
        )
        .result()
        .unwrap();
    assert_eq!(codes(&outcomes), [Err(RejectCode::RunnerNotAllowed)]);

    // Only the model's owner grants, only to a runner with a sealing key, well-formed.
    let (enc, wrapped) = ([1u8; 32], [2u8; 48]);
    let grant = |who: &AccountId, to: &AccountId, enc: &[u8], wrapped: &[u8], m: &mut Market| {
        m.env
            .call(
                who,
                &hub,
                methods::grant_sealed_version(MODEL, 2, to, &SEALING_KEY, enc, wrapped)
                    .deposit(NEAR / 10),
            )
            .result()
    };
    assert!(
        grant(&runner, &runner, &enc, &wrapped, &mut m).is_err_and(|e| e.contains("does not own"))
    );
    assert!(grant(&dev, &acc("user1.near"), &enc, &wrapped, &mut m)
        .is_err_and(|e| e.contains("is not registered")));
    assert!(
        grant(&dev, &runner, &enc, &wrapped[..40], &mut m).is_err_and(|e| e.contains("48 bytes"))
    );
    let clear = m.env.call(
        &dev,
        &hub,
        methods::grant_sealed_version(MODEL, 1, &runner, &SEALING_KEY, &enc, &wrapped)
            .deposit(NEAR / 10),
    );
    assert!(clear
        .result()
        .is_err_and(|e| e.contains("no sealed version 1")));
    grant(&dev, &runner, &enc, &wrapped, &mut m).expect("the owner grants");
    let recorded = m
        .env
        .view(&hub, methods::grant(MODEL, 2, &runner))
        .expect("the grant");
    assert_eq!(
        (
            recorded.sealing_key.0,
            recorded.enc.0,
            recorded.wrapped_key.0
        ),
        (SEALING_KEY.to_vec(), enc.to_vec(), wrapped.to_vec())
    );

    let outcomes = m
        .settle(
            &[sealed_receipt(&m, &auth, &runner_key, 1, 1_000)],
            300 * TGAS,
        )
        .result()
        .unwrap();
    assert_eq!(codes(&outcomes), [Ok(())], "a granted runner is paid");

    // Revoked: still paid until the notice ends, then refused.
    assert!(m
        .env
        .call(&runner, &hub, methods::revoke_grant(MODEL, 2, &runner))
        .result()
        .is_err_and(|e| e.contains("does not own")));
    m.env
        .call(&dev, &hub, methods::revoke_grant(MODEL, 2, &runner))
        .result()
        .expect("the owner revokes");
    let outcomes = m
        .settle(
            &[sealed_receipt(&m, &auth, &runner_key, 2, 2_000)],
            300 * TGAS,
        )
        .result()
        .unwrap();
    assert_eq!(codes(&outcomes), [Ok(())], "within the notice");
    m.env.chain.fast_forward(3 * 3_600);
    let outcomes = m
        .settle(
            &[sealed_receipt(&m, &auth, &runner_key, 3, 3_000)],
            300 * TGAS,
        )
        .result()
        .unwrap();
    assert_eq!(
        codes(&outcomes),
        [Err(RejectCode::RunnerNotAllowed)],
        "after it"
    );
    // The model is closed: a receipt naming its version in the clear is refused too, so
    // the revoked runner cannot serve the weights it decrypted under that number.
    let auth1 = m.authorization(1, NEAR);
    let outcomes = m
        .settle(&[m.receipt(&auth1, 1, 1_000)], 300 * TGAS)
        .result()
        .unwrap();
    assert_eq!(codes(&outcomes), [Err(RejectCode::RunnerNotAllowed)]);
}

//! Closed models against an attacker: a grant names the key it was wrapped to, slashed
//! runners and revoked receipt keys hold none, and a closed model pays only granted
//! runners whichever version a receipt names.

use market_hub_api::{SealedArtifact, Sealing};
use market_protocol::{crypto::native::KeyPair, sealing::SealingKeyBinding, NativeCrypto};
use near_sdk::json_types::{Base64VecU8, U64};

use super::*;

const KEY_A: [u8; 32] = [5; 32];
const KEY_B: [u8; 32] = [6; 32];

fn b64(bytes: &[u8]) -> Base64VecU8 {
    Base64VecU8::from(bytes.to_vec())
}

/// Registers `key` as runner.near's sealing key, bound by `receipt_key`.
fn register(w: &mut World, key: [u8; 32], receipt_key: &KeyPair, deposit: u128) {
    let prehash = SealingKeyBinding {
        hub: "hub.near".into(),
        chain_id: CHAIN.into(),
        runner: "runner.near".into(),
        sealing_key: key,
    }
    .prehash(&NativeCrypto);
    w.as_("runner.near", deposit);
    w.hub.register_sealing_key(
        b64(&key),
        receipt_key.public_key(),
        b64(&receipt_key.sign(&prehash).0),
        None,
    );
}

/// Adds version 2 of `MODEL`, sealed.
fn add_sealed_version(w: &mut World) {
    w.as_("dev.near", NEAR);
    let version = w.hub.add_model_version(
        MODEL.into(),
        VersionInput {
            sealed: Some(SealedArtifact {
                scheme: "test".into(),
                ciphertext_sha256: [3; 32].into(),
                ciphertext_size: U64(1_000),
            }),
            ..version_input()
        },
    );
    assert_eq!(version, 2);
}

fn grant(w: &mut World, version: u32, key: [u8; 32]) {
    w.as_("dev.near", NEAR / 10);
    w.hub.grant_sealed_version(
        MODEL.into(),
        version,
        acc("runner.near"),
        b64(&key),
        b64(&[1; 32]),
        b64(&[2; 48]),
    );
}

/// A receipt of `MODEL` with cumulative amounts `v1` and `v2` for its two versions (a
/// version's line once there, stays).
fn receipt(w: &World, auth: &SignedAuthorization, seq: u64, v1: u128, v2: u128) -> SettleItem {
    let mut builder = ReceiptBuilder::new(auth).seq(seq).issued_at(w.now);
    for (version, amount) in [(1, v1), (2, v2)] {
        if amount > 0 {
            let units = u64::try_from(amount / 10).expect("a test amount");
            builder = builder.line(MODEL, version, units, units, amount);
        }
    }
    builder.sign(&w.runner_key)
}

#[test]
fn a_grant_names_the_sealing_key_it_was_wrapped_to() {
    let mut w = World::new();
    add_sealed_version(&mut w);
    let runner_key = KeyPair::from_seed([2; 32]);
    register(&mut w, KEY_A, &runner_key, NEAR / 10);
    // The owner wrapped to a key a node made up, or to one the runner has since replaced.
    let msg = panic_message(|| grant(&mut w, 2, KEY_B));
    assert!(
        msg.contains("not the one the content key was wrapped to"),
        "{msg}"
    );
    register(&mut w, KEY_B, &runner_key, NEAR / 10);
    let msg = panic_message(|| grant(&mut w, 2, KEY_A));
    assert!(
        msg.contains("not the one the content key was wrapped to"),
        "{msg}"
    );
    grant(&mut w, 2, KEY_B);
    let recorded = w.hub.grant(MODEL.into(), 2, acc("runner.near")).unwrap();
    assert_eq!(recorded.sealing_key.0, KEY_B);
}

#[test]
fn slashed_runners_and_revoked_keys_get_no_sealing_key_or_grant() {
    let mut w = World::new();
    add_sealed_version(&mut w);
    let runner_key = KeyPair::from_seed([2; 32]);
    // No deposit: a function-call access key could otherwise replace the sealing key.
    let msg = panic_message(|| register(&mut w, KEY_A, &runner_key, 0));
    assert!(msg.contains("at least one yocto"), "{msg}");
    register(&mut w, KEY_A, &runner_key, NEAR / 10);

    // The receipt key that bound the sealing key is revoked: no new grant to it.
    let second = KeyPair::from_seed([44; 32]);
    w.as_("runner.near", NEAR);
    w.hub.add_runner_key(second.public_key());
    w.as_("runner.near", 1);
    w.hub.revoke_runner_key(runner_key.public_key());
    let msg = panic_message(|| grant(&mut w, 2, KEY_A));
    assert!(msg.contains("was revoked"), "{msg}");
    let msg = panic_message(|| register(&mut w, KEY_B, &runner_key, NEAR / 10));
    assert!(msg.contains("was revoked"), "{msg}");
    register(&mut w, KEY_B, &second, NEAR / 10);
    grant(&mut w, 2, KEY_B);

    // Slashed for contradictory receipts: neither a key nor a grant any more.
    let auth = w.authorization(NEAR, START + HOUR);
    let honest = w.receipt_with(&auth, 1, 1_000, |_| {});
    let honest = SettleItem {
        receipt: SignedReceipt::sign(honest.receipt.receipt, &second),
        ..honest
    };
    let liar = w.receipt_with(&auth, 1, 5_000, |_| {});
    let liar = SignedReceipt::sign(liar.receipt.receipt, &second);
    w.as_("relayer.near", 0);
    w.hub.report_equivocation(honest.receipt, liar);
    let msg = panic_message(|| register(&mut w, KEY_A, &second, NEAR / 10));
    assert!(msg.contains("was slashed"), "{msg}");
    let msg = panic_message(|| grant(&mut w, 2, KEY_B));
    assert!(msg.contains("was slashed"), "{msg}");
}

#[test]
fn a_closed_model_pays_only_granted_runners_whichever_version_a_receipt_names() {
    let mut w = World::new();
    let auth = w.authorization(NEAR, START + 100 * HOUR);
    add_sealed_version(&mut w);
    let runner_key = KeyPair::from_seed([2; 32]);
    register(&mut w, KEY_A, &runner_key, NEAR / 10);

    // Closing the model is scheduled: within the notice the clear version still pays.
    charge(&w.settle_one(receipt(&w, &auth, 1, 1_000, 0)));
    assert_eq!(
        rejected(&w.settle_one(receipt(&w, &auth, 2, 1_000, 1_000))),
        RejectCode::RunnerNotAllowed,
        "a sealed version needs its grant at once"
    );
    w.now += 3 * HOUR;
    assert_eq!(
        rejected(&w.settle_one(receipt(&w, &auth, 2, 2_000, 0))),
        RejectCode::RunnerNotAllowed,
        "after the notice, a clear version of a closed model needs a grant too"
    );

    grant(&mut w, 2, KEY_A);
    charge(&w.settle_one(receipt(&w, &auth, 2, 2_000, 0)));
    charge(&w.settle_one(receipt(&w, &auth, 3, 2_000, 1_000)));

    // Revoked: a runner keeping the weights it decrypted cannot relabel its receipts.
    w.as_("dev.near", 1);
    w.hub.revoke_grant(MODEL.into(), 2, acc("runner.near"));
    charge(&w.settle_one(receipt(&w, &auth, 4, 3_000, 1_000)));
    w.now += 3 * HOUR;
    for (v1, v2) in [(4_000, 1_000), (3_000, 2_000)] {
        assert_eq!(
            rejected(&w.settle_one(receipt(&w, &auth, 5, v1, v2))),
            RejectCode::RunnerNotAllowed,
            "({v1}, {v2}) after the revocation's notice"
        );
    }
}

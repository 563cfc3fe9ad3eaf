//! Grants and bindings with real HPKE and ed25519: each opens or verifies for exactly what it
//! names, and for nothing else.

use market_protocol::crypto::native::KeyPair;
use market_sealing::grant::{unwrap, wrap};
use market_sealing::{
    bind_message, verify_binding, ContentKey, Error, Grant, GrantContext, SealingKey,
    SealingPublicKey,
};

fn context() -> GrantContext {
    GrantContext {
        hub: "hub.test.near".parse().unwrap(),
        chain_id: "localnet".to_owned(),
        model_id: "closed-llama".to_owned(),
        version: 3,
        runner: "runner-1.test.near".parse().unwrap(),
    }
}

#[test]
fn a_grant_opens_for_its_runner_and_context() {
    let key = ContentKey::generate();
    let runner = SealingKey::generate();
    let grant = wrap(&key, &runner.public_key(), &context()).unwrap();
    assert_eq!((grant.enc.len(), grant.ciphertext.len()), (32, 48));
    assert_eq!(
        unwrap(&grant, &runner, &context()).unwrap().as_bytes(),
        key.as_bytes()
    );

    let json = serde_json::to_string(&grant).unwrap();
    assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), grant);
    assert_ne!(
        wrap(&key, &runner.public_key(), &context()).unwrap(),
        grant,
        "a fresh ephemeral key per grant"
    );
}

#[test]
fn a_grant_does_not_open_for_any_other_context() {
    let key = ContentKey::generate();
    let runner = SealingKey::generate();
    let grant = wrap(&key, &runner.public_key(), &context()).unwrap();
    let others = [
        (
            "hub",
            GrantContext {
                hub: "other-hub.test.near".parse().unwrap(),
                ..context()
            },
        ),
        (
            "chain",
            GrantContext {
                chain_id: "testnet".to_owned(),
                ..context()
            },
        ),
        (
            "model",
            GrantContext {
                model_id: "closed-llama-2".to_owned(),
                ..context()
            },
        ),
        (
            "version",
            GrantContext {
                version: 4,
                ..context()
            },
        ),
        (
            "runner",
            GrantContext {
                runner: "runner-2.test.near".parse().unwrap(),
                ..context()
            },
        ),
    ];
    for (field, other) in others {
        assert!(
            matches!(
                unwrap(&grant, &runner, &other),
                Err(Error::GrantRefused { .. })
            ),
            "another {field}"
        );
    }
}

#[test]
fn a_grant_does_not_open_with_another_secret_or_when_altered() {
    let key = ContentKey::generate();
    let runner = SealingKey::generate();
    let grant = wrap(&key, &runner.public_key(), &context()).unwrap();
    let other = SealingKey::generate();
    assert!(matches!(
        unwrap(&grant, &other, &context()),
        Err(Error::GrantRefused { .. })
    ));
    let mut enc = grant.clone();
    enc.enc[0] ^= 1;
    let mut ciphertext = grant.clone();
    ciphertext.ciphertext[40] ^= 1;
    let mut short = grant;
    short.enc.pop();
    for altered in [enc, ciphertext, short] {
        assert!(matches!(
            unwrap(&altered, &runner, &context()),
            Err(Error::GrantRefused { .. })
        ));
    }
}

#[test]
fn keys_round_trip_through_their_hex_strings() {
    let secret = SealingKey::generate();
    let public = secret.public_key();
    let text = public.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse::<SealingPublicKey>().unwrap(), public);
    assert_eq!(
        serde_json::to_string(&public).unwrap(),
        format!("\"{text}\"")
    );
    let again: SealingKey = secret.to_hex().parse().unwrap();
    assert_eq!(again.public_key(), public);
    assert!(!format!("{secret:?}").contains(secret.to_hex().as_str()));

    let key = ContentKey::generate();
    assert_eq!(
        key.to_hex().parse::<ContentKey>().unwrap().as_bytes(),
        key.as_bytes()
    );
    assert_eq!(format!("{key:?}"), "ContentKey(..)");
    assert!(matches!(
        "abc".parse::<ContentKey>(),
        Err(Error::BadKey {
            what: "content key",
            ..
        })
    ));
}

#[test]
fn a_binding_verifies_for_its_sealing_key_only() {
    let receipt_key = KeyPair::from_seed([1; 32]);
    let (hub, runner) = (context().hub, context().runner);
    let sealing = SealingKey::generate().public_key();
    let signature = receipt_key.sign(&bind_message(&hub, "localnet", &runner, &sealing));
    let verify = |hub: &str, chain: &str, runner: &str, sealing, key: &KeyPair| {
        verify_binding(
            &hub.parse().unwrap(),
            chain,
            &runner.parse().unwrap(),
            sealing,
            &key.public_key(),
            &signature,
        )
    };
    let (h, r) = (hub.as_str(), runner.as_str());
    verify(h, "localnet", r, &sealing, &receipt_key).unwrap();

    let another_sealing_key = SealingKey::generate().public_key();
    let cases = [
        (
            "sealing key",
            verify(h, "localnet", r, &another_sealing_key, &receipt_key),
        ),
        (
            "runner",
            verify(h, "localnet", "runner-2.test.near", &sealing, &receipt_key),
        ),
        (
            "hub",
            verify("other-hub.test.near", "localnet", r, &sealing, &receipt_key),
        ),
        ("chain", verify(h, "testnet", r, &sealing, &receipt_key)),
        (
            "receipt key",
            verify(h, "localnet", r, &sealing, &KeyPair::from_seed([2; 32])),
        ),
    ];
    for (other, case) in cases {
        assert!(
            matches!(case, Err(Error::BindingInvalid { .. })),
            "another {other}"
        );
    }
}

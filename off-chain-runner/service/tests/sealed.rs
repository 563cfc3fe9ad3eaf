//! A closed model end to end on the local chain: the owner seals a real checkpoint (the
//! engine's tiny generated llama) and registers the sealed version; the runner binds its
//! sealing key; without a grant the runner refuses to start before loading anything; with
//! one it unseals into memory and serves, paid per token; no plaintext reaches the disk.
#![cfg(feature = "engine")]

mod common;

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use common::*;
use market_hub_api::{jsonrpc::Signer, methods, VersionInput};
use near_crypto::{InMemorySigner, KeyType, SecretKey};
use near_sdk::json_types::U64;
use off_chain_runner::{sealed, server, token};
use sandbox_tests::{MODEL, NEAR};

/// Every file under `dir` changed since `since` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8], since: SystemTime, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&path, needle, since, found);
        } else if meta.is_file() && meta.modified().is_ok_and(|m| m >= since) {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
}

/// The runner with the engine's CPU backend, no model yet.
fn cpu_runner(net: &Net) -> server::Builder {
    server::Builder::new(
        net.hub_client(),
        net.runner.clone(),
        market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes()),
    )
    .backend(server::Backend::Engine(
        off_chain_runner::engine::EngineBackend::Cpu,
    ))
    .data_dir(&net.dir.join("data"))
    .listen("127.0.0.1:0".parse().unwrap())
    .expiry_margin(EXPIRY_MARGIN)
    .default_max_tokens(8)
}

/// A signer of `account` (the local chain's test accounts' keys are seeded by name).
fn rpc_signer(net: &Net, account: &near_sdk::AccountId) -> Signer {
    Signer::new(
        net.hub_client(),
        InMemorySigner::from_secret_key(
            account.clone(),
            SecretKey::from_seed(KeyType::ED25519, account.as_str()),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_model_is_served_only_by_a_granted_runner_and_never_written_in_the_clear() {
    let started = SystemTime::now();
    let net = Net::start("sealed", 1).await;
    let dev: near_sdk::AccountId = "dev.near".parse().unwrap();
    let rpc_signer = |account: &near_sdk::AccountId| rpc_signer(&net, account);

    // The owner seals a checkpoint of its own (a seed no other test uses), registers the
    // sealed version, and deletes the plaintext.
    let plain = temp_dir("sealed-plain");
    market_engine::testing::write_tiny_llama(&plain, market_engine::quant::Format::F32, 4_242)
        .unwrap();
    let weights = std::fs::read(plain.join("model.safetensors")).unwrap();
    let needle = weights[weights.len() / 2..][..64].to_vec();
    let artifact = net.dir.join("model.sealed");
    let content_key = net.dir.join("content.key");
    let info = sealed::seal_model(&plain, &artifact, &content_key).unwrap();
    std::fs::remove_dir_all(&plain).unwrap();
    let version = net
        .call(
            &dev,
            methods::add_model_version(
                MODEL,
                &VersionInput {
                    weights_sha256: info.weights_sha256.into(),
                    format: "safetensors".into(),
                    architecture: "llama".into(),
                    tokenizer_sha256: hash32(b"tok"),
                    uri: "https://models.example/tiny.sealed".into(),
                    size_bytes: U64(info.ciphertext_size),
                    sealed: Some(sealed::artifact(&info)),
                },
            )
            .deposit(NEAR / 10),
        )
        .await
        .expect("the sealed version");

    // The runner's sealing key, bound by its receipt key.
    let key_file = net.dir.join("sealing.key");
    sealed::generate_sealing_key(&key_file).unwrap();
    let sealing_key = sealed::read_sealing_key(&key_file).unwrap();
    sealed::register_sealing_key(
        &rpc_signer(&net.runner),
        &market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes()),
        &sealing_key,
        None,
        NEAR / 100,
    )
    .await
    .unwrap();

    let builder = || {
        cpu_runner(&net)
            .model(MODEL, &artifact)
            .sealing_key(sealed::read_sealing_key(&key_file).unwrap())
    };
    let refused = builder().start().await.err().expect("no grant, no start");
    assert!(
        refused.to_string().contains("holds no grant"),
        "{refused:#}"
    );
    let without_key = cpu_runner(&net)
        .model(MODEL, &artifact)
        .start()
        .await
        .err()
        .expect("a sealed model needs the sealing key");
    assert!(
        without_key.to_string().contains("--sealing-key"),
        "{without_key:#}"
    );

    // An owner that grants only to attested runners, with Intel's sample TDX quote (from
    // dcap-qvl's sources) at a time its collateral is valid: no record, no grant; a record
    // of a genuine quote that does not bind this sealing key, no grant either.
    attested_grants_are_checked(&net, &dev, version, &sealing_key, &content_key).await;

    // refused before anything is sent (and by the hub, were it sent).
    let substituted = market_sealing::SealingKey::generate().public_key();
    let refused = sealed::grant(
        &rpc_signer(&dev),
        &sealed::Grantee {
            model_id: MODEL,
            version,
            runner: &net.runner,
            sealing_key: &substituted,
        },
        &sealed::read_content_key(&content_key).unwrap(),
        None,
        NEAR / 100,
    )
    .await
    .expect_err("a key the runner did not register");
    assert!(
        refused.to_string().contains("another sealing key"),
        "{refused:#}"
    );
    sealed::grant(
        &rpc_signer(&dev),
        &sealed::Grantee {
            model_id: MODEL,
            version,
            runner: &net.runner,
            sealing_key: &sealing_key.public_key(),
        },
        &sealed::read_content_key(&content_key).unwrap(),
        None,
        NEAR / 100,
    )
    .await
    .unwrap();
    let running = builder()
        .start()
        .await
        .expect("granted: unsealed and served");
    let token = token::encode(&net.authorization(0, NEAR).await);
    let (s, body) = chat_once(running.addr, &token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["receipt"]["receipt"]["lines"][0]["version"], version,
        "the receipt names the sealed version: {body}"
    );
    assert_eq!(
        body["receipt"]["receipt"]["lines"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(yocto(&body["charged"]) > 0);

    // Nothing decrypted was written: not in the runner's data, the temp folders or /dev/shm.
    let mut found = Vec::new();
    for dir in [net.dir.clone(), std::env::temp_dir(), "/dev/shm".into()] {
        files_holding(&dir, &needle, started, &mut found);
    }
    assert!(found.is_empty(), "plaintext weights on disk: {found:?}");
    running.stop().await;

    // A tampered artifact is refused before anything is served.
    let original = std::fs::read(&artifact).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&artifact, &bytes).unwrap();
    let tampered = builder().start().await.err().expect("tampered");
    assert!(
        tampered.to_string().contains("is no sealed version"),
        "its hash is not the registered one: {tampered:#}"
    );
    std::fs::write(&artifact, &original).unwrap();

    // Rotation: the owner seals the same weights again under a new content key as a new
    // version, grants it, and revokes the old grant. The runner serves the new version;
    // the old one, its revocation scheduled, no longer starts.
    let plain = temp_dir("sealed-plain-again");
    market_engine::testing::write_tiny_llama(&plain, market_engine::quant::Format::F32, 4_242)
        .unwrap();
    let rotated = net.dir.join("model-v2.sealed");
    let rotated_key = net.dir.join("content-v2.key");
    let info2 = sealed::seal_model(&plain, &rotated, &rotated_key).unwrap();
    std::fs::remove_dir_all(&plain).unwrap();
    assert_eq!(info2.weights_sha256, info.weights_sha256);
    assert_ne!(info2.ciphertext_sha256, info.ciphertext_sha256);
    let version2 = net
        .call(
            &dev,
            methods::add_model_version(
                MODEL,
                &VersionInput {
                    weights_sha256: info2.weights_sha256.into(),
                    format: "safetensors".into(),
                    architecture: "llama".into(),
                    tokenizer_sha256: hash32(b"tok"),
                    uri: "https://models.example/tiny-v2.sealed".into(),
                    size_bytes: U64(info2.ciphertext_size),
                    sealed: Some(sealed::artifact(&info2)),
                },
            )
            .deposit(NEAR / 10),
        )
        .await
        .expect("the rotated version");
    sealed::grant(
        &rpc_signer(&dev),
        &sealed::Grantee {
            model_id: MODEL,
            version: version2,
            runner: &net.runner,
            sealing_key: &sealing_key.public_key(),
        },
        &sealed::read_content_key(&rotated_key).unwrap(),
        None,
        NEAR / 100,
    )
    .await
    .unwrap();
    net.call(&dev, methods::revoke_grant(MODEL, version, &net.runner))
        .await
        .expect("the old grant is revoked");
    let old = builder()
        .start()
        .await
        .err()
        .expect("the old grant is revoked");
    assert!(old.to_string().contains("revoked"), "{old:#}");
    let running = cpu_runner(&net)
        .model(MODEL, &rotated)
        .sealing_key(sealed::read_sealing_key(&key_file).unwrap())
        .admission_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("the rotated version serves");
    let (s, body) = chat_once(running.addr, &token).await;
    assert_eq!(s, 200, "{body}");
    let lines = body["receipt"]["receipt"]["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["version"] == version2),
        "the receipt names the rotated version: {body}"
    );

    // Revoked while serving: the runner stops taking requests for it (403) rather than
    // doing work the hub will not pay for once the notice ends.
    net.call(&dev, methods::revoke_grant(MODEL, version2, &net.runner))
        .await
        .expect("the rotated grant is revoked");
    let mut refused = None;
    for _ in 0..100 {
        let (s, body) = chat_once(running.addr, &token).await;
        if s == 403 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = refused.expect("403 once the revocation is seen");
    assert_eq!(body["error"]["code"], "runner_not_allowed", "{body}");
    running.stop().await;

    // The same weights in the clear are the plaintext of a closed model: not served
    // without a grant in force either (the hub would refuse every receipt).
    let plain = temp_dir("sealed-plain-clear");
    market_engine::testing::write_tiny_llama(&plain, market_engine::quant::Format::F32, 4_242)
        .unwrap();
    let clear = cpu_runner(&net)
        .model(MODEL, &plain)
        .start()
        .await
        .err()
        .expect("a closed model's plaintext without a grant");
    assert!(clear.to_string().contains("is closed"), "{clear:#}");
}

const SAMPLE_MRTD: &str = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
/// 2025-07-01, inside the sample collateral's validity.
const SAMPLE_TIME: u64 = 1_751_328_000;

async fn attested_grants_are_checked(
    net: &Net,
    dev: &near_sdk::AccountId,
    version: u32,
    sealing_key: &market_sealing::SealingKey,
    content_key: &Path,
) {
    use sha2::Digest;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sealing/tests/data");
    let evidence = || {
        sealed::Evidence::read(
            &data.join("tdx_quote"),
            &data.join("tdx_quote_collateral.json"),
        )
        .unwrap()
    };
    let grant = |mrtd: &str| {
        let required = sealed::Required {
            evidence: evidence(),
            policy: market_sealing::AttestationPolicy::new(vec![hex::decode(mrtd).unwrap()]),
            now_unix_secs: SAMPLE_TIME,
        };
        async move {
            sealed::grant(
                &rpc_signer(net, dev),
                &sealed::Grantee {
                    model_id: MODEL,
                    version,
                    runner: &net.runner,
                    sealing_key: &sealing_key.public_key(),
                },
                &sealed::read_content_key(content_key).unwrap(),
                Some(&required),
                NEAR / 100,
            )
            .await
            .expect_err("not attested")
        }
    };
    let refused = grant(SAMPLE_MRTD).await;
    assert!(
        refused.to_string().contains("carries no attestation"),
        "{refused:#}"
    );
    // The runner's command checks its quote before recording it: this one binds another
    // key (and its collateral has expired by now).
    let receipt_key =
        market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes());
    let refused = sealed::register_sealing_key(
        &rpc_signer(net, &net.runner),
        &receipt_key,
        sealing_key,
        Some(&evidence()),
        NEAR / 100,
    )
    .await
    .expect_err("a quote that does not bind the key");
    assert!(
        format!("{refused:#}").contains("attestation quote"),
        "{refused:#}"
    );
    // A record made without the command (the hub does not verify quotes): the owner's
    // check finds the quote genuine but not this key's, or of a measurement not allowed.
    let public = sealing_key.public_key();
    let hub = net.hub_client();
    let message = market_sealing::bind_message(&hub.account, &hub.chain_id, &net.runner, &public);
    let signature = ed25519_dalek::Signer::sign(&receipt_key.0, &message).to_bytes();
    let record = market_hub_api::Attestation {
        tee: "tdx".into(),
        measurement: SAMPLE_MRTD.into(),
        quote_sha256: <[u8; 32]>::from(sha2::Sha256::digest(evidence().quote)).into(),
    };
    net.call(
        &net.runner,
        methods::register_sealing_key(
            public.as_bytes(),
            &receipt_key.public_key(),
            &signature,
            Some(&record),
        )
        .deposit(NEAR / 100),
    )
    .await
    .expect("a record the hub takes on trust");
    let refused = grant(SAMPLE_MRTD).await;
    assert!(
        format!("{refused:#}").contains("does not bind this sealing key"),
        "{refused:#}"
    );
    let refused = grant(&"ab".repeat(48)).await;
    assert!(
        format!("{refused:#}").contains("is not among the 1 allowed"),
        "{refused:#}"
    );
}

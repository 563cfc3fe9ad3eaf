//! A closed model end to end on the local chain: the owner seals a real checkpoint (the
//! engine's tiny generated llama) and registers the sealed version; the runner binds its
//! sealing key; without a grant the runner refuses to start before loading anything; with
//! one it unseals into memory and serves, paid per token; no plaintext reaches the disk.
#![cfg(feature = "engine")]

mod common;

use std::{path::Path, time::SystemTime};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_model_is_served_only_by_a_granted_runner_and_never_written_in_the_clear() {
    let started = SystemTime::now();
    let net = Net::start("sealed", 1).await;
    let dev: near_sdk::AccountId = "dev.near".parse().unwrap();
    let rpc_signer = |account: &near_sdk::AccountId| {
        Signer::new(
            net.hub_client(),
            InMemorySigner::from_secret_key(
                account.clone(),
                SecretKey::from_seed(KeyType::ED25519, account.as_str()),
            ),
        )
    };

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
        NEAR / 100,
    )
    .await
    .unwrap();

    let builder = || {
        server::Builder::new(
            net.hub_client(),
            net.runner.clone(),
            market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes()),
        )
        .model(MODEL, &artifact)
        .sealing_key(sealed::read_sealing_key(&key_file).unwrap())
        .backend(server::Backend::Engine(
            off_chain_runner::engine::EngineBackend::Cpu,
        ))
        .data_dir(&net.dir.join("data"))
        .listen("127.0.0.1:0".parse().unwrap())
        .expiry_margin(EXPIRY_MARGIN)
        .default_max_tokens(8)
    };
    let refused = builder().start().await.err().expect("no grant, no start");
    assert!(
        refused.to_string().contains("holds no grant"),
        "{refused:#}"
    );
    let without_key = server::Builder::new(
        net.hub_client(),
        net.runner.clone(),
        market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes()),
    )
    .model(MODEL, &artifact)
    .start()
    .await
    .err()
    .expect("a sealed model needs the sealing key");
    assert!(
        without_key.to_string().contains("--sealing-key"),
        "{without_key:#}"
    );

    sealed::grant(
        &rpc_signer(&dev),
        MODEL,
        version,
        &net.runner,
        &sealed::read_content_key(&content_key).unwrap(),
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
        MODEL,
        version2,
        &net.runner,
        &sealed::read_content_key(&rotated_key).unwrap(),
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
    let running = server::Builder::new(
        net.hub_client(),
        net.runner.clone(),
        market_protocol::crypto::native::KeyPair::from_seed(net.runner_key.0.to_bytes()),
    )
    .model(MODEL, &rotated)
    .sealing_key(sealed::read_sealing_key(&key_file).unwrap())
    .backend(server::Backend::Engine(
        off_chain_runner::engine::EngineBackend::Cpu,
    ))
    .data_dir(&net.dir.join("data"))
    .listen("127.0.0.1:0".parse().unwrap())
    .expiry_margin(EXPIRY_MARGIN)
    .default_max_tokens(8)
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
    running.stop().await;
}

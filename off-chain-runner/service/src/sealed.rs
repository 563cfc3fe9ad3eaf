//! Closed models from the command line (`market-sealing` does the cryptography): the
//! owner seals a model and grants its key to chosen runners; a runner keeps an X25519
//! sealing key and binds it to its receipt key on the hub. Serving a sealed model is
//! `registry::open_sealed_model`.

use std::path::Path;

use anyhow::Context;
use market_hub_api::{jsonrpc::Signer, methods, SealedArtifact};
use market_protocol::crypto::native::KeyPair;
use market_sealing::{ContentKey, GrantContext, SealedInfo, SealingKey, SealingPublicKey};
use near_sdk::{json_types::U64, AccountId};

use crate::keys::write_secret;

/// Seals the model at `model` into a new file `out` under a fresh content key, written
/// (owner-only, hex) to the new file `key_out`. Returns what the version registers.
pub fn seal_model(model: &Path, out: &Path, key_out: &Path) -> anyhow::Result<SealedInfo> {
    let key = ContentKey::generate();
    write_secret(key_out, key.to_hex().as_bytes())?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {} (never overwritten)", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let info = market_sealing::seal(model, &key, &mut writer)
        .with_context(|| format!("sealing {}", model.display()))?;
    writer
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(info)
}

/// The `sealed` field of the version to register for `info`.
pub fn artifact(info: &SealedInfo) -> SealedArtifact {
    SealedArtifact {
        scheme: market_sealing::SCHEME.to_owned(),
        ciphertext_sha256: info.ciphertext_sha256.into(),
        ciphertext_size: U64(info.ciphertext_size),
    }
}

/// A new sealing key in the new file `out` (owner-only, hex); returns its public key.
pub fn generate_sealing_key(out: &Path) -> anyhow::Result<SealingPublicKey> {
    let key = SealingKey::generate();
    write_secret(out, key.to_hex().as_bytes())?;
    Ok(key.public_key())
}

pub fn read_sealing_key(path: &Path) -> anyhow::Result<SealingKey> {
    read_hex(path, "sealing key")
}

pub fn read_content_key(path: &Path) -> anyhow::Result<ContentKey> {
    read_hex(path, "content key")
}

fn read_hex<T: std::str::FromStr>(path: &Path, what: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: not a {what}: {e}", path.display()))
}

/// Registers `sealing`'s public key as the runner's (`signer`'s account), bound by a
/// signature of its receipt key `receipt`.
pub async fn register_sealing_key(
    signer: &Signer,
    receipt: &KeyPair,
    sealing: &SealingKey,
    deposit: u128,
) -> anyhow::Result<()> {
    use ed25519_dalek::Signer as _;
    let hub = signer.hub();
    let public = sealing.public_key();
    let message =
        market_sealing::bind_message(&hub.account, &hub.chain_id, &signer.account(), &public);
    let signature = receipt.0.sign(&message).to_bytes();
    signer
        .call(
            methods::register_sealing_key(
                public.as_bytes(),
                &receipt.public_key(),
                &signature,
                None,
            )
            .deposit(deposit),
        )
        .await
        .context("registering the sealing key")?;
    Ok(())
}

/// The model's owner (`signer`) grants version `version` of `model_id` to `runner`: the
/// content key wrapped to the sealing key the hub records for it.
pub async fn grant(
    signer: &Signer,
    model_id: &str,
    version: u32,
    runner: &AccountId,
    content_key: &ContentKey,
    deposit: u128,
) -> anyhow::Result<()> {
    let hub = signer.hub();
    let recorded = hub
        .view(methods::sealing_key(runner))
        .await?
        .with_context(|| {
            format!(
                "runner {runner} has registered no sealing key on hub {}",
                hub.account
            )
        })?;
    let bytes: [u8; 32] = recorded
        .key
        .0
        .as_slice()
        .try_into()
        .context("the hub's sealing key is not 32 bytes")?;
    let context = GrantContext {
        hub: hub.account.clone(),
        chain_id: hub.chain_id.clone(),
        model_id: model_id.to_owned(),
        version,
        runner: runner.clone(),
    };
    let wrapped =
        market_sealing::grant::wrap(content_key, &SealingPublicKey::from_bytes(bytes), &context)?;
    signer
        .call(
            methods::grant_sealed_version(
                model_id,
                version,
                runner,
                &wrapped.enc,
                &wrapped.ciphertext,
            )
            .deposit(deposit),
        )
        .await
        .context("posting the grant")?;
    Ok(())
}

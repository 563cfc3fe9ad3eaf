//! Closed models from the command line (`market-sealing` does the cryptography): the
//! owner seals a model and grants its key to chosen runners; a runner keeps an X25519
//! sealing key and binds it to its receipt key on the hub. Serving a sealed model is
//! `registry::open_sealed_model`.

use std::path::Path;

use anyhow::{bail, Context};
use market_hub_api::{jsonrpc::Signer, methods, Attestation, SealedArtifact};
use market_protocol::{crypto::native::KeyPair, sealing::SealingKeyBinding};
use market_sealing::{
    AttestationPolicy, ContentKey, GrantContext, SealedInfo, SealingKey, SealingPublicKey,
};
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

/// A TDX quote of the machine holding a sealing key, and the collateral that verifies it
/// (dcap-qvl's `QuoteCollateralV3` JSON, from Intel's PCS or a PCCS).
pub struct Evidence {
    pub quote: Vec<u8>,
    pub collateral_json: String,
}

impl Evidence {
    pub fn read(quote: &Path, collateral: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            quote: std::fs::read(quote).with_context(|| format!("reading {}", quote.display()))?,
            collateral_json: std::fs::read_to_string(collateral)
                .with_context(|| format!("reading {}", collateral.display()))?,
        })
    }

    /// The quote verified as of `now_unix_secs`, with `policy` applied to it and to the
    /// binding of `sealing_key` to `runner` on `hub`.
    fn verify(
        &self,
        policy: &AttestationPolicy,
        now_unix_secs: u64,
        binding: &SealingKeyBinding,
    ) -> anyhow::Result<market_sealing::VerifiedQuote> {
        let verifier = market_sealing::DcapVerifier::from_collateral_json(&self.collateral_json)?;
        Ok(policy.verify(&verifier, &self.quote, now_unix_secs, binding)?)
    }
}

/// What `runner`'s receipt key signs for `sealing_key` on `hub`, and an attested TEE puts
/// in its quote's report data.
fn binding(
    hub: &market_hub_api::jsonrpc::HubClient,
    runner: &AccountId,
    sealing_key: &SealingPublicKey,
) -> SealingKeyBinding {
    SealingKeyBinding {
        hub: hub.account.to_string(),
        chain_id: hub.chain_id.clone(),
        runner: runner.to_string(),
        sealing_key: *sealing_key.as_bytes(),
    }
}

/// What an owner demands of a runner's sealing key before granting: its attestation record
/// on the hub names `evidence`'s quote, which verifies at `now_unix_secs` and passes `policy`.
pub struct Required {
    pub evidence: Evidence,
    pub policy: AttestationPolicy,
    pub now_unix_secs: u64,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Registers `sealing`'s public key as the runner's (`signer`'s account), bound by a
/// signature of its receipt key `receipt`. With `evidence`, the quote is checked first (it
/// verifies now and its report data binds this key; any measurement and TCB status, which
/// are the owners' to judge) and recorded as the key's attestation.
pub async fn register_sealing_key(
    signer: &Signer,
    receipt: &KeyPair,
    sealing: &SealingKey,
    evidence: Option<&Evidence>,
    deposit: u128,
) -> anyhow::Result<()> {
    use ed25519_dalek::Signer as _;
    use sha2::Digest;
    let hub = signer.hub();
    let public = sealing.public_key();
    let message =
        market_sealing::bind_message(&hub.account, &hub.chain_id, &signer.account(), &public);
    let signature = receipt.0.sign(&message).to_bytes();
    let attestation = match evidence {
        Some(evidence) => {
            use market_sealing::QuoteVerifier as _;
            let dcap =
                market_sealing::DcapVerifier::from_collateral_json(&evidence.collateral_json)?;
            let verified = dcap
                .verify(&evidence.quote, unix_now())
                .context("checking the attestation quote")?;
            let expected =
                market_sealing::report_data_for(&binding(hub, &signer.account(), &public));
            if verified.report_data != expected {
                bail!(
                    "the quote's report data is not this sealing key's binding: the TEE must quote {}",
                    hex::encode(expected)
                );
            }
            Some(Attestation {
                tee: verified.tee.as_str().to_owned(),
                measurement: hex::encode(&verified.measurement),
                quote_sha256: <[u8; 32]>::from(sha2::Sha256::digest(&evidence.quote)).into(),
            })
        }
        None => None,
    };
    signer
        .call(
            methods::register_sealing_key(
                public.as_bytes(),
                &receipt.public_key(),
                &signature,
                attestation.as_ref(),
            )
            .deposit(deposit),
        )
        .await
        .context("registering the sealing key")?;
    Ok(())
}

/// Who a grant is for: a sealed version, and the runner with its sealing key.
#[derive(Clone, Copy)]
pub struct Grantee<'a> {
    pub model_id: &'a str,
    pub version: u32,
    pub runner: &'a AccountId,
    pub sealing_key: &'a SealingPublicKey,
}

/// The model's owner (`signer`) grants version `version` of `model_id` to `runner`: the
/// content key wrapped to `sealing_key`, which the owner has from the runner itself. Not
/// from a node's view: a node that lies would substitute its own key and read the content
/// key off the transaction, which passes through it whatever the hub then says. The hub
/// refuses the grant unless `sealing_key` is the runner's current one; the view is asked
/// first only to say so before anything is sent.
pub async fn grant(
    signer: &Signer,
    grantee: &Grantee<'_>,
    content_key: &ContentKey,
    required: Option<&Required>,
    deposit: u128,
) -> anyhow::Result<()> {
    let Grantee {
        model_id,
        version,
        runner,
        sealing_key,
    } = *grantee;
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
    if recorded.key.0 != sealing_key.as_bytes() {
        bail!(
            "the hub records another sealing key for runner {runner} than {sealing_key}: \
             ask the runner which key it registered"
        );
    }
    if let Some(required) = required {
        let record = recorded.attestation.as_ref().with_context(|| {
            format!("runner {runner}'s sealing key carries no attestation, and one is required")
        })?;
        let verified = required
            .evidence
            .verify(
                &required.policy,
                required.now_unix_secs,
                &binding(hub, runner, sealing_key),
            )
            .context("the runner's attestation")?;
        market_sealing::check_record(
            &verified,
            &required.evidence.quote,
            &record.tee,
            &record.measurement,
            &record.quote_sha256.into(),
        )
        .context("the runner's attestation record on the hub")?;
    }
    let context = GrantContext {
        hub: hub.account.clone(),
        chain_id: hub.chain_id.clone(),
        model_id: model_id.to_owned(),
        version,
        runner: runner.clone(),
    };
    let wrapped = market_sealing::grant::wrap(content_key, sealing_key, &context)?;
    signer
        .call(
            methods::grant_sealed_version(
                model_id,
                version,
                runner,
                sealing_key.as_bytes(),
                &wrapped.enc,
                &wrapped.ciphertext,
            )
            .deposit(deposit),
        )
        .await
        .context("posting the grant")?;
    Ok(())
}

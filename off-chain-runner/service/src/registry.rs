//! Checks against the hub before serving: the runner and its receipt key are registered,
//! each model's weights match a registered version whose policy admits this runner, and
//! each content file is registered inference-only content with the same hash. The runner
//! refuses to start otherwise, with a message that says which check failed.

use std::{collections::HashMap, path::Path};

use anyhow::{bail, Context};
use market_protocol::validate_content_id;
use near_sdk::{AccountId, PublicKey};

use market_hub_api::{jsonrpc::HubClient, methods, Model};

use crate::state::LocalContent;

/// A served model as the hub knows it.
#[derive(Clone, Debug)]
pub struct Registered {
    pub model_id: String,
    pub version: u32,
    pub architecture: String,
    pub format: String,
    pub weights_sha256: [u8; 32],
}

pub async fn check_runner(
    hub: &HubClient,
    runner: &AccountId,
    receipt_key: &PublicKey,
) -> anyhow::Result<()> {
    let state = hub.view(methods::runner(runner)).await?.with_context(|| {
        format!(
            "{runner} is not a registered runner on hub {}: run `off-chain-runner register` first",
            hub.account
        )
    })?;
    if state.left {
        bail!("runner {runner} has left hub {}", hub.account);
    }
    let key = String::from(receipt_key);
    match hub.view(methods::runner_key(runner, receipt_key)).await? {
        Some(k) if !k.revoked() => Ok(()),
        Some(_) => bail!("receipt key {key} was revoked on hub {}; generate and register a new one", hub.account),
        None => bail!("receipt key {key} is not registered to runner {runner} on hub {}: add it with `off-chain-runner register`", hub.account),
    }
}

/// Hashes the weights at `path` (the protocol crate's definition) and finds the registered
/// version of `model_id` that has that hash.
pub async fn check_model(
    hub: &HubClient,
    runner: &AccountId,
    model_id: &str,
    path: &Path,
    progress: impl FnMut(u64, u64) + Send + 'static,
) -> anyhow::Result<Registered> {
    let owned = path.to_path_buf();
    let hash = tokio::task::spawn_blocking(move || {
        market_protocol::weights::weights_sha256(&owned, progress)
    })
    .await?
    .with_context(|| format!("hashing the weights at {}", path.display()))?;
    let model = hub.view(methods::model(model_id)).await?.with_context(|| {
        format!(
            "model `{model_id}` is not registered on hub {}",
            hub.account
        )
    })?;
    let mut registered = Vec::new();
    for version in (1..=model.model.versions).rev() {
        let Some(v) = hub.view(methods::model_version(model_id, version)).await? else {
            continue;
        };
        let weights: [u8; 32] = v.weights_sha256.into();
        if weights == hash {
            // The plaintext of a sealed version is served only with its grant.
            check_admitted(hub, runner, model_id, &model.model, version).await?;
            return Ok(Registered {
                model_id: model_id.to_owned(),
                version,
                architecture: v.architecture,
                format: v.format,
                weights_sha256: hash,
            });
        }
        registered.push(format!("v{version} {}", hex::encode(weights)));
    }
    bail!(
        "the weights at {} (sha256 {}) match no registered version of model `{model_id}` (registered: {})",
        path.display(),
        hex::encode(hash),
        if registered.is_empty() { "none".to_owned() } else { registered.join(", ") }
    )
}

/// Whether the hub pays `runner` for `version` of `model_id`, now and once its scheduled
/// changes take effect: the model's runner policy admits it, and if the model is closed
/// (has a sealed version), it holds a grant with no revocation scheduled: of `version` if
/// that is sealed, of any sealed version if not (the hub's rule, `market-hub`'s `sealing`).
/// Stricter than the hub in one way: a runner stops at a scheduled change rather than
/// serving through its notice, so it never does work the hub may refuse to pay.
pub async fn check_admitted(
    hub: &HubClient,
    runner: &AccountId,
    model_id: &str,
    model: &Model,
    version: u32,
) -> anyhow::Result<()> {
    if !model.allows_now_and_scheduled(runner) {
        bail!(
            "model `{model_id}`'s runner policy {:?} (or the one scheduled) does not allow runner {runner}",
            model.terms.runner_policy
        );
    }
    let mut sealed = Vec::new();
    for v in 1..=model.versions {
        if hub
            .view(methods::sealed_artifact(model_id, v))
            .await?
            .is_some()
        {
            sealed.push(v);
        }
    }
    if sealed.is_empty() {
        return Ok(());
    }
    let needed: Vec<u32> = if sealed.contains(&version) {
        vec![version]
    } else {
        sealed.clone()
    };
    let mut revoked = Vec::new();
    for v in &needed {
        match hub.view(methods::grant(model_id, *v, runner)).await? {
            Some(grant) if grant.revoked.is_none() => return Ok(()),
            Some(_) => revoked.push(format!("v{v}")),
            None => {}
        }
    }
    let list = |versions: &[u32]| {
        versions
            .iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let why = if revoked.is_empty() {
        format!("holds no grant of {}", list(&needed))
    } else {
        format!("its grant of {} is revoked", revoked.join(", "))
    };
    bail!(
        "model `{model_id}` is closed (sealed versions: {}): runner {runner} is not paid for version {version}: {why}; its owner grants one with `sealed grant`",
        list(&sealed)
    )
}

/// Whether the file at `path` is a sealed artifact (`market-sealing`'s format).
pub fn is_sealed(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && magic == market_sealing::artifact::MAGIC
}

/// A sealed model, checked and opened: the registered version whose sealing the artifact
/// at `path` is, this runner's grant of it (wrapped to `sealing_key`), and the model's
/// files decrypted into memory, their weights hash the version's. Nothing is written.
pub async fn open_sealed_model(
    hub: &HubClient,
    runner: &AccountId,
    model_id: &str,
    path: &Path,
    sealing_key: Option<&market_sealing::SealingKey>,
) -> anyhow::Result<(Registered, Vec<(String, Vec<u8>)>)> {
    use sha2::Digest;
    let sealing_key = sealing_key.with_context(|| {
        format!(
            "{} is a sealed model: serve it with --sealing-key, the key registered with `register-sealing-key`",
            path.display()
        )
    })?;
    let owned = path.to_path_buf();
    let ciphertext: [u8; 32] = tokio::task::spawn_blocking(move || {
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&owned)?, &mut hasher)?;
        Ok::<_, std::io::Error>(hasher.finalize().into())
    })
    .await?
    .with_context(|| format!("hashing the sealed artifact {}", path.display()))?;
    let model = hub.view(methods::model(model_id)).await?.with_context(|| {
        format!(
            "model `{model_id}` is not registered on hub {}",
            hub.account
        )
    })?;
    let mut found = None;
    for version in (1..=model.model.versions).rev() {
        if let Some(sealed) = hub
            .view(methods::sealed_artifact(model_id, version))
            .await?
        {
            if <[u8; 32]>::from(sealed.ciphertext_sha256) == ciphertext {
                found = Some(version);
                break;
            }
        }
    }
    let version = found.with_context(|| {
        format!(
            "the sealed artifact {} (sha256 {}) is no sealed version of model `{model_id}`",
            path.display(),
            hex::encode(ciphertext)
        )
    })?;
    check_admitted(hub, runner, model_id, &model.model, version).await?;
    let registered = hub
        .view(methods::model_version(model_id, version))
        .await?
        .with_context(|| format!("model `{model_id}` has no version {version}"))?;
    let grant = hub
        .view(methods::grant(model_id, version, runner))
        .await?
        .with_context(|| {
            format!("the grant of model `{model_id}` version {version} to {runner} is gone")
        })?;
    let ours = sealing_key.public_key();
    if grant.sealing_key.0 != ours.as_bytes() {
        bail!(
            "the grant of model `{model_id}` version {version} is wrapped to another sealing key than {ours}: ask the owner to grant again"
        );
    }
    let context = market_sealing::GrantContext {
        hub: hub.account.clone(),
        chain_id: hub.chain_id.clone(),
        model_id: model_id.to_owned(),
        version,
        runner: runner.clone(),
    };
    let content_key = market_sealing::grant::unwrap(
        &market_sealing::Grant {
            enc: grant.enc.0,
            ciphertext: grant.wrapped_key.0,
        },
        sealing_key,
        &context,
    )?;
    let weights: [u8; 32] = registered.weights_sha256.into();
    let owned = path.to_path_buf();
    let unsealed = tokio::task::spawn_blocking(move || {
        let file = std::io::BufReader::new(std::fs::File::open(&owned)?);
        Ok::<_, anyhow::Error>(market_sealing::unseal(file, &content_key)?.check_weights(&weights)?)
    })
    .await?
    .with_context(|| format!("unsealing {}", path.display()))?;
    Ok((
        Registered {
            model_id: model_id.to_owned(),
            version,
            architecture: registered.architecture,
            format: registered.format,
            weights_sha256: weights,
        },
        unsealed.files.into_iter().map(Into::into).collect(),
    ))
}

/// Loads every file in `dir` as content named by its file stem (`<content_id>.txt`).
pub async fn load_content(
    hub: &HubClient,
    dir: &Path,
) -> anyhow::Result<HashMap<String, LocalContent>> {
    use sha2::Digest;
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("reading content directory {}", dir.display()))?
    {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: file name is not UTF-8", path.display()))?
            .to_owned();
        validate_content_id(&id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let bytes = std::fs::read(&path)?;
        let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        let item = hub.view(methods::content(&id)).await?.with_context(|| {
            format!(
                "content `{id}` ({}) is not registered on hub {}",
                path.display(),
                hub.account
            )
        })?;
        if <[u8; 32]>::from(item.sha256) != hash {
            bail!(
                "content `{id}`: {} has sha256 {}, the hub registered {}",
                path.display(),
                hex::encode(hash),
                hex::encode(<[u8; 32]>::from(item.sha256))
            );
        }
        let price_per_use = item.price_per_use().with_context(|| {
            format!(
                "content `{id}` is not inference-only content (license {:?})",
                item.license
            )
        })?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("content `{id}` is not UTF-8 text"))?;
        out.insert(
            id,
            LocalContent {
                text,
                price_per_use,
            },
        );
    }
    Ok(out)
}

//! Which loader a model's files need: a `.gguf` file (or a directory with one) is a llama
//! decoder; a Hugging Face layout is whatever its `config.json` says (llama or bert).

use std::path::Path;
use std::sync::Arc;

use crate::api::{Backend, LoadOptions, Model};
use crate::files::Source;
use crate::gguf::Gguf;
use crate::gpu::Gpu;
use crate::safetensors_dir::SafetensorsDir;
use crate::weights::Sha256;
use crate::{Error, Result};

/// Loads the model in `source`; `options` apply to a chat model.
pub fn load(
    source: Source<'_>,
    backend: Backend,
    gpu: Option<&Arc<Gpu>>,
    sha256: Sha256,
    options: &LoadOptions,
) -> Result<Model> {
    if let Source::Path(path) = source {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    let gpu = match backend {
        Backend::Cpu => None,
        Backend::Gpu => Some(gpu.cloned().map_or_else(Gpu::new, Ok)?),
    };
    let sha256 = crate::weights::check(&source, sha256)?;
    let (ggufs, weights): (Vec<_>, Vec<_>) = source
        .weights()?
        .into_iter()
        .partition(|(name, _)| Path::new(name).extension().is_some_and(|e| e == "gguf"));
    let mut ggufs = ggufs.into_iter();
    match (ggufs.next(), ggufs.next()) {
        (Some((_, bytes)), None) => {
            let gguf = Gguf::from_bytes(bytes)?;
            return Ok(Model::Chat(crate::llama::load(
                &source,
                Some(&gguf),
                None,
                gpu.as_ref(),
                sha256,
                options,
            )?));
        }
        (Some(_), Some(_)) => {
            return Err(Error::Format(format!(
                "{} holds several .gguf files: name one",
                source.describe()
            )))
        }
        (None, _) => {}
    }
    let st = SafetensorsDir::open(&source, weights)?;
    let kind = st
        .config
        .get("model_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match kind.as_str() {
        "llama" => Ok(Model::Chat(crate::llama::load(
            &source,
            None,
            Some(&st),
            gpu.as_ref(),
            sha256,
            options,
        )?)),
        "bert" => Ok(Model::Embedding(crate::bert::load(
            &st,
            &source,
            gpu.as_ref(),
            sha256,
        )?)),
        other => Err(Error::Format(format!(
            "model_type {other:?} in config.json is not supported (llama, bert)"
        ))),
    }
}

//! Which loader a path needs: a `.gguf` file (or a directory with one) is a llama decoder;
//! a Hugging Face directory is whatever its `config.json` says (llama or bert).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::{Backend, Model};
use crate::gguf::Gguf;
use crate::gpu::Gpu;
use crate::safetensors_dir::SafetensorsDir;
use crate::weights::Sha256;
use crate::{Error, Result};

fn gguf_file(path: &Path) -> Result<Option<PathBuf>> {
    if path.is_file() {
        return Ok(path
            .extension()
            .is_some_and(|e| e == "gguf")
            .then(|| path.to_path_buf()));
    }
    let files = crate::weights::weight_files(path)?;
    let ggufs: Vec<_> = files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(Error::Format(format!(
            "{} holds several .gguf files: name one",
            path.display()
        ))),
    }
}

pub fn load(
    path: &Path,
    backend: Backend,
    gpu: Option<&Arc<Gpu>>,
    sha256: Sha256,
) -> Result<Model> {
    load_with_context(path, backend, gpu, sha256, None)
}

/// [`load`] with the KV cache length of a chat model chosen.
pub fn load_with_context(
    path: &Path,
    backend: Backend,
    gpu: Option<&Arc<Gpu>>,
    sha256: Sha256,
    context: Option<usize>,
) -> Result<Model> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    let gpu = match backend {
        Backend::Cpu => None,
        Backend::Gpu => Some(gpu.cloned().map_or_else(Gpu::new, Ok)?),
    };
    let sha256 = crate::weights::check(path, sha256)?;
    if let Some(file) = gguf_file(path)? {
        let gguf = Gguf::open(&file)?;
        return Ok(Model::Chat(crate::llama::load(
            path,
            Some(&gguf),
            None,
            gpu.as_ref(),
            sha256,
            context,
        )?));
    }
    let st = SafetensorsDir::open(path)?;
    let kind = st
        .config
        .get("model_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match kind.as_str() {
        "llama" => Ok(Model::Chat(crate::llama::load(
            path,
            None,
            Some(&st),
            gpu.as_ref(),
            sha256,
            context,
        )?)),
        "bert" => Ok(Model::Embedding(crate::bert::load(
            &st,
            gpu.as_ref(),
            sha256,
        )?)),
        other => Err(Error::Format(format!(
            "model_type {other:?} in config.json is not supported (llama, bert)"
        ))),
    }
}

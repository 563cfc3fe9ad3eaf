//! A Hugging Face model's files: `config.json` and `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, read with the `safetensors` crate where they lie (mapped
//! from disk, or in memory).

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::files::{Bytes, Source};
use crate::quant::Format;
use crate::{Error, Result};

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

pub struct SafetensorsDir {
    /// What to call the model's files in errors.
    pub label: String,
    pub config: Value,
    files: Vec<Bytes>,
    entries: HashMap<String, Entry>,
}

/// A tensor's shape, format and bytes.
pub struct TensorRef<'a> {
    pub shape: &'a [usize],
    pub format: Format,
    pub data: &'a [u8],
}

impl SafetensorsDir {
    /// `source`'s `config.json` and the `.safetensors` files among `weights` (its weight
    /// files, opened by the caller, who looked among them for a GGUF first).
    pub fn open(source: &Source<'_>, weights: Vec<(String, Bytes)>) -> Result<SafetensorsDir> {
        let config = source.json("config.json")?;
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (name, bytes) in weights.into_iter().filter(|(name, _)| {
            Path::new(name)
                .extension()
                .is_some_and(|e| e == "safetensors")
        }) {
            let (header, metadata) = SafeTensors::read_metadata(&bytes)
                .map_err(|e| Error::Format(format!("{}: {e}", source.describe_file(&name))))?;
            let base = 8 + header;
            for (tensor, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                entries.insert(
                    tensor,
                    Entry {
                        file: files.len(),
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + start,
                        end: base + end,
                    },
                );
            }
            files.push(bytes);
        }
        if files.is_empty() {
            return Err(Error::Format(format!(
                "{}: no .safetensors file",
                source.describe()
            )));
        }
        Ok(SafetensorsDir {
            label: source.describe(),
            config,
            files,
            entries,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor the model uses: missing or of a type the engine does not run is an error;
    /// tensors nobody asks for (an I64 `position_ids`) are never looked at.
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| Error::Format(format!("{}: tensor {name} missing", self.label)))?;
        let format = match e.dtype {
            Dtype::F32 => Format::F32,
            Dtype::F16 => Format::F16,
            Dtype::BF16 => Format::BF16,
            other => {
                return Err(Error::Format(format!(
                    "tensor {name} is {other:?}; weights must be F32, F16 or BF16"
                )))
            }
        };
        Ok(TensorRef {
            shape: &e.shape,
            format,
            data: &self.files[e.file][e.start..e.end],
        })
    }

    pub fn config_usize(&self, key: &str) -> Result<usize> {
        self.config
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| Error::Format(format!("config.json: {key} missing or not an integer")))
    }

    pub fn config_f32(&self, key: &str, default: f32) -> f32 {
        self.config
            .get(key)
            .and_then(Value::as_f64)
            .map_or(default, |v| v as f32)
    }
}

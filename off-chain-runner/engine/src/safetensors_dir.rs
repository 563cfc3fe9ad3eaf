//! A Hugging Face model directory: `config.json` and `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, memory-mapped and read with the `safetensors` crate.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

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
    pub dir: PathBuf,
    pub config: Value,
    maps: Vec<Mmap>,
    entries: HashMap<String, Entry>,
}

/// A tensor's shape, format and bytes.
pub struct TensorRef<'a> {
    pub shape: &'a [usize],
    pub format: Format,
    pub data: &'a [u8],
}

impl SafetensorsDir {
    pub fn open(dir: &Path) -> Result<SafetensorsDir> {
        let config_path = dir.join("config.json");
        let config: Value = serde_json::from_slice(
            &std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?,
        )
        .map_err(|e| Error::Format(format!("{}: {e}", config_path.display())))?;
        let files = crate::weights::weight_files(dir)?;
        let mut maps = Vec::new();
        let mut entries = HashMap::new();
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let map = crate::gguf::map_readonly(&file).map_err(|e| Error::io(path, e))?;
            let (header, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
            let base = 8 + header;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                entries.insert(
                    name,
                    Entry {
                        file: maps.len(),
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + start,
                        end: base + end,
                    },
                );
            }
            maps.push(map);
        }
        if maps.is_empty() {
            return Err(Error::Format(format!(
                "{}: no .safetensors file",
                dir.display()
            )));
        }
        Ok(SafetensorsDir {
            dir: dir.to_path_buf(),
            config,
            maps,
            entries,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A tensor the model uses: missing or of a type the engine does not run is an error;
    /// tensors nobody asks for (an I64 `position_ids`) are never looked at.
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        let e = self.entries.get(name).ok_or_else(|| {
            Error::Format(format!("{}: tensor {name} missing", self.dir.display()))
        })?;
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
            data: &self.maps[e.file][e.start..e.end],
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

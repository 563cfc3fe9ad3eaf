//! GGUF, llama.cpp's model file: header, metadata, tensor directory, aligned tensor data.
//! Written by hand because no small, maintained crate reads it (candle's reader comes with
//! all of candle); the format is a flat little-endian layout, version 2 and 3.

use std::collections::BTreeMap;
use std::path::Path;

use crate::files::Bytes;
use crate::quant::Format;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            #[allow(clippy::cast_possible_truncation)]
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's directory entry. `dims` are GGUF's order: `dims[0]` is the contiguous one
/// (a linear layer's input size), so a weight of shape `[n_in, n_out]` holds `n_out` rows.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub format: Format,
    /// Absolute offset of the data in the file.
    pub offset: usize,
    pub bytes: usize,
}

/// An opened GGUF file, its data memory-mapped or held in memory.
pub struct Gguf {
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    data: Bytes,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                Error::Format(format!(
                    "gguf: truncated at byte {} (wanted {n} more)",
                    self.pos
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        // Every element takes at least a byte: a longer count is a corrupt file, not an
        // allocation to attempt.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len())
            .ok_or_else(|| Error::Format(format!("gguf: implausible length {n}")))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| Error::Format("gguf: a string is not UTF-8".into()))
    }

    fn value(&mut self, kind: u32, depth: u8) -> Result<Value> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 if depth == 0 => {
                let inner = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            _ => return Err(Error::Format(format!("gguf: unknown metadata type {kind}"))),
        })
    }
}

impl Gguf {
    /// A GGUF file on disk, memory-mapped.
    pub fn open(path: &Path) -> Result<Gguf> {
        Gguf::from_bytes(Bytes::map(path)?)
    }

    /// A GGUF file's bytes, wherever they are.
    pub fn from_bytes(data: Bytes) -> Result<Gguf> {
        let (metadata, tensors) = parse(&data)?;
        Ok(Gguf {
            metadata,
            tensors,
            data,
        })
    }

    /// The raw bytes of a tensor.
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        &self.data[info.offset..info.offset + info.bytes]
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Format(format!("gguf: metadata {key} missing or not an integer")))
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        self.get(key)
            .and_then(Value::as_f32)
            .ok_or_else(|| Error::Format(format!("gguf: metadata {key} missing or not a float")))
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Format(format!("gguf: metadata {key} missing or not a string")))
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Format(format!("gguf: tensor {name} missing")))
    }
}

type Parsed = (BTreeMap<String, Value>, BTreeMap<String, TensorInfo>);

fn parse(data: &[u8]) -> Result<Parsed> {
    let mut r = Reader { data, pos: 0 };
    if r.take(4)? != MAGIC {
        return Err(Error::Format("not a GGUF file (bad magic)".into()));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(Error::Format(format!(
            "gguf version {version} is not supported (2 or 3)"
        )));
    }
    let n_tensors = r.len()?;
    let n_kv = r.len()?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let kind = r.u32()?;
        metadata.insert(key, r.value(kind, 0)?);
    }
    let alignment = metadata
        .get("general.alignment")
        .and_then(Value::as_u64)
        .unwrap_or(32);
    let alignment = usize::try_from(alignment)
        .ok()
        .filter(|a| a.is_power_of_two())
        .ok_or_else(|| Error::Format(format!("gguf: bad alignment {alignment}")))?;
    let mut infos = Vec::with_capacity(n_tensors.min(1 << 16));
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()? as usize;
        if n_dims == 0 || n_dims > 4 {
            return Err(Error::Format(format!(
                "gguf: tensor {name} has {n_dims} dimensions"
            )));
        }
        let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
        let kind = r.u32()?;
        let offset = r.u64()?;
        infos.push((name, dims, kind, offset));
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let mut tensors = BTreeMap::new();
    for (name, dims, kind, offset) in infos {
        let format = Format::from_ggml_type(kind).ok_or_else(|| {
            Error::Format(format!("gguf: tensor {name} has unsupported type {kind}"))
        })?;
        let elements = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes = elements.and_then(|n| format.bytes_for(n)).ok_or_else(|| {
            Error::Format(format!("gguf: tensor {name} has a bad shape {dims:?}"))
        })?;
        let start = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(data_start));
        let fits = start
            .and_then(|s| s.checked_add(bytes))
            .is_some_and(|end| end <= data.len());
        if !fits {
            return Err(Error::Format(format!(
                "gguf: tensor {name} lies outside the file"
            )));
        }
        let offset = start.expect("checked");
        tensors.insert(
            name.clone(),
            TensorInfo {
                name,
                dims,
                format,
                offset,
                bytes,
            },
        );
    }
    Ok((metadata, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_with_a_message() {
        let err = parse(b"GGML\x03\0\0\0").err().unwrap().to_string();
        assert!(err.contains("bad magic"), "{err}");
        let err = parse(b"GGUF\x03\0\0\0\x01").err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut huge = b"GGUF\x03\0\0\0".to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        let err = parse(&huge).err().unwrap().to_string();
        assert!(err.contains("implausible"), "{err}");
    }
}

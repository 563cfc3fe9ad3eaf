//! The model's files, wherever they are. Every loader reads through [`Source`], so a model
//! loads the same bytes the same way from either place:
//!
//! * a path on disk: weight files are memory-mapped, so loading copies nothing up front and
//!   costs no memory beyond the page cache; the small JSON files are read;
//! * [`ModelFiles`] held in memory: sealed weights the runner decrypted, which must never
//!   reach the disk, so nothing here writes, maps or names a file for them.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::{Error, Result};

/// One file's bytes.
pub enum Bytes {
    /// Memory-mapped from disk.
    Mapped(Mmap),
    /// Held in memory, shared with the [`ModelFiles`] it came from (an `Arc<Vec>` rather
    /// than `Arc<[u8]>`, so taking in a decrypted `Vec` copies no gigabytes).
    Held(Arc<Vec<u8>>),
}

impl Bytes {
    /// Maps a file read-only.
    pub fn map(path: &Path) -> Result<Bytes> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        map_readonly(&file)
            .map(Bytes::Mapped)
            .map_err(|e| Error::io(path, e))
    }
}

#[allow(unsafe_code)]
fn map_readonly(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: `Mmap::map` is unsafe only because another process could change the file
    // under us; model files are read-only inputs whose hash is checked before use (and a
    // `Sha256::Known` stamp refuses files rewritten since they were hashed).
    unsafe { Mmap::map(file) }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Held(bytes) => bytes,
        }
    }
}

/// A model's files held in memory, by file name: the flat layout of a model directory
/// (`config.json`, `tokenizer.json`, `*.safetensors` or one `*.gguf`...), so names carry no
/// directories.
#[derive(Clone, Default)]
pub struct ModelFiles {
    name: Option<String>,
    files: BTreeMap<String, Arc<Vec<u8>>>,
}

impl ModelFiles {
    /// The files, refusing a name with a directory in it (or `.`, `..`, empty) and a name
    /// given twice: either would make these files differ from the directory they stand for.
    pub fn new(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<ModelFiles> {
        let mut map = BTreeMap::new();
        for (name, bytes) in files {
            let flat = !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains(['/', '\\', '\0']);
            if !flat {
                return Err(Error::Format(format!(
                    "model file name {name:?} is not a plain file name"
                )));
            }
            if map.contains_key(&name) {
                return Err(Error::Format(format!("model file {name:?} given twice")));
            }
            map.insert(name, Arc::new(bytes));
        }
        Ok(ModelFiles {
            name: None,
            files: map,
        })
    }

    /// Names the model, as a directory's name does for files on disk (a GGUF file's own
    /// `general.name` still wins).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> ModelFiles {
        self.name = Some(name.into());
        self
    }

    /// The file names, in byte order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|b| b.as_slice())
    }
}

impl TryFrom<Vec<(String, Vec<u8>)>> for ModelFiles {
    type Error = Error;

    fn try_from(files: Vec<(String, Vec<u8>)>) -> Result<ModelFiles> {
        ModelFiles::new(files)
    }
}

// Names and sizes only: the bytes may be sealed weights, which must not reach a log.
impl std::fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFiles")
            .field("name", &self.name)
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|(n, b)| (n, b.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where a model's files are.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A `.gguf` file (that file alone), or a directory (the files directly inside it).
    Path(&'a Path),
    /// Files held in memory.
    Memory(&'a ModelFiles),
}

impl Source<'_> {
    /// What to call the model's files in errors.
    pub fn describe(&self) -> String {
        match self {
            Source::Path(path) => path.display().to_string(),
            Source::Memory(files) => match &files.name {
                Some(name) => format!("{name} (in memory)"),
                None => "model files in memory".into(),
            },
        }
    }

    /// What to call one of the files in errors.
    pub fn describe_file(&self, name: &str) -> String {
        match self {
            Source::Path(path) => path_of(path, name).display().to_string(),
            Source::Memory(_) => name.to_owned(),
        }
    }

    /// The model's name when its files carry none: the directory's, or the one given.
    pub fn name(&self) -> Option<String> {
        match self {
            Source::Path(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            Source::Memory(files) => files.name.clone(),
        }
    }

    /// The weight files (as `market_protocol::weights` defines them, so their hash is the
    /// registered one) by name in byte order, opened: mapped from disk, or shared.
    pub fn weights(&self) -> Result<Vec<(String, Bytes)>> {
        match self {
            Source::Path(path) => crate::weights::weight_files(path)?
                .into_iter()
                .map(|file| {
                    let name = file
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    Ok((name, Bytes::map(&file)?))
                })
                .collect(),
            Source::Memory(files) => {
                let weights: Vec<_> = files
                    .files
                    .iter()
                    .filter(|(name, _)| market_protocol::weights::is_weight_file(Path::new(name)))
                    .map(|(name, bytes)| (name.clone(), Bytes::Held(bytes.clone())))
                    .collect();
                if weights.is_empty() {
                    return Err(Error::Format(format!(
                        "{}: no .gguf or .safetensors file",
                        self.describe()
                    )));
                }
                Ok(weights)
            }
        }
    }

    /// A small file the loaders need (`config.json`, `tokenizer.json`...); missing is an
    /// error naming it.
    pub fn read(&self, name: &str) -> Result<Bytes> {
        match self {
            Source::Path(path) => {
                let file = path_of(path, name);
                std::fs::read(&file)
                    .map(|bytes| Bytes::Held(Arc::new(bytes)))
                    .map_err(|e| Error::io(&file, e))
            }
            Source::Memory(files) => files
                .files
                .get(name)
                .map(|bytes| Bytes::Held(bytes.clone()))
                .ok_or_else(|| Error::Io {
                    path: name.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "not among the model's files in memory",
                    ),
                }),
        }
    }

    /// A JSON file the loaders need.
    pub fn json(&self, name: &str) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.read(name)?)
            .map_err(|e| Error::Format(format!("{}: {e}", self.describe_file(name))))
    }
}

/// A file of a path source: the path itself when it is that file, else one inside it.
fn path_of(path: &Path, name: &str) -> PathBuf {
    if path.file_name().is_some_and(|n| n == name) && path.is_file() {
        path.to_path_buf()
    } else {
        path.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_and_unique() {
        for bad in ["", ".", "..", "a/config.json", "..\\x", "/etc/passwd"] {
            let err = ModelFiles::new([(bad.to_owned(), vec![])]).unwrap_err();
            assert!(err.to_string().contains("not a plain file name"), "{err}");
        }
        let twice = [
            ("a.json".to_owned(), vec![1]),
            ("a.json".to_owned(), vec![2]),
        ];
        let err = ModelFiles::new(twice).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    #[test]
    fn memory_source_reads_what_it_holds_and_names_what_it_lacks() {
        let files = ModelFiles::try_from(vec![
            ("config.json".to_owned(), b"{\"a\": 1}".to_vec()),
            ("b.safetensors".to_owned(), vec![2]),
            ("a.gguf".to_owned(), vec![1]),
        ])
        .unwrap();
        let source = Source::Memory(&files);
        assert_eq!(source.json("config.json").unwrap()["a"], 1);
        let weights = source.weights().unwrap();
        let names: Vec<_> = weights.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["a.gguf", "b.safetensors"],
            "byte order, weights only"
        );
        assert_eq!(&*weights[0].1, &[1]);
        let err = source.read("tokenizer.json").err().unwrap().to_string();
        assert!(err.starts_with("tokenizer.json: not among"), "{err}");
        assert!(
            !format!("{files:?}").contains("\"a\""),
            "Debug shows sizes, not bytes"
        );
    }
}

//! The runner's inference engine: real models (GGUF llama-family decoders, Hugging Face
//! safetensors llama and BERT) run by WGSL compute kernels on any wgpu adapter, with a
//! plain-Rust CPU reference of every op that the kernels are tested against.
//!
//! * [`api`]: what the runner service uses ([`Model`], chat and embeddings);
//! * [`files`]: where a model's files are (a path, memory-mapped, or bytes in memory);
//! * [`gguf`], [`safetensors_dir`], [`quant`], [`weights`]: model files and weight formats;
//! * [`tokenizer`], [`template`]: text in and out;
//! * [`ops`]: the ops, one a file: each kernel's WGSL, its dispatch and its CPU twin (the
//!   reference it is tested against); [`gpu`]: the device and the recorded forward pass;
//! * [`graph`]: how an architecture, written once, runs on either backend;
//! * [`llama`], [`bert`]: the two architectures;
//! * [`sequence`]: one generation's state, stepped by a scheduler or by `generate`.

pub mod api;
pub mod bert;
#[cfg(feature = "candle")]
pub mod candle_ref;
pub mod files;
pub mod gguf;
pub mod gpu;
pub mod graph;
pub mod llama;
mod load;
pub mod ops;
pub mod quant;
pub mod safetensors_dir;
pub mod sample;
pub mod sequence;
pub mod template;
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use api::{
    Backend, ChatMessage, Embedding, FinishReason, GenerateOptions, Generation, LoadOptions, Model,
    Slots,
};
pub use files::{ModelFiles, Source};
pub use llama::{StepInput, StepOutput};
pub use sequence::{Delta, Sequence};
pub use weights::Sha256;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The model files are malformed or of a kind this engine does not run.
    #[error("model format: {0}")]
    Format(String),
    /// The weights are not the ones the caller expected (the hub's registered hash).
    #[error("weights sha256 is {actual}, expected {expected}: refusing to load")]
    HashMismatch { expected: String, actual: String },
    /// The weights' files changed between being hashed and being loaded.
    #[error("{0}: the weights changed since they were hashed: refusing to load")]
    WeightsChanged(String),
    /// No usable adapter, or the device failed.
    #[error("gpu: {0}")]
    Gpu(String),
    /// The request is unusable (too long, empty...): the caller's fault.
    #[error("{0}")]
    Input(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

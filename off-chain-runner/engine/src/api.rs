//! What the runner service sees of the engine: load a model directory or file, then chat
//! (llama-family decoder) or embed (BERT-family encoder). A model is driven by one caller at
//! a time (`&mut self`: the KV cache and scratch buffers are its own); the service serializes
//! access and runs it off the async threads. A chat model holds [`Slots`] KV caches, so
//! one caller (a scheduler) can step many sequences at once with
//! [`crate::llama::ChatModel::step`].

use std::path::Path;
use std::sync::Arc;

use crate::files::{ModelFiles, Source};
use crate::Error;

/// One message of a chat, in OpenAI's shape.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Generated tokens at most (the prompt is not counted).
    pub max_tokens: usize,
    /// 0 means greedy (argmax); above 0 samples from the softmax at this temperature.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: f32,
    /// Seed of the sampler, so a sampled generation can be re-run exactly.
    pub seed: u64,
    /// Extra stop strings; generation also stops on the model's end-of-sequence tokens.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

/// The result of one generation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Token ids of the prompt.
    pub prompt_tokens: usize,
    /// Generated token ids (the stop token excluded).
    pub tokens: Vec<u32>,
    /// Generated text (a stop string excluded).
    pub text: String,
    pub finish_reason: FinishReason,
}

/// How many sequences a chat model holds at once: each has its own KV cache (a slot) of
/// the model's context, `LlamaConfig::kv_cache_bytes` bytes per slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slots {
    /// Exactly this many (at least one).
    Count(usize),
    /// As many as this many bytes of KV cache hold (at least one, or loading fails): what an
    /// operator's memory flag gives.
    Memory(u64),
}

/// How a model is loaded beyond its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Positions each KV slot of a chat model holds (`None`:
    /// [`crate::llama::DEFAULT_CONTEXT`]; never beyond what the model was trained for).
    pub context: Option<usize>,
    /// KV slots of a chat model.
    pub slots: Slots,
    /// Tokens one step holds at most (prefill chunks and decode tokens of all sequences
    /// together): the rows of the activation buffers.
    pub max_step_tokens: usize,
}

impl LoadOptions {
    /// `slots` KV slots of the default context, steps of up to
    /// [`crate::llama::PREFILL_CHUNK`] tokens.
    pub fn new(slots: Slots) -> Self {
        Self {
            context: None,
            slots,
            max_step_tokens: crate::llama::PREFILL_CHUNK,
        }
    }
}

/// One text's embedding.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// L2-normalized mean-pooled vector.
    pub vector: Vec<f32>,
    /// Tokens of the input (special tokens included), the unit a receipt meters.
    pub tokens: usize,
}

/// A loaded model of either family.
// One per served model, held for the process's life: the variants' size gap costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    Chat(crate::llama::ChatModel),
    Embedding(crate::bert::EmbeddingModel),
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// WGSL kernels on the best wgpu adapter.
    Gpu,
    /// The plain-Rust reference implementation.
    Cpu,
}

impl Model {
    /// Loads a model: a `.gguf` file, or a directory holding one `.gguf` or a Hugging Face
    /// layout (`config.json`, `tokenizer.json`, safetensors). `sha256` says how the weights'
    /// hash ([`market_protocol::weights`]) is learnt: computed, checked against an expected
    /// one (loading is refused on a mismatch), or known already.
    pub fn load(
        path: &Path,
        backend: Backend,
        gpu: Option<&Arc<crate::gpu::Gpu>>,
        sha256: crate::weights::Sha256,
    ) -> Result<Model, Error> {
        crate::load::load(
            Source::Path(path),
            backend,
            gpu,
            sha256,
            &Self::one_slot(None),
        )
    }

    /// Loads a model from files held in memory (sealed weights the runner decrypted):
    /// nothing is written, mapped or read from disk. The files are the layout [`Model::load`]
    /// takes for a directory, and the weights' hash is the same as theirs on disk. They are
    /// dropped once loaded, so only the loaded weights stay in memory.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taken to drop the plaintext files as soon as the model is loaded"
    )]
    pub fn load_from_memory(
        files: ModelFiles,
        backend: Backend,
        gpu: Option<&Arc<crate::gpu::Gpu>>,
        sha256: crate::weights::Sha256,
    ) -> Result<Model, Error> {
        crate::load::load(
            Source::Memory(&files),
            backend,
            gpu,
            sha256,
            &Self::one_slot(None),
        )
    }

    /// [`Model::load`] or [`Model::load_from_memory`] with the KV cache length of a chat
    /// model chosen (`None`: [`crate::llama::DEFAULT_CONTEXT`]; never beyond what the
    /// model was trained for), and one KV slot.
    pub fn load_with_context(
        source: Source<'_>,
        backend: Backend,
        gpu: Option<&Arc<crate::gpu::Gpu>>,
        sha256: crate::weights::Sha256,
        context: Option<usize>,
    ) -> Result<Model, Error> {
        crate::load::load(source, backend, gpu, sha256, &Self::one_slot(context))
    }

    /// [`Model::load`] or [`Model::load_from_memory`] with every choice explicit: the
    /// context, the KV slots (sequences served at once) and the tokens a step holds.
    pub fn load_with_options(
        source: Source<'_>,
        backend: Backend,
        gpu: Option<&Arc<crate::gpu::Gpu>>,
        sha256: crate::weights::Sha256,
        options: &LoadOptions,
    ) -> Result<Model, Error> {
        crate::load::load(source, backend, gpu, sha256, options)
    }

    /// What the loaders from before slots gave: one sequence at a time.
    fn one_slot(context: Option<usize>) -> LoadOptions {
        LoadOptions {
            context,
            ..LoadOptions::new(Slots::Count(1))
        }
    }

    /// The model's name (from its metadata, or the directory's or [`ModelFiles`]' name).
    pub fn name(&self) -> &str {
        match self {
            Model::Chat(m) => m.name(),
            Model::Embedding(m) => m.name(),
        }
    }

    /// The sha256 of the weights, as the hub registers it.
    pub fn weights_sha256(&self) -> [u8; 32] {
        match self {
            Model::Chat(m) => m.weights_sha256(),
            Model::Embedding(m) => m.weights_sha256(),
        }
    }
}

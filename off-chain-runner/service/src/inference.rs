//! Inference behind a small trait, as TEI's `Backend`: the HTTP layer and metering never
//! see the engine. Calls are blocking (seconds per request on a CPU Vulkan driver); the
//! server runs them in `spawn_blocking`, and each backend serializes its own model.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Embedding,
}

/// Encoder architectures, as the hub's registry names them: served as embedding models.
const EMBEDDING_ARCHITECTURES: &[&str] = &["bert", "nomic-bert", "xlm-roberta"];

#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub id: String,
    pub kind: Kind,
    /// Tokens a request may hold: prompt plus output for chat, input for embeddings.
    pub context_length: usize,
    /// Requests the backend runs at once (a chat model's KV slots); more wait.
    pub concurrency: usize,
}

impl ModelSpec {
    /// A model the echo backend serves as the hub registered it: an encoder architecture
    /// is an embedding model (512 tokens), anything else chat (2,048).
    pub fn for_architecture(id: &str, architecture: &str) -> Self {
        let embedding = EMBEDDING_ARCHITECTURES.contains(&architecture);
        Self {
            id: id.to_owned(),
            kind: if embedding {
                Kind::Embedding
            } else {
                Kind::Chat
            },
            context_length: if embedding { 512 } else { 2048 },
            concurrency: 1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug)]
pub enum Prompt {
    /// Rendered with the model's chat template (generation prompt included).
    Chat(Vec<Message>),
    /// Used as is.
    Text(String),
}

#[derive(Clone, Debug)]
pub struct Sampling {
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    /// The client went away mid-stream.
    Cancelled,
}

impl Finish {
    pub fn as_openai(self) -> &'static str {
        match self {
            Self::Stop | Self::Cancelled => "stop",
            Self::Length => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generated {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub text: String,
    pub finish: Finish,
}

#[derive(Clone, Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u64,
}

/// Called once the prompt is tokenized, before any generation: with the prompt's token
/// count and the most output tokens the request may produce. Refusing (the request's
/// worst case does not fit the user's budget) aborts the request before it costs compute.
pub type Admit<'a> = &'a mut dyn FnMut(u64, u64) -> Result<()>;
/// Receives each piece of generated text; returning false cancels generation.
pub type OnPiece<'a> = &'a mut dyn FnMut(&str) -> bool;
/// Whether the request's client is still there: a backend that makes requests wait asks
/// while they wait, so one whose client left neither runs nor holds its place.
pub type Alive<'a> = &'a (dyn Fn() -> bool + Sync);

pub trait Inference: Send + Sync + 'static {
    fn models(&self) -> Vec<ModelSpec>;

    /// `channel`: who the request is for (the payer's account), so that a model's slots
    /// are shared between channels.
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        model: &str,
        channel: &str,
        prompt: &Prompt,
        sampling: &Sampling,
        admit: Admit<'_>,
        on_piece: OnPiece<'_>,
        alive: Alive<'_>,
    ) -> Result<Generated>;

    fn embed(&self, model: &str, inputs: &[String], admit: Admit<'_>) -> Result<Embedded>;
}

/// A backend with no model: it "generates" by echoing the prompt's words, one word per
/// token, and embeds by hashing. Used by the payment-path tests and by the overhead
/// benchmark, which measure everything the runner does except inference; `serve --backend
/// echo` lets an operator check payments end to end before loading a model.
pub struct Echo {
    pub models: Vec<ModelSpec>,
    /// Time each call takes, to make queues and saturation observable in tests.
    pub delay: std::time::Duration,
    lock: std::sync::Mutex<()>,
}

impl Echo {
    pub fn new(models: Vec<ModelSpec>, delay: std::time::Duration) -> Self {
        Self {
            models,
            delay,
            lock: std::sync::Mutex::new(()),
        }
    }

    fn spec(&self, model: &str) -> Result<&ModelSpec> {
        self.models
            .iter()
            .find(|m| m.id == model)
            .ok_or_else(|| Error::model_not_served(model))
    }
}

impl Inference for Echo {
    fn models(&self) -> Vec<ModelSpec> {
        self.models.clone()
    }

    fn generate(
        &self,
        model: &str,
        _channel: &str,
        prompt: &Prompt,
        sampling: &Sampling,
        admit: Admit<'_>,
        on_piece: OnPiece<'_>,
        _alive: Alive<'_>,
    ) -> Result<Generated> {
        let spec = self.spec(model)?;
        let _one_at_a_time = self.lock.lock().expect("model lock");
        let text = match prompt {
            Prompt::Chat(messages) => messages
                .iter()
                .map(|m| format!("{}: {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n"),
            Prompt::Text(t) => t.clone(),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let prompt_tokens = words.len().max(1);
        if prompt_tokens >= spec.context_length {
            return Err(Error::bad_input(
                "context_length_exceeded",
                format!(
                    "the prompt has {prompt_tokens} tokens; model `{model}` holds {}",
                    spec.context_length
                ),
            ));
        }
        let max = sampling.max_tokens.min(spec.context_length - prompt_tokens);
        admit(prompt_tokens as u64, max as u64)?;
        std::thread::sleep(self.delay);
        let mut out = String::new();
        let mut finish = Finish::Length;
        let mut produced = 0;
        for word in words.iter().rev().cycle().take(max) {
            if sampling.stop.iter().any(|s| word.contains(s.as_str())) {
                finish = Finish::Stop;
                break;
            }
            let piece = if out.is_empty() {
                (*word).to_owned()
            } else {
                format!(" {word}")
            };
            out.push_str(&piece);
            produced += 1;
            if !on_piece(&piece) {
                finish = Finish::Cancelled;
                break;
            }
        }
        if produced < max && finish == Finish::Length {
            finish = Finish::Stop;
        }
        Ok(Generated {
            prompt_tokens: prompt_tokens as u64,
            completion_tokens: produced as u64,
            text: out,
            finish,
        })
    }

    fn embed(&self, model: &str, inputs: &[String], admit: Admit<'_>) -> Result<Embedded> {
        use sha2::Digest;
        let spec = self.spec(model)?;
        let _one_at_a_time = self.lock.lock().expect("model lock");
        let counts: Vec<usize> = inputs
            .iter()
            .map(|i| i.split_whitespace().count().max(1))
            .collect();
        if let Some(n) = counts.iter().find(|n| **n > spec.context_length) {
            return Err(Error::bad_input(
                "context_length_exceeded",
                format!(
                    "an input has {n} tokens; model `{model}` embeds at most {}",
                    spec.context_length
                ),
            ));
        }
        let tokens = counts.iter().sum::<usize>() as u64;
        admit(tokens, 0)?;
        std::thread::sleep(self.delay);
        let vectors = inputs
            .iter()
            .map(|i| {
                sha2::Sha256::digest(i.as_bytes())
                    .iter()
                    .take(8)
                    .map(|b| f32::from(*b) / 255.0)
                    .collect()
            })
            .collect();
        Ok(Embedded { vectors, tokens })
    }
}

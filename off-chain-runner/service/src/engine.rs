//! The inference engine (`market-engine`) behind the [`Inference`] trait. A chat model is
//! owned by its scheduler's thread (`scheduler`: continuous batching over its KV slots);
//! a request's thread renders and tokenizes its prompt with the model's text handling,
//! outside the scheduler, submits it and relays the pieces. An embedding model is owned by
//! its embedder's thread (`embedder`: requests waiting together share a forward pass); a
//! request's inputs are tokenized on its own thread. The HTTP layer's places bound how
//! many requests wait for either.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    mpsc, Arc,
};

use market_engine::{
    bert::EmbeddingText, gpu::Gpu, llama::ChatText, Backend, ChatMessage, GenerateOptions,
    LoadOptions, Model, Slots, Source,
};

use crate::embedder::Embedder;
use crate::scheduler::{Event, Job, Scheduler};

use crate::{
    error::{Error, Result},
    inference::{
        Admit, Alive, Embedded, Finish, Generated, Inference, Kind, ModelSpec, OnPiece, Prompt,
        Sampling,
    },
};

pub use market_engine::Backend as EngineBackend;

/// A model's files as the engine loads them.
pub enum Files {
    /// On disk, as they were when hashed.
    Path(std::path::PathBuf, market_engine::weights::Stamp),
    /// Decrypted into memory (a sealed model).
    Memory(market_engine::ModelFiles),
}

impl Files {
    pub fn source(&self) -> Source<'_> {
        match self {
            Self::Path(path, _) => Source::Path(path),
            Self::Memory(files) => Source::Memory(files),
        }
    }

    /// What the files were when hashed: the engine refuses them if they changed since.
    pub fn stamp(&self) -> Result<market_engine::weights::Stamp, market_engine::Error> {
        match self {
            Self::Path(_, stamp) => Ok(stamp.clone()),
            Self::Memory(files) => market_engine::weights::Stamp::of_files(files),
        }
    }
}

/// How chat models are batched (`serve --kv-slots`, `--prefill-chunk`,
/// `--queue-timeout-secs`).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Sequences each chat model runs at once, each with its own KV cache.
    pub slots: usize,
    /// Prompt tokens one sequence prefills per step (interleaved with the others' decoding).
    pub prefill_chunk: usize,
    /// How long an admitted request may wait for a free slot before it is refused (429
    /// `queue_timeout`, nothing charged); `None` waits as long as it takes.
    pub queue_timeout: Option<std::time::Duration>,
    /// Slots one channel's sequences may hold at once; `None`: half the slots, rounded up.
    pub channel_slots: Option<usize>,
}

impl Batching {
    /// Slots one channel may hold: never all of them when there are two or more, so
    /// another user's request always finds one within a sequence's time.
    pub fn channel_slots(&self) -> usize {
        self.channel_slots
            .unwrap_or(self.slots.div_ceil(2))
            .clamp(1, self.slots.max(1))
    }
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            slots: 4,
            prefill_chunk: 64,
            queue_timeout: None,
            channel_slots: None,
        }
    }
}

enum Served {
    Chat {
        text: Arc<ChatText>,
        scheduler: Scheduler,
        queue_timeout: Option<std::time::Duration>,
    },
    Embedding {
        text: Arc<EmbeddingText>,
        embedder: Embedder,
        max_tokens: usize,
    },
}

pub struct Engine {
    models: Vec<(ModelSpec, Served)>,
}

fn engine_error(e: market_engine::Error) -> Error {
    match e {
        market_engine::Error::Input(m) => Error::bad_input("invalid_input", m),
        other => Error::internal("inference", other.to_string()),
    }
}

impl Engine {
    /// Loads each `(model id, its files, how its weights' hash is learnt)`: with
    /// `Sha256::Expect` the engine refuses weights whose hash differs; `Sha256::Known` is
    /// for weights the caller has just hashed. One GPU device is shared by every model.
    pub fn load(
        models: &[(String, Source<'_>, market_engine::Sha256)],
        backend: Backend,
        batching: Batching,
    ) -> Result<Self, market_engine::Error> {
        let gpu: Option<Arc<Gpu>> = match backend {
            Backend::Gpu => Some(Gpu::new()?),
            Backend::Cpu => None,
        };
        let options = LoadOptions {
            max_step_tokens: batching.prefill_chunk.max(batching.slots).max(1),
            ..LoadOptions::new(Slots::Count(batching.slots.max(1)))
        };
        let mut loaded = Vec::with_capacity(models.len());
        for (id, source, sha256) in models {
            let model =
                Model::load_with_options(*source, backend, gpu.as_ref(), sha256.clone(), &options)?;
            let served = match model {
                Model::Chat(mut m) => {
                    // Chats without their own system prompt skip computing the template's.
                    m.cache_template_opening()?;
                    let spec = ModelSpec {
                        id: id.clone(),
                        kind: Kind::Chat,
                        context_length: m.context_length(),
                        concurrency: m.slots(),
                    };
                    let text = m.text_handle();
                    let scheduler =
                        Scheduler::start(m, batching.prefill_chunk, batching.channel_slots())
                            .map_err(|e| {
                                market_engine::Error::Gpu(format!("starting a scheduler: {e}"))
                            })?;
                    (
                        spec,
                        Served::Chat {
                            text,
                            scheduler,
                            queue_timeout: batching.queue_timeout,
                        },
                    )
                }
                Model::Embedding(m) => {
                    let spec = ModelSpec {
                        id: id.clone(),
                        kind: Kind::Embedding,
                        context_length: m.max_tokens(),
                        concurrency: 1,
                    };
                    let (text, max_tokens) = (m.text_handle(), m.max_tokens());
                    let embedder = Embedder::start(m).map_err(|e| {
                        market_engine::Error::Gpu(format!("starting an embedder: {e}"))
                    })?;
                    (
                        spec,
                        Served::Embedding {
                            text,
                            embedder,
                            max_tokens,
                        },
                    )
                }
            };
            loaded.push(served);
        }
        Ok(Self { models: loaded })
    }

    fn served(&self, id: &str) -> Result<(&ModelSpec, &Served)> {
        self.models
            .iter()
            .find(|(s, _)| s.id == id)
            .map(|(s, m)| (s, m))
            .ok_or_else(|| Error::model_not_served(id))
    }
}

impl Inference for Engine {
    fn models(&self) -> Vec<ModelSpec> {
        self.models.iter().map(|(s, _)| s.clone()).collect()
    }

    fn generate(
        &self,
        model: &str,
        channel: &str,
        prompt: &Prompt,
        sampling: &Sampling,
        admit: Admit<'_>,
        on_piece: OnPiece<'_>,
        alive: Alive<'_>,
    ) -> Result<Generated> {
        let (spec, served) = self.served(model)?;
        let Served::Chat {
            text,
            scheduler,
            queue_timeout,
        } = served
        else {
            return Err(Error::bad_input(
                "model_not_supported",
                format!("model `{model}` is an embedding model"),
            ));
        };
        // Rendered and tokenized here, on the request's thread: never in the scheduler's.
        let rendered = match prompt {
            Prompt::Chat(messages) => {
                let messages: Vec<ChatMessage> = messages
                    .iter()
                    .map(|x| ChatMessage {
                        role: x.role.clone(),
                        content: x.content.clone(),
                    })
                    .collect();
                text.template.render(&messages).map_err(engine_error)?
            }
            Prompt::Text(t) => t.clone(),
        };
        let ids = text.encode(&rendered).map_err(engine_error)?;
        let context = spec.context_length;
        if ids.len() >= context {
            return Err(Error::bad_input(
                "context_length_exceeded",
                format!(
                    "the prompt has {} tokens; model `{model}` holds {context}",
                    ids.len()
                ),
            ));
        }
        let max_tokens = sampling.max_tokens.min(context - ids.len());
        admit(ids.len() as u64, max_tokens as u64)?;
        let options = GenerateOptions {
            max_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            seed: sampling.seed.unwrap_or_else(rand::random),
            stop: sampling.stop.clone(),
        };
        let (events, pieces) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        scheduler.submit(Job {
            channel: channel.to_owned(),
            prompt: ids,
            options,
            cancel: Arc::clone(&cancel),
            // A timeout too large to add is no timeout.
            deadline: queue_timeout.and_then(|t| std::time::Instant::now().checked_add(t)),
            events,
        });
        let mut cancelled = false;
        let generation = loop {
            // Woken at least this often to ask whether the client is still there: one
            // that left while waiting for a slot (or between pieces) is cancelled then.
            match pieces.recv_timeout(std::time::Duration::from_millis(250)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !cancelled && !alive() {
                        cancelled = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Ok(Event::Text(piece)) => {
                    if !cancelled && !on_piece(&piece) {
                        cancelled = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Ok(Event::Cancelled) => {
                    return Err(Error::bad_input(
                        "client_gone",
                        "the client went away before generation started; nothing was charged",
                    ))
                }
                Ok(Event::Done(result)) => break result.map_err(engine_error)?,
                Ok(Event::Expired) => {
                    let waited = queue_timeout.unwrap_or_default();
                    return Err(Error::overloaded(
                        "queue_timeout",
                        format!(
                            "model `{model}` had no free sequence slot within {} s (or none \
                             within this user's share of the slots); nothing was charged",
                            waited.as_secs_f64()
                        ),
                    )
                    .retry_after(waited));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Error::internal(
                        "inference",
                        format!("the scheduler of model `{model}` stopped"),
                    ))
                }
            }
        };
        Ok(Generated {
            prompt_tokens: generation.prompt_tokens as u64,
            completion_tokens: generation.tokens.len() as u64,
            text: generation.text,
            finish: match generation.finish_reason {
                _ if cancelled => Finish::Cancelled,
                market_engine::FinishReason::Stop => Finish::Stop,
                market_engine::FinishReason::Length => Finish::Length,
            },
        })
    }

    fn embed(&self, model: &str, inputs: &[String], admit: Admit<'_>) -> Result<Embedded> {
        let (_, served) = self.served(model)?;
        let Served::Embedding {
            text,
            embedder,
            max_tokens,
        } = served
        else {
            return Err(Error::bad_input(
                "model_not_supported",
                format!("model `{model}` is a chat model"),
            ));
        };
        // Tokenized here, on the request's thread: never in the embedder's.
        let mut ids = Vec::with_capacity(inputs.len());
        for input in inputs {
            let tokens = text.tokenize(input).map_err(engine_error)?;
            if tokens.len() > *max_tokens {
                return Err(Error::bad_input(
                    "context_length_exceeded",
                    format!(
                        "an input has {} tokens; model `{model}` embeds at most {max_tokens}",
                        tokens.len()
                    ),
                ));
            }
            if tokens.is_empty() {
                return Err(Error::bad_input(
                    "invalid_input",
                    "an input of no tokens has no embedding",
                ));
            }
            ids.push(tokens);
        }
        admit(ids.iter().map(|i| i.len() as u64).sum(), 0)?;
        let embeddings = embedder.embed(ids).map_err(engine_error)?;
        Ok(Embedded {
            tokens: embeddings.iter().map(|e| e.tokens as u64).sum(),
            vectors: embeddings.into_iter().map(|e| e.vector).collect(),
        })
    }
}

//! The inference engine (`market-engine`) behind the [`Inference`] trait. Each model is
//! driven by one caller at a time (`&mut self`: its KV cache is its own), so each sits
//! behind its own mutex; the HTTP layer's slots bound how many requests wait for it.

use std::{sync::Arc, sync::Mutex};

use market_engine::{gpu::Gpu, Backend, ChatMessage, GenerateOptions, Model, Source};

use crate::{
    error::{Error, Result},
    inference::{
        Admit, Embedded, Finish, Generated, Inference, Kind, ModelSpec, OnPiece, Prompt, Sampling,
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

pub struct Engine {
    models: Vec<(ModelSpec, Mutex<Model>)>,
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
    ) -> Result<Self, market_engine::Error> {
        let gpu: Option<Arc<Gpu>> = match backend {
            Backend::Gpu => Some(Gpu::new()?),
            Backend::Cpu => None,
        };
        let mut loaded = Vec::with_capacity(models.len());
        for (id, source, sha256) in models {
            let model =
                Model::load_with_context(*source, backend, gpu.as_ref(), sha256.clone(), None)?;
            let spec = match &model {
                Model::Chat(m) => ModelSpec {
                    id: id.clone(),
                    kind: Kind::Chat,
                    context_length: m.context_length(),
                },
                Model::Embedding(m) => ModelSpec {
                    id: id.clone(),
                    kind: Kind::Embedding,
                    context_length: m.max_tokens(),
                },
            };
            loaded.push((spec, Mutex::new(model)));
        }
        Ok(Self { models: loaded })
    }

    fn model(&self, id: &str) -> Result<std::sync::MutexGuard<'_, Model>> {
        let (_, m) = self
            .models
            .iter()
            .find(|(s, _)| s.id == id)
            .ok_or_else(|| Error::model_not_served(id))?;
        // A panic mid-request leaves the model usable: the engine forgets its KV cache on
        // any failed step.
        Ok(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Inference for Engine {
    fn models(&self) -> Vec<ModelSpec> {
        self.models.iter().map(|(s, _)| s.clone()).collect()
    }

    fn generate(
        &self,
        model: &str,
        prompt: &Prompt,
        sampling: &Sampling,
        admit: Admit<'_>,
        on_piece: OnPiece<'_>,
    ) -> Result<Generated> {
        let mut guard = self.model(model)?;
        let Model::Chat(m) = &mut *guard else {
            return Err(Error::bad_input(
                "model_not_supported",
                format!("model `{model}` is an embedding model"),
            ));
        };
        let text = match prompt {
            Prompt::Chat(messages) => {
                let messages: Vec<ChatMessage> = messages
                    .iter()
                    .map(|x| ChatMessage {
                        role: x.role.clone(),
                        content: x.content.clone(),
                    })
                    .collect();
                m.apply_chat_template(&messages).map_err(engine_error)?
            }
            Prompt::Text(t) => t.clone(),
        };
        let ids = m.encode(&text).map_err(engine_error)?;
        let context = m.context_length();
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
        let mut cancelled = false;
        let generation = m
            .generate(&ids, &options, &mut |piece: &str| {
                let go_on = on_piece(piece);
                cancelled |= !go_on;
                go_on
            })
            .map_err(engine_error)?;
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
        let mut guard = self.model(model)?;
        let Model::Embedding(m) = &mut *guard else {
            return Err(Error::bad_input(
                "model_not_supported",
                format!("model `{model}` is a chat model"),
            ));
        };
        let mut tokens = 0u64;
        for input in inputs {
            let n = m.count_tokens(input).map_err(engine_error)?;
            if n > m.max_tokens() {
                return Err(Error::bad_input(
                    "context_length_exceeded",
                    format!(
                        "an input has {n} tokens; model `{model}` embeds at most {}",
                        m.max_tokens()
                    ),
                ));
            }
            tokens += n as u64;
        }
        admit(tokens, 0)?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let embeddings = m.embed(&refs).map_err(engine_error)?;
        Ok(Embedded {
            tokens: embeddings.iter().map(|e| e.tokens as u64).sum(),
            vectors: embeddings.into_iter().map(|e| e.vector).collect(),
        })
    }
}

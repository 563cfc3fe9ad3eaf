//! The path every paid request takes after its authorization is checked: a slot on the
//! model (429 if none), the model's prices, inference with admission (the request's worst
//! case reserved against the channel's budget before any compute: 402 if it does not
//! fit), then the receipt, committed durably before anything is returned. Chat and text
//! completions share it, streamed or not.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use axum::response::{sse::Event, IntoResponse, Response, Sse};
use futures_util::StreamExt;
use market_hub_api::methods;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    http::auth::Payer,
    inference::{Generated, Prompt, Sampling},
    meter::{self, next_record, price, Charge},
    metrics::Metrics,
    state::{wall_clock_ns, AppState, ServedModel},
    store::ChannelRecord,
};

pub struct Job {
    pub payer: Payer,
    pub model: ServedModel,
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// Content in the context: (content id, price of one use).
    pub content: Vec<(String, u128)>,
    pub request_hash: [u8; 32],
}

pub struct Done {
    pub generated: Generated,
    pub record: ChannelRecord,
    /// What this request added to the channel, in yocto.
    pub charged: u128,
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The model's prices per 1,000 input and output units, from the hub (cached).
/// The model's prices on the hub, checked against the payer's signed ceilings; with the
/// most units one request may use.
pub async fn prices(state: &AppState, payer: &Payer, model_id: &str) -> Result<(u128, u128, u64)> {
    let view = state
        .prices
        .get(&model_id.to_owned(), || {
            state.hub.view(methods::model(model_id))
        })
        .await
        .map_err(|e| Error::unavailable("rpc_unavailable", format!("reading model prices: {e}")))?
        .ok_or_else(|| {
            Error::not_found(
                "model_not_found",
                format!("model `{model_id}` is not registered on the hub"),
            )
        })?;
    let (p_in, p_out) = (view.model.price_in_per_1k.0, view.model.price_out_per_1k.0);
    let max_units = meter::within_ceilings(&payer.auth.authorization, model_id, p_in, p_out)?;
    Ok((p_in, p_out, max_units))
}

pub fn take_slot(model: &ServedModel, payer: &Payer) -> Result<crate::admission::Ticket> {
    model.places.take(payer.user())
}

pub fn content_total(content: &[(String, u128)]) -> Result<u128> {
    content.iter().try_fold(0u128, |s, (_, p)| {
        s.checked_add(*p)
            .ok_or_else(|| Error::payment_required("over_cap", "content prices overflow u128"))
    })
}

/// Signs the channel's next receipt and commits it durably; then the budget knows it.
pub async fn commit(state: &Arc<AppState>, payer: &Payer, charge: Charge) -> Result<ChannelRecord> {
    let st = Arc::clone(state);
    let p = payer.clone();
    let record = tokio::task::spawn_blocking(move || {
        crate::killpoint::reached("request_before_commit");
        let started = Instant::now();
        let record = st.store.append(p.user(), |current| {
            next_record(
                current,
                &p.auth,
                p.auth_id,
                &charge,
                &st.receipt_key,
                wall_clock_ns(),
            )
        });
        Metrics::observe(&st.metrics.store_commit, started.elapsed());
        record
    })
    .await
    .map_err(|e| Error::internal("join", e.to_string()))??;
    crate::killpoint::reached("request_after_commit");
    state.budget.commit(payer.user(), record.amount());
    Metrics::add(&state.metrics.receipts_signed, 1);
    Ok(record)
}

pub async fn run(
    state: Arc<AppState>,
    job: Job,
    mut on_piece: Box<dyn FnMut(&str) -> bool + Send>,
    alive: Box<dyn Fn() -> bool + Send + Sync>,
    admitted: Option<oneshot::Sender<()>>,
) -> Result<Done> {
    let arrived = Instant::now();
    let permit = take_slot(&job.model, &job.payer)?;
    let (p_in, p_out, max_units) = prices(&state, &job.payer, &job.model.spec.id).await?;
    let extra = content_total(&job.content)?;
    let (budget, inference, user, limit) = (
        Arc::clone(&state.budget),
        Arc::clone(&state.inference),
        job.payer.user().clone(),
        job.payer.limit,
    );
    let model_id_for_units = job.model.spec.id.clone();
    let (model_id, prompt, sampling) = (
        job.model.spec.id.clone(),
        job.prompt.clone(),
        job.sampling.clone(),
    );
    let metrics = Arc::clone(&state.metrics);
    let (generated, reservation) = tokio::task::spawn_blocking(move || {
        let mut last_piece: Option<Instant> = None;
        // Started: the first piece exists. Until then (a queued request, a refusal) the
        // HTTP status is still open, so a refusal is a plain 4xx.
        let mut admitted = admitted;
        let mut on_piece = move |piece: &str| {
            if let Some(tx) = admitted.take() {
                let _ = tx.send(());
            }
            let now = Instant::now();
            match last_piece {
                None => Metrics::observe(&metrics.time_to_first_token, now - arrived),
                Some(at) => Metrics::observe(&metrics.inter_token, now - at),
            }
            last_piece = Some(now);
            on_piece(piece)
        };
        let mut reservation = None;
        let result = {
            let mut admit = |prompt_tokens: u64, max_out: u64| -> Result<()> {
                meter::within_units(&model_id_for_units, prompt_tokens, max_out, max_units)?;
                let worst = price(prompt_tokens, max_out, p_in, p_out)?
                    .checked_add(extra)
                    .ok_or_else(|| {
                        Error::payment_required("over_cap", "the request's cost overflows u128")
                    })?;
                reservation = Some(budget.reserve(&user, worst, limit)?);
                Ok(())
            };
            inference.generate(
                &model_id,
                user.as_str(),
                &prompt,
                &sampling,
                &mut admit,
                &mut on_piece,
                &*alive,
            )
        };
        drop(permit);
        (result, reservation)
    })
    .await
    .map_err(|e| Error::internal("join", e.to_string()))?;
    let generated = generated.inspect_err(|e| {
        if e.kind == crate::error::Kind::Internal {
            Metrics::add(&state.metrics.inference_errors, 1);
        }
    })?;
    if generated.finish == crate::inference::Finish::Cancelled {
        Metrics::add(&state.metrics.client_disconnects, 1);
    }
    let amount = price(
        generated.prompt_tokens,
        generated.completion_tokens,
        p_in,
        p_out,
    )?;
    let charge = Charge {
        model_id: job.model.spec.id.clone(),
        version: job.model.version,
        units_in: generated.prompt_tokens,
        units_out: generated.completion_tokens,
        amount,
        content: job.content.clone(),
        request_hash: job.request_hash,
        output_hash: sha256(generated.text.as_bytes()),
    };
    let charged = charge.total()?;
    let record = commit(&state, &job.payer, charge).await?;
    drop(reservation);
    Metrics::add(&state.metrics.tokens_in, generated.prompt_tokens);
    Metrics::add(&state.metrics.tokens_out, generated.completion_tokens);
    Ok(Done {
        generated,
        record,
        charged,
    })
}

/// Runs a request's `work` to its end whatever happens to its client. axum drops a
/// handler's future when the client disconnects; work dropped between computing and
/// [`commit`] would have been served unpaid, so hanging up early would be a way not to pay.
/// Spawned, it meters and receipts what was computed (a generation whose client left stops
/// at its next piece: `CancelOnDrop`).
pub async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::internal("join", e.to_string()))?
}

/// Chat completions and text completions differ only in their JSON shapes.
#[derive(Clone)]
pub struct Flavor {
    pub chat: bool,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Flavor {
    pub fn new(chat: bool, model: &str) -> Self {
        let created = wall_clock_ns() / 1_000_000_000;
        let id = format!(
            "{}-{}",
            if chat { "chatcmpl" } else { "cmpl" },
            hex::encode(rand::random::<[u8; 12]>())
        );
        Self {
            chat,
            id,
            created,
            model: model.to_owned(),
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.chat, chunk) {
            (true, true) => "chat.completion.chunk",
            (true, false) => "chat.completion",
            (false, _) => "text_completion",
        }
    }

    fn choice(&self, text: &str, finish: Option<&str>, delta: bool, first: bool) -> Value {
        if !self.chat {
            return json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish});
        }
        if delta {
            let mut d = json!({"content": text});
            if first {
                d["role"] = json!("assistant");
            }
            json!({"index": 0, "delta": d, "finish_reason": finish})
        } else {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish})
        }
    }

    pub fn chunk(&self, piece: &str, first: bool) -> Value {
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
               "choices": [self.choice(piece, None, true, first)]})
    }

    fn usage(done: &Done) -> Value {
        let g = &done.generated;
        json!({"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
               "total_tokens": g.prompt_tokens + g.completion_tokens})
    }

    /// The last streamed chunk: the text generated but not yet sent (`sent` bytes were),
    /// the finish reason, OpenAI's usage, and the receipt. A client that reads to the end
    /// has then received exactly the text it is charged for and the receipt hashes.
    pub fn final_chunk(&self, done: &Done, sent: usize) -> Value {
        let rest = done.generated.text.get(sent..).unwrap_or_default();
        json!({"id": self.id, "object": self.object(true), "created": self.created, "model": self.model,
               "choices": [self.choice(rest, Some(done.generated.finish.as_openai()), true, sent == 0)],
               "usage": Self::usage(done), "charged": done.charged.to_string(), "receipt": done.record.receipt})
    }

    pub fn response(&self, done: &Done) -> Value {
        json!({"id": self.id, "object": self.object(false), "created": self.created, "model": self.model,
               "choices": [self.choice(&done.generated.text, Some(done.generated.finish.as_openai()), false, false)],
               "usage": Self::usage(done), "charged": done.charged.to_string(), "receipt": done.record.receipt})
    }
}

/// Clears `alive` when dropped before `done`: the request's future was dropped, which
/// axum does when the client disconnects.
struct CancelOnDrop {
    alive: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    finished: bool,
}

impl CancelOnDrop {
    fn new(state: &AppState) -> Self {
        Self {
            alive: Arc::new(AtomicBool::new(true)),
            metrics: Arc::clone(&state.metrics),
            finished: false,
        }
    }

    fn done(mut self) {
        self.finished = true;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.alive.store(false, Ordering::Relaxed);
            Metrics::add(&self.metrics.client_disconnects, 1);
        }
    }
}

/// What a stream still has to send after its pieces.
enum Tail {
    /// Generation goes on; its result is the last chunk.
    Running(tokio::task::JoinHandle<Result<Done>>),
    /// Generation ended without a piece: this chunk is all there is.
    Ended(Value),
}

/// Answers a generation request, as JSON or as server-sent events.
pub async fn respond(state: Arc<AppState>, job: Job, flavor: Flavor, stream: bool) -> Response {
    if !stream {
        // A client that goes away drops this future: the guard's drop stops generation
        // at the next piece instead of running to `max_tokens` for nobody.
        let wanted = CancelOnDrop::new(&state);
        let (alive, still) = (Arc::clone(&wanted.alive), Arc::clone(&wanted.alive));
        let answer = detached(run(
            state,
            job,
            Box::new(move |_| alive.load(Ordering::Relaxed)),
            Box::new(move || still.load(Ordering::Relaxed)),
            None,
        ))
        .await;
        wanted.done();
        return match answer {
            Ok(done) => axum::Json(flavor.response(&done)).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let (tx, rx) = mpsc::channel::<Event>(64);
    let (admit_tx, admit_rx) = oneshot::channel();
    let pieces = tx.clone();
    // The receiver goes when the client does, before or after the stream began.
    let probe = tx.clone();
    let chunks = flavor.clone();
    let mut first = true;
    // Bytes of text the client has been sent (queued to its connection): the last chunk
    // carries the rest, including a piece whose send timed out.
    let sent = Arc::new(AtomicUsize::new(0));
    let sent_by_pieces = Arc::clone(&sent);
    // A failed send means the client went away, and one that waits past the bound means
    // it stopped reading: either way, returning false stops generation, and the tokens
    // produced so far are still metered. The wait is bounded so a client that does not
    // read never holds the model.
    let (runtime, bound) = (tokio::runtime::Handle::current(), state.client_read_timeout);
    let on_piece = Box::new(move |piece: &str| {
        let event = Event::default().data(chunks.chunk(piece, first).to_string());
        first = false;
        let queued = runtime
            .block_on(tokio::time::timeout(bound, pieces.send(event)))
            .is_ok_and(|sent| sent.is_ok());
        if queued {
            sent_by_pieces.fetch_add(piece.len(), Ordering::Relaxed);
        }
        queued
    });
    let task = tokio::spawn(run(
        state,
        job,
        on_piece,
        Box::new(move || !probe.is_closed()),
        Some(admit_tx),
    ));
    // Over before a first piece: refused (429 with the queue's timeout, 402, 400...), which
    // is a plain HTTP error, or finished without text, which streams its last chunk only.
    let tail = if admit_rx.await.is_ok() {
        Tail::Running(task)
    } else {
        match task.await {
            Ok(Ok(done)) => Tail::Ended(flavor.final_chunk(&done, 0)),
            Ok(Err(e)) => return e.into_response(),
            Err(e) => return Error::internal("join", e.to_string()).into_response(),
        }
    };
    tokio::spawn(async move {
        let last = match tail {
            Tail::Ended(last) => last,
            Tail::Running(task) => match task.await {
                Ok(Ok(done)) => flavor.final_chunk(&done, sent.load(Ordering::Relaxed)),
                Ok(Err(e)) => crate::http::error::body(&e),
                Err(e) => crate::http::error::body(&Error::internal("join", e.to_string())),
            },
        };
        let _ = tx.send(Event::default().data(last.to_string())).await;
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>))
        .into_response()
}

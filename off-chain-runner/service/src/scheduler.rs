//! Continuous batching: one thread per chat model owns it and runs every active sequence
//! in one forward pass per step (`ChatModel::step`). A request joins at a step boundary
//! when a KV slot is free, first come first served; its prompt is prefilled in chunks
//! interleaved with the others' decoding (decode tokens first, then prompt chunks while
//! the step's token budget lasts); a finished or cancelled sequence leaves and frees its
//! slot. The thread never waits on a client: each request's pieces go into an unbounded
//! channel (at most `max_tokens` pieces), which the request's own thread drains.
//!
//! Outputs do not depend on the batch: the engine's kernels reduce every element in one
//! fixed order whatever the other rows of a step and however a prompt is chunked
//! (`market-engine`'s batch-invariance tests), so a receipt's output can be re-run alone.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
    time::Instant,
};

use market_engine::{
    llama::{ChatModel, StepInput},
    GenerateOptions, Generation, Sequence,
};

/// What a request's thread receives.
pub enum Event {
    /// New text.
    Text(String),
    /// The generation ended (or failed); nothing follows.
    Done(Result<Generation, market_engine::Error>),
}

/// A request waiting for a slot.
pub struct Job {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// Set by the request's thread when its client goes away.
    pub cancel: Arc<AtomicBool>,
    /// Past this, a request still waiting is refused instead of started.
    pub deadline: Option<Instant>,
    pub events: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// The handle requests submit to; dropping every handle stops the thread once idle.
pub struct Scheduler {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    /// Sequences the model runs at once (its KV slots).
    pub slots: usize,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().expect("queue lock").closed = true;
        wake.notify_all();
    }
}

impl Scheduler {
    /// Starts the thread that owns `model`; prompts are prefilled at most `prefill_chunk`
    /// tokens per sequence per step.
    pub fn start(model: ChatModel, prefill_chunk: usize) -> std::io::Result<Self> {
        let slots = model.slots();
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let shared = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || run(model, &shared, prefill_chunk.max(1)))?;
        Ok(Self { queue, slots })
    }

    /// Queues `job` behind those already waiting.
    pub fn submit(&self, job: Job) {
        let (lock, wake) = &*self.queue;
        lock.lock().expect("queue lock").jobs.push_back(job);
        wake.notify_one();
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.queue.0.lock().expect("queue lock").jobs.len()
    }
}

/// One running sequence and where its events go.
struct Running {
    seq: Sequence,
    job: Job,
}

fn run(mut model: ChatModel, queue: &(Mutex<Queue>, Condvar), prefill_chunk: usize) {
    let mut free: Vec<usize> = (0..model.slots()).rev().collect();
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Join: the oldest waiting requests take the free slots, at a step boundary.
        {
            let (lock, wake) = queue;
            let mut q = lock.lock().expect("queue lock");
            while running.is_empty() && q.jobs.is_empty() {
                if q.closed {
                    return;
                }
                q = wake.wait(q).expect("queue lock");
            }
            while !free.is_empty() {
                let Some(job) = q.jobs.pop_front() else { break };
                if job.cancel.load(Ordering::Relaxed) {
                    continue;
                }
                if job.deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = job.events.send(Event::Done(Err(market_engine::Error::Input(
                        "the request waited past its deadline for a free sequence slot".into(),
                    ))));
                    continue;
                }
                let slot = free.pop().expect("a free slot");
                match model.start_sequence(slot, &job.prompt, &job.options) {
                    Ok(seq) => running.push(Running { seq, job }),
                    Err(e) => {
                        let _ = job.events.send(Event::Done(Err(e)));
                        free.push(slot);
                    }
                }
            }
        }
        for r in &mut running {
            if r.job.cancel.load(Ordering::Relaxed) {
                r.seq.cancel();
            }
        }
        step(&mut model, &mut running, prefill_chunk);
        // Leave: finished sequences answer and free their slots.
        let mut i = 0;
        while i < running.len() {
            if running[i].seq.is_finished() {
                let done = running.swap_remove(i);
                free.push(done.seq.slot());
                let _ = done
                    .job
                    .events
                    .send(Event::Done(Ok(done.seq.into_generation())));
            } else {
                i += 1;
            }
        }
    }
}

/// One forward pass over every running sequence: decode tokens first (one each), then
/// prompt chunks while the step's token budget lasts.
fn step(model: &mut ChatModel, running: &mut [Running], prefill_chunk: usize) {
    let mut budget = model.max_step_tokens();
    let decoding = |r: &Running| r.seq.position() >= r.seq.prompt().len();
    let mut order: Vec<usize> = (0..running.len()).collect();
    order.sort_by_key(|&i| !decoding(&running[i]));
    let mut stepped = Vec::new();
    let mut inputs: Vec<StepInput<'_>> = Vec::new();
    // Disjoint borrows of the sequences, in `order`.
    let mut seqs: Vec<Option<&mut Running>> = running.iter_mut().map(Some).collect();
    for &i in &order {
        if budget == 0 {
            break;
        }
        let r = seqs[i].take().expect("each sequence once");
        let chunk = prefill_chunk.min(budget);
        if let Some(input) = r.seq.next_input(chunk) {
            budget -= input.tokens.len();
            inputs.push(input);
            stepped.push(i);
        }
    }
    if inputs.is_empty() {
        return;
    }
    match model.step(&inputs) {
        Ok(logits) => {
            drop(inputs);
            for (i, logits) in stepped.into_iter().zip(logits) {
                let r = &mut running[i];
                match model.advance(&mut r.seq, &logits) {
                    Ok(delta) => {
                        if !delta.text.is_empty()
                            && r.job.events.send(Event::Text(delta.text)).is_err()
                        {
                            r.seq.cancel();
                        }
                    }
                    Err(e) => fail(r, e),
                }
            }
        }
        Err(e) => {
            drop(inputs);
            // A failed step writes nothing past the slots' lengths; every sequence in it
            // is answered with the error and leaves.
            let message = e.to_string();
            for i in stepped {
                fail(&mut running[i], market_engine::Error::Gpu(message.clone()));
            }
        }
    }
}

fn fail(r: &mut Running, e: market_engine::Error) {
    let _ = r.job.events.send(Event::Done(Err(e)));
    // The receiver got its answer; finishing the sequence frees its slot.
    let (tx, _) = mpsc::channel();
    r.job.events = tx;
    r.seq.cancel();
}

//! Continuous batching: one thread per chat model owns it and runs every active sequence
//! in one forward pass per step (`ChatModel::step`). A request joins at a step boundary
//! when a KV slot is free, first come first served among channels within their share of
//! the slots (a channel at its share waits while later channels' requests go ahead); its
//! prompt is prefilled in chunks
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
    /// No slot freed before the job's deadline: it never started; nothing follows.
    Expired,
    /// The job's client left while it waited: it never started; nothing follows.
    Cancelled,
}

/// A request waiting for a slot.
pub struct Job {
    /// Whose request it is (the payer's account): slots are shared between channels.
    pub channel: String,
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// Set by the request's thread when its client goes away.
    pub cancel: Arc<AtomicBool>,
    /// Past this, a request still waiting for a slot is answered `Event::Expired` (at the
    /// next step boundary) instead of started.
    pub deadline: Option<Instant>,
    pub events: mpsc::Sender<Event>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// The thread ended by a panic: jobs are answered at once with an error.
    dead: bool,
}

/// Marks the queue dead if the thread unwinds, and answers the jobs waiting in it, so no
/// request waits forever on a thread that is gone.
struct Tombstone<'a>(&'a (Mutex<Queue>, Condvar));

impl Drop for Tombstone<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self
                .0
                 .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.dead = true;
            for job in q.jobs.drain(..) {
                let _ = job.events.send(Event::Done(Err(stopped())));
            }
        }
    }
}

fn stopped() -> market_engine::Error {
    market_engine::Error::Gpu(
        "the model's scheduler stopped after a failure: restart the runner".into(),
    )
}

/// The handle requests submit to; dropping every handle stops the thread once idle.
pub struct Scheduler {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    /// Sequences the model runs at once (its KV slots).
    pub slots: usize,
}

/// Which waiting job joins next: the oldest whose channel holds fewer than `share` of the
/// running sequences (`running`: each one's channel), so one channel never holds every
/// slot and another's request is not stuck behind all of its long generations.
fn next_within_share<'a>(
    waiting: impl IntoIterator<Item = &'a str>,
    running: &[&str],
    share: usize,
) -> Option<usize> {
    waiting
        .into_iter()
        .position(|channel| running.iter().filter(|c| **c == channel).count() < share)
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .closed = true;
        wake.notify_all();
    }
}

impl Scheduler {
    /// Starts the thread that owns `model`; prompts are prefilled at most `prefill_chunk`
    /// tokens per sequence per step; one channel's sequences hold at most `channel_slots`
    /// slots at once.
    pub fn start(
        model: ChatModel,
        prefill_chunk: usize,
        channel_slots: usize,
    ) -> std::io::Result<Self> {
        let slots = model.slots();
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let shared = Arc::clone(&queue);
        let share = channel_slots.max(1);
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || run(model, &shared, prefill_chunk.max(1), share))?;
        Ok(Self { queue, slots })
    }

    /// Queues `job` behind those already waiting.
    pub fn submit(&self, job: Job) {
        let (lock, wake) = &*self.queue;
        let mut q = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.dead {
            let _ = job.events.send(Event::Done(Err(stopped())));
            return;
        }
        q.jobs.push_back(job);
        wake.notify_one();
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.queue
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .jobs
            .len()
    }
}

/// One running sequence and where its events go.
struct Running {
    seq: Sequence,
    job: Job,
}

fn run(mut model: ChatModel, queue: &(Mutex<Queue>, Condvar), prefill_chunk: usize, share: usize) {
    let _tombstone = Tombstone(queue);
    let mut free: Vec<usize> = (0..model.slots()).rev().collect();
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Join: the oldest waiting requests within their channel's share take the free
        // slots, at a step boundary.
        {
            let (lock, wake) = queue;
            let mut q = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while running.is_empty() && q.jobs.is_empty() {
                if q.closed {
                    return;
                }
                q = wake.wait(q).expect("queue lock");
            }
            while !free.is_empty() {
                let channels: Vec<&str> = running.iter().map(|r| r.job.channel.as_str()).collect();
                let next =
                    next_within_share(q.jobs.iter().map(|j| j.channel.as_str()), &channels, share);
                let Some(job) = next.and_then(|i| q.jobs.remove(i)) else {
                    break;
                };
                if job.cancel.load(Ordering::Relaxed) {
                    let _ = job.events.send(Event::Cancelled);
                    continue;
                }
                // Past its deadline it is refused even if a slot has just freed: the
                // deadline bounds the wait the client was promised, and it may have gone.
                if job.deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = job.events.send(Event::Expired);
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
            // Jobs still waiting whose client left or whose deadline passed leave the queue
            // now, not when a slot frees.
            let now = Instant::now();
            q.jobs.retain(|job| {
                if job.cancel.load(Ordering::Relaxed) {
                    let _ = job.events.send(Event::Cancelled);
                    return false;
                }
                if job.deadline.is_some_and(|d| now >= d) {
                    let _ = job.events.send(Event::Expired);
                    return false;
                }
                true
            });
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
    let mut greedy = Vec::new();
    let mut inputs: Vec<StepInput<'_>> = Vec::new();
    // Disjoint borrows of the sequences, in `order`.
    let mut seqs: Vec<Option<&mut Running>> = running.iter_mut().map(Some).collect();
    for &i in &order {
        if budget == 0 {
            break;
        }
        let r = seqs[i].take().expect("each sequence once");
        let chunk = prefill_chunk.min(budget);
        let wants_logits = r.seq.needs_logits(chunk);
        if let Some(input) = r.seq.next_input(chunk) {
            budget -= input.tokens.len();
            inputs.push(input);
            stepped.push(i);
            greedy.push(!wants_logits);
        }
    }
    if inputs.is_empty() {
        return;
    }
    // Greedy sequences (and prompt chunks before the last) take the step's pick: when a
    // step has only those, it reads back a few bytes per sequence, not the logits.
    match model.step_for(&inputs, &greedy) {
        Ok(outputs) => {
            drop(inputs);
            for (i, output) in stepped.into_iter().zip(outputs) {
                let r = &mut running[i];
                match model.advance_output(&mut r.seq, &output) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_scheduler() -> Scheduler {
        let dir = std::env::temp_dir().join(format!(
            "scheduler-tiny-llama-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        market_engine::testing::write_tiny_llama(&dir, market_engine::quant::Format::F32, 5)
            .unwrap();
        let options = market_engine::LoadOptions::new(market_engine::Slots::Count(1));
        let market_engine::Model::Chat(model) = market_engine::Model::load_with_options(
            market_engine::Source::Path(&dir),
            market_engine::Backend::Cpu,
            None,
            market_engine::Sha256::Compute,
            &options,
        )
        .unwrap() else {
            panic!("a llama is a chat model")
        };
        std::fs::remove_dir_all(&dir).unwrap();
        Scheduler::start(model, 64, 1).unwrap()
    }

    fn job(cancelled: bool, deadline: Option<Instant>) -> (Job, mpsc::Receiver<Event>) {
        let (events, received) = mpsc::channel();
        let job = Job {
            channel: "alice.near".into(),
            prompt: vec![1, 72, 101, 108, 108, 111],
            options: GenerateOptions {
                max_tokens: 3,
                ..GenerateOptions::default()
            },
            cancel: Arc::new(AtomicBool::new(cancelled)),
            deadline,
            events,
        };
        (job, received)
    }

    /// The last event a job gets.
    fn outcome(received: &mpsc::Receiver<Event>) -> Event {
        loop {
            match received.recv().expect("an answer") {
                Event::Text(_) => {}
                other => return other,
            }
        }
    }

    /// A waiting job whose client left, or whose deadline passed, is answered without
    /// running; the others run.
    #[test]
    fn a_job_whose_client_left_or_whose_deadline_passed_never_runs() {
        let scheduler = tiny_scheduler();
        let (gone, gone_events) = job(true, None);
        let (late, late_events) = job(false, Some(Instant::now()));
        let (fine, fine_events) = job(false, None);
        scheduler.submit(gone);
        scheduler.submit(late);
        scheduler.submit(fine);
        assert!(matches!(outcome(&gone_events), Event::Cancelled));
        assert!(matches!(outcome(&late_events), Event::Expired));
        match outcome(&fine_events) {
            Event::Done(Ok(generation)) => assert!(!generation.tokens.is_empty()),
            _ => panic!("the third job runs"),
        }
    }

    /// A channel at its share of the slots waits while a later channel's request joins;
    /// under its share, the oldest request joins first.
    #[test]
    fn a_channel_at_its_share_waits_while_others_join() {
        let waiting = ["a", "a", "b", "c"];
        assert_eq!(next_within_share(waiting, &[], 2), Some(0), "oldest first");
        assert_eq!(
            next_within_share(waiting, &["a"], 2),
            Some(0),
            "under its share"
        );
        assert_eq!(
            next_within_share(waiting, &["a", "a"], 2),
            Some(2),
            "a holds its share: b goes ahead"
        );
        assert_eq!(next_within_share(waiting, &["a", "b"], 1), Some(3));
        assert_eq!(next_within_share(["a", "b"], &["a", "b"], 1), None);
    }
}

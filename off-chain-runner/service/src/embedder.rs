//! Embedding requests batched across callers: one thread per embedding model owns it, and
//! each forward pass takes the inputs of the requests waiting when it starts, first come
//! first served while their tokens fit one pass, and embeds them together. A request too
//! large for what is left of a pass gives it as many of its inputs as fit and goes back to
//! the end of the queue with the rest, so a small request behind a large one waits one
//! pass, not all of the large one's. Requests are tokenized and checked on their own
//! threads before they wait here.
//!
//! Batching changes no answer: the encoder attends each text to its own tokens only, so a
//! text's embedding is the same bits alone or beside others (`market-engine`'s
//! `embed_batch` tests), and a receipt's output can be re-run alone.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
};

use market_engine::{bert::EmbeddingModel, Embedding};

type Reply = mpsc::Sender<Result<Vec<Embedding>, market_engine::Error>>;

/// One request: its inputs' token ids, and where its embeddings go.
pub struct Job {
    pub ids: Vec<Vec<u32>>,
    pub reply: Reply,
}

/// A request in the queue, with the embeddings of its inputs that passes have done.
struct Waiting {
    job: Job,
    done: Vec<Embedding>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Waiting>,
    closed: bool,
}

/// The handle requests submit to; dropping it stops the thread once the queue is empty.
pub struct Embedder {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    passes: Arc<AtomicU64>,
}

impl Drop for Embedder {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().expect("queue lock").closed = true;
        wake.notify_all();
    }
}

impl Embedder {
    /// Starts the thread that owns `model`.
    pub fn start(model: EmbeddingModel) -> std::io::Result<Self> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let passes = Arc::new(AtomicU64::new(0));
        let (shared, counted) = (Arc::clone(&queue), Arc::clone(&passes));
        std::thread::Builder::new()
            .name("embedder".into())
            .spawn(move || run(model, &shared, &counted))?;
        Ok(Self { queue, passes })
    }

    /// Queues `jobs` together, behind those already waiting.
    pub fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        let (lock, wake) = &*self.queue;
        lock.lock()
            .expect("queue lock")
            .jobs
            .extend(jobs.into_iter().map(|job| Waiting {
                job,
                done: Vec::new(),
            }));
        wake.notify_one();
    }

    /// Embeds `ids` (checked by the caller: none empty or over the model's length),
    /// waiting for its turn.
    pub fn embed(&self, ids: Vec<Vec<u32>>) -> Result<Vec<Embedding>, market_engine::Error> {
        let (reply, answer) = mpsc::channel();
        self.submit([Job { ids, reply }]);
        answer.recv().unwrap_or_else(|_| {
            Err(market_engine::Error::Gpu(
                "the embedding thread stopped".into(),
            ))
        })
    }

    /// Times the thread has run the model (one call of `embed_tokens`, one or more
    /// forward passes).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }
}

fn run(mut model: EmbeddingModel, queue: &(Mutex<Queue>, Condvar), passes: &AtomicU64) {
    // What one GPU pass holds; the CPU reference takes any number, one text after another,
    // so a request is not kept waiting behind more than a GPU pass's worth of others.
    let budget = model.pass_tokens().min(market_engine::bert::BATCH_TOKENS);
    loop {
        // Each request in the pass, with how many of its remaining inputs the pass takes.
        let batch: Vec<(Waiting, usize)> = {
            let (lock, wake) = queue;
            let mut q = lock.lock().expect("queue lock");
            while q.jobs.is_empty() {
                if q.closed {
                    return;
                }
                q = wake.wait(q).expect("queue lock");
            }
            let mut tokens = 0;
            let mut batch = Vec::new();
            while let Some(next) = q.jobs.front() {
                let remaining = &next.job.ids[next.done.len()..];
                if remaining.is_empty() {
                    // Nothing to embed (the runner never sends such a job): answered as is.
                    if let Some(empty) = q.jobs.pop_front() {
                        let _ = empty.job.reply.send(Ok(empty.done));
                    }
                    continue;
                }
                // Inputs of this request that fit what is left (one at least in an empty
                // pass: none is over the model's length, which a pass holds).
                let mut take = 0;
                for input in remaining {
                    if (tokens > 0 || take > 0) && tokens + input.len() > budget {
                        break;
                    }
                    tokens += input.len();
                    take += 1;
                }
                if take == 0 {
                    break;
                }
                let whole = take == remaining.len();
                batch.extend(q.jobs.pop_front().map(|w| (w, take)));
                if !whole {
                    break;
                }
            }
            batch
        };
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<Vec<u32>> = batch
            .iter()
            .flat_map(|(w, take)| w.job.ids[w.done.len()..w.done.len() + take].iter().cloned())
            .collect();
        passes.fetch_add(1, Ordering::Relaxed);
        // A panic in a pass (a device failure surfacing as one) answers that pass's
        // requests with an error instead of ending the thread, which would leave every
        // later request waiting forever; the model keeps no state between passes.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.embed_tokens(&ids)))
                .unwrap_or_else(|_| {
                    Err(market_engine::Error::Gpu(
                        "the embedding pass panicked".into(),
                    ))
                });
        match result {
            Ok(embeddings) => {
                let mut embeddings = embeddings.into_iter();
                let mut unfinished = Vec::new();
                for (mut waiting, take) in batch {
                    waiting.done.extend(embeddings.by_ref().take(take));
                    if waiting.done.len() == waiting.job.ids.len() {
                        let _ = waiting.job.reply.send(Ok(waiting.done));
                    } else {
                        unfinished.push(waiting);
                    }
                }
                // Its turn is over: the rest waits behind the requests that came after.
                let (lock, _) = queue;
                lock.lock().expect("queue lock").jobs.extend(unfinished);
            }
            Err(e) => {
                let message = e.to_string();
                for (waiting, _) in batch {
                    let _ = waiting
                        .job
                        .reply
                        .send(Err(market_engine::Error::Gpu(message.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> EmbeddingModel {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let models = std::env::var_os("MODELS_DIR")
            .map_or_else(|| root.join("models"), std::path::PathBuf::from);
        let dir = models.join("all-minilm-l6-v2");
        assert!(
            dir.exists(),
            "{} is missing: run scripts/fetch-models.sh",
            dir.display()
        );
        let gpu = market_engine::gpu::Gpu::new().unwrap();
        match market_engine::Model::load(
            &dir,
            market_engine::Backend::Gpu,
            Some(&gpu),
            market_engine::Sha256::Compute,
        )
        .unwrap()
        {
            market_engine::Model::Embedding(m) => m,
            market_engine::Model::Chat(_) => panic!("MiniLM is an embedding model"),
        }
    }

    fn bits(embeddings: &[Embedding]) -> Vec<Vec<u32>> {
        embeddings
            .iter()
            .map(|e| e.vector.iter().map(|v| v.to_bits()).collect())
            .collect()
    }

    /// Requests waiting together share one pass and get the very bits each gets alone.
    #[test]
    fn waiting_requests_share_a_pass_and_get_what_each_gets_alone() {
        let mut model = minilm();
        let text = model.text_handle();
        let requests: Vec<Vec<&str>> = vec![
            vec!["A man is playing a guitar."],
            vec!["The stock market fell sharply on Monday.", "Rain."],
            vec!["Photosynthesis converts light into chemical energy."],
            vec![
                "Someone strums an acoustic guitar on stage.",
                "x",
                "A third, longer input here.",
            ],
        ];
        let tokenized: Vec<Vec<Vec<u32>>> = requests
            .iter()
            .map(|r| r.iter().map(|t| text.tokenize(t).unwrap()).collect())
            .collect();
        let alone: Vec<Vec<Vec<u32>>> = requests
            .iter()
            .map(|r| {
                let each: Vec<Embedding> = r
                    .iter()
                    .map(|t| model.embed_batch(&[t]).unwrap().remove(0))
                    .collect();
                bits(&each)
            })
            .collect();
        let embedder = Embedder::start(model).unwrap();
        let (jobs, answers): (Vec<Job>, Vec<_>) = tokenized
            .into_iter()
            .map(|ids| {
                let (reply, answer) = mpsc::channel();
                (Job { ids, reply }, answer)
            })
            .unzip();
        embedder.submit(jobs);
        for (i, answer) in answers.into_iter().enumerate() {
            let got = answer.recv().unwrap().unwrap();
            assert_eq!(got.len(), requests[i].len());
            assert!(
                bits(&got) == alone[i],
                "request {i}: other bits batched than alone"
            );
        }
        assert_eq!(embedder.passes(), 1, "the four requests ran in one pass");

        // One more, alone, through the blocking call.
        let one = embedder
            .embed(vec![text.tokenize("A man is playing a guitar.").unwrap()])
            .unwrap();
        assert!(bits(&one) == alone[0]);
        assert_eq!(embedder.passes(), 2);
    }

    /// A request too large for one pass does not hold the model for all its passes: a
    /// small request sent behind it is answered after one of them, while the large one is
    /// still going; the large one's embeddings are still the bits each input gets alone.
    #[test]
    fn a_small_request_behind_a_large_one_waits_one_pass_not_all() {
        let mut model = minilm();
        let text = model.text_handle();
        // 102 tokens an input: five fill a pass of 512; twenty need four passes.
        let long = "word ".repeat(100);
        let large: Vec<Vec<u32>> = (0..20)
            .map(|i| text.tokenize(&format!("{long}{i}")).unwrap())
            .collect();
        let small = vec![text.tokenize("A man is playing a guitar.").unwrap()];
        let alone = bits(&model.embed_tokens(&large).unwrap());
        let embedder = Embedder::start(model).unwrap();
        let (large_reply, large_answer) = mpsc::channel();
        let (small_reply, small_answer) = mpsc::channel();
        embedder.submit([
            Job {
                ids: large,
                reply: large_reply,
            },
            Job {
                ids: small,
                reply: small_reply,
            },
        ]);
        assert_eq!(small_answer.recv().unwrap().unwrap().len(), 1);
        assert!(
            large_answer.try_recv().is_err(),
            "the small request was answered before the large one's last pass"
        );
        assert!(embedder.passes() < 4, "after {} passes", embedder.passes());
        let large = large_answer.recv().unwrap().unwrap();
        assert!(bits(&large) == alone, "the large request's bits, in pieces");
        assert!(
            embedder.embed(Vec::new()).unwrap().is_empty(),
            "a job of no inputs is answered, not spun on"
        );
    }
}

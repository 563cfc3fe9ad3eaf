//! Receipts commit to outputs, so a request must give the same bits when re-run to check
//! it, whatever else the runner was doing: here one request on the tiny llama is run alone,
//! in batches of 4 and 16 beside unrelated sequences at other positions, with its prompt
//! prefilled whole, 1 or 3 tokens at a time, and in a slot that other requests used before,
//! and every logit it gets and every token it picks is compared bit for bit; and started
//! from the kept public prefix against computed whole. Also: a step's
//! dispatches do not grow with its batch, slots are sized and validated, and `generate` is
//! one sequence stepped through the same API.

mod common;

use std::path::{Path, PathBuf};

use common::{bits, gpu, max_diff};
use market_engine::llama::ChatModel;
use market_engine::ops::argmax::cpu as argmax;
use market_engine::quant::Format;
use market_engine::testing::write_tiny_llama;
use market_engine::{
    Backend, Error, FinishReason, GenerateOptions, LoadOptions, Model, Sha256, Slots, Source,
    StepInput, StepOutput,
};

const PROMPT: [u32; 12] = [1, 72, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101];
/// Decode steps of the request under test.
const DECODE: usize = 8;
const SLOTS: usize = 16;

/// A fresh copy per test: tests run in parallel and delete their copies.
fn tiny(format: Format, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tiny-llama-batch-{test}-{format:?}-{}",
        std::process::id()
    ));
    write_tiny_llama(&dir, format, 42).unwrap();
    dir
}

fn chat(path: &Path, backend: Backend, slots: usize) -> ChatModel {
    let gpu = gpu();
    let options = LoadOptions::new(Slots::Count(slots));
    match Model::load_with_options(
        Source::Path(path),
        backend,
        Some(&gpu),
        Sha256::Compute,
        &options,
    )
    .unwrap()
    {
        Model::Chat(m) => m,
        Model::Embedding(_) => panic!("a llama loads as a chat model"),
    }
}

/// A greedy sequence driven step by step through `ChatModel::step`.
struct Run {
    slot: usize,
    tokens: Vec<u32>,
    /// Tokens in the slot.
    fed: usize,
    /// Prompt tokens per step.
    chunk: usize,
    /// Tokens still to generate.
    left: usize,
    /// The bits of the logits after the prompt and after each decode token.
    logits: Vec<Vec<u32>>,
}

impl Run {
    fn new(slot: usize, prompt: &[u32], chunk: usize, decode: usize) -> Run {
        Run {
            slot,
            tokens: prompt.to_vec(),
            fed: 0,
            chunk,
            left: decode,
            logits: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.left == 0
    }

    fn input(&self) -> Option<StepInput<'_>> {
        let n = self.chunk.min(self.tokens.len() - self.fed);
        (!self.done()).then(|| StepInput {
            slot: self.slot,
            pos: self.fed,
            tokens: &self.tokens[self.fed..self.fed + n],
        })
    }

    fn take(&mut self, logits: &[f32]) {
        self.fed += self.chunk.min(self.tokens.len() - self.fed);
        if self.fed == self.tokens.len() {
            self.logits.push(bits(logits));
            self.tokens.push(argmax(logits));
            self.left -= 1;
        }
    }
}

/// Steps every unfinished run together until `until` (an index into `runs`) is done.
fn drive(model: &mut ChatModel, runs: &mut [Run], until: usize) {
    while !runs[until].done() {
        let stepped: Vec<usize> = (0..runs.len()).filter(|&i| !runs[i].done()).collect();
        let inputs: Vec<StepInput> = stepped.iter().filter_map(|&i| runs[i].input()).collect();
        let logits = model.step(&inputs).unwrap();
        for (&i, l) in stepped.iter().zip(&logits) {
            runs[i].take(l);
        }
    }
}

/// Unrelated sequences in every slot but `skip`: prompts of different lengths and
/// contents, chunked differently, many of them already some way in when the request starts.
fn others(model: &mut ChatModel, count: usize, skip: usize, seed: u32) -> Vec<Run> {
    let slots: Vec<usize> = (0..model.slots())
        .filter(|&s| s != skip)
        .take(count)
        .collect();
    let mut runs: Vec<Run> = slots
        .iter()
        .enumerate()
        .map(|(i, &slot)| {
            let len = 3 + (i * 7 + seed as usize) % 30;
            let prompt: Vec<u32> = (0..len)
                .map(|j| 3 + (j as u32 * 31 + i as u32 * 17 + seed) % 250)
                .collect();
            model.free_slot(slot).unwrap();
            Run::new(slot, &prompt, 1 + (i + seed as usize) % 7, 40)
        })
        .collect();
    // A head start of a few steps for every other one: other positions, other phases.
    let early = runs.len() / 2;
    if early > 0 {
        let mut ahead: Vec<Run> = runs.drain(..early).collect();
        for _ in 0..5 {
            let inputs: Vec<StepInput> = ahead.iter().filter_map(Run::input).collect();
            let logits = model.step(&inputs).unwrap();
            for (r, l) in ahead.iter_mut().zip(&logits) {
                r.take(l);
            }
        }
        runs.extend(ahead);
    }
    runs
}

/// The request under test in `slot`, prompt chunked by `chunk`, beside `company` other
/// sequences; `used`: the slot first served an unrelated, longer request.
fn request(model: &mut ChatModel, slot: usize, chunk: usize, company: usize, used: bool) -> Run {
    if used {
        let before: Vec<u32> = (0..40).map(|i| 200 - i).collect();
        model.free_slot(slot).unwrap();
        let mut runs = vec![Run::new(slot, &before, 5, 6)];
        drive(model, &mut runs, 0);
    }
    let mut runs = others(model, company, slot, chunk as u32 + u32::from(used));
    model.free_slot(slot).unwrap();
    runs.push(Run::new(slot, &PROMPT, chunk, DECODE));
    let me = runs.len() - 1;
    drive(model, &mut runs, me);
    runs.swap_remove(me)
}

#[test]
fn a_request_gets_the_same_bits_alone_batched_chunked_and_in_a_used_slot() {
    for format in [Format::F32, Format::F16] {
        let dir = tiny(format, "same");
        let mut model = chat(&dir, Backend::Gpu, SLOTS);
        let alone = request(&mut model, 0, PROMPT.len(), 0, false);
        assert_eq!(alone.logits.len(), DECODE);
        for company in [0, 3, 15] {
            for chunk in [PROMPT.len(), 1, 3] {
                for used in [false, true] {
                    let slot = (company * 5 + chunk) % SLOTS;
                    let run = request(&mut model, slot, chunk, company, used);
                    let case = format!(
                        "{format:?}: batch of {}, chunks of {chunk}, slot {slot}{}",
                        company + 1,
                        if used { " used before" } else { "" }
                    );
                    assert_eq!(run.tokens, alone.tokens, "greedy tokens, {case}");
                    for (step, (got, want)) in run.logits.iter().zip(&alone.logits).enumerate() {
                        let differ = got.iter().zip(want).filter(|(a, b)| a != b).count();
                        assert!(differ == 0, "{case}: {differ} logits differ at step {step}");
                    }
                }
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_decode_step_dispatches_the_same_kernels_whatever_its_batch() {
    let dir = tiny(Format::F32, "dispatches");
    let mut model = chat(&dir, Backend::Gpu, SLOTS);
    let mut per_step = Vec::new();
    for batch in [1, 4, 16] {
        for slot in 0..batch {
            model.free_slot(slot).unwrap();
            model
                .step(&[StepInput {
                    slot,
                    pos: 0,
                    tokens: &PROMPT[..2 + slot % 5],
                }])
                .unwrap();
        }
        let tokens: Vec<u32> = (0..batch as u32).map(|i| 40 + i).collect();
        let inputs: Vec<StepInput> = (0..batch)
            .map(|slot| StepInput {
                slot,
                pos: 2 + slot % 5,
                tokens: &tokens[slot..=slot],
            })
            .collect();
        let before = model.gpu_dispatches();
        let logits = model.step(&inputs).unwrap();
        assert_eq!(logits.len(), batch);
        per_step.push(model.gpu_dispatches() - before);
    }
    // The tiny llama's 2 layers of 9 kernels (norm, fused QKV, 2 rotary, attention, output,
    // norm, fused gate·up·SiLU, down), then the head's norm, linear layer and greedy pick.
    assert_eq!(
        per_step,
        [2 * 9 + 3; 3],
        "dispatches for batches of 1, 4, 16"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn steps_are_validated_and_a_refused_step_changes_nothing() {
    let dir = tiny(Format::F32, "validate");
    let mut model = chat(&dir, Backend::Gpu, 4);
    assert_eq!(model.slots(), 4);
    let context = model.context_length();
    let input = |slot, pos, tokens| StepInput { slot, pos, tokens };
    let refused = |model: &mut ChatModel, inputs: &[StepInput], says: &str| {
        let err = model.step(inputs).unwrap_err();
        assert!(
            matches!(err, Error::Input(_)) && err.to_string().contains(says),
            "{says:?}: {err}"
        );
    };
    let first = model.step(&[input(1, 0, &PROMPT[..5])]).unwrap().remove(0);
    refused(&mut model, &[], "at least one input");
    refused(&mut model, &[input(4, 0, &PROMPT)], "slot 4 does not exist");
    refused(
        &mut model,
        &[input(0, 0, &PROMPT), input(0, 0, &PROMPT)],
        "two inputs",
    );
    refused(&mut model, &[input(2, 0, &[])], "no tokens");
    refused(&mut model, &[input(1, 3, &PROMPT[3..])], "holds 5");
    refused(&mut model, &[input(2, 0, &[1, 999])], "vocabulary");
    let long = vec![7u32; context + 1];
    refused(&mut model, &[input(2, 0, &long)], "past the context");
    let many = vec![7u32; 100];
    refused(
        &mut model,
        &[input(2, 0, &many), input(3, 0, &many)],
        "exceeds the 128",
    );
    // A refusal in one input refuses the step: slot 2 did not move.
    refused(
        &mut model,
        &[input(2, 0, &PROMPT), input(3, 1, &PROMPT)],
        "holds 0",
    );
    assert_eq!(model.slot_len(2).unwrap(), 0);
    assert_eq!(model.slot_len(1).unwrap(), 5);

    // An explicit rewind runs a position again, with the same bits as the first time.
    let next = model.step(&[input(1, 5, &PROMPT[5..])]).unwrap().remove(0);
    assert!(model.rewind(1, 13).is_err(), "cannot rewind forward");
    model.rewind(1, 5).unwrap();
    let again = model.step(&[input(1, 5, &PROMPT[5..])]).unwrap().remove(0);
    assert!(
        bits(&again) == bits(&next),
        "rewound: {}",
        max_diff(&again, &next)
    );
    model.rewind(1, 4).unwrap();
    let fifth = model.step(&[input(1, 4, &PROMPT[4..5])]).unwrap().remove(0);
    assert!(
        bits(&fifth) == bits(&first),
        "rewound: {}",
        max_diff(&fifth, &first)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn slots_are_sized_from_memory_and_the_cpu_reference_steps_batches_too() {
    let dir = tiny(Format::F16, "slots");
    let gpu = gpu();
    let load = |backend, slots| {
        Model::load_with_options(
            Source::Path(&dir),
            backend,
            Some(&gpu),
            Sha256::Compute,
            &LoadOptions::new(slots),
        )
    };
    // context 256 × 2 layers × kv_dim 32 × (key, value) × 4 bytes.
    let per_slot = 256 * 2 * 32 * 2 * 4;
    let Model::Chat(gpu_model) = load(Backend::Gpu, Slots::Memory(3 * per_slot + 5)).unwrap()
    else {
        panic!()
    };
    assert_eq!(gpu_model.slots(), 3);
    assert_eq!(gpu_model.kv_cache_bytes(), 3 * per_slot);
    assert_eq!(gpu_model.config().kv_cache_bytes(7), 7 * per_slot);
    let err = load(Backend::Gpu, Slots::Memory(per_slot - 1))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&format!("needs {per_slot} bytes")),
        "{err}"
    );
    assert!(load(Backend::Cpu, Slots::Count(0)).is_err());

    // The CPU reference serves slots as well: a batched step against the GPU's.
    let Model::Chat(mut cpu_model) = load(Backend::Cpu, Slots::Count(3)).unwrap() else {
        panic!()
    };
    let mut gpu_model = gpu_model;
    let inputs = [
        StepInput {
            slot: 2,
            pos: 0,
            tokens: &PROMPT,
        },
        StepInput {
            slot: 0,
            pos: 0,
            tokens: &PROMPT[..3],
        },
    ];
    let (c, g) = (
        cpu_model.step(&inputs).unwrap(),
        gpu_model.step(&inputs).unwrap(),
    );
    for (c, g) in c.iter().zip(&g) {
        // As tests/tiny_llama.rs: two layers of f32 reordering on logits of O(1..10).
        assert!(max_diff(c, g) < 1e-3, "{}", max_diff(c, g));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn generate_is_one_sequence_and_sequences_step_together_to_the_same_results() {
    let dir = tiny(Format::F32, "sequences");
    let mut model = chat(&dir, Backend::Gpu, 4);
    let sampled = GenerateOptions {
        max_tokens: 10,
        temperature: 0.9,
        top_p: 0.95,
        seed: 7,
        stop: vec![],
    };
    let greedy = GenerateOptions {
        max_tokens: 6,
        ..GenerateOptions::default()
    };
    let mut streamed = String::new();
    let whole = model
        .generate(&PROMPT, &sampled, &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap();
    assert_eq!(streamed, whole.text);
    assert_eq!(whole.tokens.len(), 10);
    for chunk in [1, 3] {
        let chunked = model
            .generate_in_chunks(&PROMPT, &sampled, chunk, &mut |_| true)
            .unwrap();
        assert_eq!(chunked.tokens, whole.tokens, "prefilled {chunk} at a time");
        assert_eq!(chunked.text, whole.text);
    }
    let greedy_alone = model
        .generate(&PROMPT[..7], &greedy, &mut |_| true)
        .unwrap();

    // Three sequences stepped together, each with its own sampler and chunking.
    let mut seqs = vec![
        model.start_sequence(2, &PROMPT, &sampled).unwrap(),
        model.start_sequence(0, &PROMPT[..7], &greedy).unwrap(),
        model
            .start_sequence(1, &[5, 6, 7, 8, 9], &GenerateOptions::default())
            .unwrap(),
    ];
    let chunks = [2, 4, 1];
    let mut texts = vec![String::new(); 3];
    while seqs.iter().any(|s| !s.is_finished()) {
        let mut stepped = Vec::new();
        let mut inputs = Vec::new();
        for (i, (seq, &chunk)) in seqs.iter_mut().zip(&chunks).enumerate() {
            if let Some(input) = seq.next_input(chunk) {
                stepped.push(i);
                inputs.push(input);
            }
        }
        let logits = model.step(&inputs).unwrap();
        drop(inputs);
        for (i, l) in stepped.into_iter().zip(&logits) {
            let delta = model.advance(&mut seqs[i], l).unwrap();
            texts[i].push_str(&delta.text);
            if delta.finished.is_some() {
                model.free_slot(seqs[i].slot()).unwrap();
            }
        }
    }
    let mut seqs = seqs.into_iter();
    let (a, b) = (seqs.next().unwrap(), seqs.next().unwrap());
    assert_eq!(texts[0], a.text(), "the deltas add up to the text");
    let (a, b) = (a.into_generation(), b.into_generation());
    assert_eq!(
        (a.tokens, a.text, a.finish_reason),
        (whole.tokens, whole.text, FinishReason::Length)
    );
    assert_eq!(b.tokens, greedy_alone.tokens);

    // A finished sequence takes no more logits.
    let mut done = model.start_sequence(3, &PROMPT, &greedy).unwrap();
    while let Some(input) = done.next_input(64) {
        let logits = model.step(&[input]).unwrap().remove(0);
        model.advance(&mut done, &logits).unwrap();
    }
    assert!(model.advance(&mut done, &[0.0; 4]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A sequence cancelled during its prefill counts the prompt tokens it ran, not its whole
/// prompt: its client is charged for what was computed.
#[test]
fn a_sequence_cancelled_during_prefill_counts_the_prompt_it_ran() {
    let dir = tiny(Format::F32, "cancelled-prefill");
    let mut model = chat(&dir, Backend::Cpu, 1);
    let mut seq = model
        .start_sequence(0, &PROMPT, &GenerateOptions::default())
        .unwrap();
    let input = seq.next_input(5).unwrap();
    let logits = model.step(&[input]).unwrap().remove(0);
    model.advance(&mut seq, &logits).unwrap();
    seq.cancel();
    let cancelled = seq.into_generation();
    assert_eq!((cancelled.prompt_tokens, cancelled.tokens.len()), (5, 0));
    let mut whole = model
        .start_sequence(0, &PROMPT, &GenerateOptions::default())
        .unwrap();
    while let Some(input) = whole.next_input(64) {
        let logits = model.step(&[input]).unwrap().remove(0);
        model.advance(&mut whole, &logits).unwrap();
    }
    assert_eq!(whole.into_generation().prompt_tokens, PROMPT.len());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Greedy through the `Sequence` API in `slot`: where the sequence starts (the positions
/// its slot already holds), then the bits of every logit vector a token was picked from.
fn sequence_bits(model: &mut ChatModel, slot: usize, prompt: &[u32]) -> (usize, Vec<Vec<u32>>) {
    let opts = GenerateOptions {
        max_tokens: DECODE,
        ..GenerateOptions::default()
    };
    let mut seq = model.start_sequence(slot, prompt, &opts).unwrap();
    let start = seq.position();
    let mut picked = Vec::new();
    while let Some(input) = seq.next_input(4) {
        let logits = model.step(&[input]).unwrap().swap_remove(0);
        let delta = model.advance(&mut seq, &logits).unwrap();
        if delta.token.is_some() || delta.finished.is_some() {
            picked.push(bits(&logits));
        }
    }
    (start, picked)
}

#[test]
fn a_sequence_started_from_the_public_prefix_gets_the_same_bits() {
    let dir = tiny(Format::F32, "prefix");
    for backend in [Backend::Gpu, Backend::Cpu] {
        let mut cold = chat(&dir, backend, 2);
        let mut warm = chat(&dir, backend, 2);
        // The prefix shares PROMPT's first 7 tokens, then goes elsewhere.
        let prefix: Vec<u32> = PROMPT[..7].iter().copied().chain([250, 251]).collect();
        warm.cache_public_prefix(&prefix).unwrap();
        assert_eq!(warm.public_prefix(), &prefix[..]);
        // Slot 1 served something else first: the copy overwrites it.
        sequence_bits(&mut warm, 1, &[40, 41, 42, 43, 44, 45, 46, 47, 48, 49]);
        for (prompt, from) in [
            (PROMPT.to_vec(), 7),
            (PROMPT[..7].to_vec(), 6), // the last token is always run: its logits pick
            (prefix.clone(), prefix.len() - 1),
            (vec![9, 8, 7], 0),
        ] {
            let (start, got) = sequence_bits(&mut warm, 1, &prompt);
            let (cold_start, want) = sequence_bits(&mut cold, 1, &prompt);
            assert_eq!((start, cold_start), (from, 0), "{backend:?}, {prompt:?}");
            assert!(!want.is_empty());
            assert!(
                got == want,
                "{backend:?}, {prompt:?}: other bits with the prefix cached than without"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A step's greedy picks (made on the GPU when every input of the step is greedy, on the
/// CPU from the logits otherwise) are the argmax of the logits the same step gives, for
/// every sequence of a batch, at every decode step.
#[test]
fn greedy_picks_made_by_the_step_are_the_logits_argmax() {
    let dir = tiny(Format::F32, "greedy");
    let mut logits_model = chat(&dir, Backend::Gpu, 4);
    let mut picking_model = chat(&dir, Backend::Gpu, 4);
    let mut tokens: Vec<Vec<u32>> = (0..4u32)
        .map(|s| (0..3 + s).map(|j| 5 + s * 40 + j * 7).collect())
        .collect();
    let mut fed = [0usize; 4];
    for step in 0..6 {
        let inputs: Vec<StepInput> = (0..4)
            .map(|slot| StepInput {
                slot,
                pos: fed[slot],
                tokens: &tokens[slot][fed[slot]..],
            })
            .collect();
        let logits = logits_model.step(&inputs).unwrap();
        // Every other step mixes greedy picks with logits.
        let greedy: Vec<bool> = (0..4).map(|s| step % 2 == 0 || s % 2 == 0).collect();
        let outputs = picking_model.step_for(&inputs, &greedy).unwrap();
        drop(inputs);
        for slot in 0..4 {
            let want = argmax(&logits[slot]);
            match &outputs[slot] {
                StepOutput::Greedy(got) => assert_eq!(*got, want, "step {step}, slot {slot}"),
                StepOutput::Logits(l) => {
                    assert!(!greedy[slot]);
                    assert!(bits(l) == bits(&logits[slot]), "step {step}, slot {slot}");
                }
            }
            fed[slot] = tokens[slot].len();
            tokens[slot].push(want);
        }
    }
    assert!(
        picking_model.step_for(&[], &[true]).is_err(),
        "flags must match inputs"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

//! Prefill and decode throughput of a chat model on this machine's adapter, decode batches
//! included: a quick look at a kernel change without the candle benchmark (`engine_bench`).
//!     cargo run -p market-engine --example throughput -- models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

use std::path::Path;
use std::time::Instant;

use market_engine::{Backend, ChatMessage, LoadOptions, Model, Sha256, Slots, Source, StepInput};

/// `engine_bench`'s prompt: 60 tokens with SmolLM2's template.
const PROMPT: &str =
    "You are reviewing a pull request that adds a settlement batch size option to a \
    payment service. Summarize in two sentences what a reviewer should check first.";
const BATCHES: [usize; 4] = [1, 4, 8, 16];
const DECODE_STEPS: usize = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: throughput MODEL")?;
    let options = LoadOptions::new(Slots::Count(BATCHES[BATCHES.len() - 1]));
    let Model::Chat(mut model) = Model::load_with_options(
        Source::Path(Path::new(&path)),
        Backend::Gpu,
        None,
        Sha256::Compute,
        &options,
    )?
    else {
        return Err("not a chat model".into());
    };
    let text = model.apply_chat_template(&[ChatMessage {
        role: "user".into(),
        content: PROMPT.into(),
    }])?;
    let prompt = model.encode(&text)?;
    // Warm-up: every tile shape's pipelines compiled before timing.
    model.logits(&prompt[..8])?;

    let t = Instant::now();
    model.logits(&prompt)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "prefill {} tokens: {s:.1} s, {:.2} tokens/s",
        prompt.len(),
        prompt.len() as f64 / s
    );

    // Decode cost hardly depends on the context here: each slot holds 8 prompt tokens.
    let start = 8;
    for batch in BATCHES {
        for slot in 0..batch {
            model.free_slot(slot)?;
            model.step(&[StepInput {
                slot,
                pos: 0,
                tokens: &prompt[..start],
            }])?;
        }
        let t = Instant::now();
        for i in 0..DECODE_STEPS {
            let tokens: Vec<u32> = (0..batch as u32).map(|s| 100 + s).collect();
            let inputs: Vec<StepInput> = (0..batch)
                .map(|slot| StepInput {
                    slot,
                    pos: start + i,
                    tokens: &tokens[slot..=slot],
                })
                .collect();
            model.step(&inputs)?;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "decode batch {batch}: {:.2} steps/s, {:.2} tokens/s",
            DECODE_STEPS as f64 / s,
            (DECODE_STEPS * batch) as f64 / s
        );
    }
    Ok(())
}

//! Writes the reference outputs the engine's model tests compare with, computed by candle
//! from the same files and the same token ids:
//! `cargo run -p market-engine --features candle --bin candle_reference`
//! (after scripts/fetch-models.sh). Output: off-chain-runner/engine/tests/reference/*.json.

use std::path::{Path, PathBuf};

use market_engine::candle_ref::{CandleBert, CandleLlama, CandleLlamaF32};
use market_engine::{Backend, ChatMessage, Model};
use serde_json::json;

/// The chat prompts of the greedy-generation test.
pub const PROMPTS: [&str; 3] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three primary colors.",
];
/// Sentences of the embedding test: two close in meaning, one unrelated.
pub const SENTENCES: [&str; 4] = [
    "A man is playing a guitar.",
    "Someone strums an acoustic guitar on stage.",
    "The stock market fell sharply on Monday.",
    "Photosynthesis converts light into chemical energy.",
];
const GREEDY_TOKENS: usize = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = std::env::var_os("MODELS_DIR").map_or_else(|| root.join("models"), PathBuf::from);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    std::fs::create_dir_all(&out)?;

    let gguf = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let Model::Chat(ours) = Model::load(&gguf, Backend::Cpu, None, market_engine::Sha256::Compute)?
    else {
        unreachable!()
    };
    let mut quantized = CandleLlama::load(&gguf)?;
    let candle = CandleLlamaF32::load(&gguf)?;
    let stop = [2u32];
    let mut cases = Vec::new();
    for prompt in PROMPTS {
        let text = ours.apply_chat_template(&[ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        }])?;
        let ids = ours.encode(&text)?;
        let greedy = candle.greedy(&ids, GREEDY_TOKENS, &stop)?;
        // For the record: llama.cpp-style 8-bit activations can flip near-tied tokens.
        let q8 = quantized.greedy(&ids, GREEDY_TOKENS, &stop)?;
        eprintln!(
            "{prompt} -> {:?} (quantized-activation candle: {:?})",
            ours.decode(&greedy)?,
            ours.decode(&q8)?
        );
        cases.push(json!({"prompt": prompt, "prompt_ids": ids, "greedy": greedy, "text": ours.decode(&greedy)?,
            "quantized_llama_greedy_text": ours.decode(&q8)?}));
    }
    write(
        &out.join("smollm2.json"),
        &json!({
            "generated_by": "candle-transformers 0.9 llama in f32 over the GGUF weights dequantized by candle (Q/K un-permuted to the HF layout), CPU, greedy; token ids from market-engine's tokenizer. quantized_llama_greedy_text: candle's quantized_llama, which rounds activations to 8 bits as llama.cpp does, for comparison",
            "weights_sha256": hex::encode(ours.weights_sha256()),
            "cases": cases,
        }),
    )?;

    let dir = models.join("all-minilm-l6-v2");
    let Model::Embedding(ours) =
        Model::load(&dir, Backend::Cpu, None, market_engine::Sha256::Compute)?
    else {
        unreachable!()
    };
    let candle = CandleBert::load(&dir)?;
    let mut cases = Vec::new();
    for sentence in SENTENCES {
        let ids = ours.tokenize(sentence)?;
        cases.push(json!({"text": sentence, "ids": ids, "embedding": candle.embed(&ids)?}));
    }
    write(
        &out.join("minilm.json"),
        &json!({
            "generated_by": "candle-transformers 0.9 bert, CPU, mean pooling + L2 normalization; token ids from market-engine's tokenizer",
            "weights_sha256": hex::encode(ours.weights_sha256()),
            "cases": cases,
        }),
    )?;
    Ok(())
}

fn write(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

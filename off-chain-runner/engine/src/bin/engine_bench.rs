//! Inference benchmark: `SmolLM2-135M` prefill and decode tokens per second and `MiniLM`
//! embeddings per second, for wgpu (this machine's adapter), the CPU reference and candle
//! on the CPU, all in one run; plus, for wgpu decode, the weight bytes read per second and
//! (with `PEAK_BANDWIDTH_GBPS` set to the GPU's peak) the fraction of it reached.
//! `cargo run -p market-engine --features candle --bin engine_bench`
//! Writes the "Inference engine" section of docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use market_engine::bert::EmbeddingModel;
use market_engine::candle_ref::{CandleBert, CandleLlama};
use market_engine::gguf::Gguf;
use market_engine::gpu::Gpu;
use market_engine::llama::ChatModel;
use market_engine::{Backend, ChatMessage, Model, StepInput};

const DECODE_STEPS: usize = 32;
const PROMPT: &str =
    "You are reviewing a pull request that adds a settlement batch size option to a \
    payment service. Summarize in two sentences what a reviewer should check first.";
const SENTENCES: [&str; 4] = [
    "A man is playing a guitar.",
    "Someone strums an acoustic guitar on stage.",
    "The stock market fell sharply on Monday.",
    "Photosynthesis converts light into chemical energy.",
];

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// (prefill tokens/s, decode tokens/s) with our engine: a prefill from an empty slot, then
/// decode steps of one token in that slot.
fn ours(model: &mut ChatModel, prompt: &[u32]) -> R<(f64, f64)> {
    let t = Instant::now();
    model.logits(prompt)?;
    let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..DECODE_STEPS {
        model.step(&[StepInput {
            slot: 0,
            pos: prompt.len() + i,
            tokens: &[100 + i as u32],
        }])?;
    }
    Ok((prefill, DECODE_STEPS as f64 / t.elapsed().as_secs_f64()))
}

fn candle_llama(model: &mut CandleLlama, prompt: &[u32]) -> R<(f64, f64)> {
    let t = Instant::now();
    model.forward(prompt, 0)?;
    let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..DECODE_STEPS {
        model.forward(&[100 + i as u32], prompt.len() + i)?;
    }
    Ok((prefill, DECODE_STEPS as f64 / t.elapsed().as_secs_f64()))
}

fn embeds_per_s(mut run: impl FnMut() -> R<()>) -> R<f64> {
    run()?; // warm-up: pipelines, caches
    let t = Instant::now();
    run()?;
    Ok((SENTENCES.len() * 4) as f64 / t.elapsed().as_secs_f64())
}

fn ours_embed(model: &mut EmbeddingModel) -> R<f64> {
    let texts: Vec<&str> = SENTENCES
        .iter()
        .copied()
        .cycle()
        .take(SENTENCES.len() * 4)
        .collect();
    embeds_per_s(|| {
        model.embed(&texts)?;
        Ok(())
    })
}

fn main() -> R<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = std::env::var_os("MODELS_DIR").map_or_else(|| root.join("models"), PathBuf::from);
    let gguf_path = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mini_path = models.join("all-minilm-l6-v2");
    let gpu = Gpu::new()?;
    let adapter = gpu.adapter_name();
    eprintln!("adapter: {adapter}");

    let Model::Chat(mut wgpu_llm) = Model::load(
        &gguf_path,
        Backend::Gpu,
        Some(&gpu),
        market_engine::Sha256::Compute,
    )?
    else {
        unreachable!()
    };
    let text = wgpu_llm.apply_chat_template(&[ChatMessage {
        role: "user".into(),
        content: PROMPT.into(),
    }])?;
    let prompt = wgpu_llm.encode(&text)?;
    ours(&mut wgpu_llm, &prompt)?; // warm-up: shader compilation
    let wgpu_llm_fig = ours(&mut wgpu_llm, &prompt)?;
    drop(wgpu_llm);
    eprintln!("wgpu {wgpu_llm_fig:?}");
    let Model::Chat(mut cpu_llm) = Model::load(
        &gguf_path,
        Backend::Cpu,
        None,
        market_engine::Sha256::Compute,
    )?
    else {
        unreachable!()
    };
    let cpu_llm_fig = ours(&mut cpu_llm, &prompt)?;
    drop(cpu_llm);
    eprintln!("cpu {cpu_llm_fig:?}");
    let mut candle = CandleLlama::load(&gguf_path)?;
    candle_llama(&mut candle, &prompt)?;
    let mut candle = CandleLlama::load(&gguf_path)?;
    let candle_llm_fig = candle_llama(&mut candle, &prompt)?;
    eprintln!("candle {candle_llm_fig:?}");

    // Weight bytes a decode step reads: every tensor once (the tied embedding as the output).
    let file = Gguf::open(&gguf_path)?;
    let weight_bytes: usize = file.tensors.values().map(|t| t.bytes).sum();
    let achieved = weight_bytes as f64 * wgpu_llm_fig.1 / 1e9;
    let peak = std::env::var("PEAK_BANDWIDTH_GBPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok());

    let Model::Embedding(mut wgpu_bert) = Model::load(
        &mini_path,
        Backend::Gpu,
        Some(&gpu),
        market_engine::Sha256::Compute,
    )?
    else {
        unreachable!()
    };
    let wgpu_bert_fig = ours_embed(&mut wgpu_bert)?;
    let Model::Embedding(mut cpu_bert) = Model::load(
        &mini_path,
        Backend::Cpu,
        None,
        market_engine::Sha256::Compute,
    )?
    else {
        unreachable!()
    };
    let cpu_bert_fig = ours_embed(&mut cpu_bert)?;
    let candle_bert = CandleBert::load(&mini_path)?;
    let ids: Vec<Vec<u32>> = SENTENCES
        .iter()
        .map(|s| wgpu_bert.tokenize(s))
        .collect::<Result<_, _>>()?;
    let candle_bert_fig = embeds_per_s(|| {
        for _ in 0..4 {
            for i in &ids {
                candle_bert.embed(i)?;
            }
        }
        Ok(())
    })?;

    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut out = String::new();
    writeln!(out, "## Inference engine\n")?;
    writeln!(
        out,
        "Measured by `cargo run -p market-engine --features candle --bin engine_bench` (after"
    )?;
    writeln!(out, "`scripts/fetch-models.sh`), all rows in the same process, on a machine with {threads} CPU threads.")?;
    writeln!(out, "wgpu adapter: **{adapter}**.\n")?;
    writeln!(out, "SmolLM2-135M-Instruct (GGUF Q4_1, {} prompt tokens, {DECODE_STEPS} decode steps, batch 1):\n", prompt.len())?;
    writeln!(
        out,
        "| implementation | prefill tokens/s | decode tokens/s | decode vs candle |"
    )?;
    writeln!(out, "|---|---|---|---|")?;
    for (name, (p, d)) in [
        ("market-engine, wgpu", wgpu_llm_fig),
        ("market-engine, CPU reference (1 thread)", cpu_llm_fig),
        ("candle 0.9, CPU", candle_llm_fig),
    ] {
        writeln!(
            out,
            "| {name} | {p:.1} | {d:.2} | {:.2}× |",
            d / candle_llm_fig.1
        )?;
    }
    writeln!(
        out,
        "\nwgpu decode reads {:.1} MB of weights per token: {achieved:.2} GB/s{}.\n",
        weight_bytes as f64 / 1e6,
        peak.map_or_else(
            || " (set PEAK_BANDWIDTH_GBPS to the GPU's peak to get the fraction reached)"
                .to_owned(),
            |p| format!(", {:.0} % of the {p} GB/s peak", 100.0 * achieved / p)
        )
    )?;
    writeln!(
        out,
        "all-MiniLM-L6-v2 (safetensors f32, {} short sentences: market-engine embeds them in \
         one call, batched; candle one at a time):\n",
        SENTENCES.len() * 4
    )?;
    writeln!(out, "| implementation | embeddings/s | vs candle |")?;
    writeln!(out, "|---|---|---|")?;
    for (name, e) in [
        ("market-engine, wgpu", wgpu_bert_fig),
        ("market-engine, CPU reference (1 thread)", cpu_bert_fig),
        ("candle 0.9, CPU", candle_bert_fig),
    ] {
        writeln!(out, "| {name} | {e:.1} | {:.2}× |", e / candle_bert_fig)?;
    }
    print!("{out}");
    let path = root.join("docs/benchmarks.md");
    market_report::bench::write_section(&path, "## Inference engine", &out)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

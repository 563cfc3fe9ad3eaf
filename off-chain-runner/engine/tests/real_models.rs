//! The real models (scripts/fetch-models.sh): SmolLM2-135M-Instruct (GGUF, Q4_1 with a Q8_0
//! embedding) and all-MiniLM-L6-v2 (safetensors), on wgpu, against candle's outputs from
//! the same files and token ids (tests/reference, written by the `candle_reference` binary)
//! and against the CPU reference.

mod common;

use std::sync::{Mutex, OnceLock};

use common::{bits, gpu, max_diff, model, reference};
use market_engine::bert::EmbeddingModel;
use market_engine::llama::ChatModel;
use market_engine::{Backend, ChatMessage, GenerateOptions, Model};

const SMOL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const MINI: &str = "all-minilm-l6-v2";

fn smol() -> &'static Mutex<ChatModel> {
    static M: OnceLock<Mutex<ChatModel>> = OnceLock::new();
    M.get_or_init(|| {
        let gpu = gpu();
        let Model::Chat(m) = Model::load(
            &model(SMOL),
            Backend::Gpu,
            Some(&gpu),
            market_engine::Sha256::Compute,
        )
        .unwrap() else {
            panic!()
        };
        Mutex::new(m)
    })
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_greedy_tokens_match_candle_and_it_knows_paris() {
    let r = reference("smollm2.json");
    let mut m = smol().lock().unwrap();
    assert_eq!(
        hex::encode(m.weights_sha256()),
        r["weights_sha256"].as_str().unwrap(),
        "same file as the reference"
    );
    for case in r["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let text = m
            .apply_chat_template(&[ChatMessage {
                role: "user".into(),
                content: prompt.into(),
            }])
            .unwrap();
        let prompt_ids = m.encode(&text).unwrap();
        assert_eq!(
            prompt_ids,
            ids(&case["prompt_ids"]),
            "tokenizer and template are stable for {prompt:?}"
        );
        let want = ids(&case["greedy"]);
        let out = m
            .generate(
                &prompt_ids,
                &GenerateOptions {
                    max_tokens: want.len(),
                    ..Default::default()
                },
                &mut |_| true,
            )
            .unwrap();
        assert_eq!(
            out.tokens, want,
            "{prompt:?}: ours {:?}, candle {:?}",
            out.text, case["text"]
        );
        if prompt.contains("capital of France") {
            assert!(out.text.contains("Paris"), "{:?}", out.text);
        }
    }
}

#[test]
fn smollm2_gpu_logits_match_the_cpu_reference_and_repeat_exactly() {
    let Model::Chat(mut cpu) = Model::load(
        &model(SMOL),
        Backend::Cpu,
        None,
        market_engine::Sha256::Compute,
    )
    .unwrap() else {
        panic!()
    };
    let mut m = smol().lock().unwrap();
    let prompt = m.encode("The capital of France is").unwrap();
    let c = cpu.logits(&prompt).unwrap();
    m.logits(&[0]).unwrap();
    let g = m.logits(&prompt).unwrap();
    let range = c.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        - c.iter().copied().fold(f32::INFINITY, f32::min);
    // 30 layers of f32 with reordered sums: within 1e-3 of the logits' range.
    assert!(
        max_diff(&c, &g) < 1e-3 * range,
        "max diff {} over a range of {range}",
        max_diff(&c, &g)
    );
    assert_eq!(
        market_engine::ops::argmax::cpu(&c),
        market_engine::ops::argmax::cpu(&g)
    );
    m.logits(&[0]).unwrap();
    let again = m.logits(&prompt).unwrap();
    assert!(
        g.iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "bit-identical re-run"
    );
}

fn mini(backend: Backend) -> EmbeddingModel {
    let gpu = gpu();
    let Model::Embedding(m) = Model::load(
        &model(MINI),
        backend,
        Some(&gpu),
        market_engine::Sha256::Compute,
    )
    .unwrap() else {
        panic!()
    };
    m
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_embeddings_match_candle_and_rank_meaning() {
    let r = reference("minilm.json");
    let mut gpu_model = mini(Backend::Gpu);
    let mut cpu_model = mini(Backend::Cpu);
    assert_eq!(gpu_model.dimension(), 384);
    let cases = r["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let gpu_out = gpu_model.embed(&texts).unwrap();
    let cpu_out = cpu_model.embed(&texts).unwrap();
    for ((case, g), c) in cases.iter().zip(&gpu_out).zip(&cpu_out) {
        assert_eq!(
            gpu_model.tokenize(case["text"].as_str().unwrap()).unwrap(),
            ids(&case["ids"])
        );
        assert_eq!(g.tokens, ids(&case["ids"]).len());
        let want: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        // Unit vectors of 384 components: 1e-4 per component is far below what changes a
        // cosine similarity in its third decimal, and far above f32 reordering (~1e-6).
        assert!(
            max_diff(&g.vector, &want) < 1e-4,
            "vs candle: {}",
            max_diff(&g.vector, &want)
        );
        assert!(
            max_diff(&g.vector, &c.vector) < 1e-5,
            "vs CPU reference: {}",
            max_diff(&g.vector, &c.vector)
        );
        let norm: f32 = g.vector.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let (guitar, strum, stocks, plants) = (
        &gpu_out[0].vector,
        &gpu_out[1].vector,
        &gpu_out[2].vector,
        &gpu_out[3].vector,
    );
    assert!(
        cosine(guitar, strum) > cosine(guitar, stocks) + 0.2,
        "similar sentences score higher"
    );
    assert!(cosine(guitar, strum) > cosine(guitar, plants) + 0.2);

    // Determinism, and fixed padding in tokenizer.json does not leak into the count.
    assert!(
        gpu_model.count_tokens("hi").unwrap() < 8,
        "no padding to 128"
    );
    let long = "word ".repeat(1000);
    let long_alone = gpu_model.embed_batch(&[&long]).unwrap().remove(0);
    assert_eq!(
        long_alone.tokens,
        gpu_model.max_tokens(),
        "truncated to max_seq_length"
    );
    // The texts above went through one forward pass together: each is the same bits alone,
    // and in a batch that spills over into a second pass (two texts of max_tokens and three
    // short ones overflow the pass's rows).
    let alone: Vec<_> = texts[..3]
        .iter()
        .map(|t| gpu_model.embed_batch(&[t]).unwrap().remove(0))
        .collect();
    for (a, batched) in alone.iter().zip(&gpu_out) {
        assert_eq!(bits(&a.vector), bits(&batched.vector), "batched vs alone");
    }
    let mixed = [texts[0], &long, texts[1], &long, texts[2]];
    assert!(2 * gpu_model.max_tokens() + 3 > market_engine::bert::BATCH_TOKENS);
    let out = gpu_model.embed_batch(&mixed).unwrap();
    for (got, want) in out
        .iter()
        .zip([&alone[0], &long_alone, &alone[1], &long_alone, &alone[2]])
    {
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(
            bits(&got.vector),
            bits(&want.vector),
            "in a spilled batch vs alone"
        );
    }
}

/// Token ids given directly (a batcher's path) are checked as the tokenizer's would be:
/// an id outside the vocabulary, a text over the model's length or of no tokens is
/// refused by name, and the model still embeds afterwards.
#[test]
fn minilm_refuses_ids_it_cannot_embed_and_goes_on() {
    let mut m = mini(Backend::Gpu);
    let good = m.tokenize("A man is playing a guitar.").unwrap();
    let refused = [
        (
            vec![good.clone(), vec![101, 9_999_999, 102]],
            "outside the vocabulary",
        ),
        (vec![vec![101; m.max_tokens() + 1]], "over the"),
        (vec![good.clone(), Vec::new()], "no tokens"),
    ];
    for (ids, why) in refused {
        let e = m.embed_tokens(&ids).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    let alone = m.embed_batch(&["A man is playing a guitar."]).unwrap();
    let by_ids = m.embed_tokens(&[good]).unwrap();
    assert_eq!(alone[0].vector, by_ids[0].vector);
}

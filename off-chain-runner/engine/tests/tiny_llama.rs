//! The whole decoder on a tiny generated llama (real safetensors and tokenizer files):
//! GPU against the CPU reference, prefill against step-by-step decode (the same bits),
//! determinism, the weights' hash check, and bad input refused with a message.

mod common;

use std::path::{Path, PathBuf};

use common::{bits, gpu, max_diff};
use market_engine::quant::Format;
use market_engine::testing::write_tiny_llama;
use market_engine::{Backend, ChatMessage, Error, GenerateOptions, Model, StepInput};

/// A fresh copy per test: tests run in parallel and delete their copies.
fn tiny(format: Format, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tiny-llama-{test}-{format:?}-{}",
        std::process::id()
    ));
    write_tiny_llama(&dir, format, 42).unwrap();
    dir
}

fn chat(path: &Path, backend: Backend) -> market_engine::llama::ChatModel {
    let gpu = gpu();
    match Model::load(path, backend, Some(&gpu), market_engine::Sha256::Compute).unwrap() {
        Model::Chat(m) => m,
        Model::Embedding(_) => panic!("a llama loads as a chat model"),
    }
}

const PROMPT: [u32; 12] = [1, 72, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101];

#[test]
fn gpu_logits_match_the_cpu_reference_in_every_weight_format() {
    for format in [Format::F32, Format::F16, Format::BF16] {
        let dir = tiny(format, "logits");
        let mut cpu = chat(&dir, Backend::Cpu);
        let mut gpu = chat(&dir, Backend::Gpu);
        let mut tokens = PROMPT.to_vec();
        // Prefill, then three decode steps, each compared.
        for next in [70, 80, 90, 0] {
            let (c, g) = (cpu.logits(&tokens).unwrap(), gpu.logits(&tokens).unwrap());
            assert_eq!(c.len(), g.len());
            // Logits are O(1..10) here; 1e-3 leaves room for two layers of f32 reordering.
            assert!(
                max_diff(&c, &g) < 1e-3,
                "{format:?} after {} tokens: {}",
                tokens.len(),
                max_diff(&c, &g)
            );
            tokens.push(next);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn prefill_equals_token_by_token_decode_and_runs_are_bit_identical() {
    let dir = tiny(Format::F32, "prefill");
    let mut a = chat(&dir, Backend::Gpu);
    let whole = a.logits(&PROMPT).unwrap();
    let mut b = chat(&dir, Backend::Gpu);
    let mut stepwise = Vec::new();
    for (pos, token) in PROMPT.iter().enumerate() {
        let input = StepInput {
            slot: 0,
            pos,
            tokens: std::slice::from_ref(token),
        };
        stepwise = b.step(&[input]).unwrap().remove(0);
    }
    // One kernel reduces every output in one order whatever the rows of a step: a prompt
    // run in one step and one token per step give the same bits.
    assert!(
        bits(&whole) == bits(&stepwise),
        "prefill vs token-by-token decode: {}",
        max_diff(&whole, &stepwise)
    );

    // Same input, same adapter: the very same bits, for a fresh model and a re-run.
    let mut c = chat(&dir, Backend::Gpu);
    let again = c.logits(&PROMPT).unwrap();
    assert_eq!(bits(&whole), bits(&again));
    c.logits(&[5]).unwrap();
    let rerun = c.logits(&PROMPT).unwrap();
    assert!(whole
        .iter()
        .zip(&rerun)
        .all(|(x, y)| x.to_bits() == y.to_bits()));

    let opts = GenerateOptions {
        max_tokens: 12,
        temperature: 0.9,
        top_p: 0.95,
        seed: 7,
        stop: vec![],
    };
    let first = a.generate(&PROMPT, &opts, &mut |_| true).unwrap();
    let second = c.generate(&PROMPT, &opts, &mut |_| true).unwrap();
    assert_eq!(
        first.tokens, second.tokens,
        "seeded sampling re-runs exactly"
    );
    assert_eq!(first.tokens.len(), 12);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn generation_streams_its_text_and_honours_stops() {
    let dir = tiny(Format::F32, "stream");
    let mut m = chat(&dir, Backend::Gpu);
    let prompt = m
        .apply_chat_template(&[ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }])
        .unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let ids = m.encode(&prompt).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one special token");
    let mut streamed = String::new();
    let out = m
        .generate(
            &ids,
            &GenerateOptions {
                max_tokens: 20,
                ..Default::default()
            },
            &mut |piece| {
                streamed.push_str(piece);
                true
            },
        )
        .unwrap();
    assert_eq!(streamed, out.text, "the pieces add up to the text");
    assert_eq!(out.prompt_tokens, ids.len());

    // A stop string cut from the output, and cancelling from the callback.
    if out.text.chars().count() > 3 {
        let stop: String = out.text.chars().skip(2).take(2).collect();
        let cut = m
            .generate(
                &ids,
                &GenerateOptions {
                    max_tokens: 20,
                    stop: vec![stop.clone()],
                    ..Default::default()
                },
                &mut |_| true,
            )
            .unwrap();
        assert!(
            !cut.text.contains(&stop) && out.text.starts_with(&cut.text),
            "{:?} / {:?}",
            cut.text,
            out.text
        );
    }
    let mut calls = 0;
    let cancelled = m
        .generate(
            &ids,
            &GenerateOptions {
                max_tokens: 20,
                ..Default::default()
            },
            &mut |_| {
                calls += 1;
                false
            },
        )
        .unwrap();
    assert!(calls <= 2 && cancelled.tokens.len() < 20);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn weights_hash_is_checked_and_bad_input_refused() {
    let dir = tiny(Format::F16, "hash");
    let hash = market_protocol::weights::weights_sha256(&dir, |_, _| {}).unwrap();
    let gpu = gpu();
    let Model::Chat(mut m) = Model::load(
        &dir,
        Backend::Gpu,
        Some(&gpu),
        market_engine::Sha256::Expect(hash),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(m.weights_sha256(), hash);
    let mut wrong = hash;
    wrong[0] ^= 1;
    let err = Model::load(
        &dir,
        Backend::Cpu,
        None,
        market_engine::Sha256::Expect(wrong),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&hex::encode(hash)),
        "says what it found: {err}"
    );
    // Hashed once by the caller: trusted while the files are as they were, refused once
    // one is rewritten.
    let stamp = market_engine::weights::Stamp::of(&dir).unwrap();
    let known = || market_engine::Sha256::Known {
        sha256: hash,
        stamp: stamp.clone(),
    };
    assert!(Model::load(&dir, Backend::Cpu, None, known()).is_ok());
    let file = market_engine::weights::files(&dir).unwrap().remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(0);
    std::fs::write(&file, &bytes).unwrap();
    let err = Model::load(&dir, Backend::Cpu, None, known())
        .err()
        .unwrap();
    assert!(matches!(err, Error::WeightsChanged(_)), "{err}");
    bytes.pop();
    std::fs::write(&file, &bytes).unwrap();

    let err = m.logits(&[1, 9999]).unwrap_err();
    assert!(
        matches!(err, Error::Input(_)) && err.to_string().contains("vocabulary"),
        "{err}"
    );
    let long = vec![5u32; m.context_length() + 1];
    let err = m
        .generate(&long, &GenerateOptions::default(), &mut |_| true)
        .unwrap_err();
    assert!(
        matches!(err, Error::Input(_)) && err.to_string().contains("context"),
        "{err}"
    );
    assert!(m.apply_chat_template(&[]).is_err());
    // The model still answers after refusing.
    assert_eq!(m.logits(&PROMPT).unwrap().len(), 259);

    // A config that disagrees with the tensors' shapes is refused with what disagrees, on
    // both backends, rather than run out of bounds.
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut wrong: serde_json::Value = serde_json::from_str(&config).unwrap();
    let ffn = wrong["intermediate_size"].as_u64().unwrap();
    wrong["intermediate_size"] = (ffn + 32).into();
    std::fs::write(dir.join("config.json"), wrong.to_string()).unwrap();
    for (backend, device) in [(Backend::Cpu, None), (Backend::Gpu, Some(&gpu))] {
        let err = Model::load(&dir, backend, device, market_engine::Sha256::Compute)
            .err()
            .unwrap();
        assert!(
            matches!(err, Error::Format(_)) && err.to_string().contains("config makes it"),
            "{err}"
        );
    }
    std::fs::write(dir.join("config.json"), config).unwrap();

    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = Model::load(&dir, Backend::Cpu, None, market_engine::Sha256::Compute)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

//! Model files made on the spot for tests and benchmarks: a tiny llama checkpoint in the
//! real Hugging Face layout (config.json, tokenizer.json with a byte-level BPE,
//! `tokenizer_config.json` with a ChatML template, model.safetensors) with seeded random
//! weights, small enough that every kernel and both backends run on it in milliseconds.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

use crate::quant::{quantize, Format};
use crate::tokenizer::{bpe_json, byte_alphabet};

/// Dimensions of the tiny llama.
pub const TINY_DIM: usize = 64;
pub const TINY_LAYERS: usize = 2;
pub const TINY_FFN: usize = 128;

/// Writes the tiny llama into `dir` with weights stored as `format` (F32, F16 or BF16).
pub fn write_tiny_llama(dir: &Path, format: Format, seed: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut tokens: Vec<String> = specials.iter().map(|s| (*s).to_owned()).collect();
    tokens.extend(byte_alphabet());
    let vocab = tokens.len();
    let special: Vec<(u32, &str)> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, *s))
        .collect();
    let pre = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    std::fs::write(
        dir.join("tokenizer.json"),
        bpe_json(&tokens, &[], &special, &pre).to_string(),
    )?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": crate::template::CHATML, "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
            "add_bos_token": false})
        .to_string(),
    )?;
    let (heads, kv_heads) = (4, 2);
    std::fs::write(
        dir.join("config.json"),
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": TINY_DIM,
            "intermediate_size": TINY_FFN, "num_hidden_layers": TINY_LAYERS, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "max_position_embeddings": 256, "vocab_size": vocab, "tie_word_embeddings": true,
            "eos_token_id": 2})
        .to_string(),
    )?;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut random = |n: usize, scale: f32, offset: f32| -> Vec<f32> {
        (0..n)
            .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect()
    };
    let kv = TINY_DIM / heads * kv_heads;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add =
        |name: String, shape: Vec<usize>, values: Vec<f32>| tensors.push((name, shape, values));
    add(
        "model.embed_tokens.weight".into(),
        vec![vocab, TINY_DIM],
        random(vocab * TINY_DIM, 1.0, 0.0),
    );
    add(
        "model.norm.weight".into(),
        vec![TINY_DIM],
        random(TINY_DIM, 0.1, 1.0),
    );
    let w = 1.0 / (TINY_DIM as f32).sqrt();
    for l in 0..TINY_LAYERS {
        let p = format!("model.layers.{l}");
        add(
            format!("{p}.input_layernorm.weight"),
            vec![TINY_DIM],
            random(TINY_DIM, 0.1, 1.0),
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![TINY_DIM],
            random(TINY_DIM, 0.1, 1.0),
        );
        for (name, n, k) in [
            ("self_attn.q_proj", TINY_DIM, TINY_DIM),
            ("self_attn.k_proj", kv, TINY_DIM),
            ("self_attn.v_proj", kv, TINY_DIM),
            ("self_attn.o_proj", TINY_DIM, TINY_DIM),
            ("mlp.gate_proj", TINY_FFN, TINY_DIM),
            ("mlp.up_proj", TINY_FFN, TINY_DIM),
            ("mlp.down_proj", TINY_DIM, TINY_FFN),
        ] {
            add(
                format!("{p}.{name}.weight"),
                vec![n, k],
                random(n * k, w * 2.0, 0.0),
            );
        }
    }
    let dtype = match format {
        Format::F32 => Dtype::F32,
        Format::F16 => Dtype::F16,
        Format::BF16 => Dtype::BF16,
        other => {
            return Err(std::io::Error::other(format!(
                "safetensors holds no {other:?}"
            )))
        }
    };
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, quantize(format, &v)))
        .collect();
    // An integer tensor the model does not use, as real checkpoints carry (position ids).
    let unused: Vec<u8> = (0..256i64).flat_map(i64::to_le_bytes).collect();
    let mut views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(dtype, s.clone(), b).expect("shape matches"),
            )
        })
        .collect();
    views.push((
        "model.position_ids".into(),
        TensorView::new(Dtype::I64, vec![1, 256], &unused).expect("shape matches"),
    ));
    let data = safetensors::tensor::serialize(views, None::<HashMap<String, String>>)
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("model.safetensors"), data)
}

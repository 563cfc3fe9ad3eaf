//! candle (Hugging Face's Rust ML library) running the same model files: the independent
//! implementation that the reference outputs come from and the benchmark compares with.
//! Only built with the `candle` feature.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use candle_transformers::models::llama;
use candle_transformers::models::quantized_llama::ModelWeights;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// candle's quantized llama (llama.cpp's kernels ported: it quantizes activations to 8 bits
/// for the dot products, as llama.cpp does).
pub struct CandleLlama {
    path: std::path::PathBuf,
    model: ModelWeights,
}

impl CandleLlama {
    pub fn load(path: &Path) -> R<CandleLlama> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)?;
        let model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)?;
        Ok(CandleLlama {
            path: path.to_path_buf(),
            model,
        })
    }

    /// Logits of the last of `tokens`, fed at positions `pos..`.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> R<Vec<f32>> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        Ok(self
            .model
            .forward(&input, pos)?
            .squeeze(0)?
            .to_vec1::<f32>()?)
    }

    /// Greedy generation of up to `n` tokens, stopping before any of `stop`.
    pub fn greedy(&mut self, prompt: &[u32], n: usize, stop: &[u32]) -> R<Vec<u32>> {
        // The KV cache is rebuilt from position 0 by reloading: ModelWeights has no reset.
        *self = CandleLlama::load(&self.path.clone())?;
        let mut logits = self.forward(prompt, 0)?;
        let mut out = Vec::new();
        while out.len() < n {
            let next = crate::ops::argmax::cpu(&logits);
            if stop.contains(&next) {
                break;
            }
            out.push(next);
            logits = self.forward(&[next], prompt.len() + out.len() - 1)?;
        }
        Ok(out)
    }
}

/// candle's f32 llama (the Hugging Face layout, half-split rotary) over the GGUF's weights
/// dequantized by candle and with Q and K rows un-permuted back from llama.cpp's interleaved
/// layout: same numbers as the file, f32 arithmetic throughout, no code shared with ours.
pub struct CandleLlamaF32 {
    model: llama::Llama,
    config: llama::Config,
}

impl CandleLlamaF32 {
    pub fn load(path: &Path) -> R<CandleLlamaF32> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)?;
        let md = |k: &str| {
            content
                .metadata
                .get(k)
                .ok_or_else(|| format!("{k} missing"))
        };
        let heads = md("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let layers = md("llama.block_count")?.to_u32()? as usize;
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let dev = Device::Cpu;
        let mut get = |name: &str| -> R<Tensor> {
            Ok(content.tensor(&mut file, name, &dev)?.dequantize(&dev)?)
        };
        // llama.cpp stores HF rows (h, s·d/2 + i) at (h, 2i + s); undo it.
        let unpermute = |t: Tensor, n: usize| -> R<Tensor> {
            let (rows, cols) = t.dims2()?;
            Ok(t.reshape((n, rows / n / 2, 2, cols))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((rows, cols))?)
        };
        let mut ts = HashMap::new();
        ts.insert(
            "model.embed_tokens.weight".to_owned(),
            get("token_embd.weight")?,
        );
        ts.insert("model.norm.weight".to_owned(), get("output_norm.weight")?);
        for i in 0..layers {
            let p = format!("model.layers.{i}");
            let b = format!("blk.{i}");
            ts.insert(
                format!("{p}.self_attn.q_proj.weight"),
                unpermute(get(&format!("{b}.attn_q.weight"))?, heads)?,
            );
            ts.insert(
                format!("{p}.self_attn.k_proj.weight"),
                unpermute(get(&format!("{b}.attn_k.weight"))?, kv_heads)?,
            );
            for (hf, gg) in [
                ("self_attn.v_proj", "attn_v"),
                ("self_attn.o_proj", "attn_output"),
                ("mlp.gate_proj", "ffn_gate"),
                ("mlp.up_proj", "ffn_up"),
                ("mlp.down_proj", "ffn_down"),
                ("input_layernorm", "attn_norm"),
                ("post_attention_layernorm", "ffn_norm"),
            ] {
                ts.insert(
                    format!("{p}.{hf}.weight"),
                    get(&format!("{b}.{gg}.weight"))?,
                );
            }
        }
        let vocab = ts["model.embed_tokens.weight"].dims2()?.0;
        let config: llama::LlamaConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": dim, "intermediate_size": md("llama.feed_forward_length")?.to_u32()?,
            "vocab_size": vocab, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "rms_norm_eps": md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?,
            "rope_theta": md("llama.rope.freq_base")?.to_f32()?, "max_position_embeddings": 2048,
            "tie_word_embeddings": true}))?;
        let config = config.into_config(false);
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        Ok(CandleLlamaF32 {
            model: llama::Llama::load(vb, &config)?,
            config,
        })
    }

    /// Greedy generation of up to `n` tokens, stopping before any of `stop`.
    pub fn greedy(&self, prompt: &[u32], n: usize, stop: &[u32]) -> R<Vec<u32>> {
        let mut cache = llama::Cache::new(true, DType::F32, &self.config, &Device::Cpu)?;
        let run = |tokens: &[u32], pos: usize, cache: &mut llama::Cache| -> R<Vec<f32>> {
            let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
            Ok(self
                .model
                .forward(&input, pos, cache)?
                .squeeze(0)?
                .to_vec1::<f32>()?)
        };
        let mut logits = run(prompt, 0, &mut cache)?;
        let mut out = Vec::new();
        while out.len() < n {
            let next = crate::ops::argmax::cpu(&logits);
            if stop.contains(&next) {
                break;
            }
            out.push(next);
            logits = run(&[next], prompt.len() + out.len() - 1, &mut cache)?;
        }
        Ok(out)
    }
}

/// candle's BERT with sentence-transformers' pooling done in candle tensors.
pub struct CandleBert {
    model: BertModel,
}

impl CandleBert {
    pub fn load(dir: &Path) -> R<CandleBert> {
        let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        let vb = VarBuilder::from_buffered_safetensors(
            std::fs::read(dir.join("model.safetensors"))?,
            DType::F32,
            &Device::Cpu,
        )?;
        Ok(CandleBert {
            model: BertModel::load(vb, &config)?,
        })
    }

    /// Mean-pooled, L2-normalized embedding of one tokenized text.
    pub fn embed(&self, ids: &[u32]) -> R<Vec<f32>> {
        let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        let types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &types, None)?;
        let mean = hidden.mean(1)?;
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?.squeeze(0)?.to_vec1::<f32>()?)
    }
}

//! The llama-family decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU,
//! tied or separate output embeddings; from GGUF (llama.cpp's interleaved rotary layout)
//! or Hugging Face safetensors (half-split layout); on the GPU or the CPU reference.

use std::sync::Arc;

use crate::api::{ChatMessage, FinishReason, GenerateOptions, Generation};
use crate::cpu::{self, RopeLayout};
use crate::files::Source;
use crate::gguf::Gguf;
use crate::gpu::{Bias, Gpu, Program, Weight};
use crate::quant::{dequantize, repack, Format};
use crate::safetensors_dir::SafetensorsDir;
use crate::sample::Sampler;
use crate::template::{ChatTemplate, CHATML};
use crate::tokenizer::{self, TextCodec};
use crate::{Error, Result};

/// Rows a prefill step runs at once; longer prompts go in several steps.
pub const PREFILL_CHUNK: usize = 128;
/// KV cache length when the caller does not choose one (and the model allows as many).
pub const DEFAULT_CONTEXT: usize = 2048;

#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub vocab: usize,
    pub dim: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub rope_theta: f32,
    pub rope: RopeLayout,
    /// Positions the cache holds.
    pub context: usize,
}

impl LlamaConfig {
    fn check(&self) -> Result<()> {
        let ok = self.heads > 0
            && self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
            && self.head_dim * self.heads == self.dim
            && self.head_dim.is_multiple_of(2)
            && self.layers > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::Format(format!(
                "inconsistent llama dimensions: {self:?}"
            )))
        }
    }
}

/// A weight matrix as the file has it: `n` rows of `k`.
pub struct Matrix {
    pub name: String,
    pub format: Format,
    pub n: usize,
    pub k: usize,
    pub bytes: Vec<u8>,
}

impl Matrix {
    fn row_bytes(&self) -> usize {
        self.format
            .bytes_for(self.k as u64)
            .expect("checked at load")
    }

    /// One row as f32 (embedding lookup).
    pub fn row(&self, i: usize) -> Vec<f32> {
        let rb = self.row_bytes();
        dequantize(self.format, &self.bytes[i * rb..(i + 1) * rb])
    }

    pub(crate) fn upload(&self, gpu: &Gpu) -> Result<Weight> {
        Weight::new(
            gpu,
            &self.name,
            self.format.gpu(),
            &repack(self.format, &self.bytes),
            self.n,
            self.k,
        )
    }
}

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub q: Matrix,
    pub k: Matrix,
    pub v: Matrix,
    pub o: Matrix,
    pub ffn_norm: Vec<f32>,
    pub gate: Matrix,
    pub up: Matrix,
    pub down: Matrix,
}

pub struct LlamaWeights {
    pub embed: Matrix,
    /// `None`: tied to `embed`.
    pub output: Option<Matrix>,
    pub norm: Vec<f32>,
    pub layers: Vec<Layer>,
}

/// Text handling of a chat model.
pub struct ChatText {
    pub codec: TextCodec,
    pub template: ChatTemplate,
    pub bos: Option<u32>,
    pub stop_ids: Vec<u32>,
}

fn matrix(name: &str, format: Format, n: usize, k: usize, bytes: &[u8]) -> Result<Matrix> {
    if format.bytes_for((n * k) as u64) != Some(bytes.len()) {
        return Err(Error::Format(format!(
            "tensor {name}: {} bytes do not hold {n}×{k} {format:?}",
            bytes.len()
        )));
    }
    Ok(Matrix {
        name: name.into(),
        format,
        n,
        k,
        bytes: bytes.to_vec(),
    })
}

/// Reads a GGUF llama: config, weights (still quantized) and text handling.
pub fn from_gguf(
    file: &Gguf,
    context: Option<usize>,
) -> Result<(LlamaConfig, LlamaWeights, ChatText, String)> {
    let arch = file.str("general.architecture")?;
    if arch != "llama" {
        return Err(Error::Format(format!(
            "GGUF architecture {arch:?} is not supported (llama)"
        )));
    }
    let u = |k: &str| file.u64(&format!("llama.{k}")).map(|v| v as usize);
    let dim = u("embedding_length")?;
    let heads = u("attention.head_count")?;
    let trained = u("context_length")?;
    let matrix_of = |name: &str| -> Result<Matrix> {
        let t = file.tensor(name)?;
        if t.dims.len() != 2 {
            return Err(Error::Format(format!(
                "tensor {name} is not a matrix: {:?}",
                t.dims
            )));
        }
        matrix(
            name,
            t.format,
            t.dims[1] as usize,
            t.dims[0] as usize,
            file.data(t),
        )
    };
    let vector = |name: &str| -> Result<Vec<f32>> {
        let t = file.tensor(name)?;
        Ok(dequantize(t.format, file.data(t)))
    };
    let embed = matrix_of("token_embd.weight")?;
    let config = LlamaConfig {
        vocab: embed.n,
        dim,
        ffn: u("feed_forward_length")?,
        layers: u("block_count")?,
        heads,
        kv_heads: u("attention.head_count_kv").unwrap_or(heads),
        head_dim: dim / heads,
        eps: file.f32("llama.attention.layer_norm_rms_epsilon")?,
        rope_theta: file.f32("llama.rope.freq_base").unwrap_or(10_000.0),
        rope: RopeLayout::Interleaved,
        context: context.unwrap_or(DEFAULT_CONTEXT).min(trained),
    };
    config.check()?;
    let layers = (0..config.layers)
        .map(|i| {
            let m = |s: &str| matrix_of(&format!("blk.{i}.{s}.weight"));
            Ok(Layer {
                attn_norm: vector(&format!("blk.{i}.attn_norm.weight"))?,
                q: m("attn_q")?,
                k: m("attn_k")?,
                v: m("attn_v")?,
                o: m("attn_output")?,
                ffn_norm: vector(&format!("blk.{i}.ffn_norm.weight"))?,
                gate: m("ffn_gate")?,
                up: m("ffn_up")?,
                down: m("ffn_down")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let output = if file.tensors.contains_key("output.weight") {
        Some(matrix_of("output.weight")?)
    } else {
        None
    };
    let weights = LlamaWeights {
        embed,
        output,
        norm: vector("output_norm.weight")?,
        layers,
    };

    let codec = tokenizer::from_gguf(file)?;
    let id = |k: &str| file.u64(k).ok().map(|v| v as u32);
    let token = |id: Option<u32>| id.and_then(|i| codec_token(file, i)).unwrap_or_default();
    let (bos, eos) = (
        id("tokenizer.ggml.bos_token_id"),
        id("tokenizer.ggml.eos_token_id"),
    );
    let add_bos = matches!(
        file.get("tokenizer.ggml.add_bos_token"),
        Some(crate::gguf::Value::Bool(true))
    );
    let template_src = file.str("tokenizer.chat_template").unwrap_or(CHATML);
    let template = ChatTemplate::new(template_src, &token(bos), &token(eos))?;
    let mut stop_ids: Vec<u32> = [eos, id("tokenizer.ggml.eot_token_id")]
        .into_iter()
        .flatten()
        .collect();
    stop_ids.extend(codec.token_id("<|im_end|>"));
    stop_ids.dedup();
    let name = file.str("general.name").unwrap_or("llama").to_owned();
    Ok((
        config,
        weights,
        ChatText {
            codec,
            template,
            bos: bos.filter(|_| add_bos),
            stop_ids,
        },
        name,
    ))
}

fn codec_token(file: &Gguf, id: u32) -> Option<String> {
    file.get("tokenizer.ggml.tokens")?
        .as_array()?
        .get(id as usize)?
        .as_str()
        .map(str::to_owned)
}

/// Reads a Hugging Face llama (`LlamaForCausalLM` names): tensors from `dir`, the tokenizer
/// files from `source`.
pub fn from_safetensors(
    dir: &SafetensorsDir,
    source: &Source<'_>,
    context: Option<usize>,
) -> Result<(LlamaConfig, LlamaWeights, ChatText, String)> {
    let dim = dir.config_usize("hidden_size")?;
    let heads = dir.config_usize("num_attention_heads")?;
    let trained = dir
        .config_usize("max_position_embeddings")
        .unwrap_or(DEFAULT_CONTEXT);
    let matrix_of = |name: &str| -> Result<Matrix> {
        let t = dir.tensor(name)?;
        if t.shape.len() != 2 {
            return Err(Error::Format(format!(
                "tensor {name} is not a matrix: {:?}",
                t.shape
            )));
        }
        matrix(name, t.format, t.shape[0], t.shape[1], t.data)
    };
    let vector = |name: &str| -> Result<Vec<f32>> {
        let t = dir.tensor(name)?;
        Ok(dequantize(t.format, t.data))
    };
    let embed = matrix_of("model.embed_tokens.weight")?;
    let config = LlamaConfig {
        vocab: embed.n,
        dim,
        ffn: dir.config_usize("intermediate_size")?,
        layers: dir.config_usize("num_hidden_layers")?,
        heads,
        kv_heads: dir.config_usize("num_key_value_heads").unwrap_or(heads),
        head_dim: dim / heads,
        eps: dir.config_f32("rms_norm_eps", 1e-6),
        rope_theta: dir.config_f32("rope_theta", 10_000.0),
        rope: RopeLayout::HalfSplit,
        context: context.unwrap_or(DEFAULT_CONTEXT).min(trained),
    };
    config.check()?;
    let layers = (0..config.layers)
        .map(|i| {
            let p = format!("model.layers.{i}");
            Ok(Layer {
                attn_norm: vector(&format!("{p}.input_layernorm.weight"))?,
                q: matrix_of(&format!("{p}.self_attn.q_proj.weight"))?,
                k: matrix_of(&format!("{p}.self_attn.k_proj.weight"))?,
                v: matrix_of(&format!("{p}.self_attn.v_proj.weight"))?,
                o: matrix_of(&format!("{p}.self_attn.o_proj.weight"))?,
                ffn_norm: vector(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: matrix_of(&format!("{p}.mlp.gate_proj.weight"))?,
                up: matrix_of(&format!("{p}.mlp.up_proj.weight"))?,
                down: matrix_of(&format!("{p}.mlp.down_proj.weight"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let tied = dir
        .config
        .get("tie_word_embeddings")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let output = if !tied && dir.has("lm_head.weight") {
        Some(matrix_of("lm_head.weight")?)
    } else {
        None
    };
    let weights = LlamaWeights {
        embed,
        output,
        norm: vector("model.norm.weight")?,
        layers,
    };

    let codec = TextCodec::from_source(source, None)?;
    // Optional: without it, ChatML and no special bos/eos.
    let tok_config = source.json("tokenizer_config.json").unwrap_or_default();
    let special = |key: &str| {
        tok_config
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (bos, eos) = (special("bos_token"), special("eos_token"));
    let template_src = tok_config
        .get("chat_template")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(CHATML);
    let template = ChatTemplate::new(template_src, &bos, &eos)?;
    let mut stop_ids: Vec<u32> = [codec.token_id(&eos), codec.token_id("<|im_end|>")]
        .into_iter()
        .flatten()
        .collect();
    if let Some(id) = dir
        .config
        .get("eos_token_id")
        .and_then(serde_json::Value::as_u64)
    {
        stop_ids.push(id as u32);
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();
    let name = source.name().unwrap_or_else(|| "llama".into());
    let add_bos = tok_config
        .get("add_bos_token")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let bos = codec.token_id(&bos).filter(|_| add_bos);
    Ok((
        config,
        weights,
        ChatText {
            codec,
            template,
            bos,
            stop_ids,
        },
        name,
    ))
}

/// One forward step: feed tokens at positions `pos..`, get the last position's logits.
pub trait Forward: Send {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>>;
}

/// The CPU reference decoder.
pub struct CpuLlama {
    cfg: LlamaConfig,
    embed: Matrix,
    output: Vec<f32>,
    norm: Vec<f32>,
    layers: Vec<CpuLayer>,
    rope: Vec<f32>,
    /// Per layer: keys and values of every cached position.
    cache: Vec<(Vec<f32>, Vec<f32>)>,
}

struct CpuLayer {
    attn_norm: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
}

impl CpuLlama {
    pub fn new(cfg: LlamaConfig, w: LlamaWeights) -> CpuLlama {
        let d = |m: &Matrix| dequantize(m.format, &m.bytes);
        let output = d(w.output.as_ref().unwrap_or(&w.embed));
        let layers = w
            .layers
            .iter()
            .map(|l| CpuLayer {
                attn_norm: l.attn_norm.clone(),
                q: d(&l.q),
                k: d(&l.k),
                v: d(&l.v),
                o: d(&l.o),
                ffn_norm: l.ffn_norm.clone(),
                gate: d(&l.gate),
                up: d(&l.up),
                down: d(&l.down),
            })
            .collect();
        let rope = cpu::rope_table(cfg.rope_theta, cfg.head_dim, cfg.context);
        let cache = vec![(Vec::new(), Vec::new()); cfg.layers];
        CpuLlama {
            cfg,
            embed: w.embed,
            output,
            norm: w.norm,
            layers,
            rope,
            cache,
        }
    }
}

impl Forward for CpuLlama {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let kv_dim = c.kv_heads * c.head_dim;
        let mut x: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.embed.row(t as usize))
            .collect();
        for (layer, (kc, vc)) in self.layers.iter().zip(&mut self.cache) {
            kc.truncate(pos * kv_dim);
            vc.truncate(pos * kv_dim);
            let xn = cpu::rmsnorm(&x, &layer.attn_norm, c.eps);
            let mut q = cpu::linear(&xn, &layer.q, None, c.dim, c.dim);
            let mut k = cpu::linear(&xn, &layer.k, None, kv_dim, c.dim);
            let v = cpu::linear(&xn, &layer.v, None, kv_dim, c.dim);
            cpu::rope(&mut q, c.heads, c.head_dim, pos, &self.rope, c.rope);
            cpu::rope(&mut k, c.kv_heads, c.head_dim, pos, &self.rope, c.rope);
            kc.extend(k);
            vc.extend(v);
            let att = cpu::attention(&q, kc, vc, c.heads, c.kv_heads, c.head_dim, true, pos);
            cpu::add(&mut x, &cpu::linear(&att, &layer.o, None, c.dim, c.dim));
            let xn = cpu::rmsnorm(&x, &layer.ffn_norm, c.eps);
            let mut gate = cpu::linear(&xn, &layer.gate, None, c.ffn, c.dim);
            let up = cpu::linear(&xn, &layer.up, None, c.ffn, c.dim);
            cpu::silu_mul(&mut gate, &up);
            cpu::add(&mut x, &cpu::linear(&gate, &layer.down, None, c.dim, c.ffn));
        }
        let last = &x[(tokens.len() - 1) * c.dim..];
        let normed = cpu::rmsnorm(last, &self.norm, c.eps);
        Ok(cpu::linear(&normed, &self.output, None, c.vocab, c.dim))
    }
}

/// The decoder on the GPU: weights uploaded once, the forward pass recorded once.
pub struct GpuLlama {
    gpu: Arc<Gpu>,
    cfg: LlamaConfig,
    embed: Matrix,
    x: wgpu::Buffer,
    last: wgpu::Buffer,
    logits: wgpu::Buffer,
    layers: Program,
    head: Program,
    // Kept alive for the bind groups that use them.
    _weights: Vec<Weight>,
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuLlama {
    pub fn new(gpu: &Arc<Gpu>, cfg: LlamaConfig, w: LlamaWeights) -> Result<GpuLlama> {
        let c = &cfg;
        let kv_dim = c.kv_heads * c.head_dim;
        let m = PREFILL_CHUNK;
        let bar = market_report::progress::items("uploading", w.layers.len() as u64);
        let x = gpu.scratch("x", m * c.dim)?;
        let xn = gpu.scratch("xn", m * c.dim)?;
        let q = gpu.scratch("q", m * c.dim)?;
        let att = gpu.scratch("att", m * c.dim)?;
        let gate = gpu.scratch("gate", m * c.ffn)?;
        let up = gpu.scratch("up", m * c.ffn)?;
        let scores = gpu.scratch("scores", c.heads * m * c.context)?;
        let rope = gpu.upload(
            "rope",
            &cpu::rope_table(c.rope_theta, c.head_dim, c.context),
        )?;
        let last = gpu.scratch("last", c.dim)?;
        let last_n = gpu.scratch("last-normed", c.dim)?;
        let logits = gpu.scratch("logits", c.vocab)?;
        let mut layers = Program::new(gpu);
        let mut weights = Vec::new();
        let mut buffers = Vec::new();
        let interleaved = c.rope == RopeLayout::Interleaved;
        for l in &w.layers {
            let kc = gpu.scratch("k-cache", c.context * kv_dim)?;
            let vc = gpu.scratch("v-cache", c.context * kv_dim)?;
            let attn_norm = gpu.upload("attn-norm", &l.attn_norm)?;
            let ffn_norm = gpu.upload("ffn-norm", &l.ffn_norm)?;
            let [wq, wk, wv, wo, wg, wu, wd] =
                [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].map(|m| m.upload(gpu));
            let (wq, wk, wv, wo, wg, wu, wd) = (wq?, wk?, wv?, wo?, wg?, wu?, wd?);
            layers.rmsnorm(&x, &attn_norm, &xn, c.dim, c.eps, None);
            layers.linear(&xn, &wq, Bias(None), &q, false, false);
            layers.linear(&xn, &wk, Bias(None), &kc, false, true);
            layers.linear(&xn, &wv, Bias(None), &vc, false, true);
            layers.rope(&q, &rope, c.heads, c.head_dim, c.dim, interleaved, false);
            layers.rope(
                &kc,
                &rope,
                c.kv_heads,
                c.head_dim,
                kv_dim,
                interleaved,
                true,
            );
            layers.attention(
                &q, &kc, &vc, &att, &scores, c.heads, c.kv_heads, c.head_dim, true, c.context,
            );
            layers.linear(&att, &wo, Bias(None), &x, true, false);
            layers.rmsnorm(&x, &ffn_norm, &xn, c.dim, c.eps, None);
            layers.linear(&xn, &wg, Bias(None), &gate, false, false);
            layers.linear(&xn, &wu, Bias(None), &up, false, false);
            layers.silu_mul(&gate, &up, c.ffn);
            layers.linear(&gate, &wd, Bias(None), &x, true, false);
            weights.extend([wq, wk, wv, wo, wg, wu, wd]);
            buffers.extend([kc, vc, attn_norm, ffn_norm]);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let out = w.output.as_ref().unwrap_or(&w.embed).upload(gpu)?;
        let norm = gpu.upload("norm", &w.norm)?;
        let mut head = Program::new(gpu);
        head.rmsnorm(&last, &norm, &last_n, c.dim, c.eps, Some(1));
        head.linear_one(&last_n, &out, &logits);
        weights.push(out);
        buffers.extend([xn, q, att, gate, up, scores, rope, norm, last_n]);
        Ok(GpuLlama {
            gpu: gpu.clone(),
            cfg,
            embed: w.embed,
            x,
            last,
            logits,
            layers,
            head,
            _weights: weights,
            _buffers: buffers,
        })
    }
}

impl Forward for GpuLlama {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let dim = self.cfg.dim;
        let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
        let mut at = pos;
        for (i, chunk) in chunks.iter().enumerate() {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&t| self.embed.row(t as usize))
                .collect();
            self.gpu
                .queue
                .write_buffer(&self.x, 0, bytemuck::cast_slice(&x));
            let mut encoder = self.gpu.encoder();
            self.layers.encode(&mut encoder, chunk.len(), at);
            at += chunk.len();
            if i + 1 < chunks.len() {
                self.gpu.queue.submit([encoder.finish()]);
                continue;
            }
            let last_row = ((chunk.len() - 1) * dim * 4) as u64;
            encoder.copy_buffer_to_buffer(&self.x, last_row, &self.last, 0, (dim * 4) as u64);
            self.head.encode(&mut encoder, 1, 0);
            return self
                .gpu
                .finish_and_read(encoder, &self.logits, 0, self.cfg.vocab);
        }
        Err(Error::Input("nothing to run: no tokens".into()))
    }
}

/// A chat model ready to serve: text handling, a backend, and the KV cache's contents so a
/// prompt that extends the previous one (the next turn of a chat) reuses its prefix.
pub struct ChatModel {
    name: String,
    sha256: [u8; 32],
    cfg: LlamaConfig,
    text: ChatText,
    backend: Box<dyn Forward>,
    cached: Vec<u32>,
}

impl ChatModel {
    pub(crate) fn new(
        name: String,
        sha256: [u8; 32],
        cfg: LlamaConfig,
        text: ChatText,
        backend: Box<dyn Forward>,
    ) -> Self {
        ChatModel {
            name,
            sha256,
            cfg,
            text,
            backend,
            cached: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn weights_sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn context_length(&self) -> usize {
        self.cfg.context
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        self.text.template.render(messages)
    }

    /// Token ids of a prompt (the model's BOS first when it wants one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.text.bos.into_iter().collect();
        ids.extend(self.text.codec.encode(text, false)?);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.text.codec.decode(ids)
    }

    /// Logits after `tokens`, reusing the cached prefix.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::Input("empty prompt".into()));
        }
        if tokens.len() > self.cfg.context {
            return Err(Error::Input(format!(
                "{} tokens exceed the context of {}",
                tokens.len(),
                self.cfg.context
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab
            )));
        }
        let common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last token runs, to produce its logits.
        let start = common.min(tokens.len() - 1);
        self.cached.truncate(start);
        let logits = self.backend.forward(&tokens[start..], start);
        // A failed step leaves the cache unknown: forget it.
        match &logits {
            Ok(_) => self.cached.extend_from_slice(&tokens[start..]),
            Err(_) => self.cached.clear(),
        }
        logits
    }

    /// Generates after `prompt`, calling `on_text` with each new piece of text (false
    /// cancels). Stops on an end-of-sequence token, a stop string, `max_tokens` or the
    /// context's end.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if prompt.len() >= self.cfg.context {
            return Err(Error::Input(format!(
                "the prompt has {} tokens; this model serves a context of {}",
                prompt.len(),
                self.cfg.context
            )));
        }
        let mut sampler = Sampler::new(opts.temperature, opts.top_p, opts.seed);
        let mut all = prompt.to_vec();
        let mut logits = self.logits(&all)?;
        let mut tokens = Vec::new();
        let (mut text, mut sent) = (String::new(), 0usize);
        let finish = loop {
            if tokens.len() >= opts.max_tokens || all.len() >= self.cfg.context {
                break FinishReason::Length;
            }
            let next = sampler.pick(&logits);
            if self.text.stop_ids.contains(&next) {
                break FinishReason::Stop;
            }
            tokens.push(next);
            all.push(next);
            text = self.decode(&tokens)?;
            if let Some(at) = opts
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(at);
                if at > sent && !on_text(&text[sent..]) {
                    break FinishReason::Stop;
                }
                sent = text.len();
                break FinishReason::Stop;
            }
            // Hold back an incomplete character and a possible start of a stop string.
            let safe = safe_prefix(&text, &opts.stop);
            if safe > sent {
                if !on_text(&text[sent..safe]) {
                    break FinishReason::Stop;
                }
                sent = safe;
            }
            if tokens.len() < opts.max_tokens && all.len() < self.cfg.context {
                logits = self.logits(&all)?;
            }
        };
        if text.len() > sent {
            on_text(&text[sent..]);
        }
        Ok(Generation {
            prompt_tokens: prompt.len(),
            tokens,
            text,
            finish_reason: finish,
        })
    }
}

/// How much of `text` can be shown: not a trailing replacement character (half of a
/// multi-byte character) nor a tail that could begin a stop string.
fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    for stop in stops {
        for (i, _) in stop.char_indices().skip(1) {
            if text[..end].ends_with(&stop[..i]) {
                end = end.min(text.len() - i);
            }
        }
    }
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Loads a llama model on the chosen backend.
pub fn load(
    source: &Source<'_>,
    gguf: Option<&Gguf>,
    st: Option<&SafetensorsDir>,
    gpu: Option<&Arc<Gpu>>,
    sha256: [u8; 32],
    context: Option<usize>,
) -> Result<ChatModel> {
    let (cfg, weights, text, name) = match (gguf, st) {
        (Some(g), _) => from_gguf(g, context)?,
        (None, Some(s)) => from_safetensors(s, source, context)?,
        (None, None) => {
            return Err(Error::Format(format!(
                "{}: no model files",
                source.describe()
            )))
        }
    };
    let backend: Box<dyn Forward> = match gpu {
        Some(gpu) => Box::new(GpuLlama::new(gpu, cfg.clone(), weights)?),
        None => Box::new(CpuLlama::new(cfg.clone(), weights)),
    };
    Ok(ChatModel::new(name, sha256, cfg, text, backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_holds_back_partial_stops_and_characters() {
        let stops = vec!["\nUser:".to_owned()];
        assert_eq!(safe_prefix("Hello\nUs", &stops), 5);
        assert_eq!(safe_prefix("Hello", &stops), 5);
        assert_eq!(safe_prefix("caf\u{FFFD}", &[]), 3);
    }
}

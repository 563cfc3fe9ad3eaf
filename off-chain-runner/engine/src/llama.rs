//! The llama-family decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU,
//! tied or separate output embeddings; from GGUF (llama.cpp's interleaved rotary layout)
//! or Hugging Face safetensors (half-split layout); on the GPU or the CPU reference.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::api::{ChatMessage, GenerateOptions, Generation, LoadOptions, Slots};
use crate::files::Source;
use crate::gguf::Gguf;
use crate::gpu::{Gpu, Program, Readback, Weight};
use crate::graph::{Act, CpuPass, Dense, Ops, Recorder};
use crate::ops::{self, RopeLayout, Row};
use crate::quant::{dequantize, repack, Format};
use crate::safetensors_dir::SafetensorsDir;
use crate::sequence::{Delta, Pick, Sequence};
use crate::template::{ChatTemplate, CHATML};
use crate::tokenizer::{self, TextCodec};
use crate::{Error, Result};

/// Tokens a step holds unless the loader chooses otherwise, and so the prompt chunk of
/// [`ChatModel::generate`]; longer prompts go in several steps.
pub const PREFILL_CHUNK: usize = 128;
/// KV cache length (per slot) when the caller does not choose one (and the model allows as
/// many).
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
    /// Positions the cache holds, per slot.
    pub context: usize,
}

impl LlamaConfig {
    /// Bytes of a KV cache of `slots` slots: slots × context × layers × `kv_dim` × 2 (key and
    /// value) × 4 (f32), saturating at `u64::MAX`.
    pub fn kv_cache_bytes(&self, slots: usize) -> u64 {
        let kv_dim = (self.kv_heads * self.head_dim) as u64;
        [self.context as u64, self.layers as u64, kv_dim, 2, 4]
            .into_iter()
            .fold(slots as u64, u64::saturating_mul)
    }

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
#[derive(Clone)]
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

    /// The rows of `parts`, one matrix after the other. Matrices in different formats are
    /// widened to f32 first (a file may quantize its projections differently).
    fn stack(parts: &[&Matrix]) -> Result<Matrix> {
        let parts = Self::common_format(parts)?;
        let first = &parts[0];
        Ok(Matrix {
            name: parts
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            format: first.format,
            n: parts.iter().map(|m| m.n).sum(),
            k: first.k,
            bytes: parts.iter().flat_map(|m| m.bytes.iter().copied()).collect(),
        })
    }

    /// The rows of `a` and `b` in turn (`a₀ b₀ a₁ b₁ …`), widened to f32 if their formats
    /// differ.
    fn interleave(a: &Matrix, b: &Matrix) -> Result<Matrix> {
        let parts = Self::common_format(&[a, b])?;
        let (a, b) = (&parts[0], &parts[1]);
        if a.n != b.n {
            return Err(Error::Format(format!(
                "{} has {} rows and {} {}: they cannot pair",
                a.name, a.n, b.name, b.n
            )));
        }
        Ok(Matrix {
            name: format!("{}+{}", a.name, b.name),
            format: a.format,
            n: 2 * a.n,
            k: a.k,
            bytes: ops::linear::interleave_rows(&a.bytes, &b.bytes, a.row_bytes()),
        })
    }

    /// `parts` in one format, with one row length. Formats the GPU reads alike are made one
    /// without loss (Q4_0 as Q4_1, BF16 as F32); others (a file quantizing its projections
    /// differently, which llama.cpp's plain types do not) are widened to f32, at f32's cost.
    fn common_format<'a>(parts: &[&'a Matrix]) -> Result<Vec<Cow<'a, Matrix>>> {
        if let Some(m) = parts.iter().find(|m| m.k != parts[0].k) {
            return Err(Error::Format(format!(
                "{} has rows of {}, {} of {}: they cannot be fused",
                m.name, m.k, parts[0].name, parts[0].k
            )));
        }
        let first = parts[0].format;
        if parts.iter().all(|m| m.format == first) {
            return Ok(parts.iter().map(|&m| Cow::Borrowed(m)).collect());
        }
        let target = if parts.iter().all(|m| m.format.gpu() == first.gpu()) {
            match first.gpu() {
                crate::quant::GpuFormat::Q4 => Format::Q4_1,
                _ => Format::F32,
            }
        } else {
            Format::F32
        };
        Ok(parts
            .iter()
            .map(|&m| {
                if m.format == target {
                    return Cow::Borrowed(m);
                }
                let bytes = match (m.format, target) {
                    (Format::Q4_0, Format::Q4_1) => crate::quant::q4_0_as_q4_1(&m.bytes),
                    _ => crate::quant::quantize(Format::F32, &dequantize(m.format, &m.bytes)),
                };
                Cow::Owned(Matrix {
                    format: target,
                    bytes,
                    ..m.clone()
                })
            })
            .collect())
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

/// One decoder layer's weights as the file has them.
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

/// One decoder layer's weights as the backends run them (matrices `M`, vectors `V`): the
/// query, key and value projections stacked, the gate and up projections interleaved, so
/// each is one pass over the layer's input (`Ops::linear_qkv`, `Ops::swiglu`).
pub struct Block<M, V> {
    pub attn_norm: V,
    pub qkv: M,
    pub o: M,
    pub ffn_norm: V,
    pub gate_up: M,
    pub down: M,
}

impl Layer {
    /// The layer as a [`Block`] of file matrices (the fused ones new, the others borrowed),
    /// its shapes checked against `c`: a file whose shapes disagree with its own config is
    /// refused here rather than read out of bounds.
    fn block(&self, c: &LlamaConfig) -> Result<Block<Cow<'_, Matrix>, &Vec<f32>>> {
        let kv = c.kv_heads * c.head_dim;
        let shapes = [
            (&self.q, c.dim, c.dim),
            (&self.k, kv, c.dim),
            (&self.v, kv, c.dim),
            (&self.o, c.dim, c.dim),
            (&self.gate, c.ffn, c.dim),
            (&self.up, c.ffn, c.dim),
            (&self.down, c.dim, c.ffn),
        ];
        if let Some((m, n, k)) = shapes.iter().find(|(m, n, k)| (m.n, m.k) != (*n, *k)) {
            return Err(Error::Format(format!(
                "tensor {} is {}×{}; the model's config makes it {n}×{k}",
                m.name, m.n, m.k
            )));
        }
        Ok(Block {
            attn_norm: &self.attn_norm,
            qkv: Cow::Owned(Matrix::stack(&[&self.q, &self.k, &self.v])?),
            o: Cow::Borrowed(&self.o),
            ffn_norm: &self.ffn_norm,
            gate_up: Cow::Owned(Matrix::interleave(&self.gate, &self.up)?),
            down: Cow::Borrowed(&self.down),
        })
    }
}

impl<M, V> Block<M, V> {
    /// The same block with each matrix through `m` and each vector through `v`.
    pub fn try_map<N, W>(
        &self,
        m: impl Fn(&M) -> Result<N>,
        v: impl Fn(&V) -> Result<W>,
    ) -> Result<Block<N, W>> {
        Ok(Block {
            attn_norm: v(&self.attn_norm)?,
            qkv: m(&self.qkv)?,
            o: m(&self.o)?,
            ffn_norm: v(&self.ffn_norm)?,
            gate_up: m(&self.gate_up)?,
            down: m(&self.down)?,
        })
    }
}

/// Decoder layer `i`, the one description both backends run: pre-norm attention with
/// rotary positions over the layer's KV cache, then a pre-norm SwiGLU block, each added
/// to the residual stream.
fn layer<O: Ops>(o: &mut O, c: &LlamaConfig, l: &Block<O::Matrix, O::Vector>, i: usize) {
    let (keys, values) = (Act::Keys(i), Act::Values(i));
    let kv_width = c.kv_heads * c.head_dim;
    o.rmsnorm(Act::X, &l.attn_norm, Act::Normed, c.dim, c.eps);
    o.linear_qkv(Act::Normed, &l.qkv, Act::Q, keys, values, c.dim, kv_width);
    o.rope(Act::Q, c.heads, c.head_dim, c.rope);
    o.rope(keys, c.kv_heads, c.head_dim, c.rope);
    o.attention(
        Act::Q,
        keys,
        values,
        Act::Attended,
        c.heads,
        c.kv_heads,
        c.head_dim,
    );
    o.linear(Act::Attended, &l.o, None, Act::X, true);
    o.rmsnorm(Act::X, &l.ffn_norm, Act::Normed, c.dim, c.eps);
    o.swiglu(Act::Normed, &l.gate_up, Act::Gate);
    o.linear(Act::Gate, &l.down, None, Act::X, true);
}

/// The output head: each input's last row, normalized, to logits.
fn head<O: Ops>(o: &mut O, c: &LlamaConfig, norm: &O::Vector, output: &O::Matrix) {
    o.rmsnorm_last(Act::X, norm, Act::Last, c.dim, c.eps);
    o.linear(Act::Last, output, None, Act::Logits, false);
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

impl ChatText {
    /// Token ids of a prompt (the model's BOS first when it wants one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.codec.encode(text, false)?);
        Ok(ids)
    }
}

fn matrix(name: &str, format: Format, n: usize, k: usize, bytes: &[u8]) -> Result<Matrix> {
    if format.bytes_for(k as u64).is_none() {
        return Err(Error::Format(format!(
            "tensor {name}: rows of {k} are not whole {format:?} blocks"
        )));
    }
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

    let codec = TextCodec::from_source(source)?;
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

/// One sequence's part of a [`ChatModel::step`]: tokens to run in a KV slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInput<'a> {
    /// The KV slot of the sequence.
    pub slot: usize,
    /// Position of `tokens[0]` in the slot: the slot's current length (rewind the slot with
    /// [`ChatModel::rewind`] to run from an earlier position).
    pub pos: usize,
    /// A prefill chunk, or one decode token.
    pub tokens: &'a [u32],
}

/// What a step hands back for one input.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutput {
    /// The logits after the input's last token.
    Logits(Vec<f32>),
    /// Only the most likely next token (the lowest id on ties): greedy decoding's pick,
    /// made where the logits are (on the GPU: 4 bytes read back, not the vocabulary).
    Greedy(u32),
}

/// A backend's forward pass: every input of a step at once, each against its own slot.
pub trait Forward: Send {
    /// Runs `inputs` (checked by [`ChatModel::step_for`]: slots in range and distinct,
    /// tokens in the vocabulary, positions within the context) and returns, in the inputs'
    /// order, each one's logits, or its greedy pick where `greedy` says so.
    fn step(&mut self, inputs: &[StepInput], greedy: &[bool]) -> Result<Vec<StepOutput>>;

    /// Keeps a copy of the first `len` positions of `slot`'s cache, the public prefix.
    fn save_prefix(&mut self, slot: usize, len: usize) -> Result<()>;

    /// Writes the first `len` positions of the saved prefix into `slot`.
    fn load_prefix(&mut self, slot: usize, len: usize) -> Result<()>;

    /// GPU dispatches encoded so far (0 on the CPU).
    fn dispatches(&self) -> u64 {
        0
    }
}

/// The CPU reference decoder: one sequence after another, each over its own slot's cache.
pub struct CpuLlama {
    cfg: LlamaConfig,
    embed: Matrix,
    output: Dense,
    norm: Vec<f32>,
    layers: Vec<Block<Dense, Vec<f32>>>,
    rope: Vec<f32>,
    /// Per slot, per layer: keys and values of every cached position.
    cache: Vec<Vec<[Vec<f32>; 2]>>,
    /// Per layer: keys and values of the saved public prefix.
    prefix: Vec<[Vec<f32>; 2]>,
}

impl CpuLlama {
    pub fn new(cfg: LlamaConfig, w: LlamaWeights, slots: usize) -> Result<CpuLlama> {
        let output = Dense::of(w.output.as_ref().unwrap_or(&w.embed));
        let layers = w
            .layers
            .iter()
            .map(|l| {
                l.block(&cfg)?
                    .try_map(|m| Ok(Dense::of(m)), |v| Ok((*v).clone()))
            })
            .collect::<Result<_>>()?;
        let rope = ops::rope::table(cfg.rope_theta, cfg.head_dim, cfg.context);
        let cache = vec![vec![[Vec::new(), Vec::new()]; cfg.layers]; slots];
        Ok(CpuLlama {
            cfg,
            embed: w.embed,
            output,
            norm: w.norm,
            layers,
            rope,
            cache,
            prefix: Vec::new(),
        })
    }

    /// `tokens` at positions `pos..` of `slot`: the last position's logits.
    fn forward(&mut self, slot: usize, tokens: &[u32], pos: usize) -> Vec<f32> {
        let c = &self.cfg;
        let x: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.embed.row(t as usize))
            .collect();
        let caches = &mut self.cache[slot];
        for cache in caches.iter_mut().flatten() {
            cache.truncate(pos * c.kv_heads * c.head_dim);
        }
        let rows = Row::sequence(tokens.len(), pos);
        let mut pass = CpuPass::new(x, rows, caches, &self.rope);
        for (i, l) in self.layers.iter().enumerate() {
            layer(&mut pass, c, l, i);
        }
        head(&mut pass, c, &self.norm, &self.output);
        pass.take(Act::Logits)
    }
}

impl Forward for CpuLlama {
    fn step(&mut self, inputs: &[StepInput], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        Ok(inputs
            .iter()
            .zip(greedy)
            .map(|(i, &greedy)| {
                let logits = self.forward(i.slot, i.tokens, i.pos);
                if greedy {
                    StepOutput::Greedy(ops::argmax::cpu(&logits))
                } else {
                    StepOutput::Logits(logits)
                }
            })
            .collect())
    }

    fn save_prefix(&mut self, slot: usize, len: usize) -> Result<()> {
        let n = len * self.cfg.kv_heads * self.cfg.head_dim;
        self.prefix = self.cache[slot]
            .iter()
            .map(|kv| kv.each_ref().map(|cache| cache[..n].to_vec()))
            .collect();
        Ok(())
    }

    fn load_prefix(&mut self, slot: usize, len: usize) -> Result<()> {
        let n = len * self.cfg.kv_heads * self.cfg.head_dim;
        for (kv, saved) in self.cache[slot].iter_mut().zip(&self.prefix) {
            for (cache, saved) in kv.iter_mut().zip(saved) {
                cache.clear();
                cache.extend_from_slice(&saved[..n]);
            }
        }
        Ok(())
    }
}

/// The decoder on the GPU: weights uploaded once, the forward pass recorded once. A step's
/// tokens, from every sequence in it, are the rows of one activation matrix: each linear
/// layer reads its weights once per step for the whole batch, and only the per-row table
/// ([`Row`]) tells the rows' positions and slots apart.
pub struct GpuLlama {
    gpu: Arc<Gpu>,
    cfg: LlamaConfig,
    embed: Matrix,
    x: wgpu::Buffer,
    /// Per input of a step: the row of its last token, whose logits the step returns.
    last_rows: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// Per input of a step: the greedy pick from its logits (u32).
    tokens: wgpu::Buffer,
    layers: Program,
    head: Program,
    /// Per layer: the key and value caches (slot s at rows s·context ..).
    caches: Vec<[wgpu::Buffer; 2]>,
    readback: Readback,
    /// Per layer: keys and values of the saved public prefix (copies, since WebGPU copies
    /// no buffer onto itself).
    prefix: Vec<[wgpu::Buffer; 2]>,
    // Kept alive for the bind groups that use them.
    _layers: Vec<Block<Weight, wgpu::Buffer>>,
    _head: (wgpu::Buffer, Weight),
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuLlama {
    /// Uploads the weights and records the forward pass for `slots` sequences of
    /// `cfg.context` positions and steps of up to `max_rows` tokens.
    pub fn new(
        gpu: &Arc<Gpu>,
        cfg: LlamaConfig,
        w: LlamaWeights,
        slots: usize,
        max_rows: usize,
    ) -> Result<GpuLlama> {
        let c = &cfg;
        let kv_dim = c.kv_heads * c.head_dim;
        let m = max_rows;
        // Inputs of a step have distinct slots and at least one token each.
        let batch = slots.min(max_rows);
        let cache_label = |kind: &str| format!("{kind} cache ({slots} slots of {})", c.context);
        let mut acts = HashMap::from([
            (Act::X, gpu.scratch("x", m * c.dim)?),
            (Act::Normed, gpu.scratch("normed", m * c.dim)?),
            (Act::Q, gpu.scratch("q", m * c.dim)?),
            (Act::Attended, gpu.scratch("attended", m * c.dim)?),
            (Act::Gate, gpu.scratch("gate", m * c.ffn)?),
            (Act::Last, gpu.scratch("last-normed", batch * c.dim)?),
            (Act::Logits, gpu.scratch("logits", batch * c.vocab)?),
        ]);
        let mut caches = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            // Slot s holds rows s·context .. (s + 1)·context.
            let kc = gpu.scratch(&cache_label("key"), slots * c.context * kv_dim)?;
            let vc = gpu.scratch(&cache_label("value"), slots * c.context * kv_dim)?;
            acts.insert(Act::Keys(i), kc.clone());
            acts.insert(Act::Values(i), vc.clone());
            caches.push([kc, vc]);
        }
        let scores = gpu.scratch("scores", c.heads * m * c.context)?;
        let rope = gpu.upload(
            "rope",
            &ops::rope::table(c.rope_theta, c.head_dim, c.context),
        )?;
        let last_rows = gpu.upload("last-rows", &vec![0u32; batch])?;
        let tokens = gpu.scratch("greedy tokens", batch)?;

        let bar = market_report::progress::items("uploading", w.layers.len() as u64);
        let weights = w
            .layers
            .iter()
            .map(|l| {
                let layer = l
                    .block(c)?
                    .try_map(|m| m.upload(gpu), |v| gpu.upload("norm", v));
                bar.inc(1);
                layer
            })
            .collect::<Result<Vec<_>>>()?;
        bar.finish_and_clear();
        let output = w.output.as_ref().unwrap_or(&w.embed).upload(gpu)?;
        let norm = gpu.upload("norm", &w.norm)?;

        let mut layers = Program::new(gpu, m);
        let mut recorder = Recorder {
            program: &mut layers,
            acts: &acts,
            rope: Some(&rope),
            scores: Some((&scores, c.context)),
            last_rows: None,
        };
        for (i, l) in weights.iter().enumerate() {
            layer(&mut recorder, c, l, i);
        }
        let mut head_program = Program::new(gpu, batch);
        let mut recorder = Recorder {
            program: &mut head_program,
            acts: &acts,
            rope: None,
            scores: None,
            last_rows: Some(&last_rows),
        };
        head(&mut recorder, c, &norm, &output);
        head_program.argmax(&acts[&Act::Logits], &tokens, c.vocab);

        let buffers = acts.values().cloned().chain([scores, rope]).collect();
        Ok(GpuLlama {
            gpu: gpu.clone(),
            x: acts[&Act::X].clone(),
            logits: acts[&Act::Logits].clone(),
            cfg,
            embed: w.embed,
            last_rows,
            tokens,
            layers,
            head: head_program,
            caches,
            prefix: Vec::new(),
            readback: Readback::default(),
            _layers: weights,
            _head: (norm, output),
            _buffers: buffers,
        })
    }
}

impl Forward for GpuLlama {
    fn step(&mut self, inputs: &[StepInput], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        let (dim, vocab, context) = (self.cfg.dim, self.cfg.vocab, self.cfg.context);
        let total: usize = inputs.iter().map(|i| i.tokens.len()).sum();
        let mut x = Vec::with_capacity(total * dim);
        let mut rows = Vec::with_capacity(total);
        let mut last = Vec::with_capacity(inputs.len());
        for input in inputs {
            for (i, &t) in input.tokens.iter().enumerate() {
                x.extend(self.embed.row(t as usize));
                rows.push(Row::causal(input.slot * context, input.pos + i));
            }
            last.push((rows.len() - 1) as u32);
        }
        let queue = &self.gpu.queue;
        queue.write_buffer(&self.x, 0, bytemuck::cast_slice(&x));
        queue.write_buffer(&self.last_rows, 0, bytemuck::cast_slice(&last));
        let mut encoder = self.gpu.encoder();
        self.layers.encode(&mut encoder, &rows);
        self.head.encode_count(&mut encoder, inputs.len());
        if greedy.iter().all(|&g| g) {
            // Every pick made on the GPU: one u32 each comes back.
            let tokens = self.gpu.finish_and_read(
                encoder,
                &self.tokens,
                0,
                inputs.len(),
                &mut self.readback,
            )?;
            return Ok(tokens
                .iter()
                .map(|t| StepOutput::Greedy(t.to_bits()))
                .collect());
        }
        let logits = self.gpu.finish_and_read(
            encoder,
            &self.logits,
            0,
            inputs.len() * vocab,
            &mut self.readback,
        )?;
        // Logits came back anyway: the greedy picks are made here, in the same order (max,
        // lowest id on ties) as the GPU's, so they are the same tokens.
        Ok(logits
            .chunks_exact(vocab)
            .zip(greedy)
            .map(|(l, &greedy)| {
                if greedy {
                    StepOutput::Greedy(ops::argmax::cpu(l))
                } else {
                    StepOutput::Logits(l.to_vec())
                }
            })
            .collect())
    }

    fn save_prefix(&mut self, slot: usize, len: usize) -> Result<()> {
        let row = self.kv_row_bytes();
        let from = (slot * self.cfg.context) as u64 * row;
        let bytes = len as u64 * row;
        let mut encoder = self.gpu.encoder();
        let mut prefix = Vec::with_capacity(self.caches.len());
        for cache in &self.caches {
            let [k, v] = cache.each_ref().map(|buffer| {
                let copy = self
                    .gpu
                    .scratch("public prefix", len * (row as usize / 4))?;
                encoder.copy_buffer_to_buffer(buffer, from, &copy, 0, bytes);
                Ok::<_, Error>(copy)
            });
            prefix.push([k?, v?]);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.prefix = prefix;
        Ok(())
    }

    fn load_prefix(&mut self, slot: usize, len: usize) -> Result<()> {
        let row = self.kv_row_bytes();
        let to = (slot * self.cfg.context) as u64 * row;
        let mut encoder = self.gpu.encoder();
        for (cache, saved) in self.caches.iter().zip(&self.prefix) {
            for (from, into) in saved.iter().zip(cache) {
                encoder.copy_buffer_to_buffer(from, 0, into, to, len as u64 * row);
            }
        }
        // Queued before the next step's work, which the queue runs after it.
        self.gpu.queue.submit([encoder.finish()]);
        Ok(())
    }

    fn dispatches(&self) -> u64 {
        self.layers.dispatches_encoded() + self.head.dispatches_encoded()
    }
}

impl GpuLlama {
    /// Bytes of one cached position of one layer's keys (or values).
    fn kv_row_bytes(&self) -> u64 {
        (self.cfg.kv_heads * self.cfg.head_dim * 4) as u64
    }
}

/// A chat model ready to serve: text handling, a backend, and [`ChatModel::slots`] KV
/// caches, one per sequence in flight.
///
/// Outputs are deterministic: the GPU kernels reduce every value in one fixed order, so a
/// sequence's logits are the same bits whether it runs alone or beside others, however its
/// prompt was chunked and whatever its slot held before. Nothing carries over between
/// sequences: each starts from an empty slot, or from a copy of the public prefix
/// ([`ChatModel::cache_public_prefix`]), which no request writes (a prefix cache filled by
/// requests would let one user time another's prompts).
pub struct ChatModel {
    name: String,
    sha256: [u8; 32],
    cfg: LlamaConfig,
    /// Shared with the callers that render and tokenize prompts off the model's thread.
    text: std::sync::Arc<ChatText>,
    backend: Box<dyn Forward>,
    /// Positions each slot holds.
    lens: Vec<usize>,
    max_step_tokens: usize,
    /// Tokens whose cache the backend keeps (`ChatModel::cache_public_prefix`).
    prefix: Vec<u32>,
}

impl ChatModel {
    pub(crate) fn new(
        name: String,
        sha256: [u8; 32],
        cfg: LlamaConfig,
        text: ChatText,
        backend: Box<dyn Forward>,
        slots: usize,
        max_step_tokens: usize,
    ) -> Self {
        ChatModel {
            name,
            sha256,
            cfg,
            text: std::sync::Arc::new(text),
            backend,
            lens: vec![0; slots],
            max_step_tokens,
            prefix: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn weights_sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Positions one sequence (one slot) holds.
    pub fn context_length(&self) -> usize {
        self.cfg.context
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// KV slots: sequences that can be in flight at once.
    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    /// Tokens one [`ChatModel::step`] holds at most, all inputs together.
    pub fn max_step_tokens(&self) -> usize {
        self.max_step_tokens
    }

    /// Bytes of this model's KV cache (all slots).
    pub fn kv_cache_bytes(&self) -> u64 {
        self.cfg.kv_cache_bytes(self.slots())
    }

    /// Positions `slot` holds: where its next input starts.
    pub fn slot_len(&self, slot: usize) -> Result<usize> {
        self.check_slot(slot)?;
        Ok(self.lens[slot])
    }

    /// Keeps the first `len` positions of `slot` (at most what it holds): its next input
    /// starts at `len` and overwrites what followed.
    pub fn rewind(&mut self, slot: usize, len: usize) -> Result<()> {
        self.check_slot(slot)?;
        if len > self.lens[slot] {
            return Err(Error::Input(format!(
                "slot {slot} holds {} positions: it cannot be rewound to {len}",
                self.lens[slot]
            )));
        }
        self.lens[slot] = len;
        Ok(())
    }

    /// Empties `slot` for a new sequence.
    pub fn free_slot(&mut self, slot: usize) -> Result<()> {
        self.rewind(slot, 0)
    }

    /// GPU dispatches encoded so far (0 on the CPU): a step encodes the same number
    /// whatever its batch, which tests check.
    pub fn gpu_dispatches(&self) -> u64 {
        self.backend.dispatches()
    }

    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        self.text.template.render(messages)
    }

    /// Token ids of a prompt (the model's BOS first when it wants one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.text.encode(text)
    }

    /// The model's text handling, for callers that render and tokenize prompts on their
    /// own threads while another owns the model (a scheduler).
    pub fn text_handle(&self) -> std::sync::Arc<ChatText> {
        std::sync::Arc::clone(&self.text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.text.codec.decode(ids)
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot < self.slots() {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "slot {slot} does not exist: this model has {} slots",
                self.slots()
            )))
        }
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            Some(bad) => Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab
            ))),
            None => Ok(()),
        }
    }

    /// Runs every input in one forward pass (their tokens are the rows of one activation
    /// matrix) and returns the logits after each input's last token, in order. Each input
    /// continues its own slot: its slot must be in range and appear once in the step, `pos`
    /// must be the slot's length, and it must fit the context; all inputs together hold at
    /// most [`ChatModel::max_step_tokens`] tokens. A refused step changes nothing. A step
    /// that fails on the device leaves the slots' lengths as they were (a step only writes
    /// positions from its inputs' `pos`), though a lost device fails every later step too.
    pub fn step(&mut self, inputs: &[StepInput]) -> Result<Vec<Vec<f32>>> {
        let outputs = self.step_for(inputs, &vec![false; inputs.len()])?;
        Ok(outputs
            .into_iter()
            .map(|o| match o {
                StepOutput::Logits(l) => l,
                StepOutput::Greedy(_) => unreachable!("no greedy pick was asked for"),
            })
            .collect())
    }

    /// [`ChatModel::step`], handing back for each input whose `greedy` flag is set only its
    /// greedy pick ([`StepOutput::Greedy`]): the same token its logits' argmax is, made on
    /// the GPU when every input of the step is greedy, so a decode step reads back a few
    /// bytes per sequence instead of the vocabulary's logits.
    pub fn step_for(&mut self, inputs: &[StepInput], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        if greedy.len() != inputs.len() {
            return Err(Error::Input(format!(
                "{} greedy flags for a step of {} inputs",
                greedy.len(),
                inputs.len()
            )));
        }
        if inputs.is_empty() {
            return Err(Error::Input("a step needs at least one input".into()));
        }
        let mut seen = vec![false; self.slots()];
        let mut total = 0usize;
        for input in inputs {
            let slot = input.slot;
            self.check_slot(slot)?;
            if std::mem::replace(&mut seen[slot], true) {
                return Err(Error::Input(format!(
                    "slot {slot} has two inputs in one step"
                )));
            }
            if input.tokens.is_empty() {
                return Err(Error::Input(format!(
                    "the input for slot {slot} has no tokens"
                )));
            }
            if input.pos != self.lens[slot] {
                return Err(Error::Input(format!(
                    "the input for slot {slot} starts at position {} but the slot holds {}: \
                     rewind the slot to run from an earlier position",
                    input.pos, self.lens[slot]
                )));
            }
            let end = input.pos + input.tokens.len();
            if end > self.cfg.context {
                return Err(Error::Input(format!(
                    "the input for slot {slot} ends at position {end}, past the context of {}",
                    self.cfg.context
                )));
            }
            self.check_tokens(input.tokens)?;
            total += input.tokens.len();
        }
        if total > self.max_step_tokens {
            return Err(Error::Input(format!(
                "a step of {total} tokens exceeds the {} a step holds",
                self.max_step_tokens
            )));
        }
        let outputs = self.backend.step(inputs, greedy)?;
        for input in inputs {
            self.lens[input.slot] = input.pos + input.tokens.len();
        }
        Ok(outputs)
    }

    /// Logits after `tokens`, run from position 0 of slot 0 in steps of
    /// [`ChatModel::max_step_tokens`] (what slot 0 held is discarded).
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
        self.check_tokens(tokens)?;
        self.free_slot(0)?;
        let mut logits = Vec::new();
        for (i, chunk) in tokens.chunks(self.max_step_tokens).enumerate() {
            let input = StepInput {
                slot: 0,
                pos: i * self.max_step_tokens,
                tokens: chunk,
            };
            logits = self.step(&[input])?.swap_remove(0);
        }
        Ok(logits)
    }

    /// Computes `tokens` once (in slot 0, then emptied) and keeps their cache: a sequence
    /// whose prompt begins with some of them starts from a copy instead of computing them
    /// again. Only for public text (the chat template's own opening, the same for every
    /// user): what the kept prefix holds is fixed here, never taken from a request, so a
    /// request's speed tells nothing about anyone else's prompt. Exact: a position's keys
    /// and values depend only on the tokens up to it, and the kernels give the same bits
    /// however a prompt is chunked, so a sequence gets the same logits with or without it.
    pub fn cache_public_prefix(&mut self, tokens: &[u32]) -> Result<()> {
        self.prefix.clear();
        if tokens.is_empty() {
            return Ok(());
        }
        let keep = tokens.len().min(self.cfg.context - 1);
        self.logits(&tokens[..keep])?;
        self.backend.save_prefix(0, keep)?;
        self.free_slot(0)?;
        self.prefix = tokens[..keep].to_vec();
        Ok(())
    }

    /// Keeps the chat template's opening as the public prefix: what it renders around an
    /// empty user message (a default system prompt, role markers), which every chat that
    /// does not bring its own system prompt begins with.
    /// A template that refuses an empty message leaves nothing kept: the cache only saves
    /// time.
    pub fn cache_template_opening(&mut self) -> Result<()> {
        let Ok(rendered) = self.text.template.render(&[ChatMessage {
            role: "user".into(),
            content: String::new(),
        }]) else {
            self.prefix.clear();
            return Ok(());
        };
        let ids = self.text.encode(&rendered)?;
        self.cache_public_prefix(&ids)
    }

    /// Tokens of the kept public prefix.
    pub fn public_prefix(&self) -> &[u32] {
        &self.prefix
    }

    /// A new sequence in `slot` (emptied) for `prompt`, sampling as `opts` says; step it
    /// with [`Sequence::next_input`], [`ChatModel::step`] and [`ChatModel::advance`]. The
    /// caller gives each live sequence its own slot: a sequence whose slot was taken
    /// finds its next step refused (its position no longer matches). The prompt's longest
    /// common start with the public prefix (all but its last token, whose logits are
    /// needed) comes from the kept cache.
    pub fn start_sequence(
        &mut self,
        slot: usize,
        prompt: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Sequence> {
        if prompt.is_empty() {
            return Err(Error::Input("empty prompt".into()));
        }
        if prompt.len() >= self.cfg.context {
            return Err(Error::Input(format!(
                "the prompt has {} tokens; this model serves a context of {}",
                prompt.len(),
                self.cfg.context
            )));
        }
        self.check_tokens(prompt)?;
        self.free_slot(slot)?;
        let cached = prompt
            .iter()
            .zip(&self.prefix)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        if cached > 0 {
            self.backend.load_prefix(slot, cached)?;
            self.lens[slot] = cached;
        }
        Ok(Sequence::new(slot, prompt, cached, opts, self.cfg.context))
    }

    /// Takes the logits a step returned for `seq`'s input: after the last prompt chunk or a
    /// decode token, samples the next token and returns the new text; after an earlier
    /// prompt chunk, nothing.
    pub fn advance(&self, seq: &mut Sequence, logits: &[f32]) -> Result<Delta> {
        seq.advance(&self.text, Pick::Logits(logits))
    }

    /// [`ChatModel::advance`] with what [`ChatModel::step_for`] handed back for `seq`'s
    /// input (a greedy pick only for a greedy sequence).
    pub fn advance_output(&self, seq: &mut Sequence, output: &StepOutput) -> Result<Delta> {
        match output {
            StepOutput::Logits(logits) => seq.advance(&self.text, Pick::Logits(logits)),
            StepOutput::Greedy(token) => seq.advance(&self.text, Pick::Greedy(*token)),
        }
    }

    /// Generates after `prompt`, calling `on_text` with each new piece of text (false
    /// cancels). Stops on an end-of-sequence token, a stop string, `max_tokens` or the
    /// context's end. One sequence in slot 0, its prompt prefilled in steps of
    /// [`ChatModel::max_step_tokens`].
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_in_chunks(prompt, opts, self.max_step_tokens, on_text)
    }

    /// [`ChatModel::generate`] with the prompt prefilled `chunk` tokens per step (the
    /// outputs are the same bits whatever the chunk).
    pub fn generate_in_chunks(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        chunk: usize,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let chunk = chunk.clamp(1, self.max_step_tokens);
        let mut seq = self.start_sequence(0, prompt, opts)?;
        while let Some(input) = seq.next_input(chunk) {
            let logits = self.step(&[input])?.swap_remove(0);
            let delta = self.advance(&mut seq, &logits)?;
            if !delta.text.is_empty() && !on_text(&delta.text) {
                seq.cancel();
            }
        }
        Ok(seq.into_generation())
    }
}

/// Resolves how many KV slots `slots` means for a model of `cfg`.
fn slot_count(cfg: &LlamaConfig, slots: Slots) -> Result<usize> {
    let per_slot = cfg.kv_cache_bytes(1);
    match slots {
        Slots::Count(0) => Err(Error::Input(
            "a chat model needs at least one KV slot".into(),
        )),
        Slots::Count(n) => Ok(n),
        Slots::Memory(bytes) => match usize::try_from(bytes / per_slot.max(1)) {
            Ok(0) => Err(Error::Input(format!(
                "a KV cache of {bytes} bytes holds no slot: one slot of {} positions needs \
                 {per_slot} bytes",
                cfg.context
            ))),
            Ok(n) => Ok(n),
            Err(_) => Err(Error::Input(format!(
                "a KV cache of {bytes} bytes is more slots than this machine addresses"
            ))),
        },
    }
}

/// Loads a llama model on the chosen backend.
pub fn load(
    source: &Source<'_>,
    gguf: Option<&Gguf>,
    st: Option<&SafetensorsDir>,
    gpu: Option<&Arc<Gpu>>,
    sha256: [u8; 32],
    options: &LoadOptions,
) -> Result<ChatModel> {
    let (cfg, weights, text, name) = match (gguf, st) {
        (Some(g), _) => from_gguf(g, options.context)?,
        (None, Some(s)) => from_safetensors(s, source, options.context)?,
        (None, None) => {
            return Err(Error::Format(format!(
                "{}: no model files",
                source.describe()
            )))
        }
    };
    let slots = slot_count(&cfg, options.slots)?;
    let max_step = options.max_step_tokens;
    if max_step == 0 {
        return Err(Error::Input("a step must hold at least one token".into()));
    }
    let backend: Box<dyn Forward> = match gpu {
        Some(gpu) => Box::new(GpuLlama::new(gpu, cfg.clone(), weights, slots, max_step)?),
        None => Box::new(CpuLlama::new(cfg.clone(), weights, slots)?),
    };
    Ok(ChatModel::new(
        name, sha256, cfg, text, backend, slots, max_step,
    ))
}

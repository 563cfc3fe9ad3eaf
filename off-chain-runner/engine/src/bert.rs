//! The BERT-family encoder for embeddings, in sentence-transformers' layout: word +
//! position + token-type embeddings, post-norm layers with GELU, then mean pooling over
//! the tokens and L2 normalization. Several texts go through one forward pass as the rows of
//! one matrix, each row attending to its own text's rows only ([`Row::bidirectional`]): no
//! padding exists to mask, and a text's embedding is the same bits in any batch.

use std::collections::HashMap;
use std::sync::Arc;

use crate::api::Embedding;
use crate::files::Source;
use crate::gpu::{Gpu, Program, Readback, Weight};
use crate::graph::{Act, CpuPass, Dense, Ops, Recorder};
use crate::llama::Matrix;
use crate::ops::{self, Row};
use crate::quant::dequantize;
use crate::safetensors_dir::SafetensorsDir;
use crate::tokenizer::TextCodec;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct BertConfig {
    pub vocab: usize,
    pub dim: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_positions: usize,
    pub eps: f32,
    /// Tokens per text at most (sentence-transformers' `max_seq_length`).
    pub max_tokens: usize,
}

/// One encoder layer's weights, as the file has them or as a backend holds them: each
/// linear layer a (matrix, bias), each norm a (gain, bias).
pub struct BertLayer<M = Matrix, V = Vec<f32>> {
    pub q: (M, V),
    pub k: (M, V),
    pub v: (M, V),
    pub o: (M, V),
    pub attn_norm: (V, V),
    pub up: (M, V),
    pub down: (M, V),
    pub out_norm: (V, V),
}

impl<M, V> BertLayer<M, V> {
    /// The same layer with each matrix through `m` and each vector through `v`.
    pub fn try_map<N, W, E>(
        &self,
        m: impl Fn(&M) -> Result<N, E>,
        v: impl Fn(&V) -> Result<W, E>,
    ) -> Result<BertLayer<N, W>, E> {
        let linear = |(w, b): &(M, V)| Ok((m(w)?, v(b)?));
        let norm = |(g, b): &(V, V)| Ok((v(g)?, v(b)?));
        Ok(BertLayer {
            q: linear(&self.q)?,
            k: linear(&self.k)?,
            v: linear(&self.v)?,
            o: linear(&self.o)?,
            attn_norm: norm(&self.attn_norm)?,
            up: linear(&self.up)?,
            down: linear(&self.down)?,
            out_norm: norm(&self.out_norm)?,
        })
    }
}

/// An encoder layer, the one description both backends run: attention over the text's own
/// rows, then GELU feed-forward, each added to the residual stream and layer-normalized
/// after (post-norm).
fn layer<O: Ops>(o: &mut O, c: &BertConfig, l: &BertLayer<O::Matrix, O::Vector>) {
    o.linear(Act::X, &l.q.0, Some(&l.q.1), Act::Q, false);
    o.linear(Act::X, &l.k.0, Some(&l.k.1), Act::K, false);
    o.linear(Act::X, &l.v.0, Some(&l.v.1), Act::V, false);
    let head_dim = c.dim / c.heads;
    o.attention(
        Act::Q,
        Act::K,
        Act::V,
        Act::Attended,
        c.heads,
        c.heads,
        head_dim,
    );
    o.linear(Act::Attended, &l.o.0, Some(&l.o.1), Act::X, true);
    o.layernorm(Act::X, &l.attn_norm.0, &l.attn_norm.1, c.dim, c.eps);
    o.linear(Act::X, &l.up.0, Some(&l.up.1), Act::Gate, false);
    o.gelu(Act::Gate, c.ffn);
    o.linear(Act::Gate, &l.down.0, Some(&l.down.1), Act::X, true);
    o.layernorm(Act::X, &l.out_norm.0, &l.out_norm.1, c.dim, c.eps);
}

pub struct BertWeights {
    pub word: Matrix,
    pub position: Matrix,
    pub token_type: Vec<f32>,
    pub embed_norm: (Vec<f32>, Vec<f32>),
    pub layers: Vec<BertLayer>,
}

/// Reads a BERT: tensors from `dir`, the tokenizer and sentence-transformers files from
/// `source`.
pub fn from_safetensors(
    dir: &SafetensorsDir,
    source: &Source<'_>,
) -> Result<(BertConfig, BertWeights, TextCodec, String)> {
    // Checkpoints saved from BertModel have bare names, from BertFor* a "bert." prefix.
    let prefix = if dir.has("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let matrix = |name: &str| -> Result<Matrix> {
        let name = format!("{prefix}{name}");
        let t = dir.tensor(&name)?;
        if t.shape.len() != 2 {
            return Err(Error::Format(format!(
                "tensor {name} is not a matrix: {:?}",
                t.shape
            )));
        }
        Ok(Matrix {
            name,
            format: t.format,
            n: t.shape[0],
            k: t.shape[1],
            bytes: t.data.to_vec(),
        })
    };
    let vector = |name: &str| -> Result<Vec<f32>> {
        let t = dir.tensor(&format!("{prefix}{name}"))?;
        Ok(dequantize(t.format, t.data))
    };
    let linear = |name: &str| -> Result<(Matrix, Vec<f32>)> {
        Ok((
            matrix(&format!("{name}.weight"))?,
            vector(&format!("{name}.bias"))?,
        ))
    };
    let norm = |name: &str| -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            vector(&format!("{name}.weight"))?,
            vector(&format!("{name}.bias"))?,
        ))
    };
    let max_positions = dir.config_usize("max_position_embeddings")?;
    // sentence-transformers keeps its sequence limit in sentence_bert_config.json.
    let max_tokens = source
        .json("sentence_bert_config.json")
        .ok()
        .and_then(|v| v.get("max_seq_length").and_then(serde_json::Value::as_u64))
        .map_or(max_positions, |v| (v as usize).min(max_positions));
    let config = BertConfig {
        vocab: dir.config_usize("vocab_size")?,
        dim: dir.config_usize("hidden_size")?,
        ffn: dir.config_usize("intermediate_size")?,
        layers: dir.config_usize("num_hidden_layers")?,
        heads: dir.config_usize("num_attention_heads")?,
        max_positions,
        eps: dir.config_f32("layer_norm_eps", 1e-12),
        max_tokens,
    };
    if config.heads == 0 || !config.dim.is_multiple_of(config.heads) {
        return Err(Error::Format(format!(
            "inconsistent BERT dimensions: {config:?}"
        )));
    }
    if let Some(act) = dir
        .config
        .get("hidden_act")
        .and_then(serde_json::Value::as_str)
    {
        if act != "gelu" {
            return Err(Error::Format(format!(
                "BERT activation {act:?} is not supported (gelu)"
            )));
        }
    }
    let layers = (0..config.layers)
        .map(|i| {
            let p = format!("encoder.layer.{i}");
            Ok(BertLayer {
                q: linear(&format!("{p}.attention.self.query"))?,
                k: linear(&format!("{p}.attention.self.key"))?,
                v: linear(&format!("{p}.attention.self.value"))?,
                o: linear(&format!("{p}.attention.output.dense"))?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"))?,
                down: linear(&format!("{p}.output.dense"))?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let token_type = matrix("embeddings.token_type_embeddings.weight")?;
    let weights = BertWeights {
        word: matrix("embeddings.word_embeddings.weight")?,
        position: matrix("embeddings.position_embeddings.weight")?,
        token_type: token_type.row(0),
        embed_norm: norm("embeddings.LayerNorm")?,
        layers,
    };
    let codec = TextCodec::from_source(source)?;
    let name = source.name().unwrap_or_else(|| "bert".into());
    Ok((config, weights, codec, name))
}

/// Embedding input of a text: word + position + token type 0, layer-normalized.
fn embed_input(cfg: &BertConfig, w: &BertWeights, ids: &[u32]) -> Vec<f32> {
    let mut x = Vec::with_capacity(ids.len() * cfg.dim);
    for (pos, &id) in ids.iter().enumerate() {
        let mut row = w.word.row(id as usize);
        ops::elementwise::add(&mut row, &w.position.row(pos));
        ops::elementwise::add(&mut row, &w.token_type);
        x.extend(row);
    }
    ops::layernorm::cpu(&mut x, &w.embed_norm.0, &w.embed_norm.1, cfg.eps);
    x
}

/// Texts a GPU forward pass holds at once, in tokens (at least one text of the most tokens).
pub const BATCH_TOKENS: usize = 512;

/// Hidden states of texts: for each, rows of `dim`.
pub trait Encode: Send {
    /// Tokens one call holds at most (every text is at most `max_tokens`).
    fn capacity(&self) -> usize;

    fn encode(&mut self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>>;
}

pub struct CpuBert {
    cfg: BertConfig,
    w: BertWeights,
    layers: Vec<BertLayer<Dense, Vec<f32>>>,
}

impl CpuBert {
    pub fn new(cfg: BertConfig, w: BertWeights) -> CpuBert {
        let layers = w
            .layers
            .iter()
            .map(|l| l.try_map(|m| Ok::<_, Error>(Dense::of(m)), |v| Ok(v.clone())))
            .collect::<Result<_>>()
            .expect("dequantizing does not fail");
        CpuBert { cfg, w, layers }
    }
}

impl Encode for CpuBert {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn encode(&mut self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|ids| {
                let x = embed_input(&self.cfg, &self.w, ids);
                let mut pass = CpuPass::new(x, Row::bidirectional(0, ids.len()), &mut [], &[]);
                for l in &self.layers {
                    layer(&mut pass, &self.cfg, l);
                }
                pass.take(Act::X)
            })
            .collect())
    }
}

pub struct GpuBert {
    gpu: Arc<Gpu>,
    cfg: BertConfig,
    w: BertWeights,
    /// Rows (tokens of all texts) a forward pass holds.
    rows: usize,
    x: wgpu::Buffer,
    program: Program,
    readback: Readback,
    // Kept alive for the bind groups that use them.
    _layers: Vec<BertLayer<Weight, wgpu::Buffer>>,
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuBert {
    pub fn new(gpu: &Arc<Gpu>, cfg: BertConfig, w: BertWeights) -> Result<GpuBert> {
        let c = &cfg;
        let m = c.max_tokens.max(BATCH_TOKENS);
        let acts = HashMap::from([
            (Act::X, gpu.scratch("x", m * c.dim)?),
            (Act::Q, gpu.scratch("q", m * c.dim)?),
            (Act::K, gpu.scratch("k", m * c.dim)?),
            (Act::V, gpu.scratch("v", m * c.dim)?),
            (Act::Attended, gpu.scratch("attended", m * c.dim)?),
            (Act::Gate, gpu.scratch("hidden", m * c.ffn)?),
        ]);
        // A row attends to its own text's rows: at most max_tokens of them.
        let scores = gpu.scratch("scores", c.heads * m * c.max_tokens)?;
        let layers = w
            .layers
            .iter()
            .map(|l| l.try_map(|m| m.upload(gpu), |v| gpu.upload("bias or norm", v)))
            .collect::<Result<Vec<_>>>()?;
        let mut program = Program::new(gpu, m);
        let mut recorder = Recorder {
            program: &mut program,
            acts: &acts,
            rope: None,
            scores: Some((&scores, c.max_tokens)),
            last_rows: None,
        };
        for l in &layers {
            layer(&mut recorder, c, l);
        }
        let buffers = acts.values().cloned().chain([scores]).collect();
        Ok(GpuBert {
            gpu: gpu.clone(),
            x: acts[&Act::X].clone(),
            cfg,
            w,
            rows: m,
            program,
            readback: Readback::default(),
            _layers: layers,
            _buffers: buffers,
        })
    }
}

impl Encode for GpuBert {
    fn capacity(&self) -> usize {
        self.rows
    }

    fn encode(&mut self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let mut x = Vec::new();
        let mut rows = Vec::new();
        for ids in texts {
            x.extend(embed_input(&self.cfg, &self.w, ids));
            rows.extend(Row::bidirectional(rows.len(), ids.len()));
        }
        self.gpu
            .queue
            .write_buffer(&self.x, 0, bytemuck::cast_slice(&x));
        let mut encoder = self.gpu.encoder();
        self.program.encode(&mut encoder, &rows);
        let dim = self.cfg.dim;
        let hidden =
            self.gpu
                .finish_and_read(encoder, &self.x, 0, rows.len() * dim, &mut self.readback)?;
        let mut at = 0;
        Ok(texts
            .iter()
            .map(|ids| {
                let text = hidden[at..at + ids.len() * dim].to_vec();
                at += ids.len() * dim;
                text
            })
            .collect())
    }
}

/// An embedding model ready to serve.
pub struct EmbeddingModel {
    name: String,
    sha256: [u8; 32],
    cfg: BertConfig,
    text: Arc<EmbeddingText>,
    backend: Box<dyn Encode>,
}

/// An embedding model's tokenizer, shared with callers that tokenize on their own threads
/// while another owns the model (a batcher).
pub struct EmbeddingText {
    codec: TextCodec,
    /// `codec` truncating to the model's `max_tokens`.
    truncating: TextCodec,
    vocab: usize,
}

impl EmbeddingText {
    /// Token ids of a whole text as the model would see it ([CLS] … [SEP]), however long:
    /// a caller that serves strangers refuses one over [`EmbeddingModel::max_tokens`]
    /// rather than embed part of it unannounced.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.checked(self.codec.encode(text, true)?)
    }

    /// Token ids of a text cut to the model's `max_tokens`, as sentence-transformers does.
    pub fn tokenize_truncated(&self, text: &str) -> Result<Vec<u32>> {
        self.checked(self.truncating.encode(text, true)?)
    }

    fn checked(&self, ids: Vec<u32>) -> Result<Vec<u32>> {
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(Error::Format(format!(
                "tokenizer produced id {bad} beyond the vocabulary"
            )));
        }
        Ok(ids)
    }
}

impl EmbeddingModel {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn weights_sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn dimension(&self) -> usize {
        self.cfg.dim
    }

    /// Tokens per text at most: [`EmbeddingModel::embed_batch`] truncates longer texts (as
    /// sentence-transformers does), [`EmbeddingModel::embed_tokens`] refuses them.
    pub fn max_tokens(&self) -> usize {
        self.cfg.max_tokens
    }

    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenize(text)?.len())
    }

    /// Token ids of a text as [`EmbeddingModel::embed_batch`] embeds it ([CLS] … [SEP],
    /// truncated to `max_tokens`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.text.tokenize_truncated(text)
    }

    /// The tokenizer, for callers on other threads.
    pub fn text_handle(&self) -> Arc<EmbeddingText> {
        Arc::clone(&self.text)
    }

    /// Tokens one forward pass holds.
    pub fn pass_tokens(&self) -> usize {
        self.backend.capacity()
    }

    /// Embeddings of `texts`, as many in each forward pass as fit (see
    /// [`EmbeddingModel::embed_batch`]).
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.embed_batch(texts)
    }

    /// Embeddings of `texts`, in order: the texts go through the encoder together, as many
    /// per forward pass as its [`BATCH_TOKENS`] rows hold, each attending to its own tokens
    /// only; a text's embedding is the same bits as when embedded alone.
    pub fn embed_batch(&mut self, texts: &[&str]) -> Result<Vec<Embedding>> {
        let ids = texts
            .iter()
            .map(|text| self.tokenize(text))
            .collect::<Result<Vec<_>>>()?;
        self.embed_tokens(&ids)
    }

    /// [`EmbeddingModel::embed_batch`] of texts already tokenized
    /// ([`EmbeddingText::tokenize`]).
    pub fn embed_tokens(&mut self, ids: &[Vec<u32>]) -> Result<Vec<Embedding>> {
        if let Some(&bad) = ids
            .iter()
            .flatten()
            .find(|&&t| t as usize >= self.cfg.vocab)
        {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab
            )));
        }
        if let Some(long) = ids.iter().find(|i| i.len() > self.cfg.max_tokens) {
            return Err(Error::Input(format!(
                "a text of {} tokens is over the {} this model embeds",
                long.len(),
                self.cfg.max_tokens
            )));
        }
        if ids.iter().any(Vec::is_empty) {
            return Err(Error::Input("a text of no tokens has no embedding".into()));
        }
        let capacity = self.backend.capacity();
        let mut out = Vec::with_capacity(ids.len());
        let mut start = 0;
        while start < ids.len() {
            // As many texts as the rows hold (one at least: none is over max_tokens).
            let mut end = start + 1;
            let mut tokens = ids[start].len();
            while end < ids.len() && tokens + ids[end].len() <= capacity {
                tokens += ids[end].len();
                end += 1;
            }
            let batch: Vec<&[u32]> = ids[start..end].iter().map(Vec::as_slice).collect();
            for (hidden, ids) in self.backend.encode(&batch)?.iter().zip(&batch) {
                out.push(Embedding {
                    vector: mean_pool_normalize(hidden, self.cfg.dim),
                    tokens: ids.len(),
                });
            }
            start = end;
        }
        Ok(out)
    }
}

/// Mean over rows, then L2 normalization (sentence-transformers' pooling).
pub fn mean_pool_normalize(x: &[f32], n: usize) -> Vec<f32> {
    let rows = x.len() / n;
    let mut mean = vec![0.0f32; n];
    for row in x.chunks_exact(n) {
        ops::elementwise::add(&mut mean, row);
    }
    for v in &mut mean {
        *v /= rows as f32;
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    for v in &mut mean {
        *v /= norm;
    }
    mean
}

pub fn load(
    st: &SafetensorsDir,
    source: &Source<'_>,
    gpu: Option<&Arc<Gpu>>,
    sha256: [u8; 32],
) -> Result<EmbeddingModel> {
    let (cfg, w, codec, name) = from_safetensors(st, source)?;
    let backend: Box<dyn Encode> = match gpu {
        Some(gpu) => Box::new(GpuBert::new(gpu, cfg.clone(), w)?),
        None => Box::new(CpuBert::new(cfg.clone(), w)),
    };
    let text = Arc::new(EmbeddingText {
        truncating: codec.truncating(cfg.max_tokens)?,
        codec,
        vocab: cfg.vocab,
    });
    Ok(EmbeddingModel {
        name,
        sha256,
        cfg,
        text,
        backend,
    })
}

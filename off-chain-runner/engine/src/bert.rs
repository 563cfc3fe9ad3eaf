//! The BERT-family encoder for embeddings, in sentence-transformers' layout: word +
//! position + token-type embeddings, post-norm layers with GELU, then mean pooling over
//! the tokens and L2 normalization. Several texts go through one forward pass as the rows of
//! one matrix, each row attending to its own text's rows only ([`Row::bidirectional`]): no
//! padding exists to mask, and a text's embedding is the same bits in any batch.

use std::sync::Arc;

use crate::api::Embedding;
use crate::cpu;
use crate::files::Source;
use crate::gpu::{Bias, Gpu, Program, Readback, Row, Weight};
use crate::llama::Matrix;
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
    /// Tokens per text after truncation (sentence-transformers' `max_seq_length`).
    pub max_tokens: usize,
}

pub struct BertLayer {
    pub q: (Matrix, Vec<f32>),
    pub k: (Matrix, Vec<f32>),
    pub v: (Matrix, Vec<f32>),
    pub o: (Matrix, Vec<f32>),
    pub attn_norm: (Vec<f32>, Vec<f32>),
    pub up: (Matrix, Vec<f32>),
    pub down: (Matrix, Vec<f32>),
    pub out_norm: (Vec<f32>, Vec<f32>),
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
    let codec = TextCodec::from_source(source, Some(config.max_tokens))?;
    let name = source.name().unwrap_or_else(|| "bert".into());
    Ok((config, weights, codec, name))
}

/// Embedding input of a text: word + position + token type 0, layer-normalized.
fn embed_input(cfg: &BertConfig, w: &BertWeights, ids: &[u32]) -> Vec<f32> {
    let mut x = Vec::with_capacity(ids.len() * cfg.dim);
    for (pos, &id) in ids.iter().enumerate() {
        let mut row = w.word.row(id as usize);
        cpu::add(&mut row, &w.position.row(pos));
        cpu::add(&mut row, &w.token_type);
        x.extend(row);
    }
    cpu::layernorm(&mut x, &w.embed_norm.0, &w.embed_norm.1, cfg.eps);
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
    layers: Vec<[Vec<f32>; 6]>,
}

impl CpuBert {
    pub fn new(cfg: BertConfig, w: BertWeights) -> CpuBert {
        let d = |m: &Matrix| dequantize(m.format, &m.bytes);
        let layers = w
            .layers
            .iter()
            .map(|l| {
                [
                    d(&l.q.0),
                    d(&l.k.0),
                    d(&l.v.0),
                    d(&l.o.0),
                    d(&l.up.0),
                    d(&l.down.0),
                ]
            })
            .collect();
        CpuBert { cfg, w, layers }
    }
}

impl Encode for CpuBert {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn encode(&mut self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|ids| self.encode_one(ids)).collect())
    }
}

impl CpuBert {
    fn encode_one(&self, ids: &[u32]) -> Vec<f32> {
        let c = &self.cfg;
        let mut x = embed_input(c, &self.w, ids);
        for (l, [q, k, v, o, up, down]) in self.w.layers.iter().zip(&self.layers) {
            let qv = cpu::linear(&x, q, Some(&l.q.1), c.dim, c.dim);
            let kv = cpu::linear(&x, k, Some(&l.k.1), c.dim, c.dim);
            let vv = cpu::linear(&x, v, Some(&l.v.1), c.dim, c.dim);
            let att = cpu::attention(&qv, &kv, &vv, c.heads, c.heads, c.dim / c.heads, false, 0);
            cpu::add(&mut x, &cpu::linear(&att, o, Some(&l.o.1), c.dim, c.dim));
            cpu::layernorm(&mut x, &l.attn_norm.0, &l.attn_norm.1, c.eps);
            let mut h = cpu::linear(&x, up, Some(&l.up.1), c.ffn, c.dim);
            cpu::gelu(&mut h);
            cpu::add(
                &mut x,
                &cpu::linear(&h, down, Some(&l.down.1), c.dim, c.ffn),
            );
            cpu::layernorm(&mut x, &l.out_norm.0, &l.out_norm.1, c.eps);
        }
        x
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
    _weights: Vec<Weight>,
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuBert {
    pub fn new(gpu: &Arc<Gpu>, cfg: BertConfig, w: BertWeights) -> Result<GpuBert> {
        let c = &cfg;
        let m = c.max_tokens.max(BATCH_TOKENS);
        let x = gpu.scratch("x", m * c.dim)?;
        let q = gpu.scratch("q", m * c.dim)?;
        let k = gpu.scratch("k", m * c.dim)?;
        let v = gpu.scratch("v", m * c.dim)?;
        let att = gpu.scratch("att", m * c.dim)?;
        let h = gpu.scratch("h", m * c.ffn)?;
        // A row attends to its own text's rows: at most max_tokens of them.
        let scores = gpu.scratch("scores", c.heads * m * c.max_tokens)?;
        let mut program = Program::new(gpu, m);
        let mut weights = Vec::new();
        let mut buffers = Vec::new();
        let upload = |(m, b): &(Matrix, Vec<f32>)| -> Result<(Weight, wgpu::Buffer)> {
            Ok((m.upload(gpu)?, gpu.upload("bias", b)?))
        };
        for l in &w.layers {
            let (wq, bq) = upload(&l.q)?;
            let (wk, bk) = upload(&l.k)?;
            let (wv, bv) = upload(&l.v)?;
            let (wo, bo) = upload(&l.o)?;
            let (wu, bu) = upload(&l.up)?;
            let (wd, bd) = upload(&l.down)?;
            let [g1, b1, g2, b2] = [&l.attn_norm.0, &l.attn_norm.1, &l.out_norm.0, &l.out_norm.1]
                .map(|v| gpu.upload("norm", v));
            let (g1, b1, g2, b2) = (g1?, b1?, g2?, b2?);
            program.linear(&x, &wq, Bias(Some(&bq)), &q, false, false);
            program.linear(&x, &wk, Bias(Some(&bk)), &k, false, false);
            program.linear(&x, &wv, Bias(Some(&bv)), &v, false, false);
            program.attention(
                &q,
                &k,
                &v,
                &att,
                &scores,
                c.heads,
                c.heads,
                c.dim / c.heads,
                c.max_tokens,
            );
            program.linear(&att, &wo, Bias(Some(&bo)), &x, true, false);
            program.layernorm(&x, &g1, &b1, c.dim, c.eps);
            program.linear(&x, &wu, Bias(Some(&bu)), &h, false, false);
            program.gelu(&h, c.ffn);
            program.linear(&h, &wd, Bias(Some(&bd)), &x, true, false);
            program.layernorm(&x, &g2, &b2, c.dim, c.eps);
            weights.extend([wq, wk, wv, wo, wu, wd]);
            buffers.extend([bq, bk, bv, bo, bu, bd, g1, b1, g2, b2]);
        }
        buffers.extend([q, k, v, att, h, scores]);
        Ok(GpuBert {
            gpu: gpu.clone(),
            cfg,
            w,
            rows: m,
            x,
            program,
            readback: Readback::default(),
            _weights: weights,
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
    vocab: usize,
}

impl EmbeddingText {
    /// Token ids of a text as the model sees it ([CLS] … [SEP], truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.codec.encode(text, true)?;
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

    /// Tokens per text at most; longer texts are truncated (sentence-transformers does so).
    pub fn max_tokens(&self) -> usize {
        self.cfg.max_tokens
    }

    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenize(text)?.len())
    }

    /// Token ids of a text as the model sees it ([CLS] … [SEP], truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.text.tokenize(text)
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
                    vector: cpu::mean_pool_normalize(hidden, self.cfg.dim),
                    tokens: ids.len(),
                });
            }
            start = end;
        }
        Ok(out)
    }
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

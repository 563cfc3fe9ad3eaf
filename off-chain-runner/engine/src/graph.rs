//! Each architecture's forward pass is written once, as calls on [`Ops`] (`llama::layer`,
//! `bert::layer`); the backends differ only in what a call does. The GPU backend records
//! the calls once into a [`Program`] ([`Recorder`]) and replays it every step; the CPU
//! backend runs them as they come on one sequence ([`CpuPass`]), through each op's CPU twin
//! ([`crate::ops`]). The graph names activations by role ([`Act`]); each backend owns its
//! buffers.

use std::collections::HashMap;

use crate::gpu::{Bias, Program, Weight};
use crate::llama::Matrix;
use crate::ops::{self, RopeLayout, Row};
use crate::quant::dequantize;

/// An activation of a forward pass, by its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    /// The residual stream: the step's input embeddings, then each layer's output.
    X,
    /// A normalized copy of `X` (decoders normalize before each block).
    Normed,
    Q,
    /// Keys and values of an encoder's step (its texts attend to their own rows only).
    K,
    V,
    /// Attention's output, before the output projection.
    Attended,
    /// The feed-forward block's hidden rows (SwiGLU's output, BERT's GELU input).
    Gate,
    /// Layer `l`'s key cache: row `r` of a step lives at its [`Row::kv_row`].
    Keys(usize),
    /// Layer `l`'s value cache, as [`Act::Keys`].
    Values(usize),
    /// The normalized last row of each input of a step: the output head's input.
    Last,
    Logits,
}

impl Act {
    /// Rows of a cache are at their [`Row::kv_row`], not at their index in the step.
    fn in_cache(self) -> bool {
        matches!(self, Act::Keys(_) | Act::Values(_))
    }
}

/// The ops a forward pass is written in.
pub trait Ops {
    /// A weight matrix of `n` rows of `k`.
    type Matrix;
    /// Norm gains and biases.
    type Vector;

    /// `y = x · Wᵀ (+ bias)`, or `y += x · Wᵀ (+ bias)` when `add`.
    fn linear(&mut self, x: Act, w: &Self::Matrix, bias: Option<&Self::Vector>, y: Act, add: bool);
    /// The query, key and value projections in one pass: `w` stacks their rows
    /// (`q_width`, then `kv_width` twice) into `q`, `keys` and `values`.
    #[allow(clippy::too_many_arguments)]
    fn linear_qkv(
        &mut self,
        x: Act,
        w: &Self::Matrix,
        q: Act,
        keys: Act,
        values: Act,
        q_width: usize,
        kv_width: usize,
    );
    /// `y = silu(x · Wgᵀ) · (x · Wuᵀ)` in one pass, `w` interleaving the gate's and the up
    /// projection's rows.
    fn swiglu(&mut self, x: Act, w: &Self::Matrix, y: Act);
    /// RMSNorm of each row of `x` (rows of `n`) into `y`.
    fn rmsnorm(&mut self, x: Act, g: &Self::Vector, y: Act, n: usize, eps: f32);
    /// RMSNorm of each input's last row of `x` into row `i` of `y` (input `i` of the step).
    fn rmsnorm_last(&mut self, x: Act, g: &Self::Vector, y: Act, n: usize, eps: f32);
    /// LayerNorm of each row of `x` (rows of `n`), in place.
    fn layernorm(&mut self, x: Act, g: &Self::Vector, b: &Self::Vector, n: usize, eps: f32);
    /// Rotates each row of `t` by its position.
    fn rope(&mut self, t: Act, heads: usize, head_dim: usize, layout: RopeLayout);
    /// Attention of the rows of `q` over the rows of `k` and `v` their [`Row`]s name.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        q: Act,
        k: Act,
        v: Act,
        o: Act,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    );
    /// `a = gelu(a)` over rows of `n`.
    fn gelu(&mut self, a: Act, n: usize);
}

/// The GPU backend's [`Ops`]: each call appends its dispatch to `program`.
pub struct Recorder<'a> {
    pub program: &'a mut Program,
    /// Every activation the graph names, with the buffer that holds it.
    pub acts: &'a HashMap<Act, wgpu::Buffer>,
    /// The rotary table (decoders).
    pub rope: Option<&'a wgpu::Buffer>,
    /// Attention's score scratch, and the most rows a query attends to (its size per row
    /// and head).
    pub scores: Option<(&'a wgpu::Buffer, usize)>,
    /// Each input's last row, written per step (decoders' output head).
    pub last_rows: Option<&'a wgpu::Buffer>,
}

impl Recorder<'_> {
    fn buffer(&self, act: Act) -> &wgpu::Buffer {
        self.acts.get(&act).unwrap_or_else(|| {
            panic!("the graph names {act:?}, which the backend has no buffer for")
        })
    }
}

impl Ops for Recorder<'_> {
    type Matrix = Weight;
    type Vector = wgpu::Buffer;

    fn linear(&mut self, x: Act, w: &Weight, bias: Option<&wgpu::Buffer>, y: Act, add: bool) {
        let (xb, yb) = (self.buffer(x).clone(), self.buffer(y).clone());
        self.program
            .linear(&xb, w, Bias(bias), &yb, add, y.in_cache());
    }

    fn linear_qkv(
        &mut self,
        x: Act,
        w: &Weight,
        q: Act,
        keys: Act,
        values: Act,
        q_width: usize,
        kv_width: usize,
    ) {
        let [xb, qb, kb, vb] = [x, q, keys, values].map(|a| self.buffer(a).clone());
        self.program
            .linear_qkv(&xb, w, &qb, &kb, &vb, q_width, kv_width);
    }

    fn swiglu(&mut self, x: Act, w: &Weight, y: Act) {
        let (xb, yb) = (self.buffer(x).clone(), self.buffer(y).clone());
        self.program.linear_swiglu(&xb, w, &yb);
    }

    fn rmsnorm(&mut self, x: Act, g: &wgpu::Buffer, y: Act, n: usize, eps: f32) {
        let (xb, yb) = (self.buffer(x).clone(), self.buffer(y).clone());
        self.program.rmsnorm(&xb, g, &yb, n, eps);
    }

    fn rmsnorm_last(&mut self, x: Act, g: &wgpu::Buffer, y: Act, n: usize, eps: f32) {
        let (xb, yb) = (self.buffer(x).clone(), self.buffer(y).clone());
        let index = self
            .last_rows
            .expect("a decoder's recorder has its last rows");
        self.program.rmsnorm_gather(&xb, index, g, &yb, n, eps);
    }

    fn layernorm(&mut self, x: Act, g: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, eps: f32) {
        let xb = self.buffer(x).clone();
        self.program.layernorm(&xb, g, b, n, eps);
    }

    fn rope(&mut self, t: Act, heads: usize, head_dim: usize, layout: RopeLayout) {
        let tb = self.buffer(t).clone();
        let table = self
            .rope
            .expect("a decoder's recorder has its rotary table");
        self.program
            .rope(&tb, table, heads, head_dim, layout, t.in_cache());
    }

    fn attention(
        &mut self,
        q: Act,
        k: Act,
        v: Act,
        o: Act,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        let [qb, kb, vb, ob] = [q, k, v, o].map(|a| self.buffer(a).clone());
        let (scores, ctx) = self.scores.expect("the recorder has attention's scratch");
        self.program
            .attention(&qb, &kb, &vb, &ob, scores, heads, kv_heads, head_dim, ctx);
    }

    fn gelu(&mut self, a: Act, n: usize) {
        let ab = self.buffer(a).clone();
        self.program.gelu(&ab, n);
    }
}

/// A weight matrix on the CPU: `n` rows of `k`, dequantized.
pub struct Dense {
    pub values: Vec<f32>,
    pub n: usize,
    pub k: usize,
}

impl Dense {
    pub fn of(m: &Matrix) -> Dense {
        Dense {
            values: dequantize(m.format, &m.bytes),
            n: m.n,
            k: m.k,
        }
    }
}

/// The CPU backend's [`Ops`]: runs each call at once on one sequence's rows.
pub struct CpuPass<'a> {
    rows: Vec<Row>,
    acts: HashMap<Act, Vec<f32>>,
    /// Per layer: the sequence's key and value caches, grown as rows are written.
    caches: &'a mut [[Vec<f32>; 2]],
    rope: &'a [f32],
}

impl<'a> CpuPass<'a> {
    /// A pass over `rows` whose input embeddings are `x`.
    pub fn new(
        x: Vec<f32>,
        rows: Vec<Row>,
        caches: &'a mut [[Vec<f32>; 2]],
        rope: &'a [f32],
    ) -> CpuPass<'a> {
        CpuPass {
            rows,
            acts: HashMap::from([(Act::X, x)]),
            caches,
            rope,
        }
    }

    /// An activation the pass computed.
    pub fn take(&mut self, act: Act) -> Vec<f32> {
        self.acts
            .remove(&act)
            .unwrap_or_else(|| panic!("the graph never wrote {act:?}"))
    }

    fn get(&self, act: Act) -> &[f32] {
        match act {
            Act::Keys(l) => &self.caches[l][0],
            Act::Values(l) => &self.caches[l][1],
            _ => self
                .acts
                .get(&act)
                .unwrap_or_else(|| panic!("the graph reads {act:?} before writing it")),
        }
    }

    fn get_mut(&mut self, act: Act) -> &mut Vec<f32> {
        match act {
            Act::Keys(l) => &mut self.caches[l][0],
            Act::Values(l) => &mut self.caches[l][1],
            _ => self.acts.entry(act).or_default(),
        }
    }

    /// Writes `values` (rows of `n`) into `y`: row `r` at `r`, or at its `kv_row` in a cache;
    /// added to what is there when `add`.
    fn write(&mut self, y: Act, values: Vec<f32>, n: usize, add: bool) {
        if !y.in_cache() && !add {
            self.acts.insert(y, values);
            return;
        }
        let at: Vec<usize> = (0..self.rows.len())
            .map(|r| {
                if y.in_cache() {
                    self.rows[r].kv_row as usize
                } else {
                    r
                }
            })
            .collect();
        let out = self.get_mut(y);
        for (row, &at) in values.chunks_exact(n).zip(&at) {
            let end = (at + 1) * n;
            if out.len() < end {
                out.resize(end, 0.0);
            }
            let target = &mut out[at * n..end];
            if add {
                ops::elementwise::add(target, row);
            } else {
                target.copy_from_slice(row);
            }
        }
    }
}

impl Ops for CpuPass<'_> {
    type Matrix = Dense;
    type Vector = Vec<f32>;

    fn linear(&mut self, x: Act, w: &Dense, bias: Option<&Vec<f32>>, y: Act, add: bool) {
        let out = ops::linear::cpu(self.get(x), &w.values, bias.map(|b| &b[..]), w.n, w.k);
        self.write(y, out, w.n, add);
    }

    fn linear_qkv(
        &mut self,
        x: Act,
        w: &Dense,
        q: Act,
        keys: Act,
        values: Act,
        q_width: usize,
        kv_width: usize,
    ) {
        let out = ops::linear::cpu(self.get(x), &w.values, None, w.n, w.k);
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for row in out.chunks_exact(w.n) {
            let (query, kv) = row.split_at(q_width);
            let (key, value) = kv.split_at(kv_width);
            for (part, piece) in parts.iter_mut().zip([query, key, value]) {
                part.extend_from_slice(piece);
            }
        }
        let [query, key, value] = parts;
        self.write(q, query, q_width, false);
        self.write(keys, key, kv_width, false);
        self.write(values, value, kv_width, false);
    }

    fn swiglu(&mut self, x: Act, w: &Dense, y: Act) {
        let out = ops::linear::cpu_swiglu(self.get(x), &w.values, w.n, w.k);
        self.write(y, out, w.n / 2, false);
    }

    fn rmsnorm(&mut self, x: Act, g: &Vec<f32>, y: Act, _n: usize, eps: f32) {
        let out = ops::rmsnorm::cpu(self.get(x), g, eps);
        self.write(y, out, g.len(), false);
    }

    fn rmsnorm_last(&mut self, x: Act, g: &Vec<f32>, y: Act, n: usize, eps: f32) {
        // A CPU pass is one sequence: its last row.
        let x = self.get(x);
        let out = ops::rmsnorm::cpu(&x[x.len() - n..], g, eps);
        self.acts.insert(y, out);
    }

    fn layernorm(&mut self, x: Act, g: &Vec<f32>, b: &Vec<f32>, _n: usize, eps: f32) {
        ops::layernorm::cpu(self.get_mut(x), g, b, eps);
    }

    fn rope(&mut self, t: Act, heads: usize, head_dim: usize, layout: RopeLayout) {
        let (rows, table) = (std::mem::take(&mut self.rows), self.rope);
        let in_cache = t.in_cache();
        ops::rope::cpu(
            self.get_mut(t),
            &rows,
            heads,
            head_dim,
            table,
            layout,
            in_cache,
        );
        self.rows = rows;
    }

    fn attention(
        &mut self,
        q: Act,
        k: Act,
        v: Act,
        o: Act,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        let out = ops::attention::cpu(
            self.get(q),
            self.get(k),
            self.get(v),
            &self.rows,
            heads,
            kv_heads,
            head_dim,
        );
        self.acts.insert(o, out);
    }

    fn gelu(&mut self, a: Act, _n: usize) {
        ops::elementwise::gelu(self.get_mut(a));
    }
}

//! The reference implementation of every op, in plain f32 Rust: the specification the WGSL
//! kernels are tested against, and a backend of its own (slow, single-threaded, simple).
//! Matrices are row-major; a linear layer's weight `w` has `n` rows of `k` values.

/// `y[m][n] = Σₖ x[m][k] · w[n][k] (+ bias[n])`.
pub fn linear(x: &[f32], w: &[f32], bias: Option<&[f32]>, n: usize, k: usize) -> Vec<f32> {
    let rows = x.len() / k;
    let mut y = Vec::with_capacity(rows * n);
    for xr in x.chunks_exact(k) {
        for (j, wr) in w.chunks_exact(k).enumerate().take(n) {
            let dot: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            y.push(dot + bias.map_or(0.0, |b| b[j]));
        }
    }
    y
}

/// Adds `b` into `a` (residual connections).
pub fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

/// RMSNorm of each row of `n`: `x / sqrt(mean(x²) + eps) * g`.
pub fn rmsnorm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let n = g.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(n) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(g).map(|(v, g)| v * scale * g));
    }
    y
}

/// LayerNorm of each row, in place: `(x - mean) / sqrt(var + eps) * g + b`.
pub fn layernorm(x: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
    let n = g.len();
    for row in x.chunks_exact_mut(n) {
        let mean = row.iter().sum::<f32>() / n as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        row.iter_mut()
            .zip(g)
            .zip(b)
            .for_each(|((v, g), b)| *v = (*v - mean) * inv * g + b);
    }
}

/// cos and sin of every (position, pair) of a rotary embedding, interleaved, computed in
/// f64 once so that both backends rotate by the same f32 angles.
pub fn rope_table(theta: f32, head_dim: usize, positions: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut table = Vec::with_capacity(positions * half * 2);
    for pos in 0..positions {
        for i in 0..half {
            let freq = f64::from(theta).powf(-2.0 * i as f64 / head_dim as f64);
            let angle = pos as f64 * freq;
            table.push(angle.cos() as f32);
            table.push(angle.sin() as f32);
        }
    }
    table
}

/// Which elements of a head a rotary pair rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// (2i, 2i+1): llama.cpp's layout, what GGUF llama weights are permuted for.
    Interleaved,
    /// (i, i + d/2): Hugging Face's layout for safetensors llama weights.
    HalfSplit,
}

/// Rotates `heads` heads of `head_dim` in each row of `t` (rows of `heads * head_dim`),
/// row `r` being at position `start + r`.
pub fn rope(
    t: &mut [f32],
    heads: usize,
    head_dim: usize,
    start: usize,
    table: &[f32],
    layout: RopeLayout,
) {
    let half = head_dim / 2;
    for (r, row) in t.chunks_exact_mut(heads * head_dim).enumerate() {
        let pos = start + r;
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match layout {
                    RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    RopeLayout::HalfSplit => (i, i + half),
                };
                let (c, s) = (table[(pos * half + i) * 2], table[(pos * half + i) * 2 + 1]);
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

/// Scaled dot-product attention of `q` (rows of `heads * d`) over the rows of `k` and `v`
/// (rows of `kv_heads * d`; query heads share key/value heads in groups). Causal: query
/// row `r` sees keys `0..=start + r`; otherwise every key row.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    kv_heads: usize,
    d: usize,
    causal: bool,
    start: usize,
) -> Vec<f32> {
    let scale = 1.0 / (d as f32).sqrt();
    let keys = k.len() / (kv_heads * d);
    let mut out = vec![0.0; q.len()];
    for (r, (qr, or)) in q
        .chunks_exact(heads * d)
        .zip(out.chunks_exact_mut(heads * d))
        .enumerate()
    {
        let len = if causal { start + r + 1 } else { keys };
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qh = &qr[h * d..(h + 1) * d];
            let key = |j: usize| &k[(j * kv_heads + kvh) * d..(j * kv_heads + kvh + 1) * d];
            let scores: Vec<f32> = (0..len)
                .map(|j| qh.iter().zip(key(j)).map(|(a, b)| a * b).sum::<f32>() * scale)
                .collect();
            let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - top).exp()).collect();
            let sum: f32 = e.iter().sum();
            for i in 0..d {
                let acc: f32 = (0..len)
                    .map(|j| e[j] * v[(j * kv_heads + kvh) * d + i])
                    .sum();
                or[h * d + i] = acc / sum;
            }
        }
    }
    out
}

/// SwiGLU's gate: `a = silu(a) * b`.
pub fn silu_mul(a: &mut [f32], b: &[f32]) {
    a.iter_mut()
        .zip(b)
        .for_each(|(a, b)| *a = *a / (1.0 + (-*a).exp()) * b);
}

/// BERT's exact GELU.
pub fn gelu(a: &mut [f32]) {
    for v in a.iter_mut() {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Mean over rows, then L2 normalization (sentence-transformers' pooling).
pub fn mean_pool_normalize(x: &[f32], n: usize) -> Vec<f32> {
    let rows = x.len() / n;
    let mut mean = vec![0.0f32; n];
    for row in x.chunks_exact(n) {
        add(&mut mean, row);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_of_one_key_is_its_value_and_causality_hides_the_future() {
        let q = [1.0, 0.0, 0.0, 1.0];
        let k = [1.0, 0.0, 0.0, 5.0];
        let v = [2.0, 3.0, 7.0, 9.0];
        let first = attention(&q[..2], &k, &v, 1, 1, 2, true, 0);
        assert_eq!(first, [2.0, 3.0], "position 0 sees only key 0");
        let both = attention(&q[2..], &k, &v, 1, 1, 2, false, 0);
        assert!(both[0] > 6.8 && both[1] > 8.8, "key 1 dominates: {both:?}");
    }

    #[test]
    fn rope_layouts_rotate_different_pairs() {
        let table = rope_table(10_000.0, 4, 2);
        let mut a = [1.0, 0.0, 0.0, 0.0];
        let mut b = a;
        rope(&mut a, 1, 4, 1, &table, RopeLayout::Interleaved);
        rope(&mut b, 1, 4, 1, &table, RopeLayout::HalfSplit);
        assert!((a[1] - 1f32.sin()).abs() < 1e-6 && b[1] == 0.0);
        assert!((b[2] - 1f32.sin()).abs() < 1e-6);
    }
}

//! Scaled dot-product attention: each query row over the key and value rows its [`Row`]
//! names (its own slot up to its position for a decoder, its own text for an encoder), so
//! rows of different sequences in one step never see each other. Query heads share
//! key/value heads in groups.

use super::Row;
use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("attention.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ctx: u32,
    scale: f32,
    pad: [u32; 3],
}

impl Program {
    /// Attention of each query row of `q` over the key and value rows its [`Row`] names;
    /// `ctx` is the most a row attends to (the `scores` scratch holds `ctx` per row and head).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        o: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        ctx: usize,
    ) {
        let params = self.gpu().uniform(
            "attention",
            &AttentionParams {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                ctx: ctx as u32,
                scale: scale(head_dim),
                pad: [0; 3],
            },
        );
        let (step, rows) = (self.step().clone(), self.rows().clone());
        self.push(
            Kernel::Attention,
            &[q, k, v, o, scores, &params, &step, &rows],
            Grid::Heads {
                heads: heads as u32,
            },
        );
    }
}

fn scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

/// The CPU twin: `q` has a row of `heads · d` per step row, `k` and `v` rows of
/// `kv_heads · d`; step row `r` attends to rows `kv_start .. kv_start + kv_len` of them.
pub fn cpu(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rows: &[Row],
    heads: usize,
    kv_heads: usize,
    d: usize,
) -> Vec<f32> {
    let scale = scale(d);
    let mut out = vec![0.0; q.len()];
    for ((qr, or), row) in q
        .chunks_exact(heads * d)
        .zip(out.chunks_exact_mut(heads * d))
        .zip(rows)
    {
        let keys = row.kv_start as usize..(row.kv_start + row.kv_len) as usize;
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let qh = &qr[h * d..(h + 1) * d];
            let at = |j: usize| (j * kv_heads + kvh) * d;
            let scores: Vec<f32> = keys
                .clone()
                .map(|j| {
                    qh.iter()
                        .zip(&k[at(j)..at(j) + d])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * scale
                })
                .collect();
            let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - top).exp()).collect();
            let sum: f32 = e.iter().sum();
            for i in 0..d {
                let acc: f32 = keys.clone().zip(&e).map(|(j, e)| e * v[at(j) + i]).sum();
                or[h * d + i] = acc / sum;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_gives_its_value_and_causality_hides_the_future() {
        let q = [1.0, 0.0, 0.0, 1.0];
        let k = [1.0, 0.0, 0.0, 5.0];
        let v = [2.0, 3.0, 7.0, 9.0];
        let first = cpu(&q[..2], &k, &v, &Row::sequence(1, 0), 1, 1, 2);
        assert_eq!(first, [2.0, 3.0], "position 0 sees only key 0");
        let both = cpu(&q[2..], &k, &v, &Row::sequence(1, 1), 1, 1, 2);
        assert!(both[0] > 6.8 && both[1] > 8.8, "key 1 dominates: {both:?}");
    }
}

//! LayerNorm in place, `x = (x - mean) / sqrt(var + eps) · g + b` per row: BERT's norm.

use super::rmsnorm::NormParams;
use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("layernorm.wgsl");

impl Program {
    /// LayerNorm of each row of `x` (rows of `n`), in place.
    pub fn layernorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        let params = self.gpu().uniform(
            "layernorm",
            &NormParams {
                n: n as u32,
                eps,
                flags: 0,
                pad: 0,
            },
        );
        let step = self.step().clone();
        self.push(Kernel::LayerNorm, &[x, g, b, &params, &step], Grid::Rows);
    }
}

/// The CPU twin, over rows of `g.len()`.
pub fn cpu(x: &mut [f32], g: &[f32], b: &[f32], eps: f32) {
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

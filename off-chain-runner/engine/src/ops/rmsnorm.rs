//! RMSNorm, `y = x / sqrt(mean(x²) + eps) · g` per row: the decoders' norm.

use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("rmsnorm.wgsl");

/// The norms' uniform (`rmsnorm.wgsl`, `layernorm.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct NormParams {
    pub n: u32,
    pub eps: f32,
    pub flags: u32,
    pub pad: u32,
}

impl Program {
    /// RMSNorm of each row of `x` (rows of `n`) into `y`.
    pub fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        let unused = self.gpu().scratch("no-index", 1).expect("one word fits");
        self.norm_rows(x, false, g, y, n, eps, &unused);
    }

    /// RMSNorm of rows `index[0..m]` of `x` into rows `0..m` of `y`: the rows a step
    /// needs logits of, gathered.
    pub fn rmsnorm_gather(
        &mut self,
        x: &wgpu::Buffer,
        index: &wgpu::Buffer,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        self.norm_rows(x, true, g, y, n, eps, index);
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_rows(
        &mut self,
        x: &wgpu::Buffer,
        gather: bool,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
        index: &wgpu::Buffer,
    ) {
        let params = self.gpu().uniform(
            "rmsnorm",
            &NormParams {
                n: n as u32,
                eps,
                flags: u32::from(gather),
                pad: 0,
            },
        );
        let step = self.step().clone();
        self.push(
            Kernel::RmsNorm,
            &[x, g, y, &params, &step, index],
            Grid::Rows,
        );
    }
}

/// The CPU twin, over rows of `g.len()`.
pub fn cpu(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let n = g.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(n) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(g).map(|(v, g)| v * scale * g));
    }
    y
}

//! Element-wise activations over rows: SwiGLU's `a = silu(a) · b` and BERT's exact GELU
//! (one kernel, `elementwise.wgsl`), and the residual add the linear kernel does on the GPU
//! (its accumulate flag) and [`add`] does on the CPU.

use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("elementwise.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    op: u32,
    pad: [u32; 2],
}

impl Program {
    /// `a = silu(a) * b` over rows of `n`.
    pub fn silu_mul(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize) {
        self.elementwise(a, b, n, 0);
    }

    /// `a = gelu(a)` over rows of `n`.
    pub fn gelu(&mut self, a: &wgpu::Buffer, n: usize) {
        let unused = self.gpu().scratch("unused", 1).expect("one word fits");
        self.elementwise(a, &unused, n, 1);
    }

    fn elementwise(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, op: u32) {
        let params = self.gpu().uniform(
            "elementwise",
            &ElementwiseParams {
                n: n as u32,
                op,
                pad: [0; 2],
            },
        );
        let step = self.step().clone();
        self.push(
            Kernel::Elementwise,
            &[a, b, &params, &step],
            Grid::Elements { n: n as u32 },
        );
    }
}

/// SwiGLU's gate on the CPU: `a = silu(a) * b`.
pub fn silu_mul(a: &mut [f32], b: &[f32]) {
    a.iter_mut()
        .zip(b)
        .for_each(|(a, b)| *a = *a / (1.0 + (-*a).exp()) * b);
}

/// BERT's exact GELU on the CPU.
pub fn gelu(a: &mut [f32]) {
    for v in a.iter_mut() {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Adds `b` into `a` (residual connections, embeddings' sums).
pub fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
}

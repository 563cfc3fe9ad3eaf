//! Greedy decoding's pick: the index of each row's largest value, the lowest on ties, made
//! where the logits are (4 bytes read back per sequence instead of the vocabulary).

use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("argmax.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ArgmaxParams {
    n: u32,
    pad: [u32; 3],
}

impl Program {
    /// `tokens[r]` = the index of the largest value of row `r` of `values` (rows of `n`),
    /// the lowest on ties.
    pub fn argmax(&mut self, values: &wgpu::Buffer, tokens: &wgpu::Buffer, n: usize) {
        let params = self.gpu().uniform(
            "argmax",
            &ArgmaxParams {
                n: n as u32,
                pad: [0; 3],
            },
        );
        let step = self.step().clone();
        self.push(
            Kernel::Argmax,
            &[values, tokens, &params, &step],
            Grid::Rows,
        );
    }
}

/// The CPU twin, of one row: a left-to-right scan keeping the first largest.
pub fn cpu(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

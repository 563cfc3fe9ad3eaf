//! Rotary position embeddings in place, each row by its own position ([`Row::pos`]), from
//! a table of angles both backends share.

use super::Row;
use crate::gpu::{Grid, Kernel, Program};

pub(crate) const WGSL: &str = include_str!("rope.wgsl");

/// Which elements of a head a rotary pair rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// (2i, 2i+1): llama.cpp's layout, what GGUF llama weights are permuted for.
    Interleaved,
    /// (i, i + d/2): Hugging Face's layout for safetensors llama weights.
    HalfSplit,
}

/// cos and sin of every (position, pair) of a rotary embedding, interleaved, computed in
/// f64 once so that both backends rotate by the same f32 angles.
pub fn table(theta: f32, head_dim: usize, positions: usize) -> Vec<f32> {
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    heads: u32,
    head_dim: u32,
    flags: u32,
    row_stride: u32,
}

impl Program {
    /// Rotates the `heads` heads of `head_dim` of each row of `t` in place, each row by its
    /// own [`Row::pos`]; `in_cache`: row `m` of `t` is at its [`Row::kv_row`].
    pub fn rope(
        &mut self,
        t: &wgpu::Buffer,
        table: &wgpu::Buffer,
        heads: usize,
        head_dim: usize,
        layout: RopeLayout,
        in_cache: bool,
    ) {
        let flags = u32::from(layout == RopeLayout::Interleaved) | (u32::from(in_cache) << 1);
        let params = self.gpu().uniform(
            "rope",
            &RopeParams {
                heads: heads as u32,
                head_dim: head_dim as u32,
                flags,
                row_stride: (heads * head_dim) as u32,
            },
        );
        let (step, rows) = (self.step().clone(), self.rows().clone());
        self.push(
            Kernel::Rope,
            &[t, table, &params, &step, &rows],
            Grid::Rope {
                pairs: (heads * head_dim / 2) as u32,
            },
        );
    }
}

/// The CPU twin: row `r` of a step (`rows[r]`) is row `r` of `t`, or its
/// [`Row::kv_row`] when `in_cache`.
#[allow(clippy::too_many_arguments)]
pub fn cpu(
    t: &mut [f32],
    rows: &[Row],
    heads: usize,
    head_dim: usize,
    table: &[f32],
    layout: RopeLayout,
    in_cache: bool,
) {
    let half = head_dim / 2;
    let stride = heads * head_dim;
    for (r, row) in rows.iter().enumerate() {
        let at = if in_cache { row.kv_row as usize } else { r };
        let pos = row.pos as usize;
        for head in t[at * stride..(at + 1) * stride].chunks_exact_mut(head_dim) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_rotate_different_pairs() {
        let table = table(10_000.0, 4, 2);
        let mut a = [1.0, 0.0, 0.0, 0.0];
        let mut b = a;
        let rows = Row::sequence(1, 1);
        cpu(&mut a, &rows, 1, 4, &table, RopeLayout::Interleaved, false);
        cpu(&mut b, &rows, 1, 4, &table, RopeLayout::HalfSplit, false);
        assert!((a[1] - 1f32.sin()).abs() < 1e-6 && b[1] == 0.0);
        assert!((b[2] - 1f32.sin()).abs() < 1e-6);
    }
}

//! The ops every architecture is written in, one a file: each holds its kernel's WGSL (the
//! `.wgsl` beside it), the [`Program`](crate::gpu::Program) method that records its
//! dispatch, and its CPU twin, the plain f32 reference the kernel is tested against
//! (tests/kernels.rs) and the CPU backend runs ([`crate::graph`]). Matrices are row-major;
//! a linear layer's weight has `n` rows of `k` values.
//!
//! Both take a step's rows as a table of [`Row`]s: rows of different sequences in one step
//! differ only there, so a batch is as many sequences as rows need, with no padding and no
//! mask.

pub mod argmax;
pub mod attention;
pub mod elementwise;
pub mod layernorm;
pub mod linear;
pub mod rmsnorm;
pub mod rope;

pub use linear::{Tile, CPU_BLOCK_TILES, CPU_FLOAT_TILES, GPU_TILES};
pub use rope::RopeLayout;

/// What the kernels know of one row of a step (one token): where it is in its sequence,
/// where its key and value go, and which key and value rows its query sees.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Row {
    /// Position in the sequence: the rotary angle (decoders).
    pub pos: u32,
    /// Row of the KV cache this row's key and value are written to (decoders).
    pub kv_row: u32,
    /// First key/value row this row's query attends to.
    pub kv_start: u32,
    /// How many key/value rows from `kv_start` it attends to.
    pub kv_len: u32,
}

impl Row {
    /// Token `pos` of a causal sequence whose cache rows begin at `base` (a slot): written
    /// at `base + pos`, attending to `base ..= base + pos`.
    pub fn causal(base: usize, pos: usize) -> Row {
        Row {
            pos: pos as u32,
            kv_row: (base + pos) as u32,
            kv_start: base as u32,
            kv_len: (pos + 1) as u32,
        }
    }

    /// `m` tokens of one causal sequence from position `pos`, its cache beginning at row 0.
    pub fn sequence(m: usize, pos: usize) -> Vec<Row> {
        (pos..pos + m).map(|p| Row::causal(0, p)).collect()
    }

    /// `len` tokens of one text at rows `start..start + len` of the step, each attending to
    /// all of them (an encoder).
    pub fn bidirectional(start: usize, len: usize) -> Vec<Row> {
        (0..len)
            .map(|i| Row {
                pos: i as u32,
                kv_row: (start + i) as u32,
                kv_start: start as u32,
                kv_len: len as u32,
            })
            .collect()
    }
}

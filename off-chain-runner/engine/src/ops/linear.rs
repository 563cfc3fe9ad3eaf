//! The linear layer, `y = x · Wᵀ (+ bias) (+ y)`: the one kernel every matrix multiply of
//! every architecture runs, its dispatch and its CPU twin.
//!
//! The kernel's source for each tile shape is `linear.wgsl` with its accumulators written out
//! (see the note there), after the common bindings (`linear_common.wgsl`) and the weight
//! format's reader (`linear_<format>.wgsl`). Tile shapes differ only in how many outputs a
//! workgroup computes; every output is computed by the same expressions in the same order,
//! which tests/kernels.rs checks bit for bit across step sizes.

use std::fmt::Write as _;

use crate::gpu::{Bias, Grid, Kernel, Program, Weight};
use crate::quant::GpuFormat;

/// Outputs one workgroup computes: `8 · rn` weight rows by `tm` activation rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    pub rn: u32,
    pub tm: u32,
}

/// The tile a step of `m` rows runs on, by the most rows each is chosen for, per kind of
/// adapter and weight format ([`tiles`]). The tile never changes an output's bits, only
/// its speed.
///
/// On a CPU adapter (lavapipe) the cost is in gathering x for each unit, so tiles share
/// each row of x among many weight rows: 64 for one row, 128 for more. Measured on
/// lavapipe, 2 threads, SmolLM2-135M Q4_1 (`examples/throughput.rs`, steps/s of a decode
/// step at batch 1 / 4 / 8 / 16, prefill tokens/s): (8, 1) then (16, 4) gave 3.5 / 2.5 /
/// 1.36 / 0.68, prefill 12.4; (8, 1), (8, 4) then (8, 8) 3.7 / 2.0 / 1.20 / 0.63, prefill
/// 10.9; (4, 8) 0.76 steps/s at batch 8, (2, 16) 0.37, (32, 2) 0.99, (64, 1) 0.51.
pub const CPU_BLOCK_TILES: [(u32, Tile); 2] = [
    (1, Tile { rn: 8, tm: 1 }),
    (u32::MAX, Tile { rn: 16, tm: 4 }),
];

/// Float weights (f32, f16) on a CPU adapter: a weight costs a wide load rather than a
/// block's unpacking, so sharing each over more rows pays more. Measured on lavapipe:
/// MiniLM (f32) embedded 7.5 texts/s over HTTP on these tiles, 5.9 on `CPU_BLOCK_TILES`;
/// earlier, a 1536×576 layer over 128 rows took 200 ms on (8, 8), 320 ms on (4, 16), 580
/// ms on (2, 8).
pub const CPU_FLOAT_TILES: [(u32, Tile); 3] = [
    (1, Tile { rn: 8, tm: 1 }),
    (4, Tile { rn: 8, tm: 4 }),
    (u32::MAX, Tile { rn: 8, tm: 8 }),
];

/// The tiles for weights in `format` on a CPU adapter (`cpu`) or a GPU.
pub fn tiles(cpu: bool, format: GpuFormat) -> &'static [(u32, Tile)] {
    match (cpu, format) {
        (false, _) => &GPU_TILES,
        (true, GpuFormat::F32 | GpuFormat::F16) => &CPU_FLOAT_TILES,
        (true, GpuFormat::Q4 | GpuFormat::Q8) => &CPU_BLOCK_TILES,
    }
}

/// On a GPU, decode steps are a memory-bound pass over the weights: narrow tiles (16
/// weight rows per workgroup) spread it over many workgroups, as the matrix-vector kernel
/// this replaced did (8 rows). Longer steps take the wide tile. Not measured on a GPU yet.
pub const GPU_TILES: [(u32, Tile); 3] = [
    (1, Tile { rn: 2, tm: 1 }),
    (4, Tile { rn: 2, tm: 4 }),
    (u32::MAX, Tile { rn: 8, tm: 8 }),
];

/// Where a linear kernel's outputs go: the one thing its variants differ in. Every output
/// is reduced the same way in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// Into `y` (with bias, accumulated, at KV rows, as flagged): `linear_store.wgsl`.
    Store,
    /// Stacked query, key and value projections into the query rows and both KV caches:
    /// `linear_qkv.wgsl`.
    Qkv,
    /// Interleaved gate and up projections into `silu(gate) · up`: `linear_swiglu.wgsl`.
    SwiGlu,
}

/// Workgroup memory of one tile's lane sums must fit WebGPU's guaranteed 16 KiB.
const MAX_PARTIALS: u32 = 4096;

/// The WGSL of the linear kernel for weights in `format` on tiles of `tile`, storing
/// through `epilogue`.
pub fn source(format: GpuFormat, tile: Tile, epilogue: Epilogue) -> String {
    let Tile { rn, tm } = tile;
    assert!(
        rn >= 1 && tm >= 1 && 64 * rn * tm <= MAX_PARTIALS,
        "{tile:?}: lane sums over workgroup memory"
    );
    assert!(
        epilogue != Epilogue::SwiGlu || rn.is_multiple_of(2),
        "{tile:?}: SwiGLU pairs weight rows within a group"
    );
    let (mut declare, mut weights, mut rows, mut partials) =
        (String::new(), String::new(), String::new(), String::new());
    for r in 0..rn {
        let _ = writeln!(declare, "    let n_{r} = min(first + {r}u, last);");
        let _ = writeln!(weights, "        let w_{r} = w_unit(n_{r}, u);");
        for i in 0..tm {
            let _ = writeln!(declare, "    var acc_{r}_{i} = 0.0;");
            let _ = writeln!(
                partials,
                "    partial[{}u + t] = acc_{r}_{i};",
                (r * tm + i) * 64
            );
        }
    }
    for i in 0..tm {
        let _ = writeln!(rows, "        if ({i}u < rows) {{");
        let _ = writeln!(
            rows,
            "            let x_{i} = x_unit((m0 + {i}u) * p.k, u);"
        );
        for r in 0..rn {
            let _ = writeln!(rows, "            acc_{r}_{i} += dot8(w_{r}, x_{i});");
        }
        let _ = writeln!(rows, "        }}");
    }
    let body = include_str!("linear.wgsl")
        .replace("{RN}", &rn.to_string())
        .replace("{TM}", &tm.to_string())
        .replace("{PARTIALS}", &(64 * rn * tm).to_string())
        .replace("{DECLARE}\n", &declare)
        .replace("{WEIGHTS}\n", &weights)
        .replace("{ROWS}\n", &rows)
        .replace("{PARTIALS_STORE}\n", &partials)
        .replace("{FINISH}\n", finish(epilogue));
    let store = match epilogue {
        Epilogue::Store => include_str!("linear_store.wgsl"),
        Epilogue::Qkv => include_str!("linear_qkv.wgsl"),
        Epilogue::SwiGlu => include_str!("linear_swiglu.wgsl"),
    };
    format!(
        "{}\n{}\n{store}\n{body}",
        include_str!("linear_common.wgsl"),
        format_reader(format)
    )
}

/// The end of the kernel: 8 groups × RN × TM outputs spread over the 64 threads, each
/// stored from its lane sums; SwiGLU's threads take the two rows of a pair.
fn finish(epilogue: Epilogue) -> &'static str {
    match epilogue {
        Epilogue::Store | Epilogue::Qkv => {
            "    for (var o = t; o < 8u * RN * TM; o += 64u) {
        let g = o / (RN * TM);
        let r = (o / TM) % RN;
        let i = o % TM;
        let n = n0 + g * RN + r;
        if (n < p.n && i < rows) {
            store(m0 + i, n, lane_sum(g, r, i));
        }
    }
"
        }
        Epilogue::SwiGlu => {
            "    for (var o = t; o < 4u * RN * TM; o += 64u) {
        let g = o / (RN / 2u * TM);
        let r = 2u * ((o / TM) % (RN / 2u));
        let i = o % TM;
        let n = n0 + g * RN + r;
        if (n < p.n && i < rows) {
            store_pair(m0 + i, n, lane_sum(g, r, i), lane_sum(g, r + 1u, i));
        }
    }
"
        }
    }
}

/// The WGSL that reads weights in `format` (`unit_col`, `w_unit`: see `linear.wgsl`).
fn format_reader(format: GpuFormat) -> &'static str {
    match format {
        GpuFormat::F32 => include_str!("linear_f32.wgsl"),
        GpuFormat::F16 => include_str!("linear_f16.wgsl"),
        GpuFormat::Q4 => include_str!("linear_q4.wgsl"),
        GpuFormat::Q8 => include_str!("linear_q8.wgsl"),
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct LinearParams {
    n: u32,
    k: u32,
    flags: u32,
    q_width: u32,
    kv_width: u32,
    pad: [u32; 3],
}

impl LinearParams {
    fn new(w: &Weight, bias: Bias, accumulate: bool, to_cache: bool) -> LinearParams {
        LinearParams {
            n: w.n as u32,
            k: w.k as u32,
            flags: u32::from(bias.0.is_some())
                | (u32::from(accumulate) << 1)
                | (u32::from(to_cache) << 2),
            ..LinearParams::default()
        }
    }
}

impl Program {
    /// `y = x · Wᵀ (+ bias) (+ y)`; `to_cache` writes row `m` at its
    /// [`Row::kv_row`](super::Row::kv_row). Runs on the adapter's tile for each step size.
    pub fn linear(
        &mut self,
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        accumulate: bool,
        to_cache: bool,
    ) {
        let params = LinearParams::new(w, bias, accumulate, to_cache);
        self.push_linear(Epilogue::Store, x, w, bias, y, params, &[]);
    }

    /// The query, key and value projections at once: `w` stacks their rows (`q_width`,
    /// then `kv_width` twice); query rows go to `q`, keys and values to their caches at each
    /// row's [`Row::kv_row`](super::Row::kv_row).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_qkv(
        &mut self,
        x: &wgpu::Buffer,
        w: &Weight,
        q: &wgpu::Buffer,
        keys: &wgpu::Buffer,
        values: &wgpu::Buffer,
        q_width: usize,
        kv_width: usize,
    ) {
        assert_eq!(w.n, q_width + 2 * kv_width, "QKV rows");
        let params = LinearParams {
            q_width: q_width as u32,
            kv_width: kv_width as u32,
            ..LinearParams::new(w, Bias(None), false, true)
        };
        self.push_linear(Epilogue::Qkv, x, w, Bias(None), q, params, &[keys, values]);
    }

    /// `y = silu(x · Wgᵀ) · (x · Wuᵀ)` in one pass: `w` interleaves the gate's and the up
    /// projection's rows ([`interleave_rows`]).
    pub fn linear_swiglu(&mut self, x: &wgpu::Buffer, w: &Weight, y: &wgpu::Buffer) {
        assert!(w.n.is_multiple_of(2), "SwiGLU pairs rows: {} rows", w.n);
        let params = LinearParams::new(w, Bias(None), false, false);
        self.push_linear(Epilogue::SwiGlu, x, w, Bias(None), y, params, &[]);
    }

    /// Appends the dispatch, bound as the kernel declares: x, w, bias, y, params, step,
    /// then rows and `more` where the epilogue reads them (SwiGLU does not).
    #[allow(clippy::too_many_arguments)]
    fn push_linear(
        &mut self,
        epilogue: Epilogue,
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        params: LinearParams,
        more: &[&wgpu::Buffer],
    ) {
        let params = self.gpu().uniform("linear", &params);
        let placeholder;
        let bias = if let Some(b) = bias.0 {
            b
        } else {
            placeholder = self.gpu().scratch("no-bias", 1).expect("one word fits");
            &placeholder
        };
        let (step, rows) = (self.step().clone(), self.rows().clone());
        let mut buffers = vec![x, &w.buffer, bias, y, &params, &step];
        if epilogue != Epilogue::SwiGlu {
            buffers.push(&rows);
        }
        buffers.extend_from_slice(more);
        let forced;
        let tiles = match self.forced_tile() {
            Some(tile) => {
                forced = [(u32::MAX, tile)];
                &forced[..]
            }
            None => tiles(self.gpu().cpu, w.format),
        };
        let variants = tiles
            .iter()
            .map(|&(up_to, tile)| {
                let grid = Grid::Linear {
                    n: w.n as u32,
                    tile,
                };
                (up_to, Kernel::Linear(w.format, tile, epilogue), grid)
            })
            .collect::<Vec<_>>();
        self.push_variants(&variants, &buffers);
    }
}

/// Rows of `a` and `b` taken in turn (`a₀ b₀ a₁ b₁ …`), each `row_bytes` long: the weight
/// [`Program::linear_swiglu`] reads, from the gate's and the up projection's.
pub fn interleave_rows(a: &[u8], b: &[u8], row_bytes: usize) -> Vec<u8> {
    a.chunks_exact(row_bytes)
        .zip(b.chunks_exact(row_bytes))
        .flat_map(|(a, b)| a.iter().chain(b).copied())
        .collect()
}

/// The CPU twin: `y[m][n] = Σₖ x[m][k] · w[n][k] (+ bias[n])`, each sum left to right.
pub fn cpu(x: &[f32], w: &[f32], bias: Option<&[f32]>, n: usize, k: usize) -> Vec<f32> {
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

/// The CPU twin of [`Program::linear_swiglu`]: `silu(gate) · up` of each pair of outputs
/// of [`cpu`] over interleaved rows.
pub fn cpu_swiglu(x: &[f32], w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let out = cpu(x, w, None, n, k);
    let (mut gate, up): (Vec<f32>, Vec<f32>) =
        out.chunks_exact(2).map(|pair| (pair[0], pair[1])).unzip();
    super::elementwise::silu_mul(&mut gate, &up);
    gate
}

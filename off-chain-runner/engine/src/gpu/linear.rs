//! The linear kernel's source for each tile shape: `linear.wgsl` with its accumulators
//! written out (see the note there), after the common bindings and the weight format's
//! reader. Tile shapes differ only in how many outputs a workgroup computes; every output
//! is computed by the same expressions in the same order, which tests/kernels.rs checks
//! bit for bit across step sizes.

use std::fmt::Write as _;

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

/// Workgroup memory of one tile's lane sums must fit WebGPU's guaranteed 16 KiB.
const MAX_PARTIALS: u32 = 4096;

/// The WGSL of the linear kernel for weights in `format` on tiles of `tile`.
pub fn source(format: GpuFormat, tile: Tile) -> String {
    let Tile { rn, tm } = tile;
    assert!(
        rn >= 1 && tm >= 1 && 64 * rn * tm <= MAX_PARTIALS,
        "{tile:?}: lane sums over workgroup memory"
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
        .replace("{PARTIALS_STORE}\n", &partials);
    format!(
        "{}\n{}\n{body}",
        include_str!("linear_common.wgsl"),
        format.wgsl()
    )
}

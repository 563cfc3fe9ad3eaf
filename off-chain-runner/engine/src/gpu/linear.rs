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
/// adapter. The tile never changes an output's bits, only its speed.
///
/// On a CPU adapter (lavapipe) the cost is in gathering x for each unit, so every tile
/// shares each row of x among 64 weight rows. Measured on lavapipe, 2 threads, SmolLM2-135M
/// Q4_1: a decode step of one token took 0.40 s on (8, 1) tiles against 0.60 s on (2, 1),
/// a step of 4 tokens 0.75 s on (8, 4) against 1.5 s on (2, 4); a 1536×576 layer over 128
/// rows 200 ms on (8, 8), 320 ms on (4, 16), 580 ms on (2, 8).
pub const CPU_TILES: [(u32, Tile); 3] = [
    (1, Tile { rn: 8, tm: 1 }),
    (4, Tile { rn: 8, tm: 4 }),
    (u32::MAX, Tile { rn: 8, tm: 8 }),
];

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

//! Every kernel against the CPU reference, on the adapter the machine has (lavapipe in CI).
//!
//! Bounds. All kernels compute in f32, weights of every format are dequantized to exactly
//! the values the reference uses, so the only differences are the order of additions and
//! fused multiply-adds. A sum of k products carries at most about k·ε·Σ|xᵢwᵢ| of rounding
//! error (ε = 2⁻²³), so linear layers are held to 2·k·ε·Σ|xᵢwᵢ| per output; norms and
//! attention, whose sums are short, to 1e-5 absolute on values of order 1; GELU to 1e-6
//! (the erf approximation's 1.5e-7 plus rounding). f16 and quantized weights have no
//! looser bound than f32 here because no f16 arithmetic happens: halves are widened first.
//!
//! Beyond the bounds, the linear kernel is held to its own promise, exactly: a row's outputs
//! are the same bits in a step of any rows (the model-level consequences are checked in
//! `tests/batch_invariance.rs`).

mod common;

use common::{bits, gpu, max_diff, random, run, run_rows};
use market_engine::gpu::{Bias, Program, Readback, Weight};
use market_engine::ops::{
    attention, elementwise, layernorm, linear, rmsnorm, rope, RopeLayout, Row, Tile,
    CPU_BLOCK_TILES, CPU_FLOAT_TILES, GPU_TILES,
};
use market_engine::quant::{dequantize, quantize, repack, Format};

const EPS: f32 = f32::EPSILON;
/// Rows the one-op programs are made for (every test's steps are shorter).
const ROWS: usize = 64;

fn check_linear(format: Format, m: usize, n: usize, k: usize, bias: bool, accumulate: bool) {
    let gpu = gpu();
    let x = random(m * k, 1);
    let bytes = quantize(format, &random(n * k, 2));
    let w = dequantize(format, &bytes);
    let b = random(n, 3);
    let y0 = random(m * n, 4);
    let weight = Weight::new(&gpu, "w", format.gpu(), &repack(format, &bytes), n, k).unwrap();
    let xb = gpu.upload("x", &x).unwrap();
    let bb = gpu.upload("b", &b).unwrap();
    let yb = gpu.upload("y", &y0).unwrap();
    let mut program = Program::new(&gpu, m);
    program.linear(
        &xb,
        &weight,
        Bias(bias.then_some(&bb)),
        &yb,
        accumulate,
        false,
    );
    let got = run(&gpu, &program, m, 0, &yb, m * n);

    let mut want = linear::cpu(&x, &w, bias.then_some(&b[..]), n, k);
    if accumulate {
        elementwise::add(&mut want, &y0);
    }
    for r in 0..m {
        for j in 0..n {
            let mag: f32 = (0..k)
                .map(|i| (x[r * k + i] * w[j * k + i]).abs())
                .sum::<f32>()
                + 1.0;
            let bound = 2.0 * k as f32 * EPS * mag;
            let (g, e) = (got[r * n + j], want[r * n + j]);
            assert!(
                (g - e).abs() <= bound,
                "{format:?} m={m} row {r} col {j}: gpu {g} cpu {e} (bound {bound})"
            );
        }
    }
}

/// Every weight format a checkpoint may hold.
const FORMATS: [Format; 6] = [
    Format::F32,
    Format::F16,
    Format::BF16,
    Format::Q4_0,
    Format::Q4_1,
    Format::Q8_0,
];

#[test]
fn linear_one_row_every_format() {
    for format in FORMATS {
        check_linear(format, 1, 200, 96, false, false);
        check_linear(format, 1, 72, 576, true, true);
    }
}

/// Row `r` of `x · Wᵀ` computed in a step of the given rows of `x` (`take`), on one
/// program: the output rows in `take`'s order.
fn linear_rows(format: Format, x: &[f32], take: &[usize], n: usize, k: usize) -> Vec<Vec<f32>> {
    let gpu = gpu();
    let bytes = quantize(format, &random(n * k, 21));
    let weight = Weight::new(&gpu, "w", format.gpu(), &repack(format, &bytes), n, k).unwrap();
    let picked: Vec<f32> = take
        .iter()
        .flat_map(|&r| x[r * k..(r + 1) * k].iter().copied())
        .collect();
    let xb = gpu.upload("x", &picked).unwrap();
    let yb = gpu.scratch("y", take.len() * n).unwrap();
    let mut program = Program::new(&gpu, take.len());
    program.linear(&xb, &weight, Bias(None), &yb, false, false);
    let y = run(&gpu, &program, take.len(), 0, &yb, take.len() * n);
    y.chunks_exact(n).map(<[f32]>::to_vec).collect()
}

/// Every tile shape, both adapters' tables and odd ones, computes every output by the same
/// expressions in the same order, in every epilogue: the same bits, over steps that fill no
/// tile exactly (SwiGLU pairs rows, so it runs on the tiles of even width only).
#[test]
fn linear_tiles_all_give_the_same_bits() {
    let gpu = gpu();
    let (m, n, k) = (13, 72, 160);
    let (q_width, kv_width) = (40, 16);
    let x = random(m * k, 22);
    let mut tiles: Vec<Tile> = CPU_BLOCK_TILES
        .iter()
        .chain(&CPU_FLOAT_TILES)
        .chain(&GPU_TILES)
        .map(|t| t.1)
        .collect();
    tiles.extend([
        Tile { rn: 1, tm: 1 },
        Tile { rn: 3, tm: 5 },
        Tile { rn: 4, tm: 16 },
    ]);
    let rows: Vec<Row> = (0..m).map(|i| Row::causal(3, i)).collect();
    for format in FORMATS {
        let bytes = quantize(format, &random(n * k, 23));
        let weight = Weight::new(&gpu, "w", format.gpu(), &repack(format, &bytes), n, k).unwrap();
        let xb = gpu.upload("x", &x).unwrap();
        // Per tile: the plain outputs, QKV's queries, keys and values, SwiGLU's outputs.
        let outputs: Vec<[Vec<u32>; 5]> = tiles
            .iter()
            .map(|&tile| {
                let program = |record: &dyn Fn(&mut Program)| {
                    let mut program = Program::new(&gpu, m);
                    program.force_tile(tile);
                    record(&mut program);
                    program
                };
                let yb = gpu.scratch("y", m * n).unwrap();
                let plain = program(&|p| p.linear(&xb, &weight, Bias(None), &yb, false, false));
                let plain = bits(&run_rows(&gpu, &plain, &rows, &yb, m * n));
                let cache = (3 + m) * kv_width;
                let (qb, kb, vb) = (
                    gpu.scratch("q", m * q_width).unwrap(),
                    gpu.scratch("keys", cache).unwrap(),
                    gpu.scratch("values", cache).unwrap(),
                );
                let qkv =
                    program(&|p| p.linear_qkv(&xb, &weight, &qb, &kb, &vb, q_width, kv_width));
                let q = bits(&run_rows(&gpu, &qkv, &rows, &qb, m * q_width));
                let read = |b: &wgpu::Buffer| {
                    bits(
                        &gpu.finish_and_read(gpu.encoder(), b, 0, cache, &mut Readback::default())
                            .unwrap(),
                    )
                };
                let (keys, values) = (read(&kb), read(&vb));
                let swiglu = if tile.rn % 2 == 0 {
                    let hb = gpu.scratch("h", m * n / 2).unwrap();
                    let p = program(&|p| p.linear_swiglu(&xb, &weight, &hb));
                    bits(&run_rows(&gpu, &p, &rows, &hb, m * n / 2))
                } else {
                    Vec::new()
                };
                [plain, q, keys, values, swiglu]
            })
            .collect();
        for (tile, out) in tiles.iter().zip(&outputs) {
            for (i, epilogue) in ["plain", "qkv q", "qkv keys", "qkv values", "swiglu"]
                .iter()
                .enumerate()
            {
                if out[i].is_empty() {
                    continue;
                }
                assert!(
                    out[i] == outputs[0][i],
                    "{format:?} {epilogue}: {tile:?} against {:?}",
                    tiles[0]
                );
            }
        }
    }
}

/// The linear kernel's promise (linear.wgsl): an output's bits depend on its row of x and
/// the weights alone, not on how many rows the step has, which others, nor where in a tile
/// the row falls. Steps of 1 (decode), 3, 8 (a full tile), 9 and 37 rows, shuffled.
#[test]
fn linear_rows_are_the_same_bits_in_any_batch() {
    let (n, k) = (72, 576);
    let x = random(40 * k, 20);
    for format in FORMATS {
        let alone: Vec<Vec<f32>> = (0..40)
            .map(|r| linear_rows(format, &x, &[r], n, k).remove(0))
            .collect();
        let batches: [Vec<usize>; 4] = [
            vec![5, 0, 39],
            (8..16).rev().collect(),
            vec![3, 1, 4, 15, 9, 26, 5, 35, 8],
            (0..37).map(|i| (i * 11) % 40).collect(),
        ];
        for take in batches {
            for (out, &r) in linear_rows(format, &x, &take, n, k).iter().zip(&take) {
                assert_eq!(
                    bits(out),
                    bits(&alone[r]),
                    "{format:?}: row {r} in a step of {} rows differs from it alone (max {})",
                    take.len(),
                    max_diff(out, &alone[r])
                );
            }
        }
    }
}

/// The fused epilogues reduce every output as the plain one does: QKV's query, key and
/// value rows are the plain kernel's bits for each projection (keys and values at their
/// KV rows); SwiGLU's outputs are silu(gate) · up of the plain kernel's gate and up, as
/// the element-wise kernel computes it. Over steps of 1 and 13 rows, every format.
#[test]
fn fused_epilogues_give_the_plain_kernels_bits() {
    let gpu = gpu();
    let (k, q_width, kv_width, ffn) = (96, 32, 16, 40);
    for format in FORMATS {
        for m in [1, 13] {
            let x = random(m * k, 30);
            let xb = gpu.upload("x", &x).unwrap();
            let upload = |bytes: &[u8], n: usize| {
                Weight::new(&gpu, "w", format.gpu(), &repack(format, bytes), n, k).unwrap()
            };
            let part = |n: usize, seed: u64| quantize(format, &random(n * k, seed));
            let plain = |bytes: &[u8], n: usize, to_cache: bool, rows: &[Row], floats: usize| {
                let yb = gpu.scratch("y", floats).unwrap();
                let mut program = Program::new(&gpu, m);
                program.linear(&xb, &upload(bytes, n), Bias(None), &yb, false, to_cache);
                run_rows(&gpu, &program, rows, &yb, floats)
            };
            // Rows of a sequence at position 7 of a slot that begins at cache row 20.
            let rows: Vec<Row> = (0..m).map(|i| Row::causal(20, 7 + i)).collect();
            let cache = (20 + 7 + m) * kv_width;

            let (wq, wk, wv) = (part(q_width, 31), part(kv_width, 32), part(kv_width, 33));
            let stacked = [wq.clone(), wk.clone(), wv.clone()].concat();
            let (qb, kb, vb) = (
                gpu.scratch("q", m * q_width).unwrap(),
                gpu.scratch("keys", cache).unwrap(),
                gpu.scratch("values", cache).unwrap(),
            );
            let mut program = Program::new(&gpu, m);
            let fused = upload(&stacked, q_width + 2 * kv_width);
            program.linear_qkv(&xb, &fused, &qb, &kb, &vb, q_width, kv_width);
            let got_q = run_rows(&gpu, &program, &rows, &qb, m * q_width);
            let read = |b: &wgpu::Buffer| {
                gpu.finish_and_read(gpu.encoder(), b, 0, cache, &mut Readback::default())
                    .unwrap()
            };
            let (got_k, got_v) = (read(&kb), read(&vb));
            assert_eq!(
                bits(&got_q),
                bits(&plain(&wq, q_width, false, &rows, m * q_width))
            );
            let written = 27 * kv_width..cache;
            assert_eq!(
                bits(&got_k[written.clone()]),
                bits(&plain(&wk, kv_width, true, &rows, cache)[written.clone()]),
                "{format:?} m={m}: keys"
            );
            assert_eq!(
                bits(&got_v[written.clone()]),
                bits(&plain(&wv, kv_width, true, &rows, cache)[written]),
                "{format:?} m={m}: values"
            );

            let (wg, wu) = (part(ffn, 34), part(ffn, 35));
            let row_bytes = wg.len() / ffn;
            let interleaved = linear::interleave_rows(&wg, &wu, row_bytes);
            let yb = gpu.scratch("y", m * ffn).unwrap();
            let mut program = Program::new(&gpu, m);
            program.linear_swiglu(&xb, &upload(&interleaved, 2 * ffn), &yb);
            let got = run(&gpu, &program, m, 0, &yb, m * ffn);
            let seq = Row::sequence(m, 0);
            let (gate, up) = (
                plain(&wg, ffn, false, &seq, m * ffn),
                plain(&wu, ffn, false, &seq, m * ffn),
            );
            let (gb, ub) = (
                gpu.upload("gate", &gate).unwrap(),
                gpu.upload("up", &up).unwrap(),
            );
            let mut program = Program::new(&gpu, m);
            program.silu_mul(&gb, &ub, ffn);
            let want = run(&gpu, &program, m, 0, &gb, m * ffn);
            assert_eq!(bits(&got), bits(&want), "{format:?} m={m}: SwiGLU");
            let twin = linear::cpu_swiglu(&x, &dequantize(format, &interleaved), 2 * ffn, k);
            // Sums of 96 products of values near 1, then silu(gate) · up: relative error.
            for (g, w) in got.iter().zip(&twin) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{format:?}: {g} against the CPU twin's {w}"
                );
            }
        }
    }
}

#[test]
fn linear_many_rows_every_format() {
    for format in [
        Format::F32,
        Format::F16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
    ] {
        // Rows and columns that do not fill the 16×8 tiles, too.
        check_linear(format, 37, 100, 64, true, false);
        check_linear(format, 70, 64, 160, false, true);
        check_linear(format, 2, 100, 64, true, false);
        check_linear(format, 16, 72, 96, false, true);
    }
}

#[test]
fn linear_writes_at_the_step_position_for_the_kv_cache() {
    let gpu = gpu();
    let (n, k, pos) = (16, 32, 5);
    let x = random(2 * k, 9);
    let w = random(n * k, 10);
    let weight = Weight::new(
        &gpu,
        "w",
        Format::F32.gpu(),
        &repack(Format::F32, &quantize(Format::F32, &w)),
        n,
        k,
    )
    .unwrap();
    let xb = gpu.upload("x", &x).unwrap();
    let cache = gpu.scratch("cache", 8 * n).unwrap();
    let mut program = Program::new(&gpu, ROWS);
    program.linear(&xb, &weight, Bias(None), &cache, false, true);
    let got = run(&gpu, &program, 2, pos, &cache, 8 * n);
    assert!(
        got[..pos * n].iter().all(|&v| v == 0.0),
        "rows before the position untouched"
    );
    let want = linear::cpu(&x, &w, None, n, k);
    assert!(max_diff(&got[pos * n..(pos + 2) * n], &want) < 1e-5);
}

#[test]
fn rmsnorm_and_layernorm() {
    let gpu = gpu();
    let (m, n) = (5, 96);
    let x = random(m * n, 11);
    let g = random(n, 12);
    let b = random(n, 13);
    let (xb, gb, bb, yb) = (
        gpu.upload("x", &x).unwrap(),
        gpu.upload("g", &g).unwrap(),
        gpu.upload("b", &b).unwrap(),
        gpu.scratch("y", m * n).unwrap(),
    );
    let mut program = Program::new(&gpu, ROWS);
    program.rmsnorm(&xb, &gb, &yb, n, 1e-5);
    let got = run(&gpu, &program, m, 0, &yb, m * n);
    let want = rmsnorm::cpu(&x, &g, 1e-5);
    assert!(max_diff(&got, &want) < 1e-5);

    // Gathered: rows 4 and 1 of x (the last tokens of two sequences) into rows 0 and 1.
    let index = gpu.upload("index", &[4u32, 1]).unwrap();
    let mut program = Program::new(&gpu, ROWS);
    program.rmsnorm_gather(&xb, &index, &gb, &yb, n, 1e-5);
    let gathered = run(&gpu, &program, 2, 0, &yb, 2 * n);
    assert_eq!(bits(&gathered[..n]), bits(&got[4 * n..5 * n]));
    assert_eq!(bits(&gathered[n..]), bits(&got[n..2 * n]));

    let mut program = Program::new(&gpu, ROWS);
    program.layernorm(&xb, &gb, &bb, n, 1e-12);
    let got = run(&gpu, &program, m, 0, &xb, m * n);
    let mut want = x.clone();
    layernorm::cpu(&mut want, &g, &b, 1e-12);
    assert!(max_diff(&got, &want) < 1e-5);
}

#[test]
fn rope_both_layouts() {
    let gpu = gpu();
    let (m, heads, d, pos) = (3, 4, 16, 7);
    let table = rope::table(10_000.0, d, 32);
    let tb = gpu.upload("table", &table).unwrap();
    for layout in [RopeLayout::Interleaved, RopeLayout::HalfSplit] {
        let x = random(m * heads * d, 14);
        let xb = gpu.upload("x", &x).unwrap();
        let mut program = Program::new(&gpu, ROWS);
        program.rope(&xb, &tb, heads, d, layout, false);
        let got = run(&gpu, &program, m, pos, &xb, x.len());
        let mut want = x.clone();
        rope::cpu(
            &mut want,
            &Row::sequence(m, pos),
            heads,
            d,
            &table,
            layout,
            false,
        );
        assert!(max_diff(&got, &want) < 1e-5, "{layout:?}");
        assert!(max_diff(&got, &x) > 0.01, "{layout:?} rotated something");
    }
}

#[test]
fn attention_causal_with_grouped_heads_and_bidirectional() {
    let gpu = gpu();
    let (heads, kv_heads, d, ctx) = (4, 2, 16, 40);
    for (causal, m, pos) in [(true, 1, 20), (true, 6, 9), (false, 12, 0)] {
        let keys = if causal { pos + m } else { m };
        let q = random(m * heads * d, 15);
        let k = random(keys * kv_heads * d, 16);
        let v = random(keys * kv_heads * d, 17);
        let (qb, kb, vb) = (
            gpu.upload("q", &q).unwrap(),
            gpu.upload("k", &k).unwrap(),
            gpu.upload("v", &v).unwrap(),
        );
        let ob = gpu.scratch("o", m * heads * d).unwrap();
        let scores = gpu.scratch("scores", heads * m * ctx).unwrap();
        let mut program = Program::new(&gpu, ROWS);
        program.attention(&qb, &kb, &vb, &ob, &scores, heads, kv_heads, d, ctx);
        let rows = if causal {
            Row::sequence(m, pos)
        } else {
            Row::bidirectional(0, m)
        };
        let got = run_rows(&gpu, &program, &rows, &ob, q.len());
        let want = attention::cpu(&q, &k, &v, &rows, heads, kv_heads, d);
        assert!(
            max_diff(&got, &want) < 1e-5,
            "causal={causal} m={m}: {}",
            max_diff(&got, &want)
        );
    }
}

#[test]
fn swiglu_and_gelu() {
    let gpu = gpu();
    let (m, n) = (3, 300);
    let a: Vec<f32> = random(m * n, 18).iter().map(|v| v * 6.0).collect();
    let b = random(m * n, 19);
    let (ab, bb) = (gpu.upload("a", &a).unwrap(), gpu.upload("b", &b).unwrap());
    let mut program = Program::new(&gpu, ROWS);
    program.silu_mul(&ab, &bb, n);
    let got = run(&gpu, &program, m, 0, &ab, m * n);
    let mut want = a.clone();
    elementwise::silu_mul(&mut want, &b);
    assert!(max_diff(&got, &want) < 1e-5);

    let ab = gpu.upload("a", &a).unwrap();
    let mut program = Program::new(&gpu, ROWS);
    program.gelu(&ab, n);
    let got = run(&gpu, &program, m, 0, &ab, m * n);
    let mut want = a.clone();
    elementwise::gelu(&mut want);
    // 1e-6 relative: erf's approximation error scaled by |a| up to 6.
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "gelu {g} vs {w}");
    }
}

/// The GPU's greedy pick is what a left-to-right scan on the CPU picks (`ops::argmax::cpu`):
/// the largest value, the lowest index on ties, whether the tied values fall to one thread
/// or to different ones, in rows longer and shorter than a workgroup.
#[test]
fn argmax_picks_the_first_largest_like_the_cpu() {
    let gpu = gpu();
    for n in [200, 5, 64] {
        let mut rows: Vec<Vec<f32>> = (0..4).map(|r| random(n, 40 + r)).collect();
        // Ties: two largest values in different threads (indices 3 and 4), and in the
        // same thread (indices 1 and 65 when the row is long enough).
        let mut tied = vec![0.25; n];
        tied[4] = 2.0;
        tied[3] = 2.0;
        tied[n.min(66) - 1] = 2.0;
        rows.push(tied);
        rows.push(vec![f32::NEG_INFINITY; n]);
        let values: Vec<f32> = rows.concat();
        let m = rows.len();
        let input = gpu.upload("values", &values).unwrap();
        let tokens = gpu.scratch("tokens", m).unwrap();
        let mut program = Program::new(&gpu, m);
        program.argmax(&input, &tokens, n);
        let picked: Vec<u32> = run(&gpu, &program, m, 0, &tokens, m)
            .iter()
            .map(|t| t.to_bits())
            .collect();
        let expected: Vec<u32> = rows
            .iter()
            .map(|r| market_engine::ops::argmax::cpu(r))
            .collect();
        assert_eq!(picked, expected, "rows of {n}");
        assert_eq!(expected[4], 3, "the lowest of the tied indices");
    }
}

//! Shared by the engine's tests: the GPU (found, or a failure that says how to get one),
//! seeded random data, the real models' paths, and a one-op program runner.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use market_engine::gpu::{Gpu, Program, Readback};
use market_engine::ops::Row;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The adapter every test uses; no adapter fails the test with the way to get one.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A real model fetched by scripts/fetch-models.sh (the test command runs it first).
pub fn model(rel: &str) -> PathBuf {
    let dir = std::env::var_os("MODELS_DIR").map_or_else(|| root().join("models"), PathBuf::from);
    let path = dir.join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

/// Reference outputs committed with the tests.
pub fn reference(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name);
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Runs a recorded program for `m` rows of one causal sequence from position `pos` and
/// reads `floats` of `out` back.
pub fn run(
    gpu: &Gpu,
    program: &Program,
    m: usize,
    pos: usize,
    out: &wgpu::Buffer,
    floats: usize,
) -> Vec<f32> {
    run_rows(gpu, program, &Row::sequence(m, pos), out, floats)
}

/// Runs a recorded program for a step of `rows` and reads `floats` of `out` back.
pub fn run_rows(
    gpu: &Gpu,
    program: &Program,
    rows: &[Row],
    out: &wgpu::Buffer,
    floats: usize,
) -> Vec<f32> {
    let mut encoder = gpu.encoder();
    program.encode(&mut encoder, rows);
    gpu.finish_and_read(encoder, out, 0, floats, &mut Readback::default())
        .unwrap()
}

/// The bits of each value: what "the same result" means for determinism.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Largest |a - b|.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

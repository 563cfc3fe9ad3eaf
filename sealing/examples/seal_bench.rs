//! Sealing and unsealing throughput against plain loading, as a markdown table.
//!
//! `cargo run -p market-sealing --example seal_bench [MIB]` (or `SEAL_BENCH_MIB=256`): writes
//! one random `model.safetensors` of that many MiB (default 128) to the temp dir, then times,
//! best of three, each way a runner can get it into memory. The file is read once first, so
//! every row reads from the page cache and the rows compare CPU work, not the disk.
//!
//! * plain read: `std::fs::read`, what a runner without sealing needs at least;
//! * plain read + sha256: that plus the weights hash a runner checks before serving;
//! * seal: what the owner's command does once per version (file to sealed file);
//! * unseal: decrypt into memory, hashing as it goes: what replaces the second row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use market_sealing::{seal, unseal, ContentKey};
use sha2::{Digest, Sha256};

const RUNS: usize = 3;

fn main() {
    let mib: u32 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SEAL_BENCH_MIB").ok())
        .map_or(128, |s| s.parse().expect("a size in MiB"));
    let bytes = u64::from(mib) << 20;
    let dir = std::env::temp_dir().join(format!("market-sealing-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.safetensors");
    let sealed = dir.join("model.sealed");
    write_random(&model, bytes);
    let key = ContentKey::generate();
    std::fs::read(&model).unwrap(); // into the page cache

    let plain = best(|| drop(std::fs::read(&model).unwrap()));
    let hashed = best(|| {
        Sha256::digest(std::fs::read(&model).unwrap());
    });
    let mut weights = [0u8; 32];
    let sealing = best(|| {
        let mut out = BufWriter::new(File::create(&sealed).unwrap());
        weights = seal(&model, &key, &mut out).unwrap().weights_sha256;
        out.flush().unwrap();
    });
    let unsealing = best(|| {
        let unsealed = unseal(File::open(&sealed).unwrap(), &key).unwrap();
        drop(unsealed.check_weights(&weights).unwrap());
    });
    std::fs::remove_dir_all(&dir).unwrap();

    println!("{mib} MiB of random weights, best of {RUNS}, from the page cache:\n");
    println!("| step | time | MB/s | time vs plain read |");
    println!("|------|-----:|-----:|-------------------:|");
    for (step, time) in [
        ("plain read", plain),
        ("plain read + sha256", hashed),
        ("seal (read, encrypt, hash, write)", sealing),
        ("unseal (read, decrypt, hash)", unsealing),
    ] {
        let mb_per_s = f64::from(mib) * 1_048_576.0 / 1e6 / time.as_secs_f64();
        let ratio = time.as_secs_f64() / plain.as_secs_f64();
        println!(
            "| {step} | {:.0} ms | {mb_per_s:.0} | {ratio:.1}× |",
            time.as_secs_f64() * 1e3
        );
    }
}

fn best(mut run: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// Random bytes, so no layer can compress or skip them (xorshift64, 1 MiB at a time).
fn write_random(path: &Path, bytes: u64) {
    let mut out = BufWriter::new(File::create(path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes >> 20 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
}

//! The adversarial harness (`sandbox_tests::harness`) in the test command: random honest
//! and hostile steps per seed against the settlement engine and against the compiled wasm
//! on the local chain, every balance compared with the reference model after each step.
//! Soaks: `HARNESS_STEPS=1000000` (engine), `HARNESS_WASM_STEPS=20000` (wasm); a failing
//! seed replays with `HARNESS_SEED=<seed>`.

use sandbox_tests::harness::{self, user_keys, wasm::WasmTarget, EngineTarget};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |s| s.parse().expect("a number"))
}

fn seeds(default: &[u64]) -> Vec<u64> {
    std::env::var("HARNESS_SEED").map_or_else(
        |_| default.to_vec(),
        |s| vec![s.parse().expect("HARNESS_SEED is a number")],
    )
}

fn check(target: &str, seed: u64, tally: harness::Tally) {
    println!("{target}, seed {seed}: {tally:?}");
    assert!(
        tally.settled > 0 && tally.rejected > 0 && tally.attacks > 0,
        "the run exercised too little: {tally:?}"
    );
}

#[test]
fn the_engine_holds_against_random_honest_and_hostile_actions() {
    let steps = env("HARNESS_STEPS", 5_000);
    for seed in seeds(&[1, 2, 3, 0x5eed_cafe]) {
        let tally = harness::run(seed, steps, EngineTarget::new(&user_keys()))
            .unwrap_or_else(|e| panic!("engine: {e}"));
        check("engine", seed, tally);
    }
}

#[test]
fn the_compiled_hub_holds_against_random_honest_and_hostile_actions() {
    let steps = env("HARNESS_WASM_STEPS", 1_500);
    for seed in seeds(&[7, 8]) {
        let tally =
            harness::run(seed, steps, WasmTarget::new()).unwrap_or_else(|e| panic!("wasm: {e}"));
        check("wasm", seed, tally);
        assert!(
            tally.withdrawals > 0,
            "no escrow withdrawal happened: {tally:?}"
        );
    }
}

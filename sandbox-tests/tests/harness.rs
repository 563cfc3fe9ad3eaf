//! The adversarial harness (`sandbox_tests::harness`) in the test command: a few thousand
//! random honest and hostile steps per seed against the settlement engine, every balance
//! compared with the reference model after each. A soak: `HARNESS_STEPS=1000000`;
//! a failing seed replays with `HARNESS_SEED=<seed>`.

use sandbox_tests::harness;

#[test]
fn the_engine_holds_against_random_honest_and_hostile_actions() {
    let steps: u64 = std::env::var("HARNESS_STEPS")
        .map_or(5_000, |s| s.parse().expect("HARNESS_STEPS is a number"));
    let seeds: Vec<u64> = match std::env::var("HARNESS_SEED") {
        Ok(s) => vec![s.parse().expect("HARNESS_SEED is a number")],
        Err(_) => vec![1, 2, 3, 0x5eed_cafe],
    };
    for seed in seeds {
        let tally = harness::run(seed, steps).unwrap_or_else(|e| panic!("{e}"));
        println!("seed {seed}: {tally:?}");
        assert!(
            tally.settled > 0 && tally.rejected > 0 && tally.attacks > 0,
            "the run exercised too little: {tally:?}"
        );
    }
}

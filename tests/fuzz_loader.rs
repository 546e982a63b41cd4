//! The quick fuzz run of the experiment loader: a few thousand structured
//! mutations of the example files and random YAML, each loaded with a 2 s
//! limit; any panic, hang or broken invariant fails with the seed, the case
//! and the saved input. The long run: see docs/fuzzing.md.

mod fuzz_support;

use std::path::Path;
use std::time::Duration;

/// Fixed by default so a failure in CI is reproducible; set FAULTLINE_FUZZ_SEED
/// to explore other inputs.
const DEFAULT_SEED: u64 = 20_260_101;

#[test]
fn loader_survives_thousands_of_mutated_inputs() {
    let seed = std::env::var("FAULTLINE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fail_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let summary = fuzz_support::fuzz(
        root,
        &fail_dir,
        seed,
        4000,
        Duration::from_secs(25),
        Duration::from_secs(2),
        |_| {},
    )
    .unwrap_or_else(|m| panic!("{m}"));
    println!(
        "{} inputs in {:.1}s, {} loaded (seed {seed})",
        summary.inputs,
        summary.elapsed.as_secs_f64(),
        summary.loaded
    );
    // The run must really have exercised the loader: enough inputs, and some of
    // them valid (mutations that keep a file valid reach validation and the
    // round trip), most of them not.
    assert!(summary.inputs >= 1000, "only {} inputs ran in the time budget", summary.inputs);
    assert!(summary.loaded > 0, "no input loaded: the generator never reaches the round-trip check");
    assert!(summary.loaded < summary.inputs, "every input loaded: the mutations do nothing");
}

#[test]
fn inputs_are_reproducible_from_seed_and_case() {
    let corpus = fuzz_support::load_corpus(Path::new(env!("CARGO_MANIFEST_DIR")));
    for case in 0..50 {
        assert_eq!(
            fuzz_support::generate(&corpus, 99, case),
            fuzz_support::generate(&corpus, 99, case),
            "case {case} differs between two generations"
        );
    }
    assert_ne!(
        fuzz_support::generate(&corpus, 99, 1),
        fuzz_support::generate(&corpus, 100, 1)
    );
}

#[test]
fn a_hang_and_a_panic_are_reported() {
    // The runner itself must catch what it is there to catch.
    let runner = fuzz_support::Runner::new(Duration::from_millis(200));
    assert!(matches!(runner.run(b"title: x\n".to_vec()), Ok(false)));
    let bad = std::panic::catch_unwind(|| panic!("boom"));
    assert!(bad.is_err());
}

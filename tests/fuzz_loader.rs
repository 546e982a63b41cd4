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
    assert!(
        summary.inputs >= 1000,
        "only {} inputs ran in the time budget",
        summary.inputs
    );
    assert!(
        summary.loaded > 0,
        "no input loaded: the generator never reaches the round-trip check"
    );
    assert!(
        summary.loaded < summary.inputs,
        "every input loaded: the mutations do nothing"
    );
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
fn the_runner_catches_panics_hangs_and_broken_invariants() {
    fn check(input: &[u8]) -> Result<bool, String> {
        match input {
            b"panic" => panic!("boom"),
            b"hang" => {
                std::thread::sleep(Duration::from_secs(3));
                Ok(true)
            }
            b"broken" => Err("an invariant".into()),
            _ => Ok(false),
        }
    }
    let runner = fuzz_support::Runner::with_check(Duration::from_millis(500), check);
    assert!(matches!(runner.run(b"fine".to_vec()), Ok(false)));
    match runner.run(b"panic".to_vec()) {
        Err(fuzz_support::Finding::Panic(m)) => assert_eq!(m, "boom"),
        other => panic!("a panic was not reported: {other:?}"),
    }
    // The worker survives a caught panic.
    assert!(matches!(runner.run(b"fine".to_vec()), Ok(false)));
    assert!(matches!(
        runner.run(b"broken".to_vec()),
        Err(fuzz_support::Finding::Invariant(_))
    ));
    assert!(matches!(
        runner.run(b"hang".to_vec()),
        Err(fuzz_support::Finding::Hang(_))
    ));
    // The real loader on a real input.
    let loader = fuzz_support::Runner::new(Duration::from_secs(2));
    let quickstart =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.yaml"))
            .unwrap();
    assert!(matches!(loader.run(quickstart), Ok(true)));
    assert!(matches!(loader.run(b"title: x\n".to_vec()), Ok(false)));
}

#[test]
fn a_failing_input_is_saved_with_how_to_reproduce_it() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-save-{}", std::process::id()));
    let path = fuzz_support::save_failure(
        &dir,
        5,
        77,
        b"title: [",
        &fuzz_support::Finding::Hang(Duration::from_secs(3)),
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"title: [");
    let note = std::fs::read_to_string(dir.join("seed5-case77.txt")).unwrap();
    assert!(
        note.contains("--seed 5 --case 77") && note.contains("hang"),
        "{note}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

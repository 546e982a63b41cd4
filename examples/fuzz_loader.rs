//! The long fuzz run of the experiment loader (see docs/fuzzing.md).
//!
//! ```text
//! cargo run --release --example fuzz_loader -- --seconds 600
//! cargo run --release --example fuzz_loader -- --seed 7 --case 1234   # one input again
//! cargo run --release --example fuzz_loader -- --replay FILE          # a saved input
//! ```
//! Exits 0 when nothing was found, 1 on a finding (its input is saved under
//! target/fuzz-failures/ with how to reproduce it), 64 on bad arguments.

#[path = "../tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn usage() -> ! {
    eprintln!(
        "usage: fuzz_loader [--seconds N] [--inputs N] [--seed N] [--limit-ms N]\n       fuzz_loader --seed N --case N     (print and run one input)\n       fuzz_loader --replay FILE"
    );
    std::process::exit(64)
}

fn main() {
    let mut seconds = 60u64;
    let mut inputs = u64::MAX;
    let mut seed: Option<u64> = None;
    let mut case: Option<u64> = None;
    let mut replay: Option<PathBuf> = None;
    let mut limit_ms = 2000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--seconds" => seconds = num(),
            "--inputs" => inputs = num(),
            "--seed" => seed = Some(num()),
            "--case" => case = Some(num()),
            "--limit-ms" => limit_ms = num(),
            "--replay" => replay = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fail_dir = root.join("target/fuzz-failures");
    let limit = Duration::from_millis(limit_ms);

    let single = match (&replay, seed, case) {
        (Some(p), _, _) => Some(std::fs::read(p).unwrap_or_else(|e| {
            eprintln!("cannot read {}: {e}", p.display());
            std::process::exit(64)
        })),
        (None, Some(s), Some(c)) => Some(fuzz_support::generate(
            &fuzz_support::load_corpus(root),
            s,
            c,
        )),
        (None, None, Some(_)) => usage(),
        _ => None,
    };
    if let Some(input) = single {
        println!("--- input ({} bytes) ---", input.len());
        println!("{}", String::from_utf8_lossy(&input));
        println!("--- result ---");
        let runner = fuzz_support::Runner::new(limit);
        let shown = Some(input.clone());
        match runner.run(input) {
            Ok(true) => println!("loaded, and the JSON round trip holds"),
            Ok(false) => {
                println!("rejected cleanly:");
                // The diagnostics a user would see.
                if let Some(input) = &shown {
                    if let Err(diags) = faultline::experiment::load_bytes("input.yaml", input) {
                        for d in diags {
                            println!("  {d}");
                        }
                    }
                }
            }
            Err(f) => {
                println!("FINDING: {f}");
                std::process::exit(1)
            }
        }
        return;
    }

    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!(
        "fuzzing the experiment loader: seed {seed}, {seconds}s, per-input limit {limit_ms}ms"
    );
    let result = fuzz_support::fuzz(
        root,
        &fail_dir,
        seed,
        inputs,
        Duration::from_secs(seconds),
        limit,
        |s| {
            println!(
                "  {:>6.0}s  {:>9} inputs  {:>8.0}/s  {:>6} loaded",
                s.elapsed.as_secs_f64(),
                s.inputs,
                s.inputs as f64 / s.elapsed.as_secs_f64(),
                s.loaded
            )
        },
    );
    match result {
        Ok(s) => {
            println!(
                "done: {} inputs in {:.1}s ({:.0} inputs/s), {} loaded as valid experiments, no panic, hang or broken invariant (seed {seed})",
                s.inputs,
                s.elapsed.as_secs_f64(),
                s.inputs as f64 / s.elapsed.as_secs_f64().max(1e-9),
                s.loaded
            );
        }
        Err(m) => {
            eprintln!("{m}");
            std::process::exit(1)
        }
    }
}

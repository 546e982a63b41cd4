//! `faultline run FILE`.

use crate::cli::{ColorChoice, RunArgs};
use crate::exit;
use crate::experiment::{self, Experiment};
use crate::report::record::RunRecord;
use crate::runner::{self, events::EventSink, live};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Output files are created before anything runs, so a bad path fails early.
struct Outputs {
    journal: Option<(PathBuf, File)>,
    junit: Option<(PathBuf, File)>,
    markdown: Option<(PathBuf, File)>,
}

fn create(path: &Path, what: &str) -> Result<File, String> {
    File::create(path).map_err(|e| format!("cannot write the {what} to {}: {e}", path.display()))
}

pub fn run(args: RunArgs, state_dir: &Path, color: ColorChoice) -> i32 {
    if args.dry_run {
        return super::plan::run(&args.file, crate::cli::PlanFormat::Text, args.chaostoolkit);
    }
    let loaded = match experiment::load_any(&args.file, args.chaostoolkit) {
        Ok(l) => l,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return exit::INVALID;
        }
    };
    let run_id = runner::new_run_id();
    let outputs = match open_outputs(&args, &run_id) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let color = super::use_color(color) || (color == ColorChoice::Auto && stderr_color());
    let mode = if args.quiet {
        live::Mode::Quiet
    } else if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        live::Mode::Tty
    } else {
        live::Mode::Plain
    };
    let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(live::LiveView::new(mode, color))];
    if let Some(target) = &args.events {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            match create(Path::new(target), "events") {
                Ok(f) => Box::new(f),
                Err(e) => {
                    eprintln!("faultline: {e}");
                    return exit::INVALID;
                }
            }
        };
        sinks.push(Box::new(runner::events::JsonLines::new(out)));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let ask = interactive && !args.yes;
    let opts = runner::RunOptions {
        state_dir: state_dir.to_path_buf(),
        run_id,
        sinks,
        policy: runner::Policy::default(),
    };
    runner::install_panic_hook();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            return exit::PRECONDITION;
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(runner::run(&loaded, opts, |exp| !ask || confirm(exp)))
    }));
    let finished = match result {
        Ok(f) => f,
        Err(_) => {
            eprintln!("faultline: internal error; pending faults were rolled back (see `faultline status`)");
            return exit::INTERNAL;
        }
    };
    // Do not wait for stray blocking tasks (e.g. a hung probe after a second Ctrl-C).
    rt.shutdown_background();
    write_outputs(
        &finished.record,
        outputs,
        args.quiet || args.events.as_deref() == Some("-"),
    );
    if !args.quiet && args.events.as_deref() != Some("-") {
        print!("{}", crate::report::table::render(&finished.record, color));
    } else {
        eprintln!(
            "{}",
            crate::report::table::verdict_line(&finished.record, color)
        );
    }
    finished.exit_code
}

fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn open_outputs(args: &RunArgs, run_id: &str) -> Result<Outputs, String> {
    let journal = if args.no_journal {
        None
    } else {
        let p = args
            .journal
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("faultline-{run_id}.json")));
        Some((p.clone(), create(&p, "journal")?))
    };
    let junit = match &args.junit {
        Some(p) => Some((p.clone(), create(p, "JUnit report")?)),
        None => None,
    };
    let markdown = match &args.markdown {
        Some(p) => Some((p.clone(), create(p, "Markdown report")?)),
        None => None,
    };
    Ok(Outputs {
        journal,
        junit,
        markdown,
    })
}

fn write_outputs(rec: &RunRecord, outputs: Outputs, quiet_paths: bool) {
    let write = |what: &str, out: Option<(PathBuf, File)>, text: String| {
        if let Some((path, mut f)) = out {
            match f.write_all(text.as_bytes()).and_then(|_| f.sync_all()) {
                Ok(()) if !quiet_paths => eprintln!("{what}: {}", path.display()),
                Ok(()) => {}
                Err(e) => eprintln!("faultline: cannot write {}: {e}", path.display()),
            }
        }
    };
    write("journal", outputs.journal, crate::report::json::render(rec));
    write("junit", outputs.junit, crate::report::junit::render(rec));
    write(
        "markdown",
        outputs.markdown,
        crate::report::markdown::render(rec),
    );
}

/// Asks on the terminal before anything changes on the host.
fn confirm(exp: &Experiment) -> bool {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "\nAbout to run \"{}\" on this host:", exp.title);
    for (i, s) in exp.method.iter().enumerate() {
        if let (Some(f), Some(d)) = (&s.fault, s.duration) {
            let _ = writeln!(err, "  - inject {} for {d} ({})", f.kind_name(), s.label(i));
        }
    }
    let _ = writeln!(
        err,
        "Everything is rolled back at the end, on abort, on Ctrl-C, and by a watchdog if faultline dies."
    );
    let _ = write!(err, "Continue? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

//! `faultline run a.yaml b.yaml dir/`: several experiments one after another,
//! one summary table, one JUnit file, the worst exit code (see
//! [`exit::severity`] and docs/ci.md).
//!
//! Every file is loaded and checked before the first one runs, so a typo in
//! the last file fails the job at once, with nothing changed on the host.

use super::run::{self, Prepared, RunContext, RunOutcome};
use crate::cli::{ColorChoice, RunArgs};
use crate::exit;
use crate::report::junit;
use crate::sys::text::escape;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `--events`: one stream for every experiment (each event has its run id).
pub(super) enum EventsOut {
    Stdout,
    File(File),
}

impl EventsOut {
    pub(super) fn writer(&self) -> Result<Box<dyn Write + Send>, String> {
        match self {
            EventsOut::Stdout => Ok(Box::new(std::io::stdout())),
            EventsOut::File(f) => f
                .try_clone()
                .map(|f| Box::new(f) as Box<dyn Write + Send>)
                .map_err(|e| format!("cannot write the events: {e}")),
        }
    }
}

/// The experiment files named on the command line: a directory stands for
/// its `*.yaml`, `*.yml` and `*.json` files (not hidden ones, not in
/// subdirectories), sorted by name.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if !p.is_dir() {
            files.push(p.clone());
            continue;
        }
        let shown = escape(&p.display().to_string()).into_owned();
        let entries =
            std::fs::read_dir(p).map_err(|e| format!("cannot read the directory {shown}: {e}"))?;
        let mut found = Vec::new();
        for e in entries {
            let e = e.map_err(|e| format!("cannot read the directory {shown}: {e}"))?;
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            let experiment_ext = matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("yaml" | "yml" | "json")
            );
            if experiment_ext && !name.starts_with('.') && path.is_file() {
                found.push(path);
            }
        }
        if found.is_empty() {
            return Err(format!(
                "{shown} is a directory with no experiment file (*.yaml, *.yml, *.json) in it"
            ));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

pub fn run(args: RunArgs, state_dir: &Path, color: ColorChoice) -> i32 {
    let files = match expand(&args.files) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let several = files.len() > 1;
    if several {
        for (set, flag, what) in [
            (args.journal.is_some(), "--journal", "journal"),
            (args.markdown.is_some(), "--markdown", "Markdown report"),
        ] {
            if set {
                eprintln!(
                    "faultline: {flag} names one file, and {} experiments would each write their {what} there. Leave it out: each journal is written to its own file named after the run (faultline-RUNID.json) and listed in the summary; `faultline report JOURNAL --format markdown` renders any of them. Nothing was run.",
                    files.len()
                );
                return exit::INVALID;
            }
        }
    }
    // Everything is checked before anything runs.
    let mut prepared = Vec::new();
    let mut failed = None;
    for f in &files {
        match run::prepare(f, &args) {
            Ok(p) => prepared.push(p),
            Err(code) => failed = Some(exit::worst(failed.unwrap_or(exit::HELD), code)),
        }
    }
    if let Some(code) = failed {
        if several {
            eprintln!("faultline: nothing was run: fix the experiment files above first");
        }
        return code;
    }
    if args.dry_run {
        let ctx = context(&args, state_dir, color, true, several, None);
        return prepared
            .into_iter()
            .map(|p| run::run_file(p, &ctx).code)
            .fold(exit::HELD, exit::worst);
    }
    if run::refuse_prompt_in_ci(&args) {
        return exit::INVALID;
    }
    // Output files are created before anything runs, so a bad path fails early.
    let junit_out = match &args.junit {
        Some(p) => match run::create(p, "JUnit report") {
            Ok(f) => Some((p.clone(), f)),
            Err(e) => {
                eprintln!("faultline: {e}");
                return exit::INVALID;
            }
        },
        None => None,
    };
    let events = match args.events.as_deref() {
        None => None,
        Some("-") => Some(EventsOut::Stdout),
        Some(target) => match run::create(Path::new(target), "events") {
            Ok(f) => Some(EventsOut::File(f)),
            Err(e) => {
                eprintln!("faultline: {e}");
                return exit::INVALID;
            }
        },
    };
    crate::runner::install_panic_hook();
    // With several experiments, one confirmation for all of them, before
    // the first; then Ctrl-C between two experiments is noted so the
    // remaining ones do not start.
    let ask_each = !several;
    if several {
        if run::interactive() && !args.yes && !confirm_all(&prepared) {
            eprintln!("faultline: not confirmed; nothing was run");
            return exit::INVALID;
        }
        crate::runner::note_signals_between_runs();
    }
    let ctx = context(&args, state_dir, color, ask_each, several, events.as_ref());
    let mut outcomes: Vec<RunOutcome> = Vec::new();
    let mut stop: Option<String> = None;
    let mut rest = prepared.into_iter();
    for p in rest.by_ref() {
        if let Some(sig) = crate::runner::early_signal() {
            stop = Some(format!("not run: interrupted by {}", signal_name(sig)));
            outcomes.push(not_run(p, stop.clone().unwrap_or_default()));
            break;
        }
        let o = run::run_file(p, &ctx);
        let code = o.code;
        let shown = escape(&o.file.display().to_string()).into_owned();
        outcomes.push(o);
        if code > 128 || crate::runner::early_signal().is_some() {
            stop = Some(format!("not run: interrupted during {shown}"));
        } else if code == exit::ROLLBACK_FAILED {
            stop = Some(format!(
                "not run: a rollback failed in {shown}, so faults may remain on this host (run `faultline recover`)"
            ));
        } else if code != exit::HELD && args.fail_fast {
            stop = Some(format!("not run: --fail-fast, and {shown} did not hold"));
        }
        if stop.is_some() {
            break;
        }
    }
    if let Some(reason) = &stop {
        outcomes.extend(rest.map(|p| not_run(p, reason.clone())));
    }
    let mut code = outcomes
        .iter()
        .map(|o| o.code)
        .fold(exit::HELD, exit::worst);
    if let Some(sig) = crate::runner::early_signal() {
        code = exit::worst(code, 128 + sig);
    }
    if several {
        print!("{}", summary_table(&outcomes));
        if !args.quiet {
            println!(
                "{} experiments: exit {code} ({})",
                outcomes.len(),
                exit::meaning(code)
            );
        }
    }
    if let Some((path, mut f)) = junit_out {
        let suites = outcomes.iter().map(suite_of).collect();
        let xml = junit::render_suites(suites);
        match f.write_all(xml.as_bytes()).and_then(|_| f.sync_all()) {
            Ok(()) if !args.quiet && args.events.as_deref() != Some("-") => {
                eprintln!("junit: {}", path.display())
            }
            Ok(()) => {}
            Err(e) => eprintln!("faultline: cannot write {}: {e}", path.display()),
        }
    }
    code
}

fn context<'a>(
    args: &'a RunArgs,
    state_dir: &'a Path,
    color: ColorChoice,
    ask: bool,
    several: bool,
    events: Option<&'a EventsOut>,
) -> RunContext<'a> {
    RunContext {
        args,
        state_dir,
        color,
        ask,
        several,
        events,
    }
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// An experiment that never started. Its exit code does not count: the one
/// that stopped the suite already does.
fn not_run(p: Prepared, reason: String) -> RunOutcome {
    let (file, title) = p.describe();
    RunOutcome {
        file,
        title,
        code: exit::HELD,
        record: None,
        journal: None,
        duration: Default::default(),
        note: Some(reason),
    }
}

fn suite_of(o: &RunOutcome) -> quick_junit::TestSuite {
    match &o.record {
        Some(rec) => junit::suite(rec),
        None => {
            let file = o.file.display().to_string();
            let note = o.note.as_deref().unwrap_or("did not run");
            if o.code == exit::HELD {
                junit::not_run_suite(&o.title, &file, note)
            } else {
                junit::error_suite(&o.title, &file, o.code, note)
            }
        }
    }
}

/// One row per experiment: file, verdict, exit code, duration, journal.
fn summary_table(outcomes: &[RunOutcome]) -> String {
    use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(crate::report::table::WIDTH)
        .force_no_tty()
        .set_header(["experiment", "verdict", "exit", "duration", "journal"]);
    for o in outcomes {
        let verdict = match (&o.record, &o.note) {
            (Some(r), _) => r.outcome.verdict.label().to_string(),
            (None, _) if o.code == exit::HELD => "NOT RUN".to_string(),
            (None, _) => exit::meaning(o.code).to_uppercase(),
        };
        let exit_cell = if o.record.is_none() && o.code == exit::HELD {
            "-".to_string()
        } else {
            o.code.to_string()
        };
        let duration = if o.duration.is_zero() {
            "-".to_string()
        } else {
            format!("{:.1}s", o.duration.as_secs_f64())
        };
        let journal = o
            .journal
            .as_ref()
            .map(|j| j.display().to_string())
            .unwrap_or_else(|| "-".into());
        t.add_row(vec![
            Cell::new(format!(
                "{}\n{}",
                escape(&o.file.display().to_string()),
                escape(&o.title)
            )),
            Cell::new(verdict),
            Cell::new(exit_cell).set_alignment(CellAlignment::Right),
            Cell::new(duration).set_alignment(CellAlignment::Right),
            Cell::new(escape(&journal)),
        ]);
    }
    let mut out = format!("\nSummary\n{t}\n");
    for o in outcomes.iter().filter(|o| o.record.is_none()) {
        if let Some(n) = &o.note {
            out.push_str(&format!(
                "  {}: {}\n",
                escape(&o.file.display().to_string()),
                escape(n)
            ));
        }
    }
    out
}

/// One question for the whole list, before the first experiment runs.
fn confirm_all(prepared: &[Prepared]) -> bool {
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "\nAbout to run {} experiments on this host, one after another:",
        prepared.len()
    );
    for p in prepared {
        p.describe_faults(&mut err);
    }
    let _ = writeln!(
        err,
        "Everything is rolled back after each one, on abort, on Ctrl-C, and by a watchdog if faultline dies."
    );
    run::ask_to_continue(&mut err)
}

//! `faultline run FILE`.

use crate::chaostoolkit;
use crate::cli::{ColorChoice, JournalFormat, RunArgs};
use crate::exit;
use crate::experiment::Experiment;
use crate::report::persist::{JournalFile, Render};
use crate::report::record::RunRecord;
use crate::runner::{self, events::EventSink, live};
use crate::sys::text::{escape, escape_text};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Output files are created before anything runs, so a bad path fails early.
struct Outputs {
    journal: Option<Arc<JournalFile>>,
    markdown: Option<(PathBuf, File)>,
}

/// Journals, reports and event logs are readable by their owner only: they
/// describe the host and the run.
pub(super) fn create(path: &Path, what: &str) -> Result<File, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write the {what} to {}: {e}", path.display()))?;
    // An existing file keeps its mode on open: narrow it.
    if let Ok(m) = f.metadata() {
        if m.is_file() && m.permissions().mode() & 0o077 != 0 {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(f)
}

/// An experiment loaded and checked, ready to run.
pub(super) struct Prepared {
    file: PathBuf,
    loaded: crate::experiment::Loaded,
    ctk: Option<Arc<chaostoolkit::CtkLoaded>>,
    /// None on a dry run (the plan reports what would stop the run).
    policy: Option<runner::Policy>,
    /// The file's bytes as read: the journal embeds them with their sha256.
    source: Vec<u8>,
}

/// Loads and checks one experiment file; prints what is wrong and returns
/// the exit code when it cannot run.
pub(super) fn prepare(file: &Path, args: &RunArgs) -> Result<Prepared, i32> {
    let ctk_opts = ctk_options(args).map_err(|e| {
        eprintln!("faultline: {e}");
        exit::INVALID
    })?;
    let (_, inputs) = super::var_inputs(&args.vars);
    let (loaded, ctk, source) =
        crate::load::load_with_source(file, args.chaostoolkit, &ctk_opts, &inputs).map_err(
            |problems| {
                for p in &problems {
                    eprintln!("{}", escape_text(&p.to_string()));
                }
                exit::INVALID
            },
        )?;
    let ctk = ctk.map(Arc::new);
    if args.dry_run {
        return Ok(Prepared {
            file: file.to_path_buf(),
            loaded,
            ctk,
            policy: None,
            source,
        });
    }
    if let Some(c) = &ctk {
        if !c.translation.guarding_controls.is_empty() && !args.ignore_controls {
            eprintln!(
                "faultline: {} has controls faultline cannot run, which may guard what they are attached to: {}. Nothing was run. Remove them, or pass --ignore-controls to run without them.",
                c.loaded.file,
                c.translation.guarding_controls.join(", ")
            );
            return Err(exit::PRECONDITION);
        }
    }
    let policy = match &ctk {
        Some(c) => c.policy(),
        None => faultline_policy(args, file).map_err(|e| {
            eprintln!("faultline: {e}");
            exit::INVALID
        })?,
    };
    Ok(Prepared {
        file: file.to_path_buf(),
        loaded,
        ctk,
        policy: Some(policy),
        source,
    })
}

impl Prepared {
    /// The file and the experiment's title.
    pub(super) fn describe(&self) -> (PathBuf, String) {
        (self.file.clone(), self.loaded.experiment.title.clone())
    }

    /// The title and the faults it injects, for a confirmation prompt.
    pub(super) fn describe_faults(&self, out: &mut dyn Write) {
        let _ = writeln!(
            out,
            "  {} (\"{}\"):",
            escape(&self.file.display().to_string()),
            escape(&self.loaded.experiment.title)
        );
        list_faults(&self.loaded.experiment, out, "    ");
    }
}

fn list_faults(exp: &Experiment, out: &mut dyn Write, indent: &str) {
    for (i, s) in exp.method.iter().enumerate() {
        if let (Some(f), Some(d)) = (&s.fault, s.fault_duration()) {
            let esc = s
                .escalate
                .as_ref()
                .map(|e| {
                    format!(
                        ", escalating {} over {} levels",
                        escape(&e.param),
                        e.levels.len()
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}- inject {} for {d} ({}{esc})",
                f.kind_name(),
                escape(&s.label(i))
            );
        }
    }
}

/// What one experiment's run left for the summary and the JUnit file.
pub(super) struct RunOutcome {
    pub file: PathBuf,
    pub title: String,
    pub code: i32,
    pub record: Option<RunRecord>,
    pub journal: Option<PathBuf>,
    pub duration: std::time::Duration,
    /// Why there is no record (an internal error, or the run never started).
    pub note: Option<String>,
}

/// How [`run_file`] is called by `faultline run`.
pub(super) struct RunContext<'a> {
    pub args: &'a RunArgs,
    pub state_dir: &'a Path,
    pub color: ColorChoice,
    /// Ask on the terminal before injecting (after preflight).
    pub ask: bool,
    /// One of several experiments: derived journal names, no Markdown file.
    pub several: bool,
    pub events: Option<&'a super::suite::EventsOut>,
}

pub fn run(args: RunArgs, state_dir: &Path, color: ColorChoice) -> i32 {
    super::suite::run(args, state_dir, color)
}

/// Runs one prepared experiment: journal, live view, table, Markdown.
pub(super) fn run_file(p: Prepared, cx: &RunContext) -> RunOutcome {
    let args = cx.args;
    let t0 = std::time::Instant::now();
    let Prepared {
        file,
        loaded,
        ctk,
        policy,
        source,
    } = p;
    let mut provenance = Provenance::of(&source);
    if !loaded.vars.is_empty() {
        provenance.as_run = serde_json::to_value(&loaded.experiment).ok();
    }
    let mut outcome = RunOutcome {
        file,
        title: loaded.experiment.title.clone(),
        code: exit::HELD,
        record: None,
        journal: None,
        duration: Default::default(),
        note: None,
    };
    let Some(policy) = policy else {
        let mut plan = super::plan::build(&loaded);
        super::plan::check_controls(&mut plan, ctk.as_deref(), args.ignore_controls);
        print!("{}", loaded.redactor.text(&super::plan::render_text(&plan)));
        outcome.code = plan.exit_code;
        return outcome;
    };
    if let Some(s) = loaded
        .experiment
        .schedule
        .as_ref()
        .filter(|_| !args.outside_window)
    {
        let max = loaded.experiment.limits.max_duration;
        if let Some(why) = crate::experiment::schedule::refusal(s, chrono::Utc::now(), max) {
            eprintln!("faultline: {}", escape_text(&why));
            outcome.code = exit::PRECONDITION;
            outcome.note = Some(why);
            return outcome;
        }
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let run_id = new_run_id(args, cx.several);
    // The journal is rendered the same way for every write: secrets redacted,
    // in the chosen format.
    let render: Render = {
        let redactor = loaded.redactor.clone();
        let ctk = ctk.clone();
        let format = args.journal_format;
        let vars = loaded.vars.clone();
        Arc::new(move |rec: &RunRecord| {
            let redacted = redactor.serde(rec);
            let rec = redacted.as_ref().unwrap_or(rec);
            match (&ctk, format) {
                (Some(c), JournalFormat::Chaostoolkit) => chaostoolkit::journal::render(rec, c),
                _ if !vars.is_empty() => with_vars(rec, &vars),
                _ => crate::report::json::render(rec),
            }
        })
    };
    let mut stub = runner::builder::RecordBuilder::new(&run_id, &loaded.file, "").rec;
    stub.experiment.title = loaded.experiment.title.clone();
    stub.experiment.hypothesis = loaded.experiment.hypothesis.clone();
    provenance.apply(&mut stub);
    let outputs = match open_outputs(args, &run_id, render, &stub, cx.several) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("faultline: {e}");
            outcome.code = exit::INVALID;
            outcome.note = Some(e);
            return outcome;
        }
    };
    outcome.journal = outputs.journal.as_ref().map(|j| j.shown.clone());
    let color = super::use_color(cx.color) || (cx.color == ColorChoice::Auto && stderr_color());
    let mode = if args.quiet {
        live::Mode::Quiet
    } else if std::io::stderr().is_terminal() && !in_ci() {
        live::Mode::Tty
    } else {
        live::Mode::Plain
    };
    // On a terminal: the live console (keys when stdin is the terminal too).
    let view: Box<dyn EventSink> = if mode == live::Mode::Tty {
        Box::new(runner::console::Console::new(
            runner::console::Spec::of(&loaded.experiment),
            color,
            std::io::stdin().is_terminal(),
        ))
    } else {
        Box::new(live::LiveView::new(mode, color))
    };
    let mut sinks: Vec<Box<dyn EventSink>> = vec![view];
    if let Some(out) = cx.events {
        match out.writer() {
            Ok(w) => sinks.push(Box::new(runner::events::JsonLines::new(w))),
            Err(e) => {
                eprintln!("faultline: {e}");
                outcome.code = exit::PRECONDITION;
                outcome.note = Some(e);
                return outcome;
            }
        }
    }
    // Webhooks: the sink only queues; the report gets what failed.
    let (targets, mut notify_warnings) =
        runner::notify::targets(&loaded.experiment.notify, &args.notify);
    for w in &notify_warnings {
        eprintln!("warning: {}", escape_text(w));
    }
    let journal_shown = outputs
        .journal
        .as_ref()
        .map(|j| j.path.display().to_string());
    let notifier =
        runner::notify::Notifier::start(targets, &run_id, journal_shown).map(|(n, sink)| {
            sinks.push(Box::new(sink));
            n
        });
    let ask = cx.ask && interactive && !args.yes;
    let opts = runner::RunOptions {
        state_dir: cx.state_dir.to_path_buf(),
        run_id,
        sinks,
        policy,
        journal: outputs.journal.clone(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            outcome.code = exit::PRECONDITION;
            outcome.note = Some(format!("cannot start the async runtime: {e}"));
            return outcome;
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(runner::run(&loaded, opts, |exp, planned| {
            !ask || confirm(exp, &planned())
        }))
    }));
    outcome.duration = t0.elapsed();
    let finished = match result {
        Ok(f) => f,
        Err(_) => {
            eprintln!("faultline: internal error; pending faults were rolled back (see `faultline status`)");
            outcome.code = exit::INTERNAL;
            outcome.note = Some(
                "internal error; pending faults were rolled back (see `faultline status`)".into(),
            );
            return outcome;
        }
    };
    // Do not wait for stray blocking tasks (e.g. a hung probe after a second Ctrl-C).
    rt.shutdown_background();
    let mut finished = finished;
    if let Some(n) = notifier {
        // After the rollback: the last notification is given a few seconds.
        notify_warnings.extend(n.finish(std::time::Duration::from_secs(5)));
    }
    finished.record.warnings.extend(notify_warnings);
    provenance.apply(&mut finished.record);
    // Secrets never reach a report, whatever wrote them into the record.
    if let Some(mut r) = loaded.redactor.serde(&finished.record) {
        // The spooled samples were redacted as they were emitted.
        r.spool = finished.record.spool.take();
        finished.record = r;
    }
    write_outputs(
        &finished.record,
        outputs,
        args.quiet || args.events.as_deref() == Some("-"),
    );
    if !args.quiet && args.events.as_deref() != Some("-") {
        let width = crate::report::table::stdout_width();
        print!(
            "{}",
            crate::report::table::render_width(&finished.record, color, width)
        );
    } else {
        eprintln!(
            "{}",
            crate::report::table::verdict_line(&finished.record, color)
        );
    }
    outcome.code = finished.exit_code;
    // The journal has every sample: let go of the spool (its files vanish).
    finished.record.spool = None;
    outcome.record = Some(finished.record);
    outcome
}

/// The faultline journal with `experiment.vars`: the variables the run
/// used (secret ones already `***`).
fn with_vars(
    rec: &RunRecord,
    vars: &std::collections::BTreeMap<String, serde_json::Value>,
) -> String {
    let mut v = serde_json::to_value(rec).expect("a RunRecord always serializes");
    if let Some(e) = v.get_mut("experiment").and_then(|e| e.as_object_mut()) {
        e.insert("vars".into(), serde_json::json!(vars));
    }
    let mut s = serde_json::to_string_pretty(&v).expect("a JSON value serializes");
    s.push('\n');
    s
}

/// What the journal records so a run can be reproduced: the experiment as
/// read, its sha256, and who ran it (the version and host are there already).
struct Provenance {
    sha256: String,
    source: String,
    as_run: Option<serde_json::Value>,
    user: crate::report::record::RunUser,
}

impl Provenance {
    fn of(bytes: &[u8]) -> Provenance {
        use sha2::{Digest, Sha256};
        let sha256 = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (uid, name, sudo_user) = crate::sys::proc::current_user();
        Provenance {
            sha256,
            // Loading checked the text is UTF-8.
            source: String::from_utf8_lossy(bytes).into_owned(),
            as_run: None,
            user: crate::report::record::RunUser {
                uid,
                name,
                sudo_user,
            },
        }
    }

    fn apply(&self, rec: &mut RunRecord) {
        rec.experiment.sha256 = Some(self.sha256.clone());
        rec.experiment.source = Some(self.source.clone());
        rec.experiment.as_run = self.as_run.clone();
        rec.user = Some(self.user.clone());
    }
}

/// A run id whose default journal name is not taken yet (two experiments of
/// one `faultline run` never share a journal).
fn new_run_id(args: &RunArgs, several: bool) -> String {
    let mut id = runner::new_run_id();
    if args.journal.is_none() && !args.no_journal {
        for _ in 0..20 {
            if !default_journal(args, &id, several).exists() {
                break;
            }
            id = runner::new_run_id();
        }
    }
    id
}

/// The journal's name when `--journal` is not given: ./faultline-RUNID.json,
/// or ./journal.json for the Chaos Toolkit format (where Chaos Toolkit's
/// tools look for it), ./journal-RUNID.json with several experiments.
fn default_journal(args: &RunArgs, run_id: &str, several: bool) -> PathBuf {
    match (args.journal_format, several) {
        (JournalFormat::Chaostoolkit, false) => PathBuf::from("journal.json"),
        (JournalFormat::Chaostoolkit, true) => PathBuf::from(format!("journal-{run_id}.json")),
        _ => PathBuf::from(format!("faultline-{run_id}.json")),
    }
}

/// Whether the run would stop to ask on the terminal, with no one to answer
/// in CI: then it must not start.
pub(super) fn refuse_prompt_in_ci(args: &RunArgs) -> bool {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if interactive && !args.yes && !args.dry_run && in_ci() {
        eprintln!(
            "faultline: CI is set, and this run would stop to ask for confirmation on the terminal, where no one may answer. Pass --yes to run without asking (nothing was run)."
        );
        return true;
    }
    false
}

/// Whether stdin and stderr are a terminal (someone can answer a prompt).
pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// `CI` set to anything but empty, `0` or `false` (what CI services set).
pub(super) fn in_ci() -> bool {
    std::env::var_os("CI")
        .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn open_outputs(
    args: &RunArgs,
    run_id: &str,
    render: Render,
    stub: &RunRecord,
    several: bool,
) -> Result<Outputs, String> {
    let journal = if args.no_journal {
        None
    } else {
        let p = args
            .journal
            .clone()
            .unwrap_or_else(|| default_journal(args, run_id, several));
        let faultline_format = args.journal_format != JournalFormat::Chaostoolkit;
        let j = JournalFile::open(&p, render, stub, faultline_format)
            .map_err(|e| format!("cannot write the journal to {}: {e}", p.display()))?;
        Some(Arc::new(j))
    };
    let markdown = match &args.markdown {
        Some(p) => Some((p.clone(), create(p, "Markdown report")?)),
        None => None,
    };
    Ok(Outputs { journal, markdown })
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
    if let Some(j) = outputs.journal {
        let shown = &j.shown;
        match j.write_final(rec) {
            Ok(()) if !quiet_paths => eprintln!("journal: {}", shown.display()),
            Ok(()) => {}
            Err(e) => eprintln!("faultline: cannot write {}: {e}", shown.display()),
        }
    }
    write(
        "markdown",
        outputs.markdown,
        crate::report::markdown::render(rec),
    );
}

/// Asks on the terminal before anything changes on the host, listing what
/// each fault will do to the targets preflight resolved.
pub(super) fn confirm(exp: &Experiment, planned: &[String]) -> bool {
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "\nAbout to run \"{}\" on this host:",
        escape(&exp.title)
    );
    list_faults(exp, &mut err, "  ");
    if !planned.is_empty() {
        let _ = writeln!(err, "On the targets found now:");
        for line in planned.iter().take(50) {
            let _ = writeln!(err, "  {}", escape(line));
        }
        if planned.len() > 50 {
            let _ = writeln!(
                err,
                "  ... and {} more (see `faultline plan`)",
                planned.len() - 50
            );
        }
    }
    let _ = writeln!(
        err,
        "Everything is rolled back at the end, on abort, on Ctrl-C, and by a watchdog if faultline dies."
    );
    ask_to_continue(&mut err)
}

/// Asks "Continue? [y/N]" on `err` and reads the answer from stdin: only
/// `y` or `yes` goes on.
pub(super) fn ask_to_continue(err: &mut impl Write) -> bool {
    let _ = write!(err, "Continue? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Chaos Toolkit options from the command line.
fn ctk_options(args: &RunArgs) -> Result<chaostoolkit::Options, String> {
    use crate::cli::{HypothesisStrategy as H, RollbackStrategy as R};
    // A Chaos Toolkit reading error of --var/--var-file is reported by the
    // loader, and only for a Chaos Toolkit file.
    let (mut o, _) = super::var_inputs(&args.vars);
    o.hypothesis_strategy = args.hypothesis_strategy.map(|h| match h {
        H::Default => chaostoolkit::HypothesisStrategy::Default,
        H::BeforeMethodOnly => chaostoolkit::HypothesisStrategy::BeforeMethodOnly,
        H::AfterMethodOnly => chaostoolkit::HypothesisStrategy::AfterMethodOnly,
        H::DuringMethodOnly => chaostoolkit::HypothesisStrategy::DuringMethodOnly,
        H::Continuously => chaostoolkit::HypothesisStrategy::Continuously,
    });
    o.rollback_strategy = args.rollback_strategy.map(|r| match r {
        R::Default => chaostoolkit::RollbackStrategy::Default,
        R::Always => chaostoolkit::RollbackStrategy::Always,
        R::Never => chaostoolkit::RollbackStrategy::Never,
        R::Deviated => chaostoolkit::RollbackStrategy::Deviated,
    });
    if let Some(f) = args.hypothesis_frequency {
        // At most a year, as every duration (a larger one cannot be waited for).
        if !(f.is_finite() && f > 0.0 && f <= 366.0 * 86_400.0) {
            return Err(format!(
                "--hypothesis-frequency {f}: give a positive number of seconds up to a year, e.g. 1 or 0.5"
            ));
        }
    }
    o.frequency = args.hypothesis_frequency;
    o.fail_fast = args.fail_fast;
    Ok(o)
}

/// The run policy of a faultline experiment: faultline's defaults, changed
/// only by the strategy flags that mean something without a Chaos Toolkit file.
fn faultline_policy(args: &RunArgs, file: &Path) -> Result<runner::Policy, String> {
    use crate::cli::HypothesisStrategy as H;
    let ctk_only = [
        (args.ignore_controls, "--ignore-controls"),
        (
            args.hypothesis_frequency.is_some(),
            "--hypothesis-frequency",
        ),
        (
            args.journal_format == JournalFormat::Chaostoolkit,
            "--journal-format chaostoolkit",
        ),
    ];
    if let Some((_, flag)) = ctk_only.iter().find(|(set, _)| *set) {
        return Err(format!(
            "{flag} applies to Chaos Toolkit experiments; {} is a faultline experiment (add --chaostoolkit if it is a Chaos Toolkit file)",
            escape(&file.display().to_string())
        ));
    }
    let mut p = runner::Policy::default();
    match args.hypothesis_strategy {
        None | Some(H::Default) => {}
        Some(H::BeforeMethodOnly) => p.check_after = false,
        Some(H::AfterMethodOnly) => p.check_before = false,
        Some(H::DuringMethodOnly) | Some(H::Continuously) => {
            return Err("--hypothesis-strategy during-method-only/continuously applies to Chaos Toolkit experiments; a faultline experiment samples during the method already (`during:` on each probe)".into())
        }
    }
    if let Some(r) = args.rollback_strategy {
        p.user_rollbacks = match r {
            crate::cli::RollbackStrategy::Default => runner::RollbackPolicy::UnlessInterrupted,
            crate::cli::RollbackStrategy::Always => runner::RollbackPolicy::Always,
            crate::cli::RollbackStrategy::Never => runner::RollbackPolicy::Never,
            crate::cli::RollbackStrategy::Deviated => runner::RollbackPolicy::Deviated,
        };
    }
    Ok(p)
}

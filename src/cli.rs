//! Command-line types (clap derive) only; behaviour lives in `commands`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0   hypothesis held
  1   hypothesis deviated
  2   aborted by an abort condition (everything rolled back)
  3   steady state not met before injection (nothing injected)
  4   rollback failed: faults may remain (run `faultline recover`)
  5   inconclusive: the experiment did not test what it said (the report says why)
  64  invalid experiment or usage
  69  a precondition is missing (tool, kernel feature, target)
  70  internal error (after rollback); please report it
  77  insufficient privileges
  130 interrupted (after rollback)

Docs: docs/experiment-format.md, docs/safety.md";

/// Hypothesis-driven chaos experiments on one Linux host, with undo that
/// survives the runner's own death.
#[derive(Parser, Debug)]
#[command(name = "faultline", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Where undo records and locks live (default: /run/faultline as root,
    /// else $XDG_RUNTIME_DIR/faultline).
    #[arg(long, global = true, env = "FAULTLINE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// When to use colours (NO_COLOR is respected with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run experiments: steady state, faults, abort conditions, rollback, report.
    #[command(after_help = "Examples:
  faultline run experiments/quickstart.yaml
  faultline run exp.yaml --junit results.xml --markdown report.md --events -
  faultline run exp.yaml --yes            # no confirmation prompt on a terminal
  faultline run experiments/ --junit results.xml --fail-fast   # a CI suite")]
    Run(RunArgs),

    /// Check experiment files; one line per file, exit 0 only when all are valid.
    #[command(after_help = "Examples:
  faultline validate experiments/*.yaml
  faultline validate --format json exp.yaml
  faultline validate --format github experiments/*.yaml   # annotations on the pull request
  faultline validate --format gitlab experiments/*.yaml > gl-code-quality-report.json")]
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
        /// Read files as Chaos Toolkit experiments (default: detected from their keys).
        #[arg(long)]
        chaostoolkit: bool,
        #[command(flatten)]
        vars: VarArgs,
    },

    /// Dry run: print every phase and the exact operations each fault would
    /// perform, and run every preflight check. Touches nothing.
    #[command(after_help = "Examples:
  faultline plan experiments/network-delay.yaml
  faultline plan --format json exp.yaml")]
    Plan {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Read the file as a Chaos Toolkit experiment.
        #[arg(long)]
        chaostoolkit: bool,
        #[command(flatten)]
        vars: VarArgs,
    },

    /// Write an iCalendar (.ics) file of the experiments' upcoming schedule
    /// windows, for a team's shared calendar.
    #[command(after_help = "Examples:
  faultline calendar experiments/ -o game-days.ics
  faultline calendar a.yaml b.yaml --days 90 > windows.ics

Experiments without a `schedule:` are left out (named on stderr). Times are
in UTC; calendar programs show them in each reader's time zone.")]
    Calendar {
        /// Experiment files, or directories of them.
        #[arg(required = true, value_name = "DIR|FILE")]
        paths: Vec<PathBuf>,
        /// Write the calendar here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// How many days ahead (1 to 366).
        #[arg(long, value_name = "N", default_value_t = 28,
              value_parser = clap::value_parser!(u32).range(1..=366))]
        days: u32,
        #[command(flatten)]
        vars: VarArgs,
    },

    /// Write the experiment in another engine's format: Kubernetes manifests
    /// for Chaos Mesh. What has no equivalent is listed on stderr and in the
    /// output; `--strict` makes that an error.
    #[command(after_help = "Examples:
  faultline export --to chaos-mesh experiments/cache-packet-loss.yaml
  faultline export --to chaos-mesh exp.yaml -o manifests/   # manifests/<title>.yaml
  faultline export --to chaos-mesh --strict exp.yaml        # exit 64 if anything is left out
Mapping: docs/chaos-mesh.md")]
    Export {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The format to write.
        #[arg(long, value_enum)]
        to: ExportFormat,
        /// A directory to write into (one file named after the experiment),
        /// or `-` for standard output (the default).
        #[arg(short, long, value_name = "DIR|-")]
        output: Option<PathBuf>,
        /// Fail (exit 64, nothing written) when any part of the experiment
        /// has no equivalent.
        #[arg(long)]
        strict: bool,
        /// Kubernetes namespace of the manifests (and of pods named by `container:`).
        #[arg(long, default_value = "default", value_name = "NAMESPACE")]
        namespace: String,
        /// chaosd address for host faults (PhysicalMachineChaos), repeatable
        /// (default: http://THIS-HOST:31767).
        #[arg(long, value_name = "URL")]
        chaosd_address: Vec<String>,
        /// Read the file as a Chaos Toolkit experiment.
        #[arg(long)]
        chaostoolkit: bool,
        #[command(flatten)]
        vars: VarArgs,
    },

    /// List faults still active on this host from any run; exit 1 when any is pending.
    #[command(after_help = "Examples:
  faultline status
  faultline status --json     # for scripts
  faultline status || faultline recover")]
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },

    /// Undo every pending fault (of one run, or all); safe to run twice.
    #[command(after_help = "Examples:
  faultline recover              # every run's pending faults
  faultline recover 20261127-145103-3f2a")]
    Recover {
        /// Only this run.
        #[arg(value_name = "RUN_ID")]
        run_id: Option<String>,
        /// Also roll back runs whose runner is still alive.
        #[arg(long)]
        force: bool,
    },

    /// Stop running experiments from any terminal: they roll back and end as
    /// ABORTED ("stopped by USER via faultline stop").
    #[command(after_help = "Examples:
  faultline stop                        # the one running experiment
  faultline stop 20261127-145103-3f2a
  faultline stop --all --reason \"pager went off\"

Waits until the runs have rolled back (exit 0), 4 when one left faults behind.")]
    Stop {
        /// The run to stop (`faultline status` lists them); without it, the
        /// only running experiment.
        #[arg(value_name = "RUN_ID", conflicts_with = "all")]
        run_id: Option<String>,
        /// Stop every running experiment.
        #[arg(long)]
        all: bool,
        /// Why, for the report.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// The emergency stop: stop every running experiment and refuse new ones
    /// (exit 69) until `faultline halt --clear`.
    #[command(after_help = "Examples:
  faultline halt --reason \"incident 4711\"
  faultline status                      # shows the switch
  faultline halt --clear

The switch is the file STATE_DIR/halt (/run/faultline/halt as root).")]
    Halt {
        /// Why, shown to everyone whose run it stops or refuses.
        #[arg(long, value_name = "TEXT", conflicts_with = "clear")]
        reason: Option<String>,
        /// Clear the switch: experiments may start again.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// Render a report again from a run's JSON journal.
    #[command(after_help = "Examples:
  faultline report faultline-20261127-145103-3f2a.json
  faultline report journal.json --format markdown -o report.md
  faultline report journal.json --format junit > results.xml
  faultline report journal.json --format html -o report.html
  faultline report journal.json --kb docs/chaos-kb     # a knowledge-base entry + index")]
    Report {
        #[arg(value_name = "JOURNAL")]
        journal: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// File the run as a Markdown knowledge-base entry under DIR
        /// (DIR/EXPERIMENT/RUN.md) and update DIR/index.md.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "format"])]
        kb: Option<PathBuf>,
    },

    /// Summarize many runs' journals per experiment: verdicts over time, time
    /// to detect and to recover, probe trends and the resilience score.
    #[command(after_help = "Examples:
  faultline history                         # the journals in the current directory
  faultline history journals/ --recursive --format markdown -o history.md
  faultline history faultline-*.json --format json
  faultline history journals/ --format html -o history.html
  faultline history journals/ --kb docs/chaos-kb     # also refresh the knowledge base's index

Reads faultline and Chaos Toolkit journals; files that are not journals are
skipped with a message. Exit 0 when it printed, 64 when no journal was read.
Definitions (the resilience score's formula): docs/history.md")]
    History {
        /// Journal files, or directories of them (their *.json files).
        /// Default: the current directory.
        #[arg(value_name = "DIR|FILE")]
        paths: Vec<PathBuf>,
        /// Also search the directories' subdirectories.
        #[arg(short, long)]
        recursive: bool,
        #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
        format: HistoryFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also rebuild DIR/index.md of a knowledge base (`report --kb DIR`)
        /// with each experiment's score, times and verdicts from these journals.
        #[arg(long, value_name = "DIR")]
        kb: Option<PathBuf>,
    },

    /// Write a commented starting experiment, from flags or (on a terminal,
    /// without flags) by asking.
    #[command(after_help = "Examples:
  faultline init                                          # asks
  faultline init --probe http://127.0.0.1:8080/health --fault process_kill --target name=nginx -o nginx-kill.yaml
  faultline init --probe tcp://10.0.0.5:6379 --fault blackhole --netns app

The file is checked like `faultline validate` before it is written.")]
    Init(InitArgs),

    /// List what an experiment can target on this host, with the selector to
    /// paste: processes, listening ports, interfaces and namespaces, cgroups,
    /// systemd units, containers. Reads only.
    #[command(after_help = "Examples:
  faultline targets                      # everything, as tables
  faultline targets processes ports --filter redis
  faultline targets interfaces --format json")]
    Targets {
        /// What to list (default: everything).
        #[arg(value_enum, value_name = "KIND")]
        kinds: Vec<TargetsKind>,
        /// Only rows whose name (or command, port, path) contains TEXT.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        #[arg(long, value_enum, default_value_t = TargetsFormat::Table)]
        format: TargetsFormat,
    },

    /// Print the JSON Schema of the experiment format (for editors).
    #[command(after_help = "Example:
  faultline schema > faultline.schema.json
then start experiment files with
  # yaml-language-server: $schema=./faultline.schema.json")]
    Schema,

    /// Print shell completions.
    #[command(after_help = "Examples:
  faultline completions bash > /etc/bash_completion.d/faultline
  faultline completions zsh > ~/.zfunc/_faultline
  faultline completions fish > ~/.config/fish/completions/faultline.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:
  faultline man | man -l -
  faultline man --dir /usr/local/share/man/man1")]
    Man {
        /// Write faultline.1 and faultline-COMMAND.1 pages into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },

    /// Internal: the watchdog process a run starts (not for direct use).
    #[command(hide = true)]
    Watchdog {
        #[arg(long)]
        run_id: String,
        /// Inherited pipe on which the watchdog says it is watching.
        #[arg(long)]
        ready_fd: Option<i32>,
    },

    /// Internal: a built-in stressor worker process (not for direct use).
    #[command(hide = true)]
    StressWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Experiment files, run one after another; a directory means its
    /// *.yaml, *.yml and *.json files in name order.
    #[arg(value_name = "FILE|DIR", required = true)]
    pub files: Vec<PathBuf>,

    /// Write the run's JSON journal here (default: ./faultline-RUNID.json;
    /// only with a single experiment).
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Do not write a journal file.
    #[arg(long, conflicts_with = "journal")]
    pub no_journal: bool,
    /// Write JUnit XML here (for CI): one test suite per experiment.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report here (only with a single experiment).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Stream events as JSON lines to a file, or `-` for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<String>,
    /// Do not ask for confirmation before injecting on a terminal.
    #[arg(short, long)]
    pub yes: bool,
    /// Only print the verdict line (and errors).
    #[arg(short, long)]
    pub quiet: bool,
    /// Read the file as a Chaos Toolkit experiment (default: detected from its keys).
    #[arg(long)]
    pub chaostoolkit: bool,
    /// Chaos Toolkit: when to run rollbacks (faultline's own faults are always undone).
    #[arg(long, value_enum)]
    pub rollback_strategy: Option<RollbackStrategy>,
    /// Chaos Toolkit: when to check the steady-state hypothesis.
    #[arg(long, value_enum)]
    pub hypothesis_strategy: Option<HypothesisStrategy>,
    /// Chaos Toolkit: seconds between checks with `--hypothesis-strategy continuously`.
    #[arg(long, value_name = "SECONDS")]
    pub hypothesis_frequency: Option<f64>,
    /// With several experiments, do not start the next one after one that
    /// did not hold. Chaos Toolkit: also stop at the first deviation with
    /// `continuously`.
    #[arg(long)]
    pub fail_fast: bool,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Chaos Toolkit: run even though the file has controls that may guard
    /// an activity (a prompt, a safeguard); faultline cannot run controls.
    #[arg(long)]
    pub ignore_controls: bool,
    /// Write the journal in Chaos Toolkit's format instead of faultline's.
    #[arg(long, value_enum, default_value_t = JournalFormat::Faultline)]
    pub journal_format: JournalFormat,
    /// Also POST JSON notifications to this webhook (repeatable): about to
    /// start, fault injected, aborted, finished.
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// Run even outside the experiment's `schedule` window (or when the run
    /// could outlast it).
    #[arg(long)]
    pub outside_window: bool,
    /// Same as `faultline plan FILE`.
    #[arg(long, alias = "dry")]
    pub dry_run: bool,
}

/// How `stop` and `halt` wait for the runs they stop.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// Return at once instead of waiting for the runs to roll back.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (exit 69).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

/// Variable values from the command line (run, validate, plan): a
/// faultline file's `vars:`, or a Chaos Toolkit file's configuration.
#[derive(Args, Debug, Clone, Default)]
pub struct VarArgs {
    /// Set a variable declared under `vars:` (a Chaos Toolkit configuration
    /// value for a Chaos Toolkit file); repeatable, later ones win.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variable values from a YAML file (`name: value` lines) or a
    /// `.env` file (`NAME=value`); Chaos Toolkit: JSON/YAML with
    /// `configuration`/`secrets`, or `.env`.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Kubernetes manifests for Chaos Mesh (a Workflow, or a Schedule).
    ChaosMesh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    /// GitHub Actions annotations (`::error file=...,line=...::message`).
    Github,
    /// GitLab code quality report (JSON), for `artifacts:reports:codequality`.
    Gitlab,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Markdown,
    Junit,
    Json,
    /// One self-contained page with plots (no scripts, no external assets).
    Html,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
    Markdown,
    /// One self-contained page with trend plots.
    Html,
}

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// What the steady state checks: http://HOST:PORT/PATH, https://...
    /// or tcp://HOST:PORT (repeatable).
    #[arg(long, value_name = "URL")]
    pub probe: Vec<String>,
    /// The fault kind (process_kill, network, cpu_limit, ...).
    #[arg(long, value_name = "KIND")]
    pub fault: Option<String>,
    /// The fault's process target as SELECTOR=VALUE: name=nginx, pid=1234,
    /// pidfile=PATH, cmdline=REGEX, cgroup=PATH, systemd_unit=UNIT.
    #[arg(long, value_name = "SELECTOR=VALUE")]
    pub target: Option<String>,
    /// For network and bandwidth: the interface.
    #[arg(long, value_name = "NAME")]
    pub interface: Option<String>,
    /// For network faults: the network namespace.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// For disk_fill and file_corrupt: the path (file_corrupt: a glob too).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// For io_limit: the block device (MAJOR:MINOR or /dev/NAME).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// How long the fault lasts.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub duration: String,
    /// The experiment's title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Write to FILE (never over an existing one without --force) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE.
    #[arg(long, requires = "output")]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetsKind {
    Processes,
    Ports,
    Interfaces,
    Cgroups,
    Units,
    /// Running containers (Docker or Podman engine).
    Containers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetsFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JournalFormat {
    Faultline,
    Chaostoolkit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RollbackStrategy {
    Default,
    Always,
    Never,
    Deviated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HypothesisStrategy {
    Default,
    BeforeMethodOnly,
    AfterMethodOnly,
    DuringMethodOnly,
    Continuously,
}

//! One function per subcommand; each returns the process exit code.

pub mod calendar;
pub mod export;
pub mod history;
pub mod init;
pub mod plan;
pub mod report;
pub mod run;
pub mod status;
pub mod stop;
pub mod suite;
pub mod targets;
pub mod validate;

use crate::cli::{Cli, ColorChoice, Command};
use crate::exit;
use clap::CommandFactory;

/// Whether to colour output on stdout.
pub fn use_color(choice: ColorChoice) -> bool {
    use std::io::IsTerminal;
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

pub fn main(cli: Cli) -> i32 {
    let state_dir = crate::journal::store::resolve_state_dir(cli.state_dir.as_deref());
    match cli.command {
        Command::Validate {
            files,
            format,
            chaostoolkit,
            vars,
        } => {
            let (o, inputs) = var_inputs(&vars);
            validate::run(&files, format, chaostoolkit, &o, &inputs)
        }
        Command::Plan {
            file,
            format,
            chaostoolkit,
            vars,
        } => {
            let (o, inputs) = var_inputs(&vars);
            plan::run(&file, format, chaostoolkit, &o, &inputs)
        }
        Command::Init(args) => init::run(&args),
        Command::Targets {
            kinds,
            filter,
            format,
        } => targets::run(&kinds, format, filter.as_deref()),
        Command::Calendar {
            paths,
            output,
            days,
            vars,
        } => {
            let (o, inputs) = var_inputs(&vars);
            calendar::run(&paths, output.as_deref(), days, &o, &inputs)
        }
        Command::Export {
            file,
            to,
            output,
            strict,
            namespace,
            chaosd_address,
            chaostoolkit,
            vars,
        } => {
            let (o, inputs) = var_inputs(&vars);
            let args = export::Args {
                to,
                output,
                strict,
                namespace,
                chaosd_addresses: chaosd_address,
            };
            export::run(&file, &args, chaostoolkit, &o, &inputs)
        }
        Command::Schema => {
            println!("{}", schema_json());
            exit::HELD
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "faultline", &mut std::io::stdout());
            exit::HELD
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Report {
            journal,
            kb: Some(dir),
            ..
        } => report::file_in_kb(&journal, &dir),
        Command::Report {
            journal,
            format,
            output,
            kb: None,
        } => report::run_with_color(&journal, format, output.as_deref(), cli.color),
        Command::History {
            paths,
            recursive,
            format,
            output,
            kb,
        } => history::run(&paths, recursive, format, output.as_deref(), kb.as_deref()),
        Command::StressWorker { args } => crate::fault::stress::worker_main(&args),
        Command::Status { json } => status::status(&state_dir, json),
        Command::Recover { run_id, force } => status::recover(&state_dir, run_id.as_deref(), force),
        Command::Stop {
            run_id,
            all,
            reason,
            wait,
        } => stop::stop(&state_dir, run_id.as_deref(), all, reason, waiting(&wait)),
        Command::Halt { clear: true, .. } => stop::clear(&state_dir),
        Command::Halt { reason, wait, .. } => stop::halt(&state_dir, reason, waiting(&wait)),
        Command::Watchdog { run_id, ready_fd } => {
            crate::journal::watchdog::main(&state_dir, &run_id, ready_fd)
        }
        Command::Run(args) => run::run(args, &state_dir, cli.color),
    }
}

/// `faultline man`: the top page on stdout, or every page into `dir`.
fn man(dir: Option<&std::path::Path>) -> i32 {
    // As clap_mangen::generate_to does: no `help` pseudo-command page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let result = match dir {
        Some(d) => clap_mangen::generate_to(cmd, d),
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
    };
    match result {
        Ok(()) => exit::HELD,
        Err(e) => {
            let place = dir.map_or("standard output".to_string(), |d| d.display().to_string());
            eprintln!(
                "faultline: cannot write the man pages to {}: {e}",
                crate::sys::text::escape(&place)
            );
            exit::PRECONDITION
        }
    }
}

/// The JSON Schema of the experiment format.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(crate::experiment::Experiment);
    schema.insert("title".into(), "faultline experiment".into());
    schema.insert(
        "description".into(),
        "A hypothesis-driven chaos experiment for faultline. See docs/experiment-format.md.".into(),
    );
    serde_json::to_string_pretty(&schema).expect("schema serializes")
}

fn waiting(w: &crate::cli::WaitArgs) -> stop::Wait {
    stop::Wait {
        wait: !w.no_wait,
        timeout: std::time::Duration::from_secs(w.timeout),
    }
}

/// Chaos Toolkit values from `--var-file` and `--var`. `.env` var files also
/// set the environment of the whole run (as `chaos run` does), so process
/// activities see them too.
pub fn ctk_vars(v: &crate::cli::VarArgs) -> Result<crate::chaostoolkit::Options, String> {
    let mut o = crate::chaostoolkit::Options::default();
    for f in &v.var_files {
        o.extra.add_file(f)?;
    }
    for x in &v.vars {
        o.extra.add_var(x)?;
    }
    for (k, val) in &o.extra.env {
        std::env::set_var(k, val);
    }
    Ok(o)
}

/// `--var`/`--var-file` read both ways: as Chaos Toolkit configuration and
/// as faultline variables. Which one applies is known once the file is
/// read; a Chaos Toolkit reading error is kept for a Chaos Toolkit file.
pub fn var_inputs(
    v: &crate::cli::VarArgs,
) -> (
    crate::chaostoolkit::Options,
    crate::experiment::vars::Inputs,
) {
    let mut inputs = crate::experiment::vars::Inputs {
        vars: v.vars.clone(),
        files: v.var_files.clone(),
        ctk_error: None,
    };
    let o = ctk_vars(v).unwrap_or_else(|e| {
        inputs.ctk_error = Some(e);
        crate::chaostoolkit::Options::default()
    });
    (o, inputs)
}

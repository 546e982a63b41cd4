//! `faultline report JOURNAL`: render any output again from a run's journal.
//!
//! It does not judge the run again: the verdict is the one recorded in the
//! journal, and the command exits 0 whenever it rendered (64 when the journal
//! cannot be read or is not a faultline journal, or the output cannot be
//! written).

use crate::cli::{ColorChoice, ReportFormat};
use crate::exit;
use crate::report::{html, json, junit, markdown, record::RunRecord, table};
use std::io::Write;
use std::path::Path;

/// Renders `rec` in `format`; `color` only affects the table.
pub fn render(rec: &RunRecord, format: ReportFormat, color: bool) -> String {
    match format {
        ReportFormat::Table => table::render(rec, color),
        ReportFormat::Markdown => markdown::render(rec),
        ReportFormat::Junit => junit::render(rec),
        ReportFormat::Json => json::render(rec),
        ReportFormat::Html => html::render(rec),
    }
}

/// Points kept per probe for the HTML plot when a long run's journal is
/// read for a report (see `report::thin`).
pub const PLOT_POINTS: usize = 4_000;

/// Reads and parses a journal file, with an error naming the file. Every
/// sample is kept (what `--format json` writes back).
pub fn load(journal: &Path) -> Result<RunRecord, String> {
    json::read_file(journal)
}

/// Reads a journal for a report in `format`: every sample for JSON; for the
/// others a long run's samples are thinned as they are read (statistics,
/// verdict and failing samples are unchanged), so memory stays bounded.
pub fn load_for(journal: &Path, format: ReportFormat) -> Result<RunRecord, String> {
    if format == ReportFormat::Json {
        return load(journal);
    }
    let thinning = crate::report::thin::Thinning::start(PLOT_POINTS);
    let mut rec = json::read_file(journal)?;
    for (p, n) in rec.probes.iter_mut().zip(thinning.left_out()) {
        p.samples_thinned = n;
    }
    Ok(rec)
}

/// `faultline report` with colour decided automatically (a terminal on
/// standard output and no NO_COLOR).
pub fn run(journal: &Path, format: ReportFormat, output: Option<&Path>) -> i32 {
    run_with_color(journal, format, output, ColorChoice::Auto)
}

/// `faultline report` honouring `--color`. A file given with `-o` never gets
/// colour codes.
pub fn run_with_color(
    journal: &Path,
    format: ReportFormat,
    output: Option<&Path>,
    color: ColorChoice,
) -> i32 {
    let rec = match load_for(journal, format) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let color = output.is_none() && super::use_color(color);
    let text = render(&rec, format, color);
    match output {
        Some(path) => {
            // Reports describe the host: owner-only, like journals.
            let written = super::run::create(path, "report")
                .and_then(|mut f| f.write_all(text.as_bytes()).map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!(
                    "faultline: cannot write the report to {}: {e}",
                    path.display()
                );
                return exit::INVALID;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("faultline: cannot write the report to standard output: {e}");
                    return exit::INVALID;
                }
            }
        }
    }
    exit::HELD
}

/// A name made only of `a-z`, `0-9` and `-` (at most 60 characters), from
/// text a journal supplied: safe as one path component.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(|c| c.to_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "experiment".into()
    } else {
        out
    }
}

/// An experiment's history in two lines of Markdown, for the index.
fn kb_summary(e: &crate::report::history::ExperimentHistory) -> String {
    let secs = |v: Option<f64>| {
        v.map(|v| format!("{:.1}s", v / 1000.0))
            .unwrap_or_else(|| "—".into())
    };
    format!(
        "Resilience score **{}** ({} automatic, {} interventions) over {} runs · time to detect p50 {} · time to recover p50 {} · verdicts, oldest first: `{}`\n\n",
        e.score
            .percent
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_else(|| "—".into()),
        e.score.automatic,
        e.score.interventions,
        e.runs,
        secs(e.time_to_detect_ms.p50),
        secs(e.time_to_recover_ms.p50),
        markdown::cell(&e.verdicts)
    )
}

/// `faultline report JOURNAL --kb DIR`: the run's Markdown report (with its
/// knowledge-base sections) as `DIR/EXPERIMENT/RUN.md`, and `DIR/index.md`
/// rebuilt from every entry there, newest first per experiment.
pub fn file_in_kb(journal: &Path, dir: &Path) -> i32 {
    let rec = match load_for(journal, ReportFormat::Markdown) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let folder = dir.join(slug(&rec.experiment.title));
    let entry = folder.join(format!("{}.md", slug(&rec.run_id)));
    let result = std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))
        .and_then(|()| super::run::create(&entry, "knowledge-base entry"))
        .and_then(|mut f| {
            f.write_all(markdown::render(&rec).as_bytes())
                .map_err(|e| e.to_string())
        })
        .and_then(|()| write_kb_index(dir, None));
    match result {
        Ok(()) => {
            println!("{}", crate::sys::text::escape(&entry.display().to_string()));
            exit::HELD
        }
        Err(e) => {
            eprintln!("faultline: {}", crate::sys::text::escape(&e));
            exit::INVALID
        }
    }
}

/// The first line starting with `prefix` among a file's first lines.
fn line_with(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .take(40)
        .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
}

/// An experiment's folder in the knowledge base: its slug, its title, and
/// its runs (file name, verdict), newest first.
struct KbExperiment {
    slug: String,
    title: String,
    runs: Vec<(String, String)>,
}

/// Rebuilds DIR/index.md from the entries there; with `history`, each
/// experiment also gets its score, times and verdicts over the journals read.
pub fn write_kb_index(
    dir: &Path,
    history: Option<&crate::report::history::History>,
) -> Result<(), String> {
    let mut experiments: Vec<KbExperiment> = Vec::new();
    let mut folders: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    folders.sort();
    for folder in folders {
        let mut runs: Vec<(String, String)> = Vec::new();
        let mut title = String::new();
        for e in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "md") || !e.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            // Entries are faultline's own small files; read a bounded head.
            let mut head = String::new();
            if let Ok(f) = std::fs::File::open(&p) {
                use std::io::Read;
                let _ = f.take(16 * 1024).read_to_string(&mut head);
            }
            if title.is_empty() {
                title = line_with(&head, "# ").unwrap_or_default();
            }
            let verdict = line_with(&head, "**Verdict: ")
                .and_then(|v| v.split("**").next().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            runs.push((name, verdict));
        }
        if runs.is_empty() {
            continue;
        }
        // Run ids start with the date and time: newest first.
        runs.sort_by(|a, b| b.0.cmp(&a.0));
        let slug = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        experiments.push(KbExperiment { slug, title, runs });
    }
    let mut md = String::from("# Chaos experiments: knowledge base\n\nOne entry per run, filed by `faultline report JOURNAL --kb DIR`; this index is rebuilt each time, and `faultline history JOURNALS --kb DIR` adds each experiment's score and trends.\n");
    for KbExperiment { slug, title, runs } in &experiments {
        let _ = std::fmt::Write::write_fmt(
            &mut md,
            format_args!(
                "\n## {}\n\n| run | verdict |\n|---|---|\n",
                if title.is_empty() { slug } else { title }
            ),
        );
        if let Some(e) =
            history.and_then(|h| h.experiments.iter().find(|e| self::slug(&e.title) == *slug))
        {
            md.insert_str(
                md.len() - "| run | verdict |\n|---|---|\n".len(),
                &kb_summary(e),
            );
        }
        for (name, verdict) in runs {
            let _ = std::fmt::Write::write_fmt(
                &mut md,
                format_args!(
                    "| [{}]({slug}/{name}) | {} |\n",
                    name.trim_end_matches(".md"),
                    markdown::cell(verdict)
                ),
            );
        }
    }
    let index = dir.join("index.md");
    super::run::create(&index, "knowledge-base index")
        .and_then(|mut f| f.write_all(md.as_bytes()).map_err(|e| e.to_string()))
}

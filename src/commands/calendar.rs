//! `faultline calendar DIR|FILES [-o FILE] [--days N]`: the experiments'
//! upcoming schedule windows as an iCalendar file (RFC 5545) a team imports
//! into a shared calendar.
//!
//! One VEVENT per window: times in UTC (no VTIMEZONE needed; calendar
//! programs show them in the reader's zone), a UID that stays the same when
//! the file is written again (so a re-import updates instead of
//! duplicating), every text value escaped (`\`, `;`, `,`, newlines) with
//! control characters dropped, lines folded at 75 octets, CRLF line ends.

use crate::exit;
use crate::experiment::schedule::Window;
use crate::experiment::Experiment;
use crate::sys::text::escape_text;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Most events per experiment (a cron window every minute for a year would
/// be half a million).
const MAX_PER_EXPERIMENT: usize = 500;

pub fn run(
    paths: &[PathBuf],
    output: Option<&Path>,
    days: u32,
    opts: &crate::chaostoolkit::Options,
    inputs: &crate::experiment::vars::Inputs,
) -> i32 {
    let files = match super::suite::expand(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("faultline: {e}");
            return exit::INVALID;
        }
    };
    let now = Utc::now();
    let until = now + chrono::Duration::days(days as i64);
    let mut entries = Vec::new();
    let mut bad = false;
    for f in &files {
        let shown = escape_text(&f.display().to_string()).into_owned();
        let loaded = match crate::load::load(f, false, opts, inputs) {
            Ok((l, _)) => l,
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}", escape_text(&p.to_string()));
                }
                bad = true;
                continue;
            }
        };
        let exp = loaded.experiment;
        let Some(s) = &exp.schedule else {
            eprintln!("{shown}: no `schedule:`, so not in the calendar");
            continue;
        };
        let windows = s.windows(now, until, MAX_PER_EXPERIMENT);
        if windows.len() == MAX_PER_EXPERIMENT {
            eprintln!(
                "{shown}: more than {MAX_PER_EXPERIMENT} windows in {days} days; only the first {MAX_PER_EXPERIMENT} are in the calendar"
            );
        }
        if windows.is_empty() {
            eprintln!("{shown}: no window in the next {days} days");
        }
        entries.push((f.clone(), exp, windows));
    }
    if bad {
        eprintln!("faultline: fix the files above; no calendar was written");
        return exit::INVALID;
    }
    let ics = render(&entries, now);
    let written = match output {
        Some(p) => std::fs::write(p, ics.as_bytes()).map(|_| {
            let n: usize = entries.iter().map(|e| e.2.len()).sum();
            eprintln!(
                "calendar: {} ({n} window(s) of {} experiment(s), next {days} days)",
                escape_text(&p.display().to_string()),
                entries.len()
            );
        }),
        None => std::io::stdout().write_all(ics.as_bytes()),
    };
    match written {
        Ok(()) => exit::HELD,
        Err(e) => {
            eprintln!("faultline: cannot write the calendar: {e}");
            exit::PRECONDITION
        }
    }
}

/// The whole calendar.
pub fn render(entries: &[(PathBuf, Experiment, Vec<Window>)], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut line = |s: &str| out.push_str(&fold(s));
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line(&format!(
        "PRODID:-//faultline//faultline {}//EN",
        env!("CARGO_PKG_VERSION")
    ));
    line("CALSCALE:GREGORIAN");
    line("METHOD:PUBLISH");
    line("X-WR-CALNAME:Chaos experiment windows");
    for (file, exp, windows) in entries {
        let id = experiment_id(file, exp);
        let schedule = exp
            .schedule
            .as_ref()
            .map(|s| s.describe())
            .unwrap_or_default();
        let mut desc = vec![
            format!("Hypothesis: {}", exp.hypothesis),
            format!("File: {}", file.display()),
            format!("Window: {schedule}"),
        ];
        let faults: Vec<String> = exp
            .method
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let f = s.fault.as_ref()?;
                Some(match s.duration {
                    Some(d) => format!("{} ({}) for {d}", s.label(i), f.kind_name()),
                    None => format!("{} ({})", s.label(i), f.kind_name()),
                })
            })
            .collect();
        if !faults.is_empty() {
            desc.push(format!("Faults: {}", faults.join("; ")));
        }
        desc.push(format!("Run: faultline run {}", file.display()));
        for w in windows {
            line("BEGIN:VEVENT");
            line(&format!("UID:{id}-{}@faultline", w.opens.timestamp()));
            line(&format!("DTSTAMP:{}", stamp(now)));
            line(&format!("DTSTART:{}", stamp(w.opens)));
            line(&format!("DTEND:{}", stamp(w.closes)));
            line(&format!(
                "SUMMARY:{}",
                text(&format!("Chaos experiment: {}", exp.title))
            ));
            line(&format!("DESCRIPTION:{}", text(&desc.join("\n"))));
            if !exp.tags.is_empty() {
                let tags: Vec<String> = exp.tags.iter().map(|t| text(t)).collect();
                line(&format!("CATEGORIES:{}", tags.join(",")));
            }
            line("TRANSP:TRANSPARENT");
            line("END:VEVENT");
        }
    }
    line("END:VCALENDAR");
    out
}

/// A stable id for an experiment: its file name and title.
fn experiment_id(file: &Path, exp: &Experiment) -> String {
    let mut h = Sha256::new();
    h.update(file.display().to_string().as_bytes());
    h.update([0]);
    h.update(exp.title.as_bytes());
    h.finalize()
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `20261207T130000Z`.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// An RFC 5545 TEXT value: `\`, `;`, `,` escaped, newlines as `\n`, other
/// control characters dropped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let s = s.replace("\r\n", "\n");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' | '\r' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded: at most 75 octets per physical line (never
/// inside a UTF-8 character), continuation lines starting with a space,
/// each ending in CRLF.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut used = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if used + n > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += n;
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(text("a,b;c\\d\ne\u{7}"), "a\\,b\\;c\\\\d\\ne");
    }

    #[test]
    fn lines_fold_at_75_octets_between_characters() {
        let l = format!("SUMMARY:{}", "é".repeat(100));
        let f = fold(&l);
        for phys in f.split("\r\n").filter(|p| !p.is_empty()) {
            assert!(phys.len() <= 75, "{} octets", phys.len());
        }
        let unfolded = f.trim_end_matches("\r\n").replace("\r\n ", "");
        assert_eq!(unfolded, l);
    }
}

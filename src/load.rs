//! Which reader a file needs: faultline's own format or Chaos Toolkit's.
//! This sits above `experiment` and `chaostoolkit` so that neither calls the
//! other to load a file.

use crate::chaostoolkit::{self, CtkLoaded};
use crate::experiment::{self, vars::Inputs, Diagnostic, Loaded};
use std::path::Path;

/// At most this many problems of one file are shown; the rest are counted.
pub const MAX_SHOWN: usize = 50;

/// Keeps the first [`MAX_SHOWN`] problems and, if there were more, one last
/// line saying how many were left out: a huge broken file must not print
/// megabytes.
pub fn bound(mut problems: Vec<Diagnostic>) -> Vec<Diagnostic> {
    if problems.len() > MAX_SHOWN {
        let more = problems.len() - MAX_SHOWN;
        let first_hidden = &problems[MAX_SHOWN];
        let note = Diagnostic::at(
            &first_hidden.file,
            "",
            (first_hidden.line, first_hidden.column),
            format!(
                "{more} more problem{} not shown; fix the ones above and validate again",
                if more == 1 { "" } else { "s" }
            ),
        );
        problems.truncate(MAX_SHOWN);
        problems.push(note);
    }
    problems
}

/// How many problems a list from [`load`] stands for (its last line may
/// count those left out).
pub fn total(problems: &[Diagnostic]) -> usize {
    if problems.len() == MAX_SHOWN + 1 {
        let last = &problems[MAX_SHOWN];
        if let Some(n) = last
            .message
            .split_once(" more problem")
            .and_then(|(n, _)| n.parse::<usize>().ok())
        {
            return MAX_SHOWN + n;
        }
    }
    problems.len()
}

/// Loads a faultline experiment, or a Chaos Toolkit one (forced with
/// `force_chaostoolkit`, or detected from its keys) translated into
/// faultline's model. The translation's warnings go to stderr. At most
/// [`MAX_SHOWN`] problems are returned, see [`bound`].
pub fn load(
    path: &Path,
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
    inputs: &Inputs,
) -> Result<(Loaded, Option<CtkLoaded>), Vec<Diagnostic>> {
    load_with_source(path, force_chaostoolkit, opts, inputs).map(|(l, c, _)| (l, c))
}

/// [`load`], also returning the bytes that were read (what the journal
/// embeds as the experiment run, with their sha256).
pub fn load_with_source(
    path: &Path,
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
    inputs: &Inputs,
) -> Result<(Loaded, Option<CtkLoaded>, Vec<u8>), Vec<Diagnostic>> {
    load_unbounded(path, force_chaostoolkit, opts, inputs).map_err(bound)
}

fn load_unbounded(
    path: &Path,
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
    inputs: &Inputs,
) -> Result<(Loaded, Option<CtkLoaded>, Vec<u8>), Vec<Diagnostic>> {
    let file = path.display().to_string();
    let bytes =
        experiment::read_capped(path).map_err(|m| vec![Diagnostic::at(&file, "", (1, 1), m)])?;
    load_bytes(&file, &bytes, force_chaostoolkit, opts, inputs).map(|(l, c)| (l, c, bytes))
}

fn load_bytes(
    file: &str,
    bytes: &[u8],
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
    inputs: &Inputs,
) -> Result<(Loaded, Option<CtkLoaded>), Vec<Diagnostic>> {
    let file = file.to_string();
    if !force_chaostoolkit && !chaostoolkit::may_be_ctk(&String::from_utf8_lossy(bytes)) {
        return experiment::load_bytes_with(&file, bytes, inputs).map(|l| (l, None));
    }
    let (raw, spans) = match chaostoolkit::parse(&file, bytes) {
        Ok(v) => v,
        Err(d) if force_chaostoolkit => return Err(vec![d]),
        Err(_) => return experiment::load_bytes_with(&file, bytes, inputs).map(|l| (l, None)),
    };
    if let Some((at, why)) = chaostoolkit::legacy_format(&raw) {
        return Err(vec![Diagnostic::at(&file, &at, spans.locate(&at), why)]);
    }
    if !force_chaostoolkit && !chaostoolkit::looks_like_ctk(&raw) {
        return experiment::load_bytes_with(&file, bytes, inputs).map(|l| (l, None));
    }
    if let Some(e) = &inputs.ctk_error {
        return Err(vec![Diagnostic::at(&file, "", (1, 1), e.clone())]);
    }
    let c = chaostoolkit::load_value(&file, raw, spans, opts)?;
    for w in &c.translation.warnings {
        let line = format!("{}: warning: {w}", c.loaded.file);
        eprintln!("{}", crate::sys::text::escape_text(&line));
    }
    Ok((c.loaded.clone(), Some(c)))
}

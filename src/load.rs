//! Which reader a file needs: faultline's own format or Chaos Toolkit's.
//! This sits above `experiment` and `chaostoolkit` so that neither calls the
//! other to load a file.

use crate::chaostoolkit::{self, CtkLoaded};
use crate::experiment::{self, Diagnostic, Loaded};
use std::path::Path;

/// Loads a faultline experiment, or a Chaos Toolkit one (forced with
/// `force_chaostoolkit`, or detected from its keys) translated into
/// faultline's model. The translation's warnings go to stderr.
pub fn load(
    path: &Path,
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
) -> Result<(Loaded, Option<CtkLoaded>), Vec<Diagnostic>> {
    load_with_source(path, force_chaostoolkit, opts).map(|(l, c, _)| (l, c))
}

/// [`load`], also returning the bytes that were read (what the journal
/// embeds as the experiment run, with their sha256).
pub fn load_with_source(
    path: &Path,
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
) -> Result<(Loaded, Option<CtkLoaded>, Vec<u8>), Vec<Diagnostic>> {
    let file = path.display().to_string();
    let bytes =
        experiment::read_capped(path).map_err(|m| vec![Diagnostic::at(&file, "", (1, 1), m)])?;
    load_bytes(&file, &bytes, force_chaostoolkit, opts).map(|(l, c)| (l, c, bytes))
}

fn load_bytes(
    file: &str,
    bytes: &[u8],
    force_chaostoolkit: bool,
    opts: &chaostoolkit::Options,
) -> Result<(Loaded, Option<CtkLoaded>), Vec<Diagnostic>> {
    let file = file.to_string();
    if !force_chaostoolkit && !chaostoolkit::may_be_ctk(&String::from_utf8_lossy(bytes)) {
        return experiment::load_bytes(&file, bytes).map(|l| (l, None));
    }
    let (raw, spans) = match chaostoolkit::parse(&file, bytes) {
        Ok(v) => v,
        Err(d) if force_chaostoolkit => return Err(vec![d]),
        Err(_) => return experiment::load_bytes(&file, bytes).map(|l| (l, None)),
    };
    if let Some((at, why)) = chaostoolkit::legacy_format(&raw) {
        return Err(vec![Diagnostic::at(&file, &at, spans.locate(&at), why)]);
    }
    if !force_chaostoolkit && !chaostoolkit::looks_like_ctk(&raw) {
        return experiment::load_bytes(&file, bytes).map(|l| (l, None));
    }
    let c = chaostoolkit::load_value(&file, raw, spans, opts)?;
    for w in &c.translation.warnings {
        let line = format!("{}: warning: {w}", c.loaded.file);
        eprintln!("{}", crate::sys::text::escape_text(&line));
    }
    Ok((c.loaded.clone(), Some(c)))
}

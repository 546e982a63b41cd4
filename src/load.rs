//! Which reader a file needs: faultline's own format, Chaos Toolkit's, or
//! Chaos Mesh manifests. This sits above `experiment`, `chaostoolkit` and
//! `chaosmesh` so that none of them calls another to load a file. It also
//! expands `chaos_mesh:` steps of faultline experiments.

use crate::chaosmesh;
use crate::chaostoolkit::{self, CtkLoaded};
use crate::experiment::{self, vars::Inputs, Diagnostic, Experiment, Loaded};
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
    if !force_chaostoolkit && chaosmesh::may_be_chaos_mesh(&String::from_utf8_lossy(bytes)) {
        let text = experiment::yaml::check_bytes(&file, bytes).map_err(|d| vec![d])?;
        if let Ok(docs) = chaosmesh::parse(&file, text) {
            if chaosmesh::looks_like_chaos_mesh(&docs) {
                return load_chaos_mesh(&file, &docs).map(|l| (l, None));
            }
        }
    }
    if !force_chaostoolkit && !chaostoolkit::may_be_ctk(&String::from_utf8_lossy(bytes)) {
        return experiment::load_bytes_with(&file, bytes, inputs)
            .and_then(expand_chaos_mesh_steps)
            .map(|l| (l, None));
    }
    let (raw, spans) = match chaostoolkit::parse(&file, bytes) {
        Ok(v) => v,
        Err(d) if force_chaostoolkit => return Err(vec![d]),
        Err(_) => {
            return experiment::load_bytes_with(&file, bytes, inputs)
                .and_then(expand_chaos_mesh_steps)
                .map(|l| (l, None))
        }
    };
    if let Some((at, why)) = chaostoolkit::legacy_format(&raw) {
        return Err(vec![Diagnostic::at(&file, &at, spans.locate(&at), why)]);
    }
    if !force_chaostoolkit && !chaostoolkit::looks_like_ctk(&raw) {
        return experiment::load_bytes_with(&file, bytes, inputs)
            .and_then(expand_chaos_mesh_steps)
            .map(|l| (l, None));
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

fn warn(file: &str, w: &str) {
    let line = format!("{file}: warning: {w}");
    eprintln!("{}", crate::sys::text::escape_text(&line));
}

/// Reads and translates a manifest file's documents.
fn translate_manifest(
    file: &str,
    docs: &[chaosmesh::Doc],
) -> Result<chaosmesh::Translation, Vec<Diagnostic>> {
    chaosmesh::translate(docs).map_err(|ps| {
        ps.iter()
            .map(|p| chaosmesh::diagnostic(file, docs, p))
            .collect()
    })
}

/// Types and validates a translated experiment; a problem here is in the
/// translation's output, so it is reported against the file as a whole.
fn typed(file: &str, v: serde_json::Value) -> Result<Experiment, Vec<Diagnostic>> {
    let e: Experiment = serde_path_to_error::deserialize(v).map_err(|e| {
        vec![Diagnostic::at(
            file,
            "",
            (1, 1),
            format!(
                "the manifest translates to an invalid experiment at {}: {}",
                e.path(),
                e.inner()
            ),
        )]
    })?;
    let problems = experiment::validate::validate(&e, file, &Default::default());
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|mut d| {
                d.message = format!("in the translated experiment: {}", d.message);
                d
            })
            .collect());
    }
    Ok(e)
}

/// A Chaos Mesh manifest file as an experiment.
fn load_chaos_mesh(file: &str, docs: &[chaosmesh::Doc]) -> Result<Loaded, Vec<Diagnostic>> {
    let t = translate_manifest(file, docs)?;
    for w in &t.warnings {
        warn(file, w);
    }
    let e = typed(file, t.experiment(file))?;
    Ok(Loaded {
        file: file.to_string(),
        redactor: crate::experiment::secrets::Redactor::for_experiment(&e),
        experiment: e,
        spans: Default::default(),
        vars: Default::default(),
    })
}

/// Replaces every `chaos_mesh: FILE` step with the steps its manifest
/// translates to (its StatusChecks join the probes); `duration` replaces
/// the manifest's durations, `background` and `name` carry over.
fn expand_chaos_mesh_steps(mut loaded: Loaded) -> Result<Loaded, Vec<Diagnostic>> {
    if !loaded
        .experiment
        .method
        .iter()
        .any(|s| s.chaos_mesh.is_some())
    {
        return Ok(loaded);
    }
    let file = loaded.file.clone();
    let dir = Path::new(&file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut method = Vec::new();
    let mut exp = loaded.experiment.clone();
    for (i, step) in loaded.experiment.method.iter().enumerate() {
        let Some(m) = &step.chaos_mesh else {
            method.push(step.clone());
            continue;
        };
        let at = format!("method[{i}].chaos_mesh");
        let here = |msg: String| Diagnostic::at(&file, &at, loaded.spans.locate_value(&at), msg);
        let path = dir.join(m);
        let shown = path.display().to_string();
        let bytes = match experiment::read_capped(&path) {
            Ok(b) => b,
            Err(e) => {
                problems.push(here(format!("{}: {e}", crate::sys::text::escape(&shown))));
                continue;
            }
        };
        let docs = experiment::yaml::check_bytes(&shown, &bytes)
            .and_then(|text| chaosmesh::parse(&shown, text));
        let docs = match docs {
            Ok(d) if chaosmesh::looks_like_chaos_mesh(&d) => d,
            Ok(_) => {
                problems.push(here(format!(
                    "{} is not a Chaos Mesh manifest (apiVersion chaos-mesh.org/v1alpha1)",
                    crate::sys::text::escape(&shown)
                )));
                continue;
            }
            Err(d) => {
                problems.push(d);
                continue;
            }
        };
        let t = match translate_manifest(&shown, &docs) {
            Ok(t) => t,
            Err(ds) => {
                problems.extend(ds);
                continue;
            }
        };
        for w in &t.warnings {
            warn(&shown, w);
        }
        if t.schedule.is_some() {
            warn(
                &shown,
                "the manifest's schedule is not used: the experiment's own `schedule` applies",
            );
        }
        let label = step.label(i);
        for v in &t.method {
            let mut s: crate::experiment::model::Step = match serde_json::from_value(v.clone()) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(here(format!(
                        "the manifest translates to an invalid step: {e}"
                    )));
                    continue;
                }
            };
            if let Some(d) = step.duration {
                if s.fault.is_some() {
                    s.duration = Some(d);
                }
                if let Some(p) = s.pause {
                    s.pause = Some(if p.std() < d.std() { p } else { d });
                }
            }
            s.background |= step.background;
            if step.name.is_some() {
                s.name = Some(format!("{label}: {}", s.name.clone().unwrap_or_default()));
            }
            if s.min_effect.is_none() {
                s.min_effect = step.min_effect;
            }
            if s.max_missing.is_none() {
                s.max_missing = step.max_missing;
            }
            method.push(s);
        }
        for p in &t.probes {
            match serde_json::from_value(p.clone()) {
                Ok(p) => exp.steady_state.probes.push(p),
                Err(e) => problems.push(here(format!(
                    "the manifest's status check translates to an invalid probe: {e}"
                ))),
            }
        }
        for a in &t.abort {
            if let Ok(a) = serde_json::from_value(a.clone()) {
                exp.abort.push(a);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    exp.method = method;
    let more = experiment::validate::validate(&exp, &file, &loaded.spans);
    if !more.is_empty() {
        return Err(more);
    }
    loaded.experiment = exp;
    Ok(loaded)
}

#[cfg(test)]
mod chaos_mesh_fuzz {
    use super::*;

    /// Mutated Chaos Mesh manifests never panic, and every problem has a
    /// message and a line inside the file.
    #[test]
    fn mutated_manifests_fail_cleanly() {
        let seeds = [
            include_str!("../experiments/chaos-mesh/cache-packet-loss.yaml"),
            include_str!("../experiments/chaos-mesh/cache-packet-loss-schedule.yaml"),
            "apiVersion: chaos-mesh.org/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  entry: e\n  templates:\n    - {name: e, templateType: Serial, children: [c, p, s]}\n    - {name: c, templateType: StatusCheck, deadline: 10s, statusCheck: {mode: Synchronous, type: HTTP, http: {url: \"http://x/\", method: GET, criteria: {statusCode: \"200\"}}}}\n    - {name: p, templateType: Parallel, children: [n, k]}\n    - {name: n, templateType: StressChaos, deadline: 5s, stressChaos: {mode: all, selector: {labelSelectors: {a: b}}, stressors: {memory: {workers: 2, size: 10MB}}}}\n    - {name: k, templateType: Schedule, deadline: 9s, schedule: {schedule: \"@every 2s\", type: PodChaos, podChaos: {action: pod-kill, mode: one, selector: {namespaces: [x]}}}}\n    - {name: s, templateType: Suspend, deadline: 3s}\n---\napiVersion: chaos-mesh.org/v1alpha1\nkind: IOChaos\nmetadata: {name: io}\nspec: {action: mistake, mode: all, volumePath: /data, path: '*.db', selector: {pods: {ns: [c]}}, duration: 5s, mistake: {filling: zero, maxLength: 10}}\n",
        ];
        let pieces: [&str; 12] = [
            "\n",
            ": ",
            "- ",
            "{",
            "}",
            "[",
            "]",
            "---\n",
            "\"",
            "0",
            "-1",
            "chaos-mesh.org/",
        ];
        let mut state: u64 = 0x5eed_cafe;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let inputs = crate::experiment::vars::Inputs::default();
        let opts = chaostoolkit::Options::default();
        for i in 0..1500 {
            let mut text: Vec<u8> = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next(4) {
                let at = next(text.len() + 1);
                match next(3) {
                    0 => {
                        let end = (at + next(12)).min(text.len());
                        text.drain(at..end);
                    }
                    1 => {
                        let p = pieces[next(pieces.len())].as_bytes();
                        text.splice(at..at, p.iter().copied());
                    }
                    _ => {
                        let from = next(text.len().max(1));
                        let end = (from + next(40)).min(text.len());
                        let chunk: Vec<u8> = text[from..end].to_vec();
                        text.splice(at..at, chunk);
                    }
                }
            }
            let lines = text.iter().filter(|b| **b == b'\n').count() + 1;
            if let Err(ds) = load_bytes("m.yaml", &text, false, &opts, &inputs) {
                assert!(
                    !ds.is_empty(),
                    "no diagnostics for:\n{}",
                    String::from_utf8_lossy(&text)
                );
                for d in ds {
                    assert!(!d.message.trim().is_empty(), "{d}");
                    assert!(
                        d.line >= 1 && d.line <= lines + 1,
                        "{d} ({lines} lines):\n{}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
    }
}

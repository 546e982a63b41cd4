//! `faultline validate FILE...`

use crate::cli::ValidateFormat;
use crate::exit;
use crate::experiment::Diagnostic;
use crate::sys::text::{escape, escape_text};
use std::path::PathBuf;

pub fn run(
    files: &[PathBuf],
    format: ValidateFormat,
    chaostoolkit: bool,
    opts: &crate::chaostoolkit::Options,
    inputs: &crate::experiment::vars::Inputs,
) -> i32 {
    let mut all_ok = true;
    let mut json = Vec::new();
    let mut annotated: Vec<Diagnostic> = Vec::new();
    for f in files {
        let result = crate::load::load(f, chaostoolkit, opts, inputs);
        // Sampling advice, for faultline's own format (a Chaos Toolkit
        // file's paths would not point into it).
        let warnings: Vec<Diagnostic> = match &result {
            Ok((l, None)) => crate::experiment::advice::warnings(&l.experiment)
                .into_iter()
                .map(|w| Diagnostic::at(&l.file, &w.path, l.spans.locate(&w.path), w.message))
                .collect(),
            _ => vec![],
        };
        let result = result.map(|(l, _)| l);
        let shown = f.display().to_string();
        let shown_safe = escape(&shown);
        match (&result, format) {
            (Ok(l), ValidateFormat::Text) => {
                for w in &warnings {
                    eprintln!("{}", escape_text(&w.to_string()));
                }
                println!(
                    "ok       {shown_safe}  ({})",
                    escape(&l.redactor.text(&l.experiment.title))
                )
            }
            (Err(problems), ValidateFormat::Text) => {
                all_ok = false;
                for p in problems {
                    eprintln!("{}", escape_text(&p.to_string()));
                }
                let n = crate::load::total(problems);
                println!(
                    "invalid  {shown_safe}  ({n} problem{})",
                    if n == 1 { "" } else { "s" }
                );
            }
            (r, ValidateFormat::Github | ValidateFormat::Gitlab) => {
                if let Err(p) = r {
                    all_ok = false;
                    annotated.extend(p.iter().cloned());
                }
            }
            (r, ValidateFormat::Json) => {
                let problems: &[Diagnostic] = match r {
                    Ok(_) => &[],
                    Err(p) => {
                        all_ok = false;
                        p
                    }
                };
                json.push(serde_json::json!({
                    "file": shown,
                    "valid": r.is_ok(),
                    "title": r.as_ref().ok().map(|l| l.experiment.title.clone()),
                    "problems": problems,
                    "warnings": warnings,
                }));
            }
        }
    }
    match format {
        ValidateFormat::Json => println!("{}", serde_json::to_string_pretty(&json).unwrap()),
        ValidateFormat::Github => print!("{}", crate::report::annotations::github(&annotated)),
        ValidateFormat::Gitlab => println!("{}", crate::report::annotations::gitlab(&annotated)),
        ValidateFormat::Text => {}
    }
    if all_ok {
        exit::HELD
    } else {
        exit::INVALID
    }
}

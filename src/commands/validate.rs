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
) -> i32 {
    let mut all_ok = true;
    let mut json = Vec::new();
    for f in files {
        let result = crate::load::load(f, chaostoolkit, opts).map(|(l, _)| l);
        let shown = f.display().to_string();
        let shown_safe = escape(&shown);
        match (&result, format) {
            (Ok(l), ValidateFormat::Text) => {
                println!("ok       {shown_safe}  ({})", escape(&l.experiment.title))
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
                }));
            }
        }
    }
    if format == ValidateFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json).unwrap());
    }
    if all_ok {
        exit::HELD
    } else {
        exit::INVALID
    }
}

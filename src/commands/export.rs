//! `faultline export --to chaos-mesh FILE [-o DIR|-]`

use crate::cli::ExportFormat;
use crate::exit;
use crate::export::chaos_mesh;
use crate::sys::text::{escape, escape_text};
use std::path::{Path, PathBuf};

pub struct Args {
    pub to: ExportFormat,
    pub output: Option<PathBuf>,
    pub strict: bool,
    pub namespace: String,
    pub chaosd_addresses: Vec<String>,
}

/// A Kubernetes namespace: a DNS label.
fn valid_namespace(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

pub fn run(
    file: &Path,
    args: &Args,
    chaostoolkit: bool,
    opts: &crate::chaostoolkit::Options,
    inputs: &crate::experiment::vars::Inputs,
) -> i32 {
    if !valid_namespace(&args.namespace) {
        eprintln!(
            "faultline: --namespace `{}` is not a Kubernetes namespace (lowercase letters, digits and `-`, at most 63)",
            escape(&args.namespace)
        );
        return exit::INVALID;
    }
    for a in &args.chaosd_addresses {
        if !(a.starts_with("http://") || a.starts_with("https://"))
            || a.chars().any(char::is_whitespace)
        {
            eprintln!(
                "faultline: --chaosd-address `{}` is not an http:// or https:// URL",
                escape(a)
            );
            return exit::INVALID;
        }
    }
    let loaded = match crate::load::load(file, chaostoolkit, opts, inputs) {
        Ok((l, _)) => l,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}", escape_text(&p.to_string()));
            }
            return exit::INVALID;
        }
    };
    let ExportFormat::ChaosMesh = args.to;
    let o = chaos_mesh::Options {
        namespace: args.namespace.clone(),
        chaosd_addresses: args.chaosd_addresses.clone(),
        source: loaded.file.clone(),
    };
    let e = chaos_mesh::export(&loaded.experiment, &o);
    for d in &e.dropped {
        let line = format!("{}: not exported: {d}", loaded.file);
        eprintln!("{}", escape_text(&loaded.redactor.text(&line)));
    }
    for d in &e.differences {
        let line = format!("{}: differs: {d}", loaded.file);
        eprintln!("{}", escape_text(&loaded.redactor.text(&line)));
    }
    if args.strict && !e.dropped.is_empty() {
        eprintln!(
            "faultline: --strict: {} part{} of the experiment cannot be exported to Chaos Mesh (listed above); nothing was written",
            e.dropped.len(),
            if e.dropped.len() == 1 { "" } else { "s" }
        );
        return exit::INVALID;
    }
    let text = loaded
        .redactor
        .text(&chaos_mesh::to_yaml(&e, &loaded.experiment.title));
    match args.output.as_deref() {
        None => {
            print!("{text}");
            exit::HELD
        }
        Some(p) if p == Path::new("-") => {
            print!("{text}");
            exit::HELD
        }
        Some(dir) => {
            let name = format!(
                "{}.yaml",
                chaos_mesh::k8s_name(&loaded.experiment.title, 63)
            );
            if let Err(err) = std::fs::create_dir_all(dir) {
                eprintln!(
                    "faultline: cannot create {}: {err}",
                    escape(&dir.display().to_string())
                );
                return exit::PRECONDITION;
            }
            let path = dir.join(name);
            match std::fs::write(&path, text) {
                Ok(()) => {
                    eprintln!("wrote {}", escape(&path.display().to_string()));
                    exit::HELD
                }
                Err(err) => {
                    eprintln!(
                        "faultline: cannot write {}: {err}",
                        escape(&path.display().to_string())
                    );
                    exit::PRECONDITION
                }
            }
        }
    }
}

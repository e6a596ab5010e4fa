//! `check`: validate descriptor files and print compiler-style diagnostics.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::OutputFormat;
use crate::connector::native;
use crate::descriptor::diagnostic::Diagnostic;
use crate::descriptor::load::Loader;

#[derive(Serialize)]
struct JsonReport<'a> {
    files: usize,
    valid: usize,
    errors: usize,
    diagnostics: &'a [Diagnostic],
}

/// Runs `check` over `paths`; exit 0 when everything is valid.
pub fn run(paths: &[PathBuf], format: OutputFormat) -> ExitCode {
    let natives = native::all();
    let ids = native::ids(&natives);
    let report = Loader::with_natives(&ids).load_paths(paths);
    match format {
        OutputFormat::Text => {
            for d in &report.diagnostics {
                println!("{d}");
            }
            let failed: BTreeSet<&str> =
                report.diagnostics.iter().map(|d| d.file.as_str()).collect();
            let plural =
                |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            if report.is_ok() {
                println!("checked {}: all valid", plural(report.files, "file"));
            } else {
                println!(
                    "checked {}: {} valid, {} in {}",
                    plural(report.files, "file"),
                    report.loaded.len(),
                    plural(report.diagnostics.len(), "error"),
                    plural(failed.len(), "file"),
                );
            }
        }
        OutputFormat::Json => {
            let json = JsonReport {
                files: report.files,
                valid: report.loaded.len(),
                errors: report.diagnostics.len(),
                diagnostics: &report.diagnostics,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
    }
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

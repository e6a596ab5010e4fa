//! `docs`: write or verify `docs/providers/<id>.md`, one page per shipped
//! descriptor, with examples from its golden fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::connector::native;
use crate::descriptor::docs;
use crate::descriptor::load::Loader;

/// The golden fixtures' expected files of a provider, by name: `fixtures/<id>/`
/// (and `fixtures/native/<id>/` for a native connector).
fn expected_files(fixtures: &Path, id: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for (dir, prefix) in [
        (fixtures.join(id), id.to_owned()),
        (fixtures.join("native").join(id), format!("native/{id}")),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !name.ends_with(".expected.json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            out.insert(format!("{prefix}/{name}"), value);
        }
    }
    Ok(out)
}

/// Every page, by file name.
fn pages(descriptors: &Path, fixtures: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let natives = native::all();
    let ids = native::ids(&natives);
    let report = Loader::with_natives(&ids).load_paths(&[descriptors.to_path_buf()]);
    if !report.diagnostics.is_empty() {
        bail!(
            "{} descriptor problem(s): run `poblysh-connectors check {}`",
            report.diagnostics.len(),
            descriptors.display()
        );
    }
    let mut out = BTreeMap::new();
    for loaded in &report.loaded {
        let d = &loaded.compiled;
        let examples = docs::examples(&expected_files(fixtures, d.id())?);
        out.insert(format!("{}.md", d.id()), docs::render(d, &examples));
    }
    Ok(out)
}

/// Writes the pages into `out` (removing pages of descriptors that are gone),
/// or with `check` exits 1 when any differs.
pub fn run(
    check: bool,
    descriptors: &Path,
    fixtures: &Path,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let pages = pages(descriptors, fixtures)?;
    let existing: Vec<PathBuf> = match std::fs::read_dir(out) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect(),
        Err(_) => Vec::new(),
    };
    let stale: Vec<PathBuf> = existing
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !pages.contains_key(name.as_ref())
        })
        .cloned()
        .collect();
    if check {
        let mut problems: Vec<String> = stale
            .iter()
            .map(|p| format!("{} has no descriptor", p.display()))
            .collect();
        for (name, text) in &pages {
            let path = out.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                problems.push(format!("{} is stale", path.display()));
            }
        }
        if problems.is_empty() {
            println!("{} provider pages are up to date", pages.len());
            return Ok(ExitCode::SUCCESS);
        }
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("run `poblysh-connectors docs --write`");
        return Ok(ExitCode::FAILURE);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for p in &stale {
        std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    for (name, text) in &pages {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {} provider pages to {}", pages.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

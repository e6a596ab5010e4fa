//! `check` run as a process: the invalid-descriptor corpus fails with the right
//! field path and line; the shipped descriptors and the seed-shaped examples pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_json(path: &Path) -> (Output, Value) {
    let out = bin()
        .arg("check")
        .arg(path)
        .args(["--format", "json"])
        .output()
        .expect("the binary runs");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --format json printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out, json)
}

struct Case {
    file: String,
    path: String,
    line: u64,
    message: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("tests/invalid/cases.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let parts: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(parts.len(), 4, "bad line in cases.txt: {l}");
            Case {
                file: parts[0].to_owned(),
                path: parts[1].to_owned(),
                line: parts[2].parse().expect("line number"),
                message: parts[3].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_invalid_descriptor_fails_with_its_path_and_line() {
    let cases = cases();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let path = root().join("tests/invalid").join(&case.file);
        let (out, json) = check_json(&path);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, expected 1",
                case.file,
                out.status.code()
            ));
            continue;
        }
        let diagnostics = json["diagnostics"].as_array().cloned().unwrap_or_default();
        let found = diagnostics.iter().any(|d| {
            d["path"] == case.path.as_str()
                && d["line"] == case.line
                && d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&case.message))
        });
        if !found {
            failures.push(format!(
                "{}: expected `{}` at line {} containing {:?}; got {}",
                case.file,
                case.path,
                case.line,
                case.message,
                serde_json::to_string_pretty(&diagnostics).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_corpus_file_has_an_expectation() {
    let listed: Vec<String> = cases().into_iter().map(|c| c.file).collect();
    for entry in std::fs::read_dir(root().join("tests/invalid")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "cases.txt" {
            assert!(
                listed.contains(&name),
                "{name} is not listed in tests/invalid/cases.txt"
            );
        }
    }
}

#[test]
fn text_output_is_compiler_style_with_a_summary() {
    let file = root().join("tests/invalid/03-misspelled-auth-method.yaml");
    let out = bin().arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{}:16:11: auth.method: unknown value `apikey`, did you mean `api_key`?",
            file.display()
        )
    );
    assert_eq!(
        lines.next().unwrap(),
        "checked 1 file: 0 valid, 1 error in 1 file"
    );
}

#[test]
fn shipped_descriptors_pass() {
    let out = bin().current_dir(root()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("all valid"), "{stdout}");
}

#[test]
fn seed_shaped_descriptors_load_unchanged() {
    let (out, json) = check_json(&root().join("tests/seed-shape"));
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["files"], 10);
    assert_eq!(json["valid"], 10);
}

#[test]
fn missing_paths_and_empty_directories_fail() {
    let (out, json) = check_json(&root().join("tests/no-such-dir"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["diagnostics"][0]["code"], "io");
    let empty = tempdir();
    let (out, json) = check_json(&empty);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no descriptor files")
    );
}

#[test]
fn non_utf8_and_wrong_extension_fail_cleanly() {
    let dir = tempdir();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, [0x69, 0x64, 0x3a, 0x20, 0xff, 0xfe]).unwrap();
    let (out, json) = check_json(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        json["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not UTF-8")
    );
    let txt = dir.join("notes.txt");
    std::fs::write(&txt, "id: x").unwrap();
    let (out, _) = check_json(&txt);
    assert_eq!(out.status.code(), Some(1));
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "poblysh-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

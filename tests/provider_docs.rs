//! The per-provider pages in `docs/providers/` are what `docs --write`
//! generates from the descriptors and fixtures: a changed descriptor or golden
//! fixture without re-generated pages fails here (and in CI's `docs --check`).

use std::process::Command;

#[test]
fn provider_pages_are_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["docs", "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docs/providers is stale: run `cargo run -- docs --write` and commit it\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stale_page_and_a_page_without_descriptor_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
            .current_dir(root)
            .args(["docs", "--out"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["--write"]).status.success());
    assert!(run(&["--check"]).status.success());
    let page = dir.path().join("github.md");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(
        text.contains("`pr_reviewed`") && text.contains("POBLYSH_GITHUB_APP_ID"),
        "{text}"
    );
    std::fs::write(&page, text.replace("pr_reviewed", "pr_reviewd")).unwrap();
    std::fs::write(dir.path().join("gone.md"), "old").unwrap();
    let out = run(&["--check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("github.md is stale") && stderr.contains("gone.md has no descriptor"),
        "{stderr}"
    );
    // Writing again mends both.
    assert!(run(&["--write"]).status.success());
    assert!(run(&["--check"]).status.success());
    assert!(!dir.path().join("gone.md").exists());
}

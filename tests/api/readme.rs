//! The README's offline walkthrough, run as written with `bash`, `curl` and
//! `openssl` against `serve` started with no configuration (the development
//! token in `data/`): it ends with the `pr_opened` Signal.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n# first Signal, no internet needed\n")
        .expect("the README's offline walkthrough");
    let block = &readme[start + "```sh\n".len()..];
    block[..block.find("```").unwrap()].to_owned()
}

#[test]
fn the_readme_reaches_a_first_signal_offline() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("fixtures"), dir.path().join("fixtures")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_BIND_ADDR", "127.0.0.1:0")
        .env("POBLYSH_DESCRIPTORS_DIR", root.join("descriptors"))
        .env("RUST_LOG", "warn")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let out = Command::new("bash")
        .current_dir(dir.path())
        .env("BASE", &base)
        .args(["-euo", "pipefail", "-c", &walkthrough()])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // curl prints each answer without a newline: the last JSON value is the Signals page.
    let signals = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("{e}: {stdout}")))
        .last()
        .unwrap();
    assert_eq!(signals["signals"][0]["kind"], "pr_opened", "{signals}");
    assert_eq!(signals["signals"][0]["provider"], "github");
}

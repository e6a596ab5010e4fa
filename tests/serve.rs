//! `serve` run as a process: it loads the descriptors with the `check` loader,
//! refuses invalid ones unless told to skip them, and serves the catalogue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(descriptors: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .current_dir(root())
        .arg("serve")
        .args(extra)
        .env("API_BIND_ADDR", "127.0.0.1:0")
        .env("POBLYSH_DESCRIPTORS_DIR", descriptors)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Server { child, addr }
}

fn get(addr: &str, path: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), serde_json::from_str(body).unwrap())
}

#[test]
fn serves_health_and_the_catalogue_of_shipped_descriptors() {
    let server = start("descriptors", &[]);
    let (status, _, body) = get(&server.addr, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let (status, _, body) = get(&server.addr, "/providers");
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["github", "linear", "slack"]);
    let github = &body["providers"][0];
    assert_eq!(github["auth_method"], "pat");
    assert_eq!(github["ingestion_mode"], "polling_and_webhook");
    assert!(
        github["signals"]
            .as_array()
            .unwrap()
            .contains(&"pr_merged".into())
    );
    assert!(github.get("descriptor").is_none());

    let (status, _, body) = get(&server.addr, "/providers/slack");
    assert_eq!(status, 200);
    assert_eq!(body["descriptor"]["ingestion"]["mode"], "webhook");

    let (status, head, body) = get(&server.addr, "/providers/nope");
    assert_eq!(status, 404);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["code"], "not_found");
}

#[test]
fn invalid_descriptors_stop_start_up_unless_skipped() {
    let out = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .current_dir(root())
        .args(["serve", "--descriptors", "tests/invalid"])
        .env("API_BIND_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.method: unknown value `apikey`"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-invalid"), "{stderr}");

    // A mixed directory: the valid descriptor loads, the invalid one is left out.
    let dir = std::env::temp_dir().join(format!("poblysh-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        root().join("descriptors/github.yaml"),
        dir.join("github.yaml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/invalid/03-misspelled-auth-method.yaml"),
        dir.join("broken.yaml"),
    )
    .unwrap();
    let server = start(dir.to_str().unwrap(), &["--skip-invalid"]);
    let (status, _, body) = get(&server.addr, "/providers");
    assert_eq!(status, 200);
    assert_eq!(body["providers"].as_array().unwrap().len(), 1);
    assert_eq!(body["providers"][0]["id"], "github");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

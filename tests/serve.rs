//! `serve` run as a process with no configuration at all (the README's first
//! command): SQLite under `data/`, a development key and token generated there;
//! and descriptors loaded through the `check` loader, invalid ones refused unless
//! skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
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

/// `serve` in `dir` with only the bind address and descriptors set.
fn serve(dir: &Path, descriptors: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_BIND_ADDR", "127.0.0.1:0")
        .env("POBLYSH_DESCRIPTORS_DIR", descriptors)
        .env("RUST_LOG", "warn")
        .arg("serve")
        .args(extra);
    c
}

fn start(dir: &Path, descriptors: &Path, extra: &[&str]) -> Server {
    let mut child = serve(dir, descriptors, extra)
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

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| {
            format!(
                "Authorization: Bearer {t}\r\nX-Tenant-Id: 3f6b7c1e-0000-4000-8000-000000000001\r\n"
            )
        })
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn runs_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &root().join("descriptors"), &[]);
    let (status, body) = get(&server.addr, "/readyz", None);
    assert_eq!(
        (status, body["providers"].as_u64()),
        (200, Some(shipped().len() as u64)),
        "{body}"
    );
    let (status, body) = get(&server.addr, "/providers", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let shipped = shipped();
    assert!(shipped.len() >= 13, "{shipped:?}");
    assert_eq!(ids, shipped);
    // The embedded database and the development key and token live in data/.
    for file in ["connectors.db", "dev-crypto.key", "dev-operator-token"] {
        assert!(dir.path().join("data").join(file).exists(), "data/{file}");
    }
    let token = std::fs::read_to_string(dir.path().join("data/dev-operator-token")).unwrap();
    // Secrets at rest are the owner's only.
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["dev-crypto.key", "dev-operator-token"] {
            let mode = std::fs::metadata(dir.path().join("data").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "data/{file} is {:o}", mode & 0o777);
        }
    }
    let (status, body) = get(&server.addr, "/connections", Some(token.trim()));
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"connections": []}))
    );
    let (status, _) = get(&server.addr, "/connections", Some("not-the-dev-token-xx"));
    assert_eq!(status, 401);
}

#[test]
fn invalid_descriptors_stop_start_up_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), &root().join("tests/invalid"), &[])
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
    let descriptors = dir.path().join("descriptors");
    std::fs::create_dir_all(&descriptors).unwrap();
    std::fs::copy(
        root().join("descriptors/github.yaml"),
        descriptors.join("github.yaml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/invalid/03-misspelled-auth-method.yaml"),
        descriptors.join("broken.yaml"),
    )
    .unwrap();
    let server = start(dir.path(), &descriptors, &["--skip-invalid"]);
    let (status, body) = get(&server.addr, "/providers", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["github"]);
}

#[test]
fn production_refuses_to_start_without_a_key_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), &root().join("descriptors"), &[])
        .env("POBLYSH_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("POBLYSH_CRYPTO_KEY is not set"));
    assert!(!dir.path().join("data/dev-crypto.key").exists());
    let out = serve(dir.path(), &root().join("descriptors"), &[])
        .env("POBLYSH_ENV", "production")
        .env(
            "POBLYSH_CRYPTO_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("POBLYSH_OPERATOR_TOKENS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every shipped descriptor's id (its file name in `descriptors/`), sorted.
fn shipped() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root().join("descriptors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

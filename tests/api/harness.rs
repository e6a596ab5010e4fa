//! Spawns the real `poblysh-connectors serve` on a free port against a fresh
//! SQLite file or PostgreSQL database, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use poblysh_connectors::db::Db;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use uuid::Uuid;

use crate::pg;

/// The operator token every test server accepts.
pub const TOKEN: &str = "test-operator-token-0123456789";
/// The encryption key of test servers (32 bytes, base64).
pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its `DATABASE_URL`.
    pub database_url: String,
    /// Its working directory (holds the SQLite file).
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with the test environment (for `keys`, `migrate`, …).
pub fn command(dir: &Path, database_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("POBLYSH_CRYPTO_KEY", KEY)
        .env("POBLYSH_OPERATOR_TOKENS", TOKEN)
        .env("POBLYSH_DESCRIPTORS_DIR", root().join("descriptors"))
        .env("API_BIND_ADDR", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            if std::env::var_os("TEST_LOG").is_some() {
                "info"
            } else {
                "warn"
            },
        );
    c
}

impl Server {
    /// Starts a server on a fresh database.
    pub async fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[]).await
    }

    /// Starts a second server on an existing database.
    pub async fn start_on(database_url: String) -> Server {
        Server::spawn(tempfile::tempdir().unwrap(), database_url, &[]).await
    }

    /// Starts a server with extra environment variables.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
            Backend::Postgres => pg::fresh_database(),
        };
        Server::spawn(dir, database_url, env).await
    }

    async fn spawn(dir: tempfile::TempDir, database_url: String, env: &[(&str, &str)]) -> Server {
        Server::spawn_role(dir, database_url, env, "api").await
    }

    /// Starts a server running the API and the sync engine (`--role all`) in
    /// `dir` on `database_url`.
    pub async fn start_all(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn_role(dir, database_url, env, "all").await
    }

    /// Starts a server with `--role role` in `dir` on `database_url`, its
    /// log (stderr) written to `dir/stderr.log`.
    pub async fn start_logged(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
        role: &str,
    ) -> Server {
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        Server::spawn_with(dir, database_url, env, role, Stdio::from(log)).await
    }

    /// Its log, when started with [`Server::start_logged`].
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    async fn spawn_role(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
        role: &str,
    ) -> Server {
        let stderr = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        Server::spawn_with(dir, database_url, env, role, stderr).await
    }

    async fn spawn_with(
        dir: tempfile::TempDir,
        database_url: String,
        env: &[(&str, &str)],
        role: &str,
        stderr: Stdio,
    ) -> Server {
        poblysh_connectors::engine::http::install_crypto_provider();
        let mut cmd = command(dir.path(), &database_url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(["serve", "--role", role])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("the server did not start (first line {line:?}); run with TEST_LOG=1")
            })
            .to_owned();
        Server {
            child,
            base: addr,
            database_url,
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit;
    /// how long it took, and the working directory (to start again in).
    pub fn terminate(
        mut self,
        limit: std::time::Duration,
    ) -> (std::time::Duration, tempfile::TempDir) {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let took = started.elapsed();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (took, dir)
    }

    /// Kills the process at once (SIGKILL, as `kill -9`); the working
    /// directory (to start again in).
    #[allow(dead_code)]
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// A request with no credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// A request with the operator token and no tenant.
    pub fn operator(&self, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(TOKEN)
    }

    /// A request with the operator token and `X-Tenant-Id`.
    pub fn tenant(&self, tenant: Uuid, method: Method, path: &str) -> RequestBuilder {
        self.operator(method, path)
            .header("X-Tenant-Id", tenant.to_string())
    }

    /// Registers (or replaces) runtime provider `id` from YAML: the status
    /// (it must be 200 or 201).
    #[allow(dead_code)]
    pub async fn put_descriptor(&self, id: &str, yaml: &str) -> u16 {
        let (status, body) = send(
            self.operator(Method::PUT, &format!("/providers/{id}"))
                .header("content-type", "application/yaml")
                .body(yaml.to_owned()),
        )
        .await;
        assert!(status == 200 || status == 201, "{status} {body}");
        status
    }

    /// A second handle on the database, for setting up data and checking storage.
    pub async fn db(&self) -> Db {
        Db::connect(&self.database_url).await.unwrap()
    }
}

/// Sends a request; returns the status and the JSON body (Null when empty).
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response: Response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.unwrap();
    if status >= 400 {
        assert_eq!(
            content_type, "application/problem+json",
            "errors are problem+json (status {status})"
        );
    }
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}

/// Runs the same async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($server:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($server: $crate::api::harness::Server) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::api::harness::Server::start($crate::api::harness::Backend::Sqlite).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                run($crate::api::harness::Server::start($crate::api::harness::Backend::Postgres).await).await;
            }
        }
    };
}

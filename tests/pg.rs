//! A throwaway PostgreSQL cluster for the tests, started once per test process
//! from the installed `initdb`/`pg_ctl` on a free port (no Docker), or the
//! server at `TEST_DATABASE_URL`. Each test gets its own fresh database. A
//! watchdog stops the cluster and removes its files when the test process exits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the cluster listens: `postgres://postgres@127.0.0.1:PORT`.
static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the cluster (when this process starts it) keep PostgreSQL's durable
/// defaults: fsync and synchronous commit on. Call before `fresh_database`.
#[allow(dead_code)]
pub fn durable() {
    DURABLE.store(true, Ordering::Relaxed);
}

fn bin(name: &str) -> PathBuf {
    for dir in [
        "/usr/lib/postgresql/15/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/17/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb and
/// the server refuse to run as root).
fn pg_command(name: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin(name));
        c
    } else {
        Command::new(bin(name))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_cluster() -> Result<String, String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let dir = std::env::temp_dir().join(format!("poblysh-pg-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The postgres user must own the cluster directory.
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status();
    let _ = Command::new("chmod").args(["0777"]).arg(&dir).status();
    let out = pg_command("initdb")
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    // Tests trade durability for speed; benchmarks that measure commits ask
    // for the defaults (fsync, synchronous commit) with `durable()`.
    let durable = DURABLE.load(Ordering::Relaxed);
    let fast = if durable {
        ""
    } else {
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1{fast} -c max_connections=300",
        dir.display()
    );
    let out = pg_command("pg_ctl")
        .arg("-D")
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(dir.join("log"))
        .args(["-w", "start"])
        .output()
        .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        return Err(format!(
            "pg_ctl start failed: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Watchdog: when this test process is gone, stop the cluster and remove it.
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        stop = if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
        {
            format!("runuser -u postgres -- {}", bin("pg_ctl").display())
        } else {
            bin("pg_ctl").display().to_string()
        },
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}

/// The URL of a new, empty database on the test cluster. Panics (failing the
/// test) when PostgreSQL cannot be started: these tests never skip.
pub fn fresh_database() -> String {
    let base = CLUSTER
        .get_or_init(start_cluster)
        .as_ref()
        .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests: {e}"))
        .clone();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let out = Command::new("psql")
        .arg(format!("{base}/postgres"))
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "cannot create a test database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{base}/{name}")
}

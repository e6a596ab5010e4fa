//! What the server benches share: the service's own `serve` as a child
//! process of the bench binary (`<bench> --serve <role>`), started on a
//! database URL with the bench's key and operator token, and its address;
//! the service's allocator; GitHub's webhook signature; latency quantiles.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use clap::Parser;
use poblysh_connectors::cli::Cli;

/// A throwaway benchmark encryption key ("0123456789abcdef" twice, base64).
pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The operator token the server is started with.
pub const OPERATOR: &str = "bench-operator-token-0123456789";
/// The secret of GitHub's documented signature example, used as the bench
/// connections' webhook secret.
#[allow(dead_code)]
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";

/// The binary's allocator, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GitHub's `X-Hub-Signature-256` of `body` under [`GITHUB_SECRET`].
#[allow(dead_code)]
pub fn github_signature(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `p` quantile (nearest rank) of latencies in microseconds, sorted
/// ascending, in milliseconds; `None` when there are none.
#[allow(dead_code)]
pub fn quantile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    let last = sorted_us.len().checked_sub(1)?;
    Some(f64::from(sorted_us[(last as f64 * p).round() as usize]) / 1000.0)
}

/// An environment variable as a number, or `default`.
#[allow(dead_code)]
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When the bench binary was started as `--serve <role>`, runs the service's
/// `serve` with that role on a free port and returns true (then exit).
pub fn serve_if_asked() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--serve") {
        return false;
    }
    let role = args.get(2).map_or("api", String::as_str);
    let cli = Cli::parse_from([
        "poblysh-connectors",
        "serve",
        "--role",
        role,
        "--bind",
        "127.0.0.1:0",
        "--descriptors",
        "descriptors",
    ]);
    let _ = poblysh_connectors::cli::run(cli);
    true
}

/// Starts the server (`role`) on `database_url` with [`OPERATOR`] as its
/// token and `env` on top; returns it and its base URL once it listens (the caller
/// kills and waits for it).
#[allow(clippy::zombie_processes, reason = "the caller kills and waits for it")]
pub fn start(database_url: &str, role: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", role])
        .env("DATABASE_URL", database_url)
        .env("POBLYSH_CRYPTO_KEY", KEY)
        .env("POBLYSH_OPERATOR_TOKEN", OPERATOR)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("the server exited").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            // Keep draining stdout so the server never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (server, url.trim().to_owned());
        }
    }
}

/// The peak resident set of a process, in KiB (`VmHWM`).
#[allow(dead_code)]
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) process `pid` has used so far.
#[allow(dead_code)]
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    ticks as f64 / 100.0
}

/// CPU seconds used so far by every process named `name` (e.g. `postgres`:
/// the server and its backends).
#[allow(dead_code)]
pub fn cpu_seconds_named(name: &str) -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(cpu_seconds)
        .sum()
}

/// Sends `request`; its JSON answer, which must be a 2xx.
#[allow(dead_code)]
pub async fn ok(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

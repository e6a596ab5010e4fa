//! Webhook ingestion under load: signed GitHub `pull_request` deliveries (the
//! real octokit sample, 28 KB, each with its own delivery id and
//! `updated_at` so every one is a new Signal) posted by 64 concurrent
//! keep-alive connections to the real server (`serve --role api`, release
//! build, PostgreSQL), and the same generator against `GET /healthz` as the
//! baseline. Reports accepted webhooks/s, p50/p99 latency, the ratio to the
//! baseline, the server's peak RSS, the CPU time per webhook of the server,
//! PostgreSQL and the generator, the commits per webhook, and checks that
//! every acknowledged delivery is in the database.
//!
//! Run: `cargo bench --bench webhooks` (`POBLYSH_BENCH_SECONDS=10`,
//! `POBLYSH_BENCH_CONNECTIONS=64`, `POBLYSH_BENCH_BACKEND=sqlite` to try the
//! embedded database). The server runs in its own process; the generator
//! shares the machine's cores with it and with PostgreSQL.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "support/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poblysh_connectors::db::Db;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const TENANT: &str = "0190f5a2-0000-7000-8000-00000000b3c4";
/// The sample's `pull_request.updated_at`, replaced per delivery.
const SAMPLE_TIME: &str = "2019-05-15T15:20:33Z";

fn main() {
    if !server::serve_if_asked() {
        orchestrate();
    }
}

fn orchestrate() {
    let backend = std::env::var("POBLYSH_BENCH_BACKEND").unwrap_or_else(|_| "postgres".into());
    let seconds = server::env_or("POBLYSH_BENCH_SECONDS", 10);
    let connections = server::env_or("POBLYSH_BENCH_CONNECTIONS", 64) as usize;
    let _dir;
    let database_url = if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
        _dir = Some(dir);
        url
    } else {
        _dir = None;
        // Acknowledged means committed durably: PostgreSQL with its default
        // fsync and synchronous commit (`POBLYSH_BENCH_PG_FAST=1` turns them off,
        // as the test cluster does).
        if std::env::var_os("POBLYSH_BENCH_PG_FAST").is_none() {
            pg::durable();
        }
        pg::fresh_database()
    };
    let (mut server, base) =
        server::start(&database_url, "api", &[("POBLYSH_WEBHOOK_RATE_LIMIT", "0")]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        poblysh_connectors::engine::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(connections)
            .build()
            .unwrap();
        setup(&client, &base).await;
        let sample =
            std::fs::read_to_string("fixtures/github/webhook.pull_request.opened.json").unwrap();
        let parts: Arc<Vec<String>> =
            Arc::new(sample.split(SAMPLE_TIME).map(str::to_owned).collect());
        let webhook_url = format!("{base}/webhooks/github/{TENANT}");
        // Enough for 10,000 webhooks/s over the warm-up and the measured run.
        presign(&parts, 10_000 * (seconds + 2));
        let health_url = format!("{base}/healthz");

        // Warm-up (not measured, but stored), then the baseline, then the webhooks.
        let warmup = run_load(
            &client,
            &webhook_url,
            Some(&parts),
            Duration::from_secs(2),
            connections,
        )
        .await;
        let baseline = run_load(
            &client,
            &health_url,
            None,
            Duration::from_secs(seconds),
            connections,
        )
        .await;
        // Where the cores go while the webhooks are measured.
        let cpu = || {
            [
                server::cpu_seconds(server.id()),
                server::cpu_seconds_named("postgres"),
                server::cpu_seconds(std::process::id()),
            ]
        };
        let db = Db::connect(&database_url).await.unwrap();
        let commits_before = commits(&db).await;
        let cpu_before = cpu();
        let webhooks = run_load(
            &client,
            &webhook_url,
            Some(&parts),
            Duration::from_secs(seconds),
            connections,
        )
        .await;
        let cpu_after = cpu();
        let commits_during = commits(&db).await.saturating_sub(commits_before);
        let per_webhook_us = |i: usize| {
            ((cpu_after[i] - cpu_before[i]) * 1e6 / webhooks.ok.max(1) as f64).round()
        };

        let deliveries = count(&db, "SELECT COUNT(*) AS n FROM webhook_deliveries").await;
        let signals = count(&db, "SELECT COUNT(*) AS n FROM signals").await;
        let acknowledged = webhooks.ok + warmup.ok;
        json!({
            "backend": backend,
            "connections": connections,
            "seconds": seconds,
            "baseline_healthz": baseline.summary(),
            "webhooks": webhooks.summary(),
            "ratio_to_baseline": webhooks.rate() / baseline.rate(),
            "acknowledged_2xx": acknowledged,
            "deliveries_stored": deliveries,
            "signals_stored": signals,
            "no_loss": deliveries == acknowledged && signals == acknowledged,
            "server_peak_rss_kib": server::peak_rss(server.id()),
            // Transactions the database committed per webhook (the group
            // commit's batch is its inverse; PostgreSQL only).
            "commits_per_webhook": (commits_during as f64 / webhooks.ok.max(1) as f64 * 1000.0).round() / 1000.0,
            "cpu_us_per_webhook": {
                "server": per_webhook_us(0),
                "postgres": per_webhook_us(1),
                "generator": per_webhook_us(2),
            },
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// Unique per delivery: its id and its `updated_at`.
static NEXT: AtomicU64 = AtomicU64::new(0);

async fn setup(client: &reqwest::Client, base: &str) {
    let response = client
        .post(format!("{base}/connections"))
        .bearer_auth(server::OPERATOR)
        .header("x-tenant-id", TENANT)
        .json(&json!({
            "provider": "github",
            "credentials": {"token": "github_pat_bench", "webhookSecret": server::GITHUB_SECRET},
            "config": {"repos": ["Codertocat/Hello-World"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

struct Load {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        server::quantile_ms(&self.latencies_us, p).unwrap_or(0.0)
    }

    fn summary(&self) -> Value {
        json!({
            "ok": self.ok,
            "failed": self.failed,
            "per_second": self.rate().round(),
            "p50_ms": (self.percentile(0.50) * 100.0).round() / 100.0,
            "p99_ms": (self.percentile(0.99) * 100.0).round() / 100.0,
        })
    }
}

/// The body and signature of delivery `n` (its `updated_at` is 2020-01-01 + n s).
fn body_of(parts: &[String], n: u64) -> Vec<u8> {
    let time = chrono::DateTime::from_timestamp(1_577_836_800 + n as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    parts.join(&time).into_bytes()
}

/// Signatures computed before the run (like a load tool's prepared requests),
/// so the generator spends its share of the two cores on sending, not hashing.
static PRESIGNED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn presign(parts: &Arc<Vec<String>>, count: u64) {
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let parts = Arc::clone(parts);
            std::thread::spawn(move || {
                (0..count)
                    .filter(|n| n % threads == t)
                    .map(|n| (n, server::github_signature(&body_of(&parts, n))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = vec![String::new(); count as usize];
    for h in handles {
        for (n, s) in h.join().unwrap() {
            all[n as usize] = s;
        }
    }
    let _ = PRESIGNED.set(all);
}

fn signed(parts: &[String]) -> (String, String, Vec<u8>) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let body = body_of(parts, n);
    let signature = match PRESIGNED.get().and_then(|p| p.get(n as usize)) {
        Some(s) => s.clone(),
        None => server::github_signature(&body),
    };
    (format!("bench-{n}"), signature, body)
}

async fn run_load(
    client: &reqwest::Client,
    url: &str,
    webhook: Option<&Arc<Vec<String>>>,
    duration: Duration,
    connections: usize,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, stop) = (client.clone(), url.to_owned(), Arc::clone(&stop));
        let parts = webhook.cloned();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let request = match &parts {
                    Some(parts) => {
                        let (delivery, signature, body) = signed(parts);
                        client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-github-event", "pull_request")
                            .header("x-github-delivery", delivery)
                            .header("x-hub-signature-256", signature)
                            .body(body)
                    }
                    None => client.get(&url),
                };
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Ok(r) => {
                        failed += 1;
                        let _ = r.bytes().await;
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed, latencies)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut load = Load {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ok, failed, latencies) = t.await.unwrap();
        load.ok += ok;
        load.failed += failed;
        load.latencies_us.extend(latencies);
    }
    load.elapsed = started.elapsed();
    load.latencies_us.sort_unstable();
    load
}

/// Transactions committed so far in the bench's database (0 on SQLite).
async fn commits(db: &Db) -> u64 {
    if db.backend() != sea_orm::DbBackend::Postgres {
        return 0;
    }
    count(
        db,
        "SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

async fn count(db: &Db, sql: &str) -> u64 {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(db.backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() as u64
}

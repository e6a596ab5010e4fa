//! Sync throughput, end to end: a backfill of 100,000 GitHub-issue-shaped
//! records (about 500 bytes each, 100 per page, cursor pagination, bearer auth,
//! timestamp delta, the real GitHub descriptor's field mapping) from a local
//! mock API through the real engine (queue claim, HTTP client, mapping, Signal
//! and checkpoint writes in one transaction) into SQLite and into PostgreSQL.
//! Reports records/s, wall time and the engine process's peak RSS.
//!
//! Run: `cargo bench --bench sync` (`POBLYSH_BENCH_RECORDS=20000` for a quick
//! run, `POBLYSH_BENCH_RUNS=3` to repeat each backend on a fresh database).
//! The mock API and each backend's engine run in their own processes, so the
//! peak RSS is the engine's alone and the mock's pre-rendered pages are not
//! counted. PostgreSQL is a throwaway cluster from the installed binaries (or
//! `TEST_DATABASE_URL`).

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::app::Builder;
use poblysh_connectors::config::Config;
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::engine::http::install_crypto_provider;
use poblysh_connectors::sync::executor::ExecutorSettings;
use poblysh_connectors::sync::scheduler;
use secrecy::SecretString;
use serde_json::{Value, json};

/// The binary's allocator, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAGE: usize = 100;
const TOKEN: &str = "github_pat_11ABCDEFG0bench";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn records() -> usize {
    std::env::var("POBLYSH_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn runs() -> usize {
    std::env::var("POBLYSH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--mock") => mock(),
        Some("--engine") => engine(&args[2], &args[3]),
        _ => orchestrate(),
    }
}

/// One GitHub issue as `GET /repos/{owner}/{repo}/issues` returns it, trimmed
/// to the fields the mapping reads plus a body (the recorded sample's shape,
/// `provider-samples/github/rest.issues.list.page1.recorded.json`).
fn issue(i: usize, updated: DateTime<Utc>) -> Value {
    let number = i + 1;
    let labels = match i % 4 {
        0 => json!([{"id": 208045946, "name": "bug", "color": "d73a4a", "default": true}]),
        1 => json!([]),
        2 => json!([{"id": 208045947, "name": "enhancement", "color": "a2eeef", "default": true}]),
        _ => json!([{"id": 208045948, "name": "critical", "color": "b60205", "default": false}]),
    };
    json!({
        "html_url": format!("https://github.com/acme/widgets/issues/{number}"),
        "id": 1_308_969_059u64 + i as u64,
        "node_id": "I_kwDOHrjtpM5OBUhj",
        "number": number,
        "title": format!("Test issue {number}"),
        "user": {"login": "octokit-fixture-user-a", "id": 31898046, "type": "User", "site_admin": false},
        "labels": labels,
        "state": if i.is_multiple_of(3) { "closed" } else { "open" },
        "assignee": null,
        "comments": i % 7,
        "created_at": (updated - Duration::days(3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "updated_at": updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "closed_at": null,
        "author_association": "OWNER",
        "body": "Steps to reproduce: open the widget panel, resize it twice.",
    })
}

/// The mock API: every page rendered up front, served by cursor.
fn mock() {
    let total = records();
    let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let pages: Vec<Vec<u8>> = (0..total.div_ceil(PAGE))
        .map(|p| {
            let items: Vec<Value> = (p * PAGE..((p + 1) * PAGE).min(total))
                .map(|i| issue(i, start + Duration::seconds(i as i64)))
                .collect();
            let next = if (p + 1) * PAGE < total {
                json!(format!("Y3Vyc29yOnYyOpK0{}", p + 1))
            } else {
                Value::Null
            };
            serde_json::to_vec(&json!({"items": items, "next": next})).unwrap()
        })
        .collect();
    let bytes: usize = pages.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/repos/acme/widgets/issues", axum::routing::get(page))
            .with_state(Arc::new(pages));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "listening {} {}",
            listener.local_addr().unwrap().port(),
            bytes / total.max(1)
        );
        axum::serve(listener, app).await.unwrap();
    });
}

async fn page(
    State(pages): State<Arc<Vec<Vec<u8>>>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "Bad credentials").into_response();
    }
    if q.get("per_page").map(String::as_str) != Some("100") || !q.contains_key("since") {
        return (StatusCode::BAD_REQUEST, "per_page=100 and since expected").into_response();
    }
    let index = match q.get("after") {
        None => 0,
        Some(c) => match c
            .strip_prefix("Y3Vyc29yOnYyOpK0")
            .and_then(|n| n.parse().ok())
        {
            Some(n) => n,
            None => return (StatusCode::BAD_REQUEST, "bad cursor").into_response(),
        },
    };
    match pages.get(index) {
        Some(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The GitHub descriptor's field mapping over a cursor-paginated issues list.
fn descriptor(base_url: &str) -> String {
    let github = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("descriptors/github.yaml"),
    )
    .unwrap();
    let mapping =
        &github[github.find("\nfieldMapping:").unwrap()..github.find("\nhealthCheck:").unwrap()];
    let mapping = mapping.replace("itemsPath: $[*]", "itemsPath: $.items[*]");
    format!(
        r#"
id: github_bench
name: GitHub (bench)
description: GitHub issues over cursor pagination.
category: code_devops
icon: github
kind: generic
version: 1.0.0
baseUrl: {base_url}
auth:
  method: pat
  config:
    delivery: bearer
    paramName: Authorization
    credentialKey: token
    credentialFields: [{{key: token, label: Token, type: password, required: true}}]
ingestion:
  mode: polling
  endpoint: "{{{{baseUrl}}}}/repos/acme/widgets/issues"
  method: GET
  headers: {{Accept: application/vnd.github+json}}
  delta: {{type: timestamp_filter, queryParam: since, format: iso8601}}
  rateLimitRpm: 1000000
  pagination: {{type: cursor, nextPath: $.next, nextParam: after, pageSize: 100, pageSizeParam: per_page}}
  initialCheckpoint: "2023-01-01T00:00:00Z"
  maxPages: 100000
{mapping}
healthCheck: {{endpoint: "{{{{baseUrl}}}}/rate_limit", method: GET, expectStatus: 200, timeoutMs: 5000}}
"#
    )
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One backfill through the real engine; prints a JSON line with the figures.
fn engine(database_url: &str, mock_url: &str) {
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let compiled = load_str("github_bench.yaml", &descriptor(mock_url), Format::Yaml)
            .unwrap_or_else(|d| panic!("{d:#?}"));
        let config = Config::from_map(&BTreeMap::from([
            ("POBLYSH_CRYPTO_KEY", KEY),
            ("POBLYSH_OPERATOR_TOKENS", "bench-operator-token-0123"),
            ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
            ("DATABASE_URL", database_url),
        ]))
        .unwrap();
        let node = Builder::new(config)
            .builtins(vec![compiled])
            .build()
            .await
            .unwrap();
        let services = Arc::clone(&node.services);
        let tenant = TenantId::from_uuid(uuid::Uuid::now_v7());
        let connection = connections::create(
            &services.db,
            &services.keys,
            tenant,
            NewConnection {
                provider: "github_bench".into(),
                name: None,
                config: json!({}),
                credentials: [("token".to_owned(), SecretString::from(TOKEN))].into(),
                tokens: None,
            },
        )
        .await
        .unwrap();
        scheduler::enqueue_backfill(&services, tenant, connection.id, "github_bench")
            .await
            .unwrap();
        let executor = node.executor(ExecutorSettings::default());
        let rss_before = status_field("VmRSS:");
        let started = Instant::now();
        let report = executor.try_execute_next().await.unwrap().unwrap();
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(report.state, JobState::Succeeded, "{report:?}");
        assert_eq!(report.signals as usize, records(), "{report:?}");
        println!(
            "{}",
            json!({
                "records": report.signals,
                "wall_s": wall,
                "records_per_s": report.signals as f64 / wall,
                "peak_rss_kib": status_field("VmHWM:"),
                "rss_before_kib": rss_before,
            })
        );
    });
}

fn spawn(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn run_engine(database_url: &str, mock_url: &str) -> Value {
    let out = spawn(&["--engine", database_url, mock_url])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "the engine process failed");
    let line = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(line.lines().last().unwrap()).unwrap()
}

fn orchestrate() {
    let mut mock = spawn(&["--mock"]);
    let mut line = String::new();
    BufReader::new(mock.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut parts = line.split_whitespace().skip(1);
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let record_bytes: usize = parts.next().unwrap().parse().unwrap();
    let mock_url = format!("http://127.0.0.1:{port}");
    println!(
        "sync bench: {} records, {PAGE}/page, ~{record_bytes} bytes/record (page JSON / records)",
        records()
    );
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<10} {:>12} {:>10} {:>14} {:>14}",
        "backend", "records/s", "wall s", "peak RSS MiB", "RSS idle MiB"
    );
    let mut cases = Vec::new();
    for run in 0..runs() {
        let sqlite = format!("sqlite://{}/bench-{run}.db?mode=rwc", dir.path().display());
        cases.push(("sqlite", sqlite));
        cases.push(("postgres", pg::fresh_database()));
    }
    for (name, url) in cases {
        let r = run_engine(&url, &mock_url);
        println!(
            "{:<10} {:>12.0} {:>10.2} {:>14.1} {:>14.1}",
            name,
            r["records_per_s"].as_f64().unwrap(),
            r["wall_s"].as_f64().unwrap(),
            r["peak_rss_kib"].as_f64().unwrap() / 1024.0,
            r["rss_before_kib"].as_f64().unwrap() / 1024.0,
        );
    }
    let _ = mock.kill();
    let _ = mock.wait();
}

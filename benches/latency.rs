//! Latency from a request to its effect, through the real server
//! (`serve --role all`, release build, its own process), on SQLite and on
//! PostgreSQL (fsync and synchronous commit on):
//!
//! * **backfill start**: `POST /connections` for 100 new connections, one
//!   after another, each for a connector whose API answers at once (a local
//!   mock); for each, the job's `started_at` minus the instant just before
//!   the POST was sent;
//! * **webhook visibility**: 200 signed GitHub `issues` deliveries (the real
//!   octokit sample, each a new Signal); for each, the time from the 2xx to
//!   the first `GET /signals` that returns its Signal (polled back to back);
//! * **Gmail push to Signal**: a Gmail connection (connected through the
//!   OAuth flow against a fake Google, `support/google.rs`), then 100
//!   messages, each announced by a Pub/Sub push signed like Google's; for
//!   each, the time from sending the push to the first `GET /signals` that
//!   returns the message (the push is verified, a sync is queued, the worker
//!   reads the history and the message, the Signal is stored).
//!
//! Reports p50/p99/max of each. Run: `cargo bench --bench latency`
//! (`POBLYSH_BENCH_BACKEND=sqlite|postgres`, both by default).

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

#[path = "support/google.rs"]
mod google;
#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const CONNECTIONS: usize = 100;
const WEBHOOKS: usize = 200;
const PUSHES: usize = 100;
/// The sample's `issue.updated_at`, replaced per delivery.
const SAMPLE_TIME: &str = "2019-05-15T15:20:18Z";

fn main() {
    if !server::serve_if_asked() {
        orchestrate();
    }
}

/// A provider API that answers every page at once, with nothing new.
async fn mock() -> String {
    let app = axum::Router::new()
        .route(
            "/items",
            axum::routing::get(|| async { axum::Json(json!({"items": [], "next": null})) }),
        )
        .route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn descriptor(base_url: &str) -> String {
    format!(
        r#"id: latency_mock
name: Latency mock
description: Answers at once with nothing new.
category: custom
icon: generic
kind: generic
version: 1.0.0
baseUrl: {base_url}
signals: [item_updated]
auth:
  method: pat
  config:
    delivery: bearer
    paramName: Authorization
    credentialKey: token
    credentialFields: [{{key: token, label: Token, type: password, required: true}}]
ingestion:
  mode: polling
  endpoint: "{{{{baseUrl}}}}/items"
  method: GET
  delta: {{type: timestamp_filter, queryParam: since, format: iso8601}}
  rateLimitRpm: 100000
  pagination: {{type: cursor, nextPath: $.next, nextParam: after, pageSize: 100}}
fieldMapping:
  itemsPath: $.items[*]
  idPath: $.id
  timestampPath: $.updated_at
  summaryTemplate: "{{{{title}}}}"
  signalTypeRules: []
  defaultType: item_updated
healthCheck: {{endpoint: "{{{{baseUrl}}}}/health", method: GET, expectStatus: 200, timeoutMs: 5000}}
"#
    )
}

fn orchestrate() {
    let backends: Vec<String> = match std::env::var("POBLYSH_BENCH_BACKEND") {
        Ok(b) => vec![b],
        Err(_) => vec!["sqlite".into(), "postgres".into()],
    };
    poblysh_connectors::engine::http::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in backends {
        let _dir;
        let url = if backend == "sqlite" {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/latency.db?mode=rwc", dir.path().display());
            _dir = Some(dir);
            url
        } else {
            _dir = None;
            pg::durable();
            pg::fresh_database()
        };
        let mailbox = google::Mailbox::default();
        let google_url = runtime.block_on(google::serve(mailbox.clone()));
        let mut env = google::env(&google_url);
        env.push(("POBLYSH_ALLOW_PRIVATE_NETWORKS".into(), "true".into()));
        env.push(("POBLYSH_WEBHOOK_RATE_LIMIT".into(), "0".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (mut server, base) = server::start(&url, "all", &env);
        let mut report = runtime.block_on(measure(&backend, &base));
        report["gmail_push_to_signal_visible_ms"] = runtime.block_on(gmail_pushes(&base, &mailbox));
        let _ = server.kill();
        let _ = server.wait();
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    }
}

async fn measure(backend: &str, base: &str) -> Value {
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let mock_url = mock().await;
    let put = client
        .put(format!("{base}/providers/latency_mock"))
        .bearer_auth(server::OPERATOR)
        .header("content-type", "application/yaml")
        .body(descriptor(&mock_url))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());

    // Backfill start after POST /connections.
    let mut starts = Vec::new();
    for _ in 0..CONNECTIONS {
        let tenant = uuid::Uuid::now_v7().to_string();
        let sent = Utc::now();
        let created: Value = server::ok(
            client
                .post(format!("{base}/connections"))
                .bearer_auth(server::OPERATOR)
                .header("x-tenant-id", &tenant)
                .json(&json!({"provider": "latency_mock", "credentials": {"token": "t"}})),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = loop {
            let jobs: Value = server::ok(
                client
                    .get(format!("{base}/jobs?connection_id={id}"))
                    .bearer_auth(server::OPERATOR)
                    .header("x-tenant-id", &tenant),
            )
            .await;
            let started = jobs["jobs"].as_array().unwrap().iter().find_map(|j| {
                (j["job_type"] == "full")
                    .then(|| j["started_at"].as_str())
                    .flatten()
                    .map(|t| t.parse::<DateTime<Utc>>().unwrap())
            });
            if let Some(t) = started {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "the backfill of {id} never started"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        starts.push((started - sent).num_microseconds().unwrap().max(0) as u32);
    }

    // A webhook's Signal visible after the 2xx.
    let tenant = uuid::Uuid::now_v7().to_string();
    let _: Value = server::ok(client
        .post(format!("{base}/connections"))
        .bearer_auth(server::OPERATOR)
        .header("x-tenant-id", &tenant)
        .json(&json!({
            "provider": "github",
            "credentials": {"token": "github_pat_bench", "webhookSecret": server::GITHUB_SECRET},
            "config": {"repos": ["Codertocat/Hello-World"]},
        })))
    .await;
    let sample = std::fs::read_to_string("fixtures/github/webhook.issues.opened.json").unwrap();
    assert!(sample.contains(SAMPLE_TIME));
    let mut visible = Vec::new();
    for n in 0..WEBHOOKS {
        let updated = DateTime::from_timestamp(1_577_836_800 + n as i64 * 60, 0).unwrap();
        let body = sample.replace(
            SAMPLE_TIME,
            &updated.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        let response = client
            .post(format!("{base}/webhooks/github/{tenant}"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", format!("latency-{n}"))
            .header(
                "x-hub-signature-256",
                server::github_signature(body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let acked = Instant::now();
        newest_is(&client, base, &tenant, "provider=github", updated, acked).await;
        visible.push(acked.elapsed().as_micros() as u32);
    }
    json!({
        "backend": backend,
        "backfill_start_after_post_ms": quantiles(starts),
        "webhook_signal_visible_after_2xx_ms": quantiles(visible),
    })
}

/// Connects Gmail, then times each of [`PUSHES`] pushes to its Signal.
async fn gmail_pushes(base: &str, mailbox: &google::Mailbox) -> Value {
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let tenant = uuid::Uuid::now_v7().to_string();
    let started: Value = server::ok(
        client
            .post(format!("{base}/connect/gmail"))
            .bearer_auth(server::OPERATOR)
            .header("x-tenant-id", &tenant),
    )
    .await;
    let state = started["state"].as_str().unwrap();
    let _: Value = server::ok(client.get(format!(
        "{base}/connect/gmail/callback?code=bench&state={state}"
    )))
    .await;
    // The watch (which routes pushes to the mailbox) and the backfill first.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs: Value = server::ok(
            client
                .get(format!("{base}/jobs?state=succeeded"))
                .bearer_auth(server::OPERATOR)
                .header("x-tenant-id", &tenant),
        )
        .await;
        if jobs["jobs"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Gmail setup never finished: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let authorization = google::authorization();
    let mut visible = Vec::new();
    for n in 0..PUSHES {
        let at = DateTime::from_timestamp(1_764_000_000 + n as i64 * 60, 0).unwrap();
        let history = mailbox.arrive(&format!("19dd{n:012x}"), at);
        let sent = Instant::now();
        let response = client
            .post(format!("{base}/webhooks/gmail"))
            .header("content-type", "application/json")
            .header("authorization", &authorization)
            .body(google::push_body(history, &format!("bench-{n}")))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        newest_is(&client, base, &tenant, "kind=email_received", at, sent).await;
        visible.push(sent.elapsed().as_micros() as u32);
    }
    quantiles(visible)
}

/// Polls `GET /signals?{filter}&limit=1` back to back until its newest Signal
/// occurred at `at` (10 s after `since` at most).
async fn newest_is(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    filter: &str,
    at: DateTime<Utc>,
    since: Instant,
) {
    let deadline = since + Duration::from_secs(10);
    loop {
        let page: Value = server::ok(
            client
                .get(format!("{base}/signals?{filter}&limit=1"))
                .bearer_auth(server::OPERATOR)
                .header("x-tenant-id", tenant),
        )
        .await;
        let newest = page["signals"][0]["occurred_at"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().unwrap());
        if newest == Some(at) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no Signal of {at} ({filter}) became visible"
        );
    }
}

fn quantiles(mut us: Vec<u32>) -> Value {
    us.sort_unstable();
    let at = |p: f64| server::quantile_ms(&us, p).expect("latencies were measured");
    json!({"n": us.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

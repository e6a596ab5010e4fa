//! An operator who can see: request ids go out in `X-Request-Id` (the
//! caller's when sane); a failing job's JSON log line carries its tenant,
//! provider, connection and job ids; after a sync and a webhook the metrics
//! appear by name and label on `/metrics` of an `all` node, and of a `worker`
//! node (which serves `/healthz`, `/readyz` and `/metrics` itself).

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::harness::{Server, send};
use crate::pg;
use crate::sync::fake::{Delta, Fake, Paging, descriptor};

const SECRET: &str = "It's a Secret to Everybody";

async fn text(server: &Server, path: &str) -> String {
    server
        .anonymous(Method::GET, path)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (at most 20 s) until the tenant has a job in `state` of `provider`.
async fn job_in(server: &Server, tenant: Uuid, provider: &str, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, jobs) = send(server.tenant(
            tenant,
            Method::GET,
            &format!("/jobs?provider={provider}&state={state}"),
        ))
        .await;
        if let Some(job) = jobs["jobs"].as_array().and_then(|j| j.first()) {
            return job.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {state} job of {provider}: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most 20 s) until every series in `wanted` is on `/metrics`.
async fn metrics_with(server: &Server, wanted: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let body = text(server, "/metrics").await;
        let missing: Vec<&&str> = wanted.iter().filter(|w| !body.contains(**w)).collect();
        if missing.is_empty() {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "missing {missing:?} in\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn signed_webhook(
    server: &Server,
    tenant: Uuid,
    delivery: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/webhook.pull_request.opened.json"
    ))
    .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    server
        .anonymous(Method::POST, &format!("/webhooks/github/{tenant}"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
}

/// The series a node that ran a sync of `fake` shows.
const SYNC_SERIES: [&str; 9] = [
    "# TYPE sync_job_duration_seconds histogram",
    "# HELP sync_jobs_total",
    r#"sync_jobs_total{provider="fake",state="succeeded"} 1"#,
    r#"sync_job_duration_seconds_bucket{provider="fake",le="#,
    r#"sync_job_lag_seconds_bucket{provider="fake",le="#,
    r#"signal_freshness_seconds_bucket{provider="fake",path="poll",le="#,
    r#"time_to_first_signal_seconds_bucket{provider="fake",le="#,
    r#"sync_queue_depth{state="queued"}"#,
    r#"retention_pruned_total{table="signals"} 0"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_jobs_and_metrics_can_be_traced() {
    let mock = MockServer::start().await;
    let fake = Fake::default();
    fake.add(1, 0);
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/broken/items"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&mock)
        .await;
    let url = pg::fresh_database();
    let env = [
        ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("POBLYSH_LOG_FORMAT", "json"),
    ];
    let all = Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "all").await;
    let tenant = Uuid::now_v7();

    // Request ids: the caller's, or a new one.
    let response = all
        .anonymous(Method::GET, "/healthz")
        .header("x-request-id", "req-42.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42.abc");
    let response = all
        .anonymous(Method::GET, "/healthz")
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(Uuid::parse_str(&generated).is_ok(), "{generated}");

    // A failing job: its log line names tenant, provider, connection and job.
    let broken = descriptor(
        "broken",
        &format!("{}/broken", mock.uri()),
        Delta::Cursor,
        Paging::Cursor,
    );
    assert_eq!(all.put_descriptor("broken", &broken).await, 201);
    let (status, created) = send(
        all.tenant(tenant, Method::POST, "/connections")
            .json(&json!({"provider": "broken", "credentials": {"token": "t"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let failed = job_in(&all, tenant, "broken", "failed").await;
    let log = all.log();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "job failed")
        .unwrap_or_else(|| panic!("no `job failed` line in\n{log}"));
    let span = &line["span"];
    assert_eq!(span["name"], "job", "{line}");
    assert_eq!(span["job_id"], failed["id"], "{line}");
    assert_eq!(span["tenant_id"], tenant.to_string(), "{line}");
    assert_eq!(span["provider"], "broken", "{line}");
    assert_eq!(span["connection_id"], created["id"], "{line}");

    // A sync and webhooks on the `all` node.
    let fake = descriptor("fake", &mock.uri(), Delta::Cursor, Paging::Cursor);
    assert_eq!(all.put_descriptor("fake", &fake).await, 201);
    let (status, _) = send(
        all.tenant(tenant, Method::POST, "/connections")
            .json(&json!({"provider": "fake", "credentials": {"token": "t"}})),
    )
    .await;
    assert_eq!(status, 201);
    job_in(&all, tenant, "fake", "succeeded").await;
    let (status, _) = send(
        all.tenant(tenant, Method::POST, "/connections")
            .json(&json!({
                "provider": "github",
                "credentials": {"token": "github_pat_x", "webhookSecret": SECRET},
                "config": {"repos": ["Codertocat/Hello-World"]},
            })),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        send(signed_webhook(&all, tenant, "d-1", SECRET)).await.0,
        200
    );
    assert_eq!(
        send(signed_webhook(&all, tenant, "d-2", "not the secret"))
            .await
            .0,
        401
    );
    let mut wanted = SYNC_SERIES.to_vec();
    wanted.extend([
        r#"signal_freshness_seconds_bucket{provider="github",path="webhook",le="#,
        r#"webhook_verification_failures_total{provider="github",reason="mismatch"} 1"#,
        r#"webhook_verification_failures_total{provider="github",reason="stale"} 0"#,
        r#"sync_jobs_total{provider="broken",state="failed"} 1"#,
        r#"health_checks_total{provider="fake",outcome="healthy"}"#,
        r#"oauth_token_refreshes_total{provider="slack",outcome="ok"} 0"#,
        r#"http_request_duration_seconds_bucket{method="GET",route="/healthz",le="#,
    ]);
    metrics_with(&all, &wanted).await;

    // An API node and a worker node: the worker runs the next sync and shows it.
    let (_, _) = all.terminate(Duration::from_secs(30));
    let api = Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "api").await;
    let worker =
        Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "worker").await;
    let (status, ready) = send(worker.anonymous(Method::GET, "/readyz")).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ready")),
        "{ready}"
    );
    assert_eq!(send(worker.anonymous(Method::GET, "/healthz")).await.0, 200);
    assert_eq!(
        send(worker.anonymous(Method::GET, "/connections")).await.0,
        404,
        "a worker serves no API"
    );
    let other = Uuid::now_v7();
    let (status, _) = send(
        api.tenant(other, Method::POST, "/connections")
            .json(&json!({"provider": "fake", "credentials": {"token": "t"}})),
    )
    .await;
    assert_eq!(status, 201);
    job_in(&api, other, "fake", "succeeded").await;
    // Its sync's series, and the others registered at zero before any event.
    let mut wanted = SYNC_SERIES.to_vec();
    wanted.extend([
        r#"webhook_verification_failures_total{provider="github",reason="mismatch"} 0"#,
        r#"webhook_requests_total{provider="github",outcome="accepted"} 0"#,
        r#"oauth_token_refreshes_total{provider="slack",outcome="invalid_grant"} 0"#,
        r#"health_checks_total{provider="fake",outcome="unhealthy"}"#,
        r#"registry_changes_total{change="loaded"}"#,
        "# HELP signal_freshness_seconds",
    ]);
    metrics_with(&worker, &wanted).await;
}

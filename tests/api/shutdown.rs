//! SIGTERM during a long sync: the node stops within its deadline (the run
//! stops at its next page, commits there, and goes back to the queue), and a
//! restarted node resumes the job from that commit: every record once, few
//! pages fetched twice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use wiremock::MockServer;

use crate::api::harness::{Backend, Server, send};
use crate::sync::fake::{Counted, Delta, PAGE_SIZE, Paging, descriptor};

const ENV: &[(&str, &str)] = &[
    ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
    ("POBLYSH_SHUTDOWN_SECONDS", "5"),
];

async fn run(backend: Backend) {
    let total_pages = 60;
    let mock = MockServer::start().await;
    let pages = Counted::mount(
        &mock,
        (total_pages * PAGE_SIZE) as u64,
        Duration::from_millis(100),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
        Backend::Postgres => crate::pg::fresh_database(),
    };
    let server = Server::start_all(dir, database_url.clone(), ENV).await;
    let yaml = descriptor("slowfake", &mock.uri(), Delta::Cursor, Paging::Cursor).replace(
        "  retry: {initialBackoffMs: 5}",
        "  retry: {initialBackoffMs: 5}\n  maxPages: 100000",
    );
    let (status, body) = send(
        server
            .operator(Method::PUT, "/providers/slowfake")
            .header("content-type", "application/yaml")
            .body(yaml),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let tenant = uuid::Uuid::now_v7();
    let (status, body) = send(
        server
            .tenant(tenant, Method::POST, "/connections")
            .json(&json!({"provider": "slowfake", "credentials": {"token": "t"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Mid-run (a 6 s backfill), SIGTERM.
    while pages.load(Ordering::SeqCst) < 25 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (took, dir) = server.terminate(Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(3),
        "the node took {took:?} to stop (deadline 5 s)"
    );
    let served_before = pages.load(Ordering::SeqCst);

    // Restarted on the same database: the job resumes from its commit.
    let server = Server::start_all(dir, database_url, ENV).await;
    let job = loop {
        let (_, jobs) = send(server.tenant(tenant, Method::GET, "/jobs")).await;
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_type"] == "full")
            .unwrap()
            .clone();
        if job["state"] == "succeeded" {
            break job;
        }
        assert!(job["state"] != "failed", "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["attempt"], 1, "the shutdown spent no attempt: {job}");
    let items = total_pages * PAGE_SIZE;
    assert_eq!(job["signals_emitted"], items, "{job}");
    let (_, stored) = send(server.tenant(tenant, Method::GET, "/signals?limit=100")).await;
    assert_eq!(stored["signals"].as_array().unwrap().len(), 100);
    let refetched = pages.load(Ordering::SeqCst) - served_before;
    assert!(
        served_before + refetched <= total_pages + 2,
        "served {} pages for {total_pages} ({served_before} before the restart)",
        served_before + refetched
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_stops_in_time_and_the_job_resumes_sqlite() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_stops_in_time_and_the_job_resumes_postgres() {
    run(Backend::Postgres).await;
}

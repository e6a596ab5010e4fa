//! Three real `serve` processes on one PostgreSQL: a runtime provider put on
//! node 1 is served by nodes 2 and 3 within 5 s (a signed webhook accepted on
//! each, a connection created on one and its backfill run), and its deletion
//! likewise reaches both.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::api::harness::{Server, send};
use crate::pg;
use crate::sync::fake::{Delta, Fake, Paging, descriptor};

const SECRET: &str = "It's a Secret to Everybody";

fn signature(body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The GitHub `pull_request` sample posted to `node` for provider `id`
/// (delivery `delivery`): the status.
async fn webhook(node: &Server, id: &str, tenant: Uuid, delivery: &str) -> u16 {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/webhook.pull_request.opened.json"
    ))
    .unwrap();
    let sig = signature(&body);
    let request = node
        .anonymous(Method::POST, &format!("/webhooks/{id}/{tenant}"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sig)
        .body(body);
    send(request).await.0
}

/// Retries `attempt` until it answers `want`, for at most 5 s.
async fn within_5s<F, Fut>(what: &str, want: u16, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    loop {
        let got = attempt().await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: still {got} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_runtime_providers() {
    let mock = MockServer::start().await;
    let fake = Fake::default();
    fake.add(1, 0);
    fake.add(2, 1);
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake)
        .mount(&mock)
        .await;
    let url = pg::fresh_database();
    let env = [("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true")];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_all(tempfile::tempdir().unwrap(), url.clone(), &env).await);
    }
    let tenant = Uuid::now_v7();

    // A webhook provider: the shipped GitHub descriptor under another id.
    let github = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/descriptors/github.yaml"
    ))
    .unwrap();
    let hooks = github.replacen("id: github", "id: hooks", 1);
    assert_eq!(nodes[0].put_descriptor("hooks", &hooks).await, 201);
    let (status, body) = send(
        nodes[0]
            .tenant(tenant, Method::POST, "/connections")
            .json(&json!({
                "provider": "hooks",
                "credentials": {"token": "github_pat_x", "webhookSecret": SECRET},
                "config": {"repos": ["Codertocat/Hello-World"]},
            })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (n, node) in nodes.iter().enumerate().skip(1) {
        let delivery = format!("delivery-{n}");
        within_5s(&format!("a webhook on node {}", n + 1), 200, || {
            webhook(node, "hooks", tenant, &delivery)
        })
        .await;
    }

    // A polling provider put on node 1, connected on node 3, backfilled by any node.
    let polling = descriptor("fake", &mock.uri(), Delta::Cursor, Paging::Cursor);
    assert_eq!(nodes[0].put_descriptor("fake", &polling).await, 201);
    within_5s("a connection on node 3", 201, || async {
        send(
            nodes[2]
                .tenant(tenant, Method::POST, "/connections")
                .json(&json!({
                    "provider": "fake", "credentials": {"token": "t"},
                })),
        )
        .await
        .0
    })
    .await;
    let started = Instant::now();
    loop {
        let (_, jobs) = send(nodes[1].tenant(tenant, Method::GET, "/jobs?state=succeeded")).await;
        if jobs["jobs"].as_array().is_some_and(|j| !j.is_empty()) {
            assert_eq!(jobs["jobs"][0]["signals_emitted"], 2, "{jobs}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the backfill did not run: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Deleted on node 1: gone from nodes 2 and 3.
    let (status, _) = send(nodes[0].operator(Method::DELETE, "/providers/hooks")).await;
    assert_eq!(status, 204);
    for (n, node) in nodes.iter().enumerate().skip(1) {
        let delivery = format!("after-delete-{n}");
        within_5s(&format!("the deletion on node {}", n + 1), 404, || {
            webhook(node, "hooks", tenant, &delivery)
        })
        .await;
    }
}

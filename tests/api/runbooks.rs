//! The key-rotation runbook (`docs/runbooks/crypto-key-rotation.md`), executed
//! step by step on two real nodes sharing PostgreSQL, one always serving:
//! after every step every connection's credentials still open (its health
//! check authenticates at the provider), including one sealed with the new key
//! while the other node still ran the old configuration; at the end the old
//! key is not needed.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::harness::{self, KEY, Server, send};
use crate::pg;
use crate::sync::fake::{Delta, Paging, descriptor};

const NEW: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn runbook() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/runbooks/crypto-key-rotation.md"
    ))
    .unwrap()
    .lines()
    .map(str::trim)
    .collect::<Vec<_>>()
    .join("\n")
}

/// Restarts `node` (SIGTERM, then the same directory) with these keys.
async fn restart(node: Server, primary: &str, previous: Option<&str>) -> Server {
    let url = node.database_url.clone();
    let (_, dir) = node.terminate(Duration::from_secs(30));
    let mut env = vec![
        ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("POBLYSH_CRYPTO_KEY", primary),
    ];
    if let Some(p) = previous {
        env.push(("POBLYSH_CRYPTO_PREVIOUS_KEYS", p));
    }
    Server::start_logged(dir, url, &env, "api").await
}

/// Every connection authenticates at the provider through `node`.
async fn all_healthy(node: &Server, tenant: Uuid, ids: &[String], step: &str) {
    for id in ids {
        let (status, result) =
            send(node.tenant(tenant, Method::POST, &format!("/connections/{id}/test"))).await;
        assert_eq!(
            (status, result["healthy"].as_bool()),
            (200, Some(true)),
            "{step}: {result}"
        );
    }
}

async fn connect(node: &Server, tenant: Uuid, token: &str) -> String {
    let (status, body) = send(
        node.tenant(tenant, Method::POST, "/connections")
            .json(&json!({
                "provider": "fake", "credentials": {"token": token},
            })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_rotation_runbook_works_end_to_end() {
    // The runbook says what this test does.
    let text = runbook();
    for step in [
        "NEW=$(openssl rand -base64 32)",
        "POBLYSH_CRYPTO_KEY=$OLD\nPOBLYSH_CRYPTO_PREVIOUS_KEYS=$NEW",
        "POBLYSH_CRYPTO_KEY=$NEW\nPOBLYSH_CRYPTO_PREVIOUS_KEYS=$OLD",
        "poblysh-connectors keys reencrypt",
        "0 re-sealed",
    ] {
        assert!(text.contains(step), "the runbook lost `{step}`");
    }

    let mock = MockServer::start().await;
    for token in ["tok-1", "tok-2"] {
        Mock::given(method("GET"))
            .and(path("/health"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200))
            .mount(&mock)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&mock)
        .await;
    let url = pg::fresh_database();
    let env = [("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true")];
    let a = Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "api").await;
    let b = Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "api").await;
    let (status, body) = send(
        a.operator(Method::PUT, "/providers/fake")
            .header("content-type", "application/yaml")
            .body(descriptor(
                "fake",
                &mock.uri(),
                Delta::Cursor,
                Paging::Cursor,
            )),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let tenant = Uuid::now_v7();
    let mut ids = vec![connect(&a, tenant, "tok-1").await];
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Step 2: every node learns the new key (one at a time; the other serves).
    let a = restart(a, KEY, Some(NEW)).await;
    all_healthy(&b, tenant, &ids, "step 2, b not yet restarted").await;
    let b = restart(b, KEY, Some(NEW)).await;
    all_healthy(&a, tenant, &ids, "step 2").await;

    // Step 3: every node seals with it; what `a` seals now `b` opens already.
    let a = restart(a, NEW, Some(KEY)).await;
    ids.push(connect(&a, tenant, "tok-2").await);
    all_healthy(&b, tenant, &ids, "step 3, b not yet restarted").await;
    let b = restart(b, NEW, Some(KEY)).await;
    all_healthy(&a, tenant, &ids, "step 3").await;

    // Step 4: re-seal, while both serve.
    let reencrypt = |previous: Option<&str>| {
        let mut c = harness::command(a.dir.path(), &url);
        c.env("POBLYSH_CRYPTO_KEY", NEW);
        if let Some(p) = previous {
            c.env("POBLYSH_CRYPTO_PREVIOUS_KEYS", p);
        }
        let out = c.args(["keys", "reencrypt"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        reencrypt(Some(KEY)).contains("1 re-sealed"),
        "one connection was sealed with the old key"
    );
    assert!(reencrypt(Some(KEY)).contains("0 re-sealed"));
    all_healthy(&b, tenant, &ids, "step 4").await;

    // Step 5: every node forgets the old key.
    let a = restart(a, NEW, None).await;
    all_healthy(&a, tenant, &ids, "step 5, a").await;
    let b = restart(b, NEW, None).await;
    all_healthy(&b, tenant, &ids, "step 5, b").await;
    // The old key alone opens nothing any more.
    let old_only = restart(a, KEY, None).await;
    let (_, result) = send(old_only.tenant(
        tenant,
        Method::POST,
        &format!("/connections/{}/test", ids[0]),
    ))
    .await;
    assert_eq!(result["healthy"], false, "{result}");
    drop(b);
}

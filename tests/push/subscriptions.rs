//! The subscriptions API: the secret shown once, tenant isolation, URLs
//! checked (SSRF guard, no credentials), filters and start positions
//! validated, replay from a `GET /signals` cursor, and secret rotation
//! signing with both secrets during the grace window.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::support::{Receiver, github, ingest, start, subscribe};
use crate::api::harness::{Backend, Server, send};

#[tokio::test]
async fn create_read_change_delete_and_isolation() {
    // No POBLYSH_ALLOW_PRIVATE_NETWORKS: the SSRF guard applies.
    let server = Server::start(Backend::Sqlite).await;
    let (tenant, other) = (Uuid::now_v7(), Uuid::now_v7());
    for (url, why) in [
        ("http://169.254.169.254/latest", "metadata"),
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("ftp://example.com/x", "scheme"),
        ("https://user:pw@example.com/x", "credentials"),
        ("not a url", "parse"),
    ] {
        let (status, problem) = send(
            server
                .tenant(tenant, Method::POST, "/subscriptions")
                .json(&json!({"url": url})),
        )
        .await;
        assert_eq!(status, 400, "{why}: {problem}");
        assert!(
            problem["message"].as_str().unwrap().starts_with("url:"),
            "{problem}"
        );
        assert!(!problem.to_string().contains("pw@"), "{problem}");
    }
    for (body, field) in [
        (
            json!({"url": "https://example.com/h", "start": "yesterday"}),
            "start",
        ),
        (
            json!({"url": "https://example.com/h", "kinds": [""]}),
            "kinds",
        ),
        (
            json!({"url": "https://example.com/h", "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, problem) = send(
            server
                .tenant(tenant, Method::POST, "/subscriptions")
                .json(&body),
        )
        .await;
        assert_eq!(status, 400, "{field}: {problem}");
    }
    // Filters that could never match, and positions not of this database.
    let (status, theirs) = send(
        server
            .tenant(other, Method::POST, "/connections")
            .json(&json!({
                "provider": "github",
                "credentials": {"token": "github_pat_x"},
                "config": {"repos": ["o/r"]},
            })),
    )
    .await;
    assert_eq!(status, 201, "{theirs}");
    let ahead = poblysh_connectors::db::repo::arrivals::Position::Row(1 << 40).encode();
    for (body, field) in [
        (
            json!({"url": "https://example.com/h", "connection_id": theirs["id"]}),
            "connection_id",
        ),
        (
            json!({"url": "https://example.com/h", "provider": "no_such_connector"}),
            "provider",
        ),
        (
            json!({"url": "https://example.com/h", "start": ahead}),
            "start",
        ),
    ] {
        let (status, problem) = send(
            server
                .tenant(tenant, Method::POST, "/subscriptions")
                .json(&body),
        )
        .await;
        assert_eq!(status, 400, "{field}: {problem}");
        assert!(
            problem["message"].as_str().unwrap().starts_with(field),
            "{problem}"
        );
    }
    let (status, problem) = send(
        server
            .tenant(tenant, Method::GET, "/signals/stream")
            .header("last-event-id", &ahead),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let (status, _) =
        send(server.tenant(tenant, Method::GET, &format!("/signals?after={ahead}"))).await;
    assert_eq!(status, 400);
    let created = subscribe(
        &server,
        tenant,
        "https://core.example.com/poblysh",
        json!({"provider": "github", "kinds": ["pr_opened"], "include_payload": true}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    assert_eq!(created["state"], "active");
    assert_eq!(created["kinds"], json!(["pr_opened"]));
    let path = format!("/subscriptions/{id}");
    let (status, got) = send(server.tenant(tenant, Method::GET, &path)).await;
    assert_eq!(status, 200);
    assert!(got.get("secret").is_none(), "{got}");
    let (_, list) = send(server.tenant(tenant, Method::GET, "/subscriptions")).await;
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(secret));
    // Another tenant sees nothing of it.
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = send(server.tenant(other, method, &path)).await;
        assert_eq!(status, 404);
    }
    let (status, _) = send(
        server
            .tenant(other, Method::PATCH, &path)
            .json(&json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 404);
    let (_, theirs) = send(server.tenant(other, Method::GET, "/subscriptions")).await;
    assert_eq!(theirs["subscriptions"], json!([]));
    // Changed: filters cleared, paused; a rotation answers a new secret once.
    let (status, changed) = send(server.tenant(tenant, Method::PATCH, &path).json(&json!({
        "provider": null, "kinds": null, "enabled": false, "rotate_secret": true,
    })))
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["provider"], json!(null));
    assert_eq!(changed["kinds"], json!([]));
    assert_eq!(changed["enabled"], false);
    let rotated = changed["secret"].as_str().unwrap();
    assert_ne!(rotated, secret);
    assert!(changed["previous_secret_until"].is_string());
    let (status, _) = send(
        server
            .tenant(tenant, Method::PATCH, &path)
            .json(&json!({"url": "http://10.0.0.1/x"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(server.tenant(tenant, Method::DELETE, &path)).await;
    assert_eq!(status, 204);
    let (status, _) = send(server.tenant(tenant, Method::GET, &path)).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_signals_cursor_filters_and_rotation_during_grace() {
    let server = start(Backend::Sqlite, &[]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    for n in 1..=5 {
        ingest(&server, tenant, n).await;
    }
    // The newest-first page of two ends at Signal 4: replay what arrived after it.
    let (_, page) = send(server.tenant(tenant, Method::GET, "/signals?limit=2")).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let receiver = Receiver::start().await;
    let sub = subscribe(&server, tenant, &receiver.url, json!({"start": cursor})).await;
    receiver.trust(sub["secret"].as_str().unwrap());
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let external: Vec<String> = receiver
        .taken()
        .into_iter()
        .flat_map(|t| t.external_ids)
        .collect();
    assert_eq!(external, ["5"]);
    // A filter that matches nothing: nothing sent, the cursor still moves on.
    let other = Receiver::start().await;
    let quiet = subscribe(
        &server,
        tenant,
        &other.url,
        json!({"start": "beginning", "kinds": ["issue_closed"]}),
    )
    .await;
    other.trust(quiet["secret"].as_str().unwrap());
    let path = format!("/subscriptions/{}", quiet["id"].as_str().unwrap());
    let started = std::time::Instant::now();
    loop {
        let (_, s) = send(server.tenant(tenant, Method::GET, &path)).await;
        if s["cursor"] != quiet["cursor"] {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(other.attempts(), 0);
    // Rotated: both secrets sign during the grace window.
    let path = format!("/subscriptions/{}", sub["id"].as_str().unwrap());
    let (_, rotated) = send(
        server
            .tenant(tenant, Method::PATCH, &path)
            .json(&json!({"rotate_secret": true})),
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    receiver.trust_only(sub["secret"].as_str().unwrap());
    ingest(&server, tenant, 6).await;
    receiver.wait_for(2, Duration::from_secs(10)).await;
    receiver.trust_only(&new);
    ingest(&server, tenant, 7).await;
    receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(receiver.unverified(), 0);
    // Deleted: its deliverer stops and its lease goes with it.
    let quiet_id = quiet["id"].as_str().unwrap().to_owned();
    let (status, _) = send(server.tenant(
        tenant,
        Method::DELETE,
        &format!("/subscriptions/{quiet_id}"),
    ))
    .await;
    assert_eq!(status, 204);
    let db = server.db().await;
    let lease_rows = || async {
        use sea_orm::ConnectionTrait;
        db.conn()
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "SELECT name FROM leases WHERE name = ?1",
                [format!("push:{quiet_id}").into()],
            ))
            .await
            .unwrap()
            .len()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        lease_rows().await,
        0,
        "the deleted subscription's lease stayed"
    );
    // The integration guide's Python verifier, as written, agrees: with
    // either secret during the grace window; not with a third, nor tampered.
    let last = receiver.raw().pop().unwrap();
    assert_eq!(last.headers["webhook-signature"].split(' ').count(), 2);
    let old = sub["secret"].as_str().unwrap();
    assert_eq!(guide_verify(&new, &last.headers, &last.body), "True");
    assert_eq!(guide_verify(old, &last.headers, &last.body), "True");
    assert_eq!(
        guide_verify("whsec_b3RoZXIgc2VjcmV0", &last.headers, &last.body),
        "False"
    );
    let mut tampered = last.body.clone();
    tampered[10] ^= 1;
    assert_eq!(guide_verify(&new, &last.headers, &tampered), "False");
}

/// Runs the `verify` function of the integration guide's Python example.
fn guide_verify(
    secret: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: &[u8],
) -> String {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/integration-guide.md"
    ))
    .unwrap();
    let start = guide.find("```python\n").expect("a Python example") + "```python\n".len();
    let code = &guide[start..start + guide[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), body).unwrap();
    let script = format!(
        "{code}\nimport json, sys\nheaders = json.loads(sys.argv[2])\nbody = open(sys.argv[3], 'rb').read()\nprint(verify(sys.argv[1], headers, body))\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(serde_json::to_string(headers).unwrap())
        .arg(dir.path().join("body"))
        .output()
        .expect("python3 (installed by .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

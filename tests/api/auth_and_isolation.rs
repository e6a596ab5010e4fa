//! Operator auth (401), the tenant header (400), and tenant isolation: another
//! tenant's resources are 404 or absent, never visible.

use chrono::Utc;
use poblysh_connectors::db::repo::signals;
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::api::harness::{Server, send};
use crate::on_both_backends;

/// The tenant-scoped routes, as (method, path) with `{c}` for a connection id and
/// `{j}` for a job id.
const TENANT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/connections"),
    ("POST", "/connections"),
    ("GET", "/connections/{c}"),
    ("PATCH", "/connections/{c}"),
    ("DELETE", "/connections/{c}"),
    ("POST", "/connections/{c}/test"),
    ("POST", "/connect/slack"),
    ("POST", "/sync/github"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{j}"),
    ("GET", "/signals"),
];

fn request(server: &Server, method: &str, path: &str, c: &str, j: &str) -> reqwest::RequestBuilder {
    let path = path.replace("{c}", c).replace("{j}", j);
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = match (method.as_str(), path.as_str()) {
        ("POST", "/connections") => {
            json!({"provider": "github", "credentials": {"token": "t"}, "config": {"repos": ["a/b"]}})
        }
        ("POST", _) => json!({"connection_id": c}),
        ("PATCH", _) => json!({"enabled": false}),
        _ => serde_json::Value::Null,
    };
    let builder = server.anonymous(method, &path);
    if body.is_null() {
        builder
    } else {
        builder.json(&body)
    }
}

on_both_backends! {
    async fn tokens_and_tenant_headers_are_enforced(server) {
        let c = Uuid::now_v7().to_string();
        let j = Uuid::now_v7().to_string();
        for (method, path) in TENANT_ROUTES {
            let (status, body) = send(request(&server, method, path, &c, &j)).await;
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            let (status, _) = send(request(&server, method, path, &c, &j).bearer_auth("wrong-token-0123456789")).await;
            assert_eq!(status, 401, "{method} {path} with a wrong token");
            let (status, body) = send(request(&server, method, path, &c, &j).bearer_auth(crate::api::harness::TOKEN)).await;
            assert_eq!(status, 400, "{method} {path} without X-Tenant-Id: {body}");
            assert!(body["message"].as_str().unwrap().contains("X-Tenant-Id"));
            let (status, _) = send(request(&server, method, path, &c, &j).bearer_auth(crate::api::harness::TOKEN).header("X-Tenant-Id", "tenant-a")).await;
            assert_eq!(status, 400, "{method} {path} with a non-UUID tenant");
        }
        for (method, path) in [("PUT", "/providers/x"), ("DELETE", "/providers/x")] {
            let (status, _) = send(server.anonymous(Method::from_bytes(method.as_bytes()).unwrap(), path)).await;
            assert_eq!(status, 401, "{method} {path}");
        }
        for path in ["/healthz", "/readyz", "/providers", "/providers/github", "/openapi.json"] {
            let (status, _) = send(server.anonymous(Method::GET, path)).await;
            assert_eq!(status, 200, "{path} is public");
        }
    }
}

on_both_backends! {
    async fn another_tenant_sees_nothing(server) {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let (_, conn) = send(server.tenant(a, Method::POST, "/connections").json(&json!({
            "provider": "github", "credentials": {"token": "t"}, "config": {"repos": ["a/b"]}
        }))).await;
        let c = conn["id"].as_str().unwrap().to_owned();
        let (_, jobs) = send(server.tenant(a, Method::POST, "/sync/github").json(&json!({}))).await;
        let j = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
        let db = server.db().await;
        let signal = Signal {
            id: Uuid::nil(),
            tenant_id: TenantId::from_uuid(a),
            connection_id: ConnectionId::from_uuid(Uuid::parse_str(&c).unwrap()),
            provider: "github".into(),
            kind: "issue_created".into(),
            occurred_at: Utc::now(),
            received_at: Utc::now(),
            external_id: "1".into(),
            summary: "s".into(),
            priority: None,
            participants: vec![],
            tags: vec![],
            related: vec![],
            url: None,
            payload: json!({}),
        }
.with_derived_id();
        assert_eq!(signals::insert(db.conn(), &[signal]).await.unwrap(), 1);

        // Tenant A sees its own.
        let (_, own) = send(server.tenant(a, Method::GET, "/signals")).await;
        assert_eq!(own["signals"].as_array().unwrap().len(), 1);

        // Tenant B: empty lists, 404 for A's resources.
        for path in ["/connections", "/jobs", "/signals"] {
            let (status, body) = send(server.tenant(b, Method::GET, path)).await;
            assert_eq!(status, 200);
            let key = path.trim_start_matches('/');
            assert_eq!(body[key], json!([]), "{path}: {body}");
        }
        for (method, path) in TENANT_ROUTES.iter().filter(|(_, p)| p.contains('{') || p.starts_with("/sync")) {
            let (status, body) = send(request(&server, method, path, &c, &j).bearer_auth(crate::api::harness::TOKEN).header("X-Tenant-Id", b.to_string())).await;
            assert_eq!(status, 404, "tenant B {method} {path}: {body}");
        }
        let (_, filtered) = send(server.tenant(b, Method::GET, &format!("/signals?connection_id={c}"))).await;
        assert_eq!(filtered["signals"], json!([]));

        // Nothing B did changed A's data.
        let (status, still) = send(server.tenant(a, Method::GET, &format!("/connections/{c}"))).await;
        assert_eq!((status, &still["enabled"]), (200, &json!(true)));
    }
}

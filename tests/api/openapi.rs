//! `/openapi.json` is a valid OpenAPI 3.1 document listing every route with its
//! auth; Swagger UI loads at `/docs`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::api::harness::{Backend, Server, send};

/// Every route: (method, path, needs the operator token, needs X-Tenant-Id).
const ROUTES: &[(&str, &str, bool, bool)] = &[
    ("get", "/healthz", false, false),
    ("get", "/readyz", false, false),
    ("get", "/metrics", false, false),
    ("get", "/providers", false, false),
    ("get", "/providers/{id}", false, false),
    ("put", "/providers/{id}", true, false),
    ("delete", "/providers/{id}", true, false),
    ("get", "/connections", true, true),
    ("post", "/connections", true, true),
    ("get", "/connections/{id}", true, true),
    ("patch", "/connections/{id}", true, true),
    ("delete", "/connections/{id}", true, true),
    ("post", "/connections/test", true, true),
    ("post", "/connections/{id}/test", true, true),
    ("get", "/connections/{id}/stats", true, true),
    ("post", "/connections/{id}/webhook-token", true, true),
    ("get", "/connections/{id}/webhook-secret", true, true),
    ("post", "/connections/{id}/webhook-secret", true, true),
    ("post", "/connect/{provider}", true, true),
    ("get", "/connect/{provider}/callback", false, false),
    ("post", "/sync/{provider}", true, true),
    ("get", "/jobs", true, true),
    ("get", "/jobs/{id}", true, true),
    ("get", "/signals", true, true),
    ("get", "/signals/stream", true, true),
    ("get", "/subscriptions", true, true),
    ("post", "/subscriptions", true, true),
    ("get", "/subscriptions/{id}", true, true),
    ("patch", "/subscriptions/{id}", true, true),
    ("delete", "/subscriptions/{id}", true, true),
    ("get", "/tenant/settings", true, true),
    ("put", "/tenant/settings", true, true),
    ("post", "/webhooks/{provider}", false, false),
    ("post", "/webhooks/{provider}/{tenant_id}", false, false),
];

#[tokio::test]
async fn the_document_is_valid_and_complete() {
    let server = Server::start(Backend::Sqlite).await;
    let (status, doc) = send(server.anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // Parses as an OpenAPI 3.1 document.
    let spec = oas3::from_json(doc.to_string()).expect("a valid OpenAPI 3.1 document");
    assert_eq!(spec.info.title, "Poblysh Connectors");

    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut operation_ids = BTreeSet::new();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "duplicate operationId at {method} {path}"
            );
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is problem+json"
                    );
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);
    for (method, path, operator, tenant) in ROUTES {
        let op = &doc["paths"][path][method];
        let security = op["security"].as_array().unwrap();
        if (*method, *path) == ("get", "/providers") {
            // Public; with X-Tenant-Id (the tenant's status) it needs the token.
            assert_eq!(
                security,
                &vec![serde_json::json!({}), serde_json::json!({"bearer": []})],
                "{method} {path}"
            );
        } else if *operator {
            assert_eq!(
                security,
                &vec![serde_json::json!({"bearer": []})],
                "{method} {path}"
            );
        } else {
            assert_eq!(
                security,
                &vec![serde_json::json!({})],
                "{method} {path} is public"
            );
        }
        let has_tenant = op["parameters"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["name"] == "X-Tenant-Id" && p["in"] == "header" && p["required"] == true)
        });
        assert_eq!(has_tenant, *tenant, "{method} {path} X-Tenant-Id");
    }
    // Every $ref resolves.
    let mut stack = vec![&doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let pointer = r.strip_prefix('#').unwrap();
                    assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    // The CLI prints the same document.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poblysh-connectors"))
        .arg("openapi")
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, doc);
}

#[tokio::test]
async fn swagger_ui_loads() {
    let server = Server::start(Backend::Sqlite).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/docs", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        let r = client
            .get(format!("{}/docs/{asset}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let body = r.text().await.unwrap();
        assert!(body.len() > 100, "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(body.contains("/openapi.json"), "{body}");
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let server = Server::start(Backend::Sqlite).await;
    for _ in 0..3 {
        send(server.anonymous(Method::GET, "/providers/github")).await;
    }
    send(server.anonymous(Method::GET, "/providers/nope")).await;
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |status: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("http_requests_total")
                    && l.contains("route=\"/providers/{id}\"")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(line("200").as_deref(), Some("3"), "{text}");
    assert_eq!(line("404").as_deref(), Some("1"), "{text}");
}

/// The whole document, as committed in `tests/snapshots/openapi.json`: a change
/// to any route, parameter, schema or description shows up in review. After an
/// intended change, re-bless with
/// `POBLYSH_BLESS=1 cargo test --test main api::openapi::` and review the diff.
#[test]
fn the_document_matches_its_snapshot() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    let doc = serde_json::to_value(poblysh_connectors::api::openapi()).unwrap();
    let text = format!("{}\n", serde_json::to_string_pretty(&doc).unwrap());
    if std::env::var_os("POBLYSH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `POBLYSH_BLESS=1 cargo test --test main api::openapi::`)",
            path.display()
        )
    });
    let snapshot: Value = serde_json::from_str(&committed).unwrap();
    if snapshot != doc {
        let first = committed
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(text.lines().count()));
        panic!(
            "/openapi.json differs from {} from line {}:\n  committed: {}\n  now:       {}\nre-bless with `POBLYSH_BLESS=1 cargo test --test main api::openapi::` if intended",
            path.display(),
            first + 1,
            committed.lines().nth(first).unwrap_or("<end>"),
            text.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

//! The catalogue and runtime registration: built-ins are listed and read-only;
//! `PUT /providers/{id}` validates exactly like `check` (422 with diagnostics),
//! persists, and survives a restart.

use reqwest::Method;
use serde_json::json;

use crate::api::harness::{Server, send};
use crate::on_both_backends;

fn descriptor_yaml(id: &str) -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/descriptors/linear.yaml"
    ))
    .unwrap()
    .replace("id: linear", &format!("id: {id}"))
    .replace("name: Linear", "name: Custom Linear")
}

on_both_backends! {
    async fn runtime_registration(server) {
        let (status, list) = send(server.anonymous(Method::GET, "/providers")).await;
        assert_eq!(status, 200);
        let ids: Vec<&str> = list["providers"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["confluence", "datadog", "github", "gmail", "google_calendar", "google_drive", "jira", "linear", "notion", "pagerduty", "sentry", "slack", "trello", "zoho_cliq", "zoho_mail"]);
        assert!(list["providers"].as_array().unwrap().iter().all(|p| p["built_in"] == true));

        // Invalid: 422 with the same diagnostics `check` prints.
        let broken = descriptor_yaml("my_linear").replace("type: cursor\n      nextPath", "type: cursor\n      nextPth");
        let (status, body) = send(server.operator(Method::PUT, "/providers/my_linear").header("content-type", "application/yaml").body(broken)).await;
        assert_eq!(status, 422, "{body}");
        let diagnostics = body["details"]["diagnostics"].as_array().unwrap();
        assert!(diagnostics.iter().any(|d| d["path"] == "ingestion.polling.pagination.nextPth" && d["file"] == "<request body>"), "{body}");

        // Valid YAML: created, then replaced with JSON.
        let (status, created) = send(server.operator(Method::PUT, "/providers/my_linear").header("content-type", "application/yaml").body(descriptor_yaml("my_linear"))).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!((created["built_in"].as_bool(), created["name"].as_str()), (Some(false), Some("Custom Linear")));
        let mut as_json = created["descriptor"].clone();
        as_json["name"] = json!("Renamed");
        let (status, replaced) = send(server.operator(Method::PUT, "/providers/my_linear").json(&as_json)).await;
        assert_eq!((status, replaced["name"].as_str()), (200, Some("Renamed")));

        // The path and the body must agree; built-ins are read-only.
        let (status, _) = send(server.operator(Method::PUT, "/providers/other").json(&as_json)).await;
        assert_eq!(status, 422);
        let mut github = as_json.clone();
        github["id"] = json!("github");
        let (status, _) = send(server.operator(Method::PUT, "/providers/github").json(&github)).await;
        assert_eq!(status, 409);
        let (status, _) = send(server.operator(Method::DELETE, "/providers/github")).await;
        assert_eq!(status, 409);
        let (status, _) = send(server.operator(Method::PUT, "/providers/my_linear").header("content-type", "text/plain").body("x")).await;
        assert_eq!(status, 415);

        // Connections can use it.
        let tenant = uuid::Uuid::now_v7();
        let (status, _) = send(server.tenant(tenant, Method::POST, "/connections").json(&json!({"provider": "my_linear", "credentials": {"apiKey": "k"}}))).await;
        assert_eq!(status, 201);

        let (status, _) = send(server.operator(Method::DELETE, "/providers/my_linear")).await;
        assert_eq!(status, 204);
        let (status, _) = send(server.anonymous(Method::GET, "/providers/my_linear")).await;
        assert_eq!(status, 404);
        let (status, _) = send(server.operator(Method::DELETE, "/providers/my_linear")).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let first = Server::start(crate::api::harness::Backend::Sqlite).await;
    let (status, _) = send(
        first
            .operator(Method::PUT, "/providers/kept")
            .header("content-type", "application/yaml")
            .body(descriptor_yaml("kept")),
    )
    .await;
    assert_eq!(status, 201);
    // A second server on the same database sees it.
    let out = crate::api::harness::command(first.dir.path(), &first.database_url)
        .arg("migrate")
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("m20261122_000001_initial"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second = Server::start_on(first.database_url.clone()).await;
    let (status, body) = send(second.anonymous(Method::GET, "/providers/kept")).await;
    assert_eq!((status, body["built_in"].as_bool()), (200, Some(false)));
}

//! Connections: create with validated credentials and config, never return
//! secrets, list, read, update, delete; sync enqueues jobs that stay queued.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::api::harness::send;
use crate::on_both_backends;

on_both_backends! {
    async fn create_read_update_delete(server) {
        let t = Uuid::now_v7();
        let (status, created) = send(server.tenant(t, Method::POST, "/connections").json(&json!({
            "provider": "github",
            "name": "  Octo  ",
            "credentials": {"token": "ghp_top_secret_value", "webhookSecret": "hook-secret-value"},
            "config": {"repos": "octo-org/hello, octo-org/world"}
        }))).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["provider"], "github");
        assert_eq!(created["name"], "Octo");
        assert_eq!(created["status"], "active");
        assert_eq!(created["enabled"], true);
        assert_eq!(created["config"], json!({"repos": ["octo-org/hello", "octo-org/world"]}));
        assert_eq!(created["consecutive_failures"], 0);
        assert!(created["healthy"].is_null() && created["last_error"].is_null());
        let text = created.to_string();
        assert!(!text.contains("ghp_top_secret_value") && !text.contains("credentials"), "{text}");

        let (status, list) = send(server.tenant(t, Method::GET, "/connections")).await;
        assert_eq!(status, 200);
        assert_eq!(list["connections"].as_array().unwrap().len(), 1);
        assert!(!list.to_string().contains("ghp_top_secret_value"));

        let (status, one) = send(server.tenant(t, Method::GET, &format!("/connections/{id}"))).await;
        assert_eq!((status, &one["id"]), (200, &created["id"]));

        let (status, patched) = send(server.tenant(t, Method::PATCH, &format!("/connections/{id}"))
            .json(&json!({"enabled": false, "config": {"repos": ["octo-org/only"]}}))).await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["enabled"], false);
        assert_eq!(patched["config"], json!({"repos": ["octo-org/only"]}));

        let (status, bad) = send(server.tenant(t, Method::PATCH, &format!("/connections/{id}"))
            .json(&json!({"config": {"repoz": "x"}}))).await;
        assert_eq!(status, 400, "{bad}");
        assert!(bad["message"].as_str().unwrap().contains("config.repoz"), "{bad}");

        let (status, _) = send(server.tenant(t, Method::DELETE, &format!("/connections/{id}"))).await;
        assert_eq!(status, 204);
        let (status, _) = send(server.tenant(t, Method::GET, &format!("/connections/{id}"))).await;
        assert_eq!(status, 404);
        let (status, _) = send(server.tenant(t, Method::DELETE, &format!("/connections/{id}"))).await;
        assert_eq!(status, 404);
    }
}

on_both_backends! {
    async fn invalid_connections_are_rejected_with_field_errors(server) {
        let t = Uuid::now_v7();
        let post = |body: serde_json::Value| server.tenant(t, Method::POST, "/connections").json(&body);

        let (status, body) = send(post(json!({"provider": "github", "credentials": {"tokn": "x"}, "config": {}}))).await;
        assert_eq!(status, 400);
        let fields: Vec<&str> = body["details"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["credentials.tokn", "config.repos"]);
        // Neither a token nor the app installation to exchange one for.
        let (status, body) = send(post(json!({"provider": "github", "config": {"repos": ["o/r"]}}))).await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["errors"], json!([{"field": "config.installationId", "message": "required without `credentials.token`"}]));

        let (status, body) = send(post(json!({"provider": "nope", "credentials": {}}))).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("no provider `nope`"));

        let (status, body) = send(post(json!({"provider": "slack"}))).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("POST /connect/slack"), "{body}");

        let (status, body) = send(post(json!({"provider": "github", "unexpected": 1}))).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("unknown field `unexpected`"), "{body}");

        let (status, _) = send(server.tenant(t, Method::POST, "/connections").body("{not json").header("content-type", "application/json")).await;
        assert_eq!(status, 400);
        let (status, _) = send(server.tenant(t, Method::POST, "/connections").body("{}")).await;
        assert_eq!(status, 415);
        let (status, body) = send(server.tenant(t, Method::GET, "/connections/not-a-uuid")).await;
        assert_eq!(status, 400, "{body}");
        // Last: the server answers 413 and closes the connection without reading the body.
        let huge = "x".repeat(2 * 1024 * 1024);
        let (status, _) = send(post(json!({"provider": "github", "name": huge}))).await;
        assert_eq!(status, 413);
    }
}

on_both_backends! {
    async fn new_connections_get_a_backfill_and_sync_enqueues_jobs(server) {
        // The API-only server runs no workers: jobs stay queued.
        let t = Uuid::now_v7();
        let mut ids = Vec::new();
        for repo in ["a/b", "c/d"] {
            let (_, c) = send(server.tenant(t, Method::POST, "/connections").json(&json!({
                "provider": "github", "credentials": {"token": "t"}, "config": {"repos": [repo]}
            }))).await;
            ids.push(c["id"].as_str().unwrap().to_owned());
        }
        let (_, backfills) = send(server.tenant(t, Method::GET, "/jobs?state=queued")).await;
        let backfills = backfills["jobs"].as_array().unwrap().clone();
        assert_eq!(backfills.len(), 2, "one full backfill per new connection");
        assert!(backfills.iter().all(|j| j["job_type"] == "full" && j["trigger"] == "schedule"));

        let (status, accepted) = send(server.tenant(t, Method::POST, "/sync/github").json(&json!({"mode": "incremental"}))).await;
        assert_eq!(status, 202, "{accepted}");
        let jobs = accepted["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| j["state"] == "queued" && j["job_type"] == "incremental" && j["trigger"] == "manual"));

        // A duplicate trigger collapses onto the queued job.
        let (_, again) = send(server.tenant(t, Method::POST, "/sync/github")
            .json(&json!({"connection_id": ids[0]}))).await;
        assert_eq!(again["jobs"].as_array().unwrap().len(), 1);
        assert!(jobs.iter().any(|j| j["id"] == again["jobs"][0]["id"]));
        // A full sync request reuses the queued backfill.
        let (_, full) = send(server.tenant(t, Method::POST, "/sync/github")
            .json(&json!({"connection_id": ids[0], "mode": "full"}))).await;
        assert!(backfills.iter().any(|j| j["id"] == full["jobs"][0]["id"]));

        let (status, listed) = send(server.tenant(t, Method::GET, "/jobs?state=queued&provider=github")).await;
        assert_eq!(status, 200);
        assert_eq!(listed["jobs"].as_array().unwrap().len(), 4);
        assert!(listed["next_cursor"].is_null());
        let (_, page) = send(server.tenant(t, Method::GET, "/jobs?limit=3")).await;
        assert_eq!(page["jobs"].as_array().unwrap().len(), 3);
        let cursor = page["next_cursor"].as_str().unwrap();
        let (_, rest) = send(server.tenant(t, Method::GET, &format!("/jobs?limit=3&cursor={cursor}"))).await;
        assert_eq!(rest["jobs"].as_array().unwrap().len(), 1);
        let job_id = jobs[0]["id"].as_str().unwrap();
        let (status, job) = send(server.tenant(t, Method::GET, &format!("/jobs/{job_id}"))).await;
        assert_eq!((status, job["state"].as_str()), (200, Some("queued")));

        let (status, _) = send(server.tenant(t, Method::POST, "/sync/linear").json(&json!({}))).await;
        assert_eq!(status, 404, "no linear connection");
        let (status, _) = send(server.tenant(t, Method::POST, "/sync/nope").json(&json!({}))).await;
        assert_eq!(status, 404);
        let (status, body) = send(server.tenant(t, Method::POST, "/sync/pagerduty").json(&json!({}))).await;
        assert_eq!(status, 409, "pagerduty only receives webhooks: {body}");
        let (status, body) = send(server.tenant(t, Method::POST, "/sync/github").json(&json!({"mode": "sometimes"}))).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = send(server.tenant(t, Method::GET, "/jobs?state=done")).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().starts_with("state:"), "{body}");
    }
}

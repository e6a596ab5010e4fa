//! A webhook over a real socket to the spawned server: the real GitHub
//! `pull_request` sample, signed with the connection's secret, becomes a Signal
//! for its tenant only; a wrong signature and an oversized body store nothing.

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::api::harness::send;
use crate::on_both_backends;

const SECRET: &str = "It's a Secret to Everybody";

fn signature(body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

on_both_backends! {
    async fn github_pull_request_over_http(server) {
        let tenant = Uuid::now_v7();
        let other = Uuid::now_v7();
        for (t, secret) in [(tenant, SECRET), (other, "another tenant's secret")] {
            let (status, created) = send(server.tenant(t, Method::POST, "/connections").json(&json!({
                "provider": "github",
                "credentials": {"token": "github_pat_x", "webhookSecret": secret},
                "config": {"repos": ["Codertocat/Hello-World"]},
            }))).await;
            assert_eq!(status, 201, "{created}");
        }
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/github/webhook.pull_request.opened.json"
        ))
        .unwrap();
        let post = |path: String, body: Vec<u8>, signature: String| {
            server
                .anonymous(Method::POST, &path)
                .header("content-type", "application/json")
                .header("x-github-event", "pull_request")
                .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
                .header("x-hub-signature-256", signature)
                .body(body)
        };

        // Signed with the other tenant's secret: refused.
        let (status, problem) = send(post(format!("/webhooks/github/{other}"), body.clone(), signature(&body))).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(problem["code"], "webhook_rejected");
        // Too large: refused before anything else.
        let mut big = body.clone();
        big.resize(300 * 1024, b' ');
        let (status, _) = send(post(format!("/webhooks/github/{tenant}"), big.clone(), signature(&big))).await;
        assert_eq!(status, 413);

        let (status, ack) = send(post(format!("/webhooks/github/{tenant}"), body.clone(), signature(&body))).await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack, json!({"status": "accepted", "event": "pull_request", "signals": 1}));

        let (_, mine) = send(server.tenant(tenant, Method::GET, "/signals")).await;
        let kinds: Vec<&str> = mine["signals"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["pr_opened"]);
        assert_eq!(mine["signals"][0]["external_id"], "2");
        let (_, theirs) = send(server.tenant(other, Method::GET, "/signals")).await;
        assert_eq!(theirs["signals"], json!([]));
    }
}

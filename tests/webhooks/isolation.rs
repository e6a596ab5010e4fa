//! Tenants stay apart on the shared URL, and one event reaching several
//! connections is stored once for each: a config value (a repository name
//! any tenant can type) never stands in for a connection's own secret; delivery
//! ids are deduplicated per connection; one bad payload does not fail the
//! other deliveries committed with it.

use poblysh_connectors::domain::TenantId;
use serde_json::json;
use uuid::Uuid;

use crate::sync::harness::Node;
use crate::webhooks::support::{deliveries, fixture, hmac_sha256_hex, kinds, post, signals};

const APP_SECRET: &str = "github-app-secret";
const OWN_SECRET: &str = "bigcorp-repo-secret";

fn github_headers(secret: &str, body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", "pull_request".into()),
        ("x-github-delivery", delivery.into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_sha256_hex(secret, &[body])),
        ),
    ]
}

crate::on_both! {
    async fn a_config_value_does_not_route_app_signed_deliveries(backend) {
        let node = Node::new(backend, true, &[("POBLYSH_GITHUB_WEBHOOK_SECRET", APP_SECRET)]).await;
        node.register(&std::fs::read_to_string("descriptors/github.yaml").unwrap());
        let owner = TenantId::from_uuid(Uuid::now_v7());
        let squatter = TenantId::from_uuid(Uuid::now_v7());
        let repos = json!({"repos": ["Codertocat/Hello-World"]});
        node.connection(owner, "github", &[("token", "t"), ("webhookSecret", OWN_SECRET)], repos.clone()).await;
        // Another tenant types the same repository and sets no secret.
        node.connection(squatter, "github", &[("token", "t")], repos).await;
        let body = fixture("github/webhook.pull_request.opened.json");

        // Signed by the repository's own webhook: its connection gets it, only it.
        let (status, ack, _) = post(&node, "POST", "/webhooks/github", &github_headers(OWN_SECRET, &body, "d1"), body.clone()).await;
        assert_eq!((status, ack["signals"].as_u64()), (200, Some(1)), "{ack}");
        assert_eq!(kinds(&node, owner).await, ["pr_opened"]);
        assert_eq!(kinds(&node, squatter).await, Vec::<String>::new());

        // Authentic (the app's secret), but the config value is the squatter's
        // own claim: nothing is delivered to it, and the owner takes only what
        // its own secret signs. Acknowledged and dropped.
        let (status, ack, _) = post(&node, "POST", "/webhooks/github", &github_headers(APP_SECRET, &body, "d2"), body.clone()).await;
        assert_eq!((status, ack["status"].as_str()), (202, Some("dropped")), "{ack}");
        // Signed with neither: refused.
        let (status, problem, _) = post(&node, "POST", "/webhooks/github", &github_headers("forged", &body, "d3"), body.clone()).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(kinds(&node, squatter).await, Vec::<String>::new());
        assert_eq!(deliveries(&node).await, 1);
    }
}

crate::on_both! {
    async fn one_event_for_two_tenants_is_stored_for_each_once(backend) {
        const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
        let node = Node::new(backend, true, &[("POBLYSH_SLACK_WEBHOOK_SECRET", SLACK_SECRET)]).await;
        node.register(&std::fs::read_to_string("descriptors/slack.yaml").unwrap());
        // Two tenants connected the same workspace (metadata set by Slack's OAuth answer).
        let tenants = [TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7())];
        for t in tenants {
            crate::webhooks::deliveries::connect_with_metadata(&node, "slack", t, json!({"team_id": "T123ABC456"})).await;
        }
        let body = fixture("slack/events.event_callback.message_channels.json");
        for expected in ["accepted", "duplicate"] {
            let ts = chrono::Utc::now().timestamp().to_string();
            let signature = hmac_sha256_hex(SLACK_SECRET, &[b"v0:", ts.as_bytes(), b":", &body]);
            let headers = vec![
                ("x-slack-request-timestamp", ts),
                ("x-slack-signature", format!("v0={signature}")),
            ];
            let (status, ack, _) = post(&node, "POST", "/webhooks/slack", &headers, body.clone()).await;
            assert_eq!((status, ack["status"].as_str()), (200, Some(expected)), "{ack}");
        }
        for t in tenants {
            assert_eq!(kinds(&node, t).await, ["message_received"]);
        }
        assert_eq!(deliveries(&node).await, 2, "one delivery row per connection");
    }
}

crate::on_both! {
    async fn the_same_event_id_reaches_every_subscription(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string("descriptors/pagerduty.yaml").unwrap());
        let body = fixture("pagerduty/webhook.v3.incident.priority_updated.signed_raw_body.json");
        // Two tenants subscribed to the same PagerDuty service: the same event
        // (same `event.id`) reaches both, each signed with its subscription's secret.
        for (i, secret) in ["secret-one", "secret-two"].into_iter().enumerate() {
            let tenant = TenantId::from_uuid(Uuid::now_v7());
            node.connection(tenant, "pagerduty", &[("signingSecret", secret)], json!({})).await;
            let headers = vec![("x-pagerduty-signature", format!("v1={}", hmac_sha256_hex(secret, &[&body])))];
            let (status, ack, _) = post(&node, "POST", &format!("/webhooks/pagerduty/{tenant}"), &headers, body.clone()).await;
            assert_eq!((status, ack["status"].as_str()), (200, Some("accepted")), "subscription {i}: {ack}");
            assert_eq!(kinds(&node, tenant).await, ["incident_priority_updated"]);
        }
    }
}

crate::on_both! {
    async fn a_nul_in_a_payload_fails_nothing(backend) {
        let node = std::sync::Arc::new(Node::new(backend, true, &[]).await);
        node.register(&std::fs::read_to_string("descriptors/github.yaml").unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        node.connection(tenant, "github", &[("token", "t"), ("webhookSecret", OWN_SECRET)], json!({"repos": ["Codertocat/Hello-World"]})).await;
        let sample = String::from_utf8(fixture("github/webhook.pull_request.opened.json")).unwrap();
        // PostgreSQL refuses NUL in text and JSON: a title with one, posted
        // together with 20 ordinary deliveries (so they share write batches).
        let mut tasks = Vec::new();
        for i in 0..21 {
            let body = if i == 0 {
                sample.replace("\"title\": \"Update the README with new information.\"", "\"title\": \"Update\\u0000 the README\"")
            } else {
                sample.replace("2019-05-15T15:20:33Z", &format!("2019-05-15T15:21:{i:02}Z"))
            }
            .into_bytes();
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let headers = github_headers(OWN_SECRET, &body, &format!("nul-{i}"));
                post(&node, "POST", &format!("/webhooks/github/{tenant}"), &headers, body).await
            }));
        }
        for t in tasks {
            let (status, ack, _) = t.await.unwrap();
            assert_eq!(status, 200, "{ack}");
        }
        let stored = signals(&node, tenant).await;
        assert_eq!(stored.len(), 21);
        assert!(stored.iter().any(|s| s["summary"].as_str().unwrap().contains("Update the README")), "the NUL is dropped, the rest kept");
    }
}

crate::on_both! {
    async fn an_acknowledgement_counts_only_signals_stored_now(backend) {
        // The same event under a second delivery id (a redelivery with a new
        // id, or the event already polled): accepted, but no Signal is new.
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string("descriptors/github.yaml").unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        node.connection(tenant, "github", &[("token", "t"), ("webhookSecret", OWN_SECRET)], json!({"repos": ["Codertocat/Hello-World"]})).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let (status, ack, _) = post(&node, "POST", &path, &github_headers(OWN_SECRET, &body, "first"), body.clone()).await;
        assert_eq!((status, ack["status"].as_str(), ack["signals"].as_u64()), (200, Some("accepted"), Some(1)), "{ack}");
        let (status, ack, _) = post(&node, "POST", &path, &github_headers(OWN_SECRET, &body, "second"), body.clone()).await;
        assert_eq!((status, ack["status"].as_str(), ack["signals"].as_u64()), (200, Some("accepted"), Some(0)), "{ack}");
        assert_eq!(signals(&node, tenant).await.len(), 1);
    }
}

//! Webhook secret rotation with a grace window, on an injected clock: after a
//! `PATCH` replaces a GitHub connection's `webhookSecret`, deliveries signed
//! with the new secret and with the old one both verify for
//! `POBLYSH_WEBHOOK_SECRET_GRACE_HOURS`, then only the new one does; neither
//! secret is ever in an answer.

use std::sync::Arc;

use chrono::{Duration, Utc};
use poblysh_connectors::domain::{Ambient, ManualClock, SeededRandom, TenantId};
use serde_json::json;
use uuid::Uuid;

use crate::sync::harness::Node;
use crate::sync::monitoring::{create, github_at};
use crate::webhooks::support::{fixture, hmac_sha256_hex, post};

const OLD: &str = "old-webhook-secret-3c1f";
const NEW: &str = "new-webhook-secret-9a2e";

crate::on_both! {
    async fn the_old_secret_verifies_inside_the_grace_window_only(backend) {
        let clock = ManualClock::new(Utc::now());
        let ambient = Ambient { clock: Arc::new(clock.clone()), random: Arc::new(SeededRandom::new(3)) };
        let node = Node::with(backend, &[("POBLYSH_WEBHOOK_SECRET_GRACE_HOURS", "1")], |b| b.ambient(ambient)).await;
        node.register(&github_at("https://api.github.com"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = create(&node, tenant, json!({"token": "github_pat_x", "webhookSecret": OLD}), "Codertocat/Hello-World", "https://api.github.com").await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let mut n = 0;
        let mut deliver = |secret: &'static str| {
            n += 1;
            let headers = vec![
                ("x-github-event", "pull_request".to_owned()),
                ("x-github-delivery", format!("rotation-{n}")),
                ("x-hub-signature-256", format!("sha256={}", hmac_sha256_hex(secret, &[&body]))),
            ];
            let (node, path, body) = (&node, path.clone(), body.clone());
            async move { post(node, "POST", &path, &headers, body).await.0 }
        };
        assert_eq!(deliver(OLD).await, 200);
        assert_eq!(deliver(NEW).await, 401);

        let (status, patched) = node.api("PATCH", &format!("/connections/{id}"), Some(tenant), Some(json!({"credentials": {"webhookSecret": NEW}}))).await;
        assert_eq!(status, 200, "{patched}");
        let text = patched.to_string();
        assert!(!text.contains(OLD) && !text.contains(NEW), "{text}");

        // Inside the hour: both verify.
        assert_eq!(deliver(NEW).await, 200);
        assert_eq!(deliver(OLD).await, 200);
        clock.advance(Duration::minutes(59));
        assert_eq!(deliver(OLD).await, 200);
        // After it: only the new one.
        clock.advance(Duration::minutes(2));
        assert_eq!(deliver(OLD).await, 401);
        assert_eq!(deliver(NEW).await, 200);

        // Another change of credentials that keeps the secret does not bring the old one back.
        let (status, _) = node.api("PATCH", &format!("/connections/{id}"), Some(tenant), Some(json!({"credentials": {"token": "github_pat_y"}}))).await;
        assert_eq!(status, 200);
        assert_eq!(deliver(OLD).await, 401);
        assert_eq!(deliver(NEW).await, 200);
    }
}

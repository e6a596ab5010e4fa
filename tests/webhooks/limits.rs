//! Replays, size and rate limits, failed verification, unknown providers and
//! unroutable deliveries, with GitHub's real `pull_request` sample: nothing is
//! stored when a delivery is refused.

use poblysh_connectors::domain::TenantId;
use serde_json::json;
use uuid::Uuid;

use crate::sync::harness::Node;
use crate::webhooks::support::{deliveries, fixture, hmac_sha256_hex, kinds, post};

const SECRET: &str = "It's a Secret to Everybody";

async fn github_node(
    backend: crate::sync::harness::Backend,
    env: &[(&str, &str)],
) -> (Node, TenantId) {
    let node = Node::new(backend, true, env).await;
    node.register(&std::fs::read_to_string("descriptors/github.yaml").unwrap());
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    node.connection(
        tenant,
        "github",
        &[("token", "github_pat_x"), ("webhookSecret", SECRET)],
        json!({"repos": ["Codertocat/Hello-World"]}),
    )
    .await;
    (node, tenant)
}

fn pr_headers(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", "pull_request".into()),
        ("x-github-delivery", delivery.into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_sha256_hex(SECRET, &[body])),
        ),
    ]
}

crate::on_both! {
    async fn the_same_delivery_five_times_is_stored_once(backend) {
        let (node, tenant) = github_node(backend, &[]).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let (status, ack, _) = post(&node, "POST", &path, &pr_headers(&body, "72d3162e-1"), body.clone()).await;
            assert_eq!(status, 200, "{ack}");
            statuses.push(ack["status"].as_str().unwrap().to_owned());
        }
        assert_eq!(statuses, ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]);
        assert_eq!(kinds(&node, tenant).await, ["pr_opened"]);
        assert_eq!(deliveries(&node).await, 1);
        // A new delivery id for the same event: a second delivery row, still one signal.
        let (status, ack, _) = post(&node, "POST", &path, &pr_headers(&body, "72d3162e-2"), body.clone()).await;
        assert_eq!((status, ack["status"].as_str()), (200, Some("accepted")));
        assert_eq!(kinds(&node, tenant).await, ["pr_opened"]);
        assert_eq!(deliveries(&node).await, 2);
    }
}

crate::on_both! {
    async fn concurrent_retries_of_one_delivery_store_it_once(backend) {
        let (node, tenant) = github_node(backend, &[]).await;
        let node = std::sync::Arc::new(node);
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (node, body, path) = (node.clone(), body.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                post(&node, "POST", &path, &pr_headers(&body, "same-delivery"), body.clone()).await
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            let (status, ack, _) = t.await.unwrap();
            assert_eq!(status, 200, "{ack}");
            accepted += usize::from(ack["status"] == "accepted");
        }
        assert_eq!(accepted, 1);
        assert_eq!(kinds(&node, tenant).await, ["pr_opened"]);
        assert_eq!(deliveries(&node).await, 1);
    }
}

crate::on_both! {
    async fn refused_deliveries_store_nothing(backend) {
        let (node, tenant) = github_node(backend, &[]).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");

        // 300 KB: 413, before anything else.
        let mut big = body.clone();
        big.resize(300 * 1024, b' ');
        let (status, problem, headers) = post(&node, "POST", &path, &pr_headers(&big, "big"), big.clone()).await;
        assert_eq!(status, 413, "{problem}");
        assert_eq!(problem["code"], "payload_too_large");
        assert_eq!(headers["content-type"], "application/problem+json");

        // A wrong signature, a missing one, one byte of the body changed.
        let mut headers = pr_headers(&body, "d1");
        headers[2].1 = format!("sha256={}", hmac_sha256_hex("another secret", &[&body]));
        let (status, problem, _) = post(&node, "POST", &path, &headers, body.clone()).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(problem["code"], "webhook_rejected");
        assert!(!problem.to_string().contains(SECRET));
        let mut headers = pr_headers(&body, "d2");
        headers.pop();
        let (status, problem, _) = post(&node, "POST", &path, &headers, body.clone()).await;
        assert_eq!(status, 401);
        assert!(problem["message"].as_str().unwrap().contains("X-Hub-Signature-256"), "{problem}");
        let mut tampered = body.clone();
        let at = tampered.iter().position(|b| *b == b'1').unwrap();
        tampered[at] = b'2';
        let (status, _, _) = post(&node, "POST", &path, &pr_headers(&body, "d3"), tampered).await;
        assert_eq!(status, 401);

        // Unknown provider, malformed tenant.
        let (status, problem, _) = post(&node, "POST", &format!("/webhooks/nope/{tenant}"), &[], body.clone()).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
        let (status, _, _) = post(&node, "POST", "/webhooks/github/not-a-uuid", &[], body.clone()).await;
        assert_eq!(status, 400);
        // A method webhooks do not use.
        let (status, problem, _) = post(&node, "PUT", &path, &[], Vec::new()).await;
        assert_eq!((status, problem["code"].as_str()), (405, Some("method_not_allowed")));

        assert_eq!(kinds(&node, tenant).await, Vec::<String>::new());
        assert_eq!(deliveries(&node).await, 0);
    }
}

crate::on_both! {
    async fn deliveries_for_no_connection_are_dropped_with_202(backend) {
        let (node, tenant) = github_node(backend, &[("POBLYSH_GITHUB_WEBHOOK_SECRET", SECRET)]).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        // A tenant without a GitHub connection (signed with the app's secret).
        let other = TenantId::from_uuid(Uuid::now_v7());
        let (status, ack, _) = post(&node, "POST", &format!("/webhooks/github/{other}"), &pr_headers(&body, "x1"), body.clone()).await;
        assert_eq!((status, ack["status"].as_str()), (202, Some("dropped")), "{ack}");
        // A repository no connection of the tenant syncs.
        let text = String::from_utf8(body.clone()).unwrap().replace("Codertocat/Hello-World", "octo-org/elsewhere");
        let (status, ack, _) = post(&node, "POST", &format!("/webhooks/github/{tenant}"), &pr_headers(text.as_bytes(), "x2"), text.into_bytes()).await;
        assert_eq!((status, ack["status"].as_str()), (202, Some("dropped")), "{ack}");
        assert_eq!(kinds(&node, tenant).await, Vec::<String>::new());
        assert_eq!(kinds(&node, other).await, Vec::<String>::new());
        assert_eq!(deliveries(&node).await, 0);
        // Counted by provider and outcome.
        let (status, _, bytes) = node
            .send(http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap())
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.lines().any(|l| l.starts_with("webhook_requests_total{")
                && l.contains("provider=\"github\"")
                && l.contains("outcome=\"dropped\"")),
            "{text}"
        );
    }
}

crate::on_both! {
    async fn over_the_rate_limit_gets_429_and_stores_nothing(backend) {
        let (node, tenant) = github_node(backend, &[]).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let mut ok = 0;
        let mut limited = 0;
        let started = std::time::Instant::now();
        for i in 0..150 {
            let (status, ack, headers) = post(&node, "POST", &path, &pr_headers(&body, &format!("rl-{i}")), body.clone()).await;
            match status {
                200 => ok += 1,
                429 => {
                    limited += 1;
                    assert_eq!(ack["code"], "rate_limited");
                    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                    assert!((1..=60).contains(&retry), "{retry}");
                    assert_eq!(ack["retry_after"], retry);
                }
                other => panic!("{other}: {ack}"),
            }
        }
        // 100 per minute: a burst up to the limit passes, plus one more for
        // every 0.6 s the loop takes; the rest wait.
        let replenished = (started.elapsed().as_secs_f64() / 0.6).ceil() as usize;
        assert!(ok >= 100 && ok <= 100 + replenished, "{ok} accepted, {replenished} replenished");
        assert!(limited > 0);
        assert_eq!(ok + limited, 150);
        assert_eq!(deliveries(&node).await, ok as u64);
    }
}

crate::on_both! {
    /// The documented semantics: the limit is per connection and per node,
    /// so behind a load balancer over N API nodes a connection may get up to
    /// N times it. Each node refuses past its own count.
    async fn the_rate_limit_counts_per_node(backend) {
        let env = [("POBLYSH_WEBHOOK_RATE_LIMIT", "3")];
        let (one, tenant) = github_node(backend, &env).await;
        let two = Node::on(&one.database_url, true, &env).await;
        two.register(&std::fs::read_to_string("descriptors/github.yaml").unwrap());
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        let mut statuses = Vec::new();
        for (i, node) in [&one, &one, &one, &one, &two, &two, &two, &two].into_iter().enumerate() {
            let (status, _, _) = post(node, "POST", &path, &pr_headers(&body, &format!("pn-{i}")), body.clone()).await;
            statuses.push(status);
        }
        // A burst of 3 per node (replenished at 1 per 20 s), the 4th refused on each.
        assert_eq!(statuses, [200, 200, 200, 429, 200, 200, 200, 429]);
        assert_eq!(deliveries(&one).await, 6);
    }
}

crate::on_both! {
    async fn a_polling_and_webhook_connector_gets_one_follow_up_sync(backend) {
        let (node, tenant) = github_node(backend, &[]).await;
        let body = fixture("github/webhook.pull_request.opened.json");
        let path = format!("/webhooks/github/{tenant}");
        for i in 0..3 {
            let (status, _, _) = post(&node, "POST", &path, &pr_headers(&body, &format!("f{i}")), body.clone()).await;
            assert_eq!(status, 200);
        }
        let (_, jobs) = node.api("GET", "/jobs", Some(tenant), None).await;
        let webhook_jobs: Vec<_> = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["trigger"] == "webhook")
            .collect();
        // One per connection and minute (two if the requests straddle a minute).
        assert!((1..=2).contains(&webhook_jobs.len()), "{jobs}");
        assert_eq!(webhook_jobs[0]["job_type"], "incremental");
    }
}

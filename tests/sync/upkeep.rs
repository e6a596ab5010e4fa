//! Connections that heal, on an injected clock: the upkeep refreshes an OAuth
//! token ahead of its expiry with no job due, runs health checks on their
//! interval (each due check on one node only), and the connection's health
//! goes healthy → degraded → error → healthy as the checks fail and pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use poblysh_connectors::domain::{Ambient, Clock, ManualClock, SeededRandom, TenantId};
use poblysh_connectors::upkeep::connections::Upkeep;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sync::fake::{Delta, Paging, descriptor};
use crate::sync::harness::{Node, database};
use crate::sync::oauth::{REFRESH, connected, oauth_descriptor, stored_tokens, token_response};

fn start() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

fn ambient(clock: &ManualClock) -> Ambient {
    Ambient {
        clock: Arc::new(clock.clone()),
        random: Arc::new(SeededRandom::new(7)),
    }
}

async fn connection(node: &Node, tenant: TenantId, id: Uuid) -> Value {
    let (status, body) = node
        .api("GET", &format!("/connections/{id}"), Some(tenant), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

crate::on_both! {
    async fn tokens_are_refreshed_ahead_of_expiry_with_no_job_due(backend) {
        let clock = ManualClock::new(start());
        let env = [
            ("POBLYSH_OAUTHY_CLIENT_ID", "s6BhdRkqt3"),
            ("POBLYSH_OAUTHY_CLIENT_SECRET", "7Fjfp0ZBr1KtDRbnfVdmIw"),
            ("POBLYSH_HEALTH_CHECK_SECONDS", "0"),
        ];
        let node = Node::with(backend, &env, |b| b.ambient(ambient(&clock))).await;
        let server = MockServer::start().await;
        node.register(&oauth_descriptor("oauthy", &server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // Expires in 30 minutes (the clock starts at the real now).
        let id = connected(&node, tenant, Duration::minutes(30)).await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(token_response("new-access", None, 3600))
            .expect(1).mount(&server).await;

        let mut upkeep = Upkeep::default();
        // 30 minutes left: beyond the 10 minutes the upkeep looks ahead.
        assert_eq!(upkeep.pass(&node.services, clock.now()).await.unwrap().refreshed, 0);
        clock.advance(Duration::minutes(21));
        // 9 minutes left, no job anywhere: the upkeep refreshes it.
        assert_eq!(upkeep.pass(&node.services, clock.now()).await.unwrap().refreshed, 1);
        assert_eq!(stored_tokens(&node, tenant, id).await, ("new-access".to_owned(), REFRESH.to_owned()));
        // Fresh for an hour now.
        assert_eq!(upkeep.pass(&node.services, clock.now()).await.unwrap().refreshed, 0);
        let (_, jobs) = node.api("GET", "/jobs", Some(tenant), None).await;
        assert_eq!(jobs["jobs"], json!([]), "{jobs}");
        server.verify().await;

        // A token that lives shorter than the look-ahead (here 4 minutes) is
        // refreshed once per half the look-ahead, not on every pass.
        server.reset().await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(token_response("short-lived", None, 240))
            .expect(2).mount(&server).await;
        clock.advance(Duration::minutes(55));
        for _ in 0..6 {
            upkeep.pass(&node.services, clock.now()).await.unwrap();
            clock.advance(Duration::minutes(1));
        }
        server.verify().await;
    }
}

/// Answers the health check with the status it is set to.
#[derive(Clone)]
struct Status(Arc<AtomicU16>);

impl Respond for Status {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(self.0.load(Ordering::SeqCst))
    }
}

crate::on_both! {
    async fn health_checks_run_on_their_interval_on_one_node(backend) {
        let clock = ManualClock::new(start());
        let env = [("POBLYSH_HEALTH_CHECK_SECONDS", "600")];
        let (url, _dir) = database(backend).await;
        let one = Node::on_with(&url, &env, |b| b.ambient(ambient(&clock))).await;
        let two = Node::on_with(&url, &env, |b| b.ambient(ambient(&clock))).await;
        let server = MockServer::start().await;
        let yaml = descriptor("patty", &server.uri(), Delta::Cursor, Paging::Cursor);
        one.register(&yaml);
        two.register(&yaml);
        let status = Status(Arc::new(AtomicU16::new(200)));
        Mock::given(method("GET")).and(path("/health")).respond_with(status.clone()).mount(&server).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = one.connection(tenant, "patty", &[("token", "tok-9")], json!({})).await;
        let uuid = *id.as_uuid();
        let checks = |expected: usize| {
            let server = &server;
            async move {
                let requests = server.received_requests().await.unwrap();
                assert_eq!(requests.iter().filter(|r| r.url.path() == "/health").count(), expected);
            }
        };

        // Never checked: due at once, and taken by one of the two nodes.
        let (mut up_one, mut up_two) = (Upkeep::default(), Upkeep::default());
        let (a, b) = tokio::join!(up_one.pass(&one.services, clock.now()), up_two.pass(&two.services, clock.now()));
        assert_eq!(a.unwrap().checked + b.unwrap().checked, 1);
        checks(1).await;
        let c = connection(&one, tenant, uuid).await;
        assert_eq!((c["health"].as_str(), c["consecutive_failures"].as_i64()), (Some("healthy"), Some(0)), "{c}");
        let checked_at: DateTime<Utc> = c["last_health_check"].as_str().unwrap().parse().unwrap();
        assert_eq!(checked_at, clock.now());

        // Not due before its interval.
        clock.advance(Duration::minutes(5));
        assert_eq!(up_one.pass(&one.services, clock.now()).await.unwrap().checked, 0);
        checks(1).await;

        // Failing: degraded, then error from the third failure in a row.
        status.0.store(503, Ordering::SeqCst);
        for (n, health) in [(1, "degraded"), (2, "degraded"), (3, "error")] {
            clock.advance(Duration::minutes(10));
            let p = up_two.pass(&two.services, clock.now()).await.unwrap();
            assert_eq!((p.checked, p.unhealthy), (1, 1));
            let c = connection(&one, tenant, uuid).await;
            assert_eq!((c["health"].as_str(), c["consecutive_failures"].as_i64()), (Some(health), Some(n)), "{c}");
            assert!(c["last_error"].as_str().unwrap().contains("503"), "{c}");
        }
        // Recovered.
        status.0.store(200, Ordering::SeqCst);
        clock.advance(Duration::minutes(10));
        assert_eq!(up_one.pass(&one.services, clock.now()).await.unwrap().checked, 1);
        let c = connection(&one, tenant, uuid).await;
        assert_eq!((c["health"].as_str(), c["consecutive_failures"].as_i64(), c["last_error"].clone()), (Some("healthy"), Some(0), Value::Null), "{c}");
        checks(5).await;

        // A disabled connection is not checked.
        let (status_code, _) = one.api("PATCH", &format!("/connections/{id}"), Some(tenant), Some(json!({"enabled": false}))).await;
        assert_eq!(status_code, 200);
        clock.advance(Duration::minutes(10));
        assert_eq!(up_one.pass(&one.services, clock.now()).await.unwrap().checked, 0);
        checks(5).await;
    }
}

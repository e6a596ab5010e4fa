//! Faults: a 500 then 200 succeeds on retry; persistent 500s fail the job with
//! the error, checkpoint unchanged, failures counted; 429 with Retry-After
//! reschedules without spending an attempt; a malformed page fails the job and
//! leaves the checkpoint where it was.

use std::time::Duration;

use poblysh_connectors::db::entities::sync_job;
use poblysh_connectors::db::repo::jobs::{self, JobState, JobType, Trigger};
use poblysh_connectors::db::repo::{connections, cursors, signals};
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::sync::executor::JobReport;
use poblysh_connectors::sync::scheduler;
use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Backend, Node};

struct Setup {
    node: Node,
    server: MockServer,
    fake: Fake,
    tenant: TenantId,
    conn: ConnectionId,
}

async fn setup(backend: Backend, paging: Paging) -> Setup {
    let node = Node::new(backend, true, &[]).await;
    let server = MockServer::start().await;
    let fake = Fake::default();
    for id in 1..=4 {
        fake.add(id, id as i64);
    }
    node.register(&descriptor("fake", &server.uri(), Delta::Cursor, paging));
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let conn = node
        .connection(tenant, "fake", &[("token", "tok")], json!({}))
        .await;
    Setup {
        node,
        server,
        fake,
        tenant,
        conn,
    }
}

async fn job(node: &Node, id: Uuid) -> sync_job::Model {
    sync_job::Entity::find_by_id(id)
        .one(node.services.db.conn())
        .await
        .unwrap()
        .unwrap()
}

/// Steps the executor until the job reaches a final state.
async fn run_to_end(node: &Node) -> JobReport {
    let executor = node.executor("w");
    for _ in 0..100 {
        if let Some(report) = executor.try_execute_next().await.unwrap()
            && matches!(report.state, JobState::Succeeded | JobState::Failed)
        {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the job did not finish");
}

crate::on_both! {
    async fn a_500_then_200_succeeds_on_retry(backend) {
        let s = setup(backend, Paging::Cursor).await;
        Mock::given(method("GET")).and(path("/items"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1).with_priority(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items")).respond_with(s.fake.clone()).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, s.tenant, s.conn, "fake").await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 4), "{report:?}");
        assert_eq!(job(&s.node, report.job_id).await.attempt, 1, "retried inside one attempt");
        assert_eq!(s.server.received_requests().await.unwrap().len(), 3, "500, then two pages");
    }
}

crate::on_both! {
    async fn persistent_500s_fail_the_job_and_keep_the_checkpoint(backend) {
        let s = setup(backend, Paging::Cursor).await;
        let ok = Mock::given(method("GET")).and(path("/items")).respond_with(s.fake.clone()).mount_as_scoped(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, s.tenant, s.conn, "fake").await.unwrap();
        assert_eq!(run_to_end(&s.node).await.state, JobState::Succeeded);
        let checkpoint = cursors::load(&s.node.services.db, s.tenant, s.conn).await.unwrap();
        assert_eq!(checkpoint.get("").cloned().flatten().as_deref(), Some("4"));
        drop(ok);

        Mock::given(method("GET")).and(path("/items"))
            .respond_with(ResponseTemplate::new(500).set_body_string("upstream broke"))
            .mount(&s.server).await;
        s.fake.add(5, 5);
        let queued = jobs::enqueue(&s.node.services.db, s.tenant, s.conn, "fake", JobType::Incremental, Trigger::Manual).await.unwrap();
        let report = run_to_end(&s.node).await;
        assert_eq!(report.job_id, queued.id);
        assert_eq!(report.state, JobState::Failed);
        let error = report.error.unwrap();
        assert!(error.contains("answered 500: upstream broke"), "{error}");
        let row = job(&s.node, queued.id).await;
        assert_eq!((row.state.as_str(), row.attempt), ("failed", 3), "three job attempts");
        assert!(row.finished_at.is_some() && row.error.is_some());
        assert_eq!(cursors::load(&s.node.services.db, s.tenant, s.conn).await.unwrap(), checkpoint, "the checkpoint did not move");
        let conn = connections::get(&s.node.services.db, s.tenant, s.conn).await.unwrap().unwrap();
        assert_eq!(conn.consecutive_failures, 3);
        assert_eq!(conn.healthy, Some(false));
        assert!(conn.last_error.unwrap().contains("500"));
        // The API shows it too.
        let (status, body) = s.node.api("GET", &format!("/jobs/{}", queued.id), Some(s.tenant), None).await;
        assert_eq!((status, body["state"].as_str(), body["attempt"].as_i64()), (200, Some("failed"), Some(3)));
        assert!(body["error"].as_str().unwrap().contains("500"));
        let (_, connection) = s.node.api("GET", &format!("/connections/{}", s.conn), Some(s.tenant), None).await;
        assert_eq!(connection["consecutive_failures"], 3);
    }
}

crate::on_both! {
    async fn a_429_reschedules_without_spending_an_attempt(backend) {
        let s = setup(backend, Paging::Cursor).await;
        Mock::given(method("GET")).and(path("/items"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
            .up_to_n_times(1).with_priority(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items")).respond_with(s.fake.clone()).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, s.tenant, s.conn, "fake").await.unwrap();
        let executor = s.node.executor("w");
        let before = chrono::Utc::now();
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Queued, "{report:?}");
        let row = job(&s.node, report.job_id).await;
        assert_eq!(row.attempt, 0, "the attempt is not spent");
        assert!(row.run_after >= before + chrono::Duration::milliseconds(1900), "{} vs {before}", row.run_after);
        assert!(executor.try_execute_next().await.unwrap().is_none(), "not due yet");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 4));
        assert_eq!(job(&s.node, report.job_id).await.attempt, 1);
        let conn = connections::get(&s.node.services.db, s.tenant, s.conn).await.unwrap().unwrap();
        assert_eq!(conn.consecutive_failures, 0, "rate limits are not failures");
    }
}

/// Page 1 is fine; page 2 is not JSON.
struct BrokenSecondPage(Fake);

impl Respond for BrokenSecondPage {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.url.query_pairs().any(|(k, _)| k == "page_token") {
            ResponseTemplate::new(200).set_body_string("{\"items\": [oops")
        } else {
            self.0.respond(req)
        }
    }
}

crate::on_both! {
    async fn a_malformed_page_fails_the_job_and_writes_nothing(backend) {
        let s = setup(backend, Paging::Cursor).await;
        Mock::given(method("GET")).and(path("/items")).respond_with(BrokenSecondPage(s.fake.clone())).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, s.tenant, s.conn, "fake").await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Failed, "malformed data is not retried: {report:?}");
        let error = report.error.unwrap();
        assert!(error.starts_with(&format!("page 2 of {}/items is not valid JSON", s.server.uri())), "{error}");
        // Runs commit as they go (DESIGN §11): page 1's Signals are stored
        // (a retry would dedupe them), but the checkpoint does not move.
        let (stored, _) = signals::list(&s.node.services.db, s.tenant, &Default::default(), 100, None).await.unwrap();
        assert!(stored.len() <= crate::sync::fake::PAGE_SIZE, "only page 1's signals: {}", stored.len());
        assert!(cursors::load(&s.node.services.db, s.tenant, s.conn).await.unwrap().is_empty());
    }
}

crate::on_both! {
    async fn a_page_over_the_response_limit_fails_the_job_naming_the_limit(backend) {
        let node = Node::new(backend, true, &[]).await;
        let server = MockServer::start().await;
        let yaml = descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor)
            .replace("  retry: {initialBackoffMs: 5}", "  retry: {initialBackoffMs: 5}\n  maxResponseBytes: 4096");
        node.register(&yaml);
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "fake", &[("token", "tok")], json!({})).await;
        // A tenant-chosen base URL answering far more than the limit.
        let huge = json!({"items": [], "padding": "x".repeat(64 * 1024)});
        Mock::given(method("GET")).and(path("/items"))
            .respond_with(ResponseTemplate::new(200).set_body_json(huge))
            .mount(&server).await;
        scheduler::enqueue_backfill(&node.services, tenant, conn, "fake").await.unwrap();
        let report = run_to_end(&node).await;
        assert_eq!(report.state, JobState::Failed, "{report:?}");
        let error = report.error.unwrap();
        assert!(error.contains("larger than the 4096-byte limit"), "{error}");
        assert!(cursors::load(&node.services.db, tenant, conn).await.unwrap().is_empty());
    }
}

crate::on_both! {
    async fn credentials_a_provider_echoes_back_are_never_stored_or_shown(backend) {
        let node = Node::new(backend, true, &[]).await;
        let server = MockServer::start().await;
        let blocks = [
            ("echo_pat", crate::sync::fake::PAT_BLOCK.to_owned(), vec![("token", "ghp_EchoedBackSecret123")]),
            (
                "echo_query",
                "auth:\n  method: api_key\n  config:\n    delivery: query\n    paramName: api_key\n    credentialFields: [{key: key, label: Key, type: password, required: true}]".to_owned(),
                vec![("key", "k3y/with+odd=chars")],
            ),
            (
                "echo_basic",
                "auth:\n  method: basic\n  config:\n    credentialFields: [{key: username, label: U, type: text, required: true}, {key: password, label: P, type: password, required: true}]".to_owned(),
                vec![("username", "me@example.com"), ("password", "hunter2-secret")],
            ),
        ];
        /// Answers 401 with a body repeating everything the request carried.
        struct Echo;
        impl Respond for Echo {
            fn respond(&self, req: &Request) -> ResponseTemplate {
                let auth = req.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                ResponseTemplate::new(401).set_body_string(format!("bad credentials: {auth} for {}", req.url))
            }
        }
        Mock::given(method("GET")).and(path("/items")).respond_with(Echo).mount(&server).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        for (id, block, credentials) in blocks {
            let yaml = descriptor(id, &server.uri(), Delta::Cursor, Paging::Cursor)
                .replace(crate::sync::fake::PAT_BLOCK, &block);
            node.register(&yaml);
            let conn = node.connection(tenant, id, &credentials, json!({})).await;
            scheduler::enqueue_backfill(&node.services, tenant, conn, id).await.unwrap();
            let report = run_to_end(&node).await;
            assert_eq!(report.state, JobState::Failed, "{report:?}");
            let (_, jobs) = node.api("GET", &format!("/jobs?connection_id={conn}"), Some(tenant), None).await;
            let (_, shown) = node.api("GET", &format!("/connections/{conn}"), Some(tenant), None).await;
            let stored = job(&node, report.job_id).await.error.unwrap_or_default();
            let error = report.error.unwrap();
            assert!(error.contains("401") && error.contains("[redacted]"), "{id}: {error}");
            use base64::Engine;
            let mut leaks: Vec<String> = credentials.iter().map(|(_, v)| v.to_string()).collect();
            leaks.push(url::form_urlencoded::byte_serialize(credentials[0].1.as_bytes()).collect());
            if id == "echo_basic" {
                leaks.push(base64::engine::general_purpose::STANDARD.encode("me@example.com:hunter2-secret"));
                leaks.retain(|l| l != "me@example.com" && !l.starts_with("me%40"));
            }
            for leak in &leaks {
                for (what, text) in [("report", error.clone()), ("stored", stored.clone()), ("jobs", jobs.to_string()), ("connection", shown.to_string())] {
                    assert!(!text.contains(leak.as_str()), "{id}: {leak} in the {what}: {text}");
                }
            }
        }
    }
}

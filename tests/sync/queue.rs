//! The queue across workers and nodes: crash recovery by lease expiry, three
//! nodes on one PostgreSQL running every job exactly once, the per-tenant cap,
//! the scheduler's windows, and the SSRF guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use poblysh_connectors::db::entities::sync_job;
use poblysh_connectors::db::repo::jobs::{self, JobState, JobType, Trigger};
use poblysh_connectors::db::repo::{connections, signals};
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::executor::{Executor, ExecutorSettings};
use poblysh_connectors::sync::queue::{self, QueueSettings};
use poblysh_connectors::sync::scheduler;
use sea_orm::EntityTrait;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Backend, Node};

async fn all_jobs(node: &Node) -> Vec<sync_job::Model> {
    sync_job::Entity::find()
        .all(node.services.db.conn())
        .await
        .unwrap()
}

/// The first request of page 2 hangs (the worker "dies" meanwhile); later ones answer.
struct SlowOnce {
    fake: Fake,
    calls: Arc<AtomicUsize>,
}

impl Respond for SlowOnce {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let second_page = req.url.query_pairs().any(|(k, _)| k == "page_token");
        if second_page && self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.fake.respond(req).set_delay(Duration::from_secs(30))
        } else {
            self.fake.respond(req)
        }
    }
}

crate::on_both! {
    async fn a_crashed_worker_s_job_is_reclaimed_and_completes_once(backend) {
        let node = Node::new(backend, true, &[]).await;
        let server = MockServer::start().await;
        let fake = Fake::default();
        for id in 1..=5 {
            fake.add(id, id as i64);
        }
        Mock::given(method("GET")).and(path("/items"))
            .respond_with(SlowOnce { fake: fake.clone(), calls: Arc::default() })
            .mount(&server).await;
        node.register(&descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "fake", &[("token", "tok")], json!({})).await;
        scheduler::enqueue_backfill(&node.services, tenant, conn, "fake").await.unwrap();

        let short_lease = |worker: &str| Executor::new(Arc::clone(&node.services), ExecutorSettings {
            worker_id: worker.into(),
            queue: QueueSettings { lease: chrono::Duration::seconds(2), ..QueueSettings::default() },
            ..ExecutorSettings::default()
        });
        // Worker A claims the job, writes page 1 into its transaction, and dies on page 2.
        let a = Arc::new(short_lease("worker-a"));
        let task = tokio::spawn({ let a = Arc::clone(&a); async move { a.try_execute_next().await } });
        tokio::time::sleep(Duration::from_millis(800)).await;
        task.abort();
        let _ = task.await;
        let crashed = all_jobs(&node).await.remove(0);
        assert_eq!((crashed.state.as_str(), crashed.lease_owner.as_deref()), ("running", Some("worker-a")));

        // Worker B cannot take it while the lease holds, then reclaims it.
        let b = short_lease("worker-b");
        assert!(b.try_execute_next().await.unwrap().is_none(), "the lease still holds");
        let report = loop {
            if let Some(r) = b.try_execute_next().await.unwrap() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 5), "{report:?}");
        let done = all_jobs(&node).await.remove(0);
        // The crash was a reclaim, not a spent attempt.
        assert_eq!((done.state.as_str(), done.attempt, done.reclaims), ("succeeded", 1, 1));
        let (stored, _) = signals::list(&node.services.db, tenant, &Default::default(), 100, None).await.unwrap();
        assert_eq!(stored.len(), 5, "each signal once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_postgres_run_every_job_exactly_once() {
    let (url, _) = crate::sync::harness::database(Backend::Postgres).await;
    let nodes = [
        Node::on(&url, true, &[]).await,
        Node::on(&url, true, &[]).await,
        Node::on(&url, true, &[]).await,
    ];
    let server = MockServer::start().await;
    let fake = Fake::default();
    for id in 1..=4 {
        fake.add(id, id as i64);
    }
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let yaml = descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor);
    for n in &nodes {
        n.register(&yaml);
    }
    let mut tenants = Vec::new();
    for i in 0..50 {
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = nodes[i % 3]
            .connection(tenant, "fake", &[("token", "tok")], json!({}))
            .await;
        scheduler::enqueue_backfill(&nodes[0].services, tenant, conn, "fake")
            .await
            .unwrap();
        tenants.push(tenant);
    }
    let executed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for w in 0..2 {
            let executor = node.executor(&format!("node{i}-w{w}"));
            let services = Arc::clone(&node.services);
            let executed = Arc::clone(&executed);
            workers.push(tokio::spawn(async move {
                let _ = services;
                let mut idle = 0;
                while idle < 5 {
                    match executor.try_execute_next().await.unwrap() {
                        Some(r) => {
                            assert_eq!(r.state, JobState::Succeeded, "{r:?}");
                            executed.fetch_add(1, Ordering::SeqCst);
                            idle = 0;
                        }
                        None => {
                            idle += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        executed.load(Ordering::SeqCst),
        50,
        "50 executions for 50 jobs"
    );
    let jobs = all_jobs(&nodes[0]).await;
    assert_eq!(jobs.len(), 50);
    assert!(
        jobs.iter()
            .all(|j| j.state == "succeeded" && j.attempt == 1),
        "each job ran once"
    );
    let owners: std::collections::BTreeSet<String> =
        jobs.iter().map(|j| j.idempotency_key.clone()).collect();
    assert_eq!(owners.len(), 50);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        100,
        "two pages per connection, once"
    );
    for tenant in tenants {
        let (stored, _) = signals::list(
            &nodes[0].services.db,
            tenant,
            &Default::default(),
            100,
            None,
        )
        .await
        .unwrap();
        assert_eq!(stored.len(), 4);
    }
}

crate::on_both! {
    async fn the_tenant_cap_holds_and_one_job_per_connection_runs(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&descriptor("fake", "https://api.example.com", Delta::Cursor, Paging::Cursor));
        let a = TenantId::from_uuid(Uuid::now_v7());
        let b = TenantId::from_uuid(Uuid::now_v7());
        let a1 = node.connection(a, "fake", &[("token", "t")], json!({})).await;
        let a2 = node.connection(a, "fake", &[("token", "t")], json!({})).await;
        let b1 = node.connection(b, "fake", &[("token", "t")], json!({})).await;
        let db = &node.services.db;
        for (t, c) in [(a, a1), (a, a2), (b, b1)] {
            jobs::enqueue(db, t, c, "fake", JobType::Incremental, Trigger::Manual).await.unwrap();
        }
        // A second job for a1 (another type) must wait for the first.
        jobs::enqueue(db, a, a1, "fake", JobType::Full, Trigger::Manual).await.unwrap();
        let settings = QueueSettings { tenant_concurrency: 1, ..QueueSettings::default() };
        let now = chrono::Utc::now();
        let first = queue::claim(db, "w1", now, &settings).await.unwrap().unwrap();
        let second = queue::claim(db, "w2", now, &settings).await.unwrap().unwrap();
        assert_ne!(first.tenant_id, second.tenant_id, "tenant A's second job waits for the cap");
        assert!(queue::claim(db, "w3", now, &settings).await.unwrap().is_none());
        let wide = QueueSettings { tenant_concurrency: 10, ..QueueSettings::default() };
        let third = queue::claim(db, "w3", now, &wide).await.unwrap().unwrap();
        assert_eq!(third.connection_id, a2, "a1 already runs a job");
        assert!(queue::claim(db, "w4", now, &wide).await.unwrap().is_none());
    }
}

crate::on_both! {
    async fn a_tenant_s_own_job_concurrency_overrides_the_default(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&descriptor("fake", "https://api.example.com", Delta::Cursor, Paging::Cursor));
        let (a, b) = (TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7()));
        let db = &node.services.db;
        for t in [a, a, a, b, b, b] {
            let c = node.connection(t, "fake", &[("token", "t")], json!({})).await;
            jobs::enqueue(db, t, c, "fake", JobType::Incremental, Trigger::Manual).await.unwrap();
        }
        let (status, body) = node.api("GET", "/tenant/settings", Some(a), None).await;
        assert_eq!((status, body), (200, json!({"job_concurrency": null, "effective_job_concurrency": 2})));
        let (status, body) = node.api("PUT", "/tenant/settings", Some(a), Some(json!({"job_concurrency": 3}))).await;
        assert_eq!((status, body), (200, json!({"job_concurrency": 3, "effective_job_concurrency": 3})));
        let (status, body) = node.api("PUT", "/tenant/settings", Some(b), Some(json!({"job_concurrency": 0}))).await;
        assert_eq!(status, 400, "{body}");
        // Tenant A may run 3, tenant B the default of 1 here.
        let settings = QueueSettings { tenant_concurrency: 1, ..QueueSettings::default() };
        let now = chrono::Utc::now();
        let mut claimed = Vec::new();
        while let Some(job) = queue::claim(db, &format!("w{}", claimed.len()), now, &settings).await.unwrap() {
            claimed.push(job.tenant_id);
        }
        assert_eq!((claimed.iter().filter(|t| **t == a).count(), claimed.iter().filter(|t| **t == b).count()), (3, 1));
        // Back to the default.
        let (status, body) = node.api("PUT", "/tenant/settings", Some(a), Some(json!({"job_concurrency": null}))).await;
        assert_eq!((status, body["job_concurrency"].clone()), (200, json!(null)));
    }
}

crate::on_both! {
    async fn the_scheduler_enqueues_one_job_per_window(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&descriptor("fake", "https://api.example.com", Delta::Cursor, Paging::Cursor));
        node.register(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/pagerduty.yaml")).unwrap());
        let t = TenantId::from_uuid(Uuid::now_v7());
        let c1 = node.connection(t, "fake", &[("token", "t")], json!({})).await;
        let c2 = node.connection(t, "fake", &[("token", "t")], json!({})).await;
        node.connection(t, "pagerduty", &[], json!({})).await;
        connections::update(&node.services.db, t, c2, connections::ConnectionPatch { enabled: Some(false), ..Default::default() }).await.unwrap();
        // Within its first minute a connection waits for its backfill (these
        // were stored without one), then it is scheduled.
        let created = chrono::Utc::now();
        assert_eq!(scheduler::tick(&node.services, created).await.unwrap(), 0, "new connections");
        let now = created + scheduler::BACKFILL_GRACE;
        assert_eq!(scheduler::tick(&node.services, now).await.unwrap(), 1, "enabled polling connections only");
        assert_eq!(scheduler::tick(&node.services, now).await.unwrap(), 0, "same window");
        let other_node = Node::on(&node.database_url, true, &[]).await;
        other_node.register(&descriptor("fake", "https://api.example.com", Delta::Cursor, Paging::Cursor));
        assert_eq!(scheduler::tick(&other_node.services, now).await.unwrap(), 0, "another node, same window");
        let later = now + chrono::Duration::seconds(900);
        assert_eq!(scheduler::tick(&node.services, later).await.unwrap(), 1, "the next window");
        let jobs = all_jobs(&node).await;
        assert!(jobs.iter().all(|j| j.connection_id == *c1.as_uuid() && j.trigger == "schedule"));
    }
}

crate::on_both! {
    async fn the_first_incremental_comes_one_interval_after_the_backfill(backend) {
        let server = MockServer::start().await;
        let fake = Fake::default();
        fake.add(1, 0);
        Mock::given(method("GET")).and(path("/items")).respond_with(fake).mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor));
        let interval = node.services.registry.get("fake").unwrap().connector.capabilities().polling.unwrap().interval;
        let interval = chrono::Duration::from_std(interval).unwrap();
        let t = TenantId::from_uuid(Uuid::now_v7());
        let (status, body) = node.api("POST", "/connections", Some(t), Some(json!({"provider": "fake", "credentials": {"token": "t"}}))).await;
        assert_eq!(status, 201, "{body}");
        // The backfill is queued: no incremental beside it.
        let now = chrono::Utc::now();
        assert_eq!(scheduler::tick(&node.services, now).await.unwrap(), 0);
        assert_eq!(crate::sync::harness::drain(&node).await, [("full".to_owned(), JobState::Succeeded)]);
        let finished = all_jobs(&node).await[0].finished_at.unwrap();
        // Nor right after it, nor until one interval has passed since it finished.
        assert_eq!(scheduler::tick(&node.services, finished).await.unwrap(), 0);
        let almost = finished + interval - chrono::Duration::seconds(1);
        assert_eq!(scheduler::tick(&node.services, almost).await.unwrap(), 0);
        assert_eq!(scheduler::tick(&node.services, finished + interval).await.unwrap(), 1);
        let types: Vec<String> = all_jobs(&node).await.into_iter().map(|j| j.job_type).collect();
        assert_eq!(types.iter().filter(|t| *t == "incremental").count(), 1, "{types:?}");
    }
}

crate::on_both! {
    async fn private_addresses_are_refused_without_the_allow_setting(backend) {
        let node = Node::new(backend, false, &[]).await;
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
        let t = TenantId::from_uuid(Uuid::now_v7());
        let mut targets = vec![
            ("loopback", server.uri(), "127.0.0.1"),
            ("metadata", "http://169.254.169.254".to_owned(), "cloud metadata"),
            ("name", server.uri().replace("127.0.0.1", "localhost"), "loopback"),
        ];
        // A name that resolves to loopback through DNS (here: /etc/hosts), when the machine has one.
        let resolved_loopback = std::net::ToSocketAddrs::to_socket_addrs(&("vm", 80))
            .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()));
        if resolved_loopback {
            targets.push(("resolved", server.uri().replace("127.0.0.1", "vm"), "vm ("));
        }
        for (name, base, expected) in targets {
            let id = format!("ssrf_{name}");
            node.register(&descriptor(&id, &base, Delta::Cursor, Paging::Cursor));
            let c = node.connection(t, &id, &[("token", "t")], json!({})).await;
            scheduler::enqueue_backfill(&node.services, t, c, &id).await.unwrap();
            let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
            assert_eq!(report.state, JobState::Failed, "{name}: {report:?}");
            let error = report.error.unwrap();
            assert!(error.contains("refused to connect") && error.contains(expected), "{name}: {error}");
        }
        assert!(server.received_requests().await.unwrap().is_empty(), "nothing reached the private address");
    }
}

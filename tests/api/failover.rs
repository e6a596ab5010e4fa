//! Three real `serve` processes on one PostgreSQL backfill 50 connections
//! (each 20 items over 7 slow pages). Kill -9 one of them in the middle:
//! every job completes exactly once, every item is one Signal (counted
//! against the mock's items), and the victim's jobs are taken over once their
//! leases expire. SIGTERM one instead (leases far longer than the test):
//! its jobs are handed over at once and finish elsewhere.

use std::time::{Duration, Instant};

use poblysh_connectors::db::entities::{signal, sync_job};
use reqwest::Method;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::api::harness::{Server, send};
use crate::pg;
use crate::sync::fake::{Delta, Fake, Paging, descriptor};

const CONNECTIONS: usize = 50;
const ITEMS: u64 = 20;

/// The fake provider, each page answered after `delay`.
struct Slow(Fake, Duration);

impl Respond for Slow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req).set_delay(self.1)
    }
}

struct Cluster {
    nodes: Vec<Option<Server>>,
    url: String,
    tenant: Uuid,
    _mock: MockServer,
}

async fn cluster(lease_seconds: &str) -> Cluster {
    let mock = MockServer::start().await;
    let fake = Fake::default();
    for i in 1..=ITEMS {
        fake.add(i, i as i64);
    }
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(Slow(fake, Duration::from_millis(120)))
        .mount(&mock)
        .await;
    let url = pg::fresh_database();
    let env = [
        ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("POBLYSH_TENANT_JOB_CONCURRENCY", "64"),
        ("POBLYSH_JOB_LEASE_SECONDS", lease_seconds),
        ("POBLYSH_SHUTDOWN_SECONDS", "30"),
        ("RUST_LOG", "info"),
    ];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Some(
            Server::start_logged(tempfile::tempdir().unwrap(), url.clone(), &env, "all").await,
        ));
    }
    let first = nodes[0].as_ref().unwrap();
    let yaml = descriptor("fake", &mock.uri(), Delta::Cursor, Paging::Cursor);
    assert_eq!(first.put_descriptor("fake", &yaml).await, 201);
    let tenant = Uuid::now_v7();
    for n in 0..CONNECTIONS {
        // Spread over the nodes that agree on the provider.
        let node = nodes[n % 3].as_ref().unwrap();
        let started = Instant::now();
        loop {
            let (status, body) = send(node.tenant(tenant, Method::POST, "/connections").json(
                &json!({
                    "provider": "fake", "credentials": {"token": "t"},
                }),
            ))
            .await;
            if status == 201 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Cluster {
        nodes,
        url,
        tenant,
        _mock: mock,
    }
}

async fn jobs(url: &str) -> Vec<sync_job::Model> {
    let db = poblysh_connectors::db::Db::connect(url).await.unwrap();
    sync_job::Entity::find().all(db.conn()).await.unwrap()
}

/// Waits until `some` backfills succeeded (at most 30 s).
async fn until_succeeded(url: &str, some: usize, limit: Duration) -> Vec<sync_job::Model> {
    let started = Instant::now();
    loop {
        let all = jobs(url).await;
        if all.iter().filter(|j| j.state == "succeeded").count() >= some {
            return all;
        }
        assert!(
            started.elapsed() < limit,
            "only {} of {some} succeeded: {:?}",
            all.iter().filter(|j| j.state == "succeeded").count(),
            all.iter().map(|j| (&j.state, &j.error)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every backfill ran once and stored each of the mock's items once.
async fn every_item_once(c: &Cluster) -> Vec<sync_job::Model> {
    let all = until_succeeded(&c.url, CONNECTIONS, Duration::from_secs(60)).await;
    let backfills: Vec<_> = all.iter().filter(|j| j.job_type == "full").collect();
    assert_eq!(backfills.len(), CONNECTIONS, "one backfill per connection");
    assert!(
        backfills.iter().all(|j| j.state == "succeeded"),
        "{backfills:?}"
    );
    let db = poblysh_connectors::db::Db::connect(&c.url).await.unwrap();
    let signals = signal::Entity::find()
        .filter(signal::Column::TenantId.eq(c.tenant))
        .all(db.conn())
        .await
        .unwrap();
    let mut per_connection = std::collections::BTreeMap::<Uuid, Vec<String>>::new();
    for s in signals {
        per_connection
            .entry(s.connection_id)
            .or_default()
            .push(s.external_id);
    }
    assert_eq!(per_connection.len(), CONNECTIONS);
    for (connection, mut ids) in per_connection {
        ids.sort();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids, unique, "a duplicate Signal for {connection}");
        assert_eq!(ids.len() as u64, ITEMS, "Signals lost for {connection}");
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_backfill_loses_and_duplicates_nothing() {
    let mut c = cluster("5").await;
    until_succeeded(&c.url, 5, Duration::from_secs(30)).await;
    // Kill -9 node 2 while it runs backfills.
    let victim = c.nodes[1].take().unwrap();
    let killed = Instant::now();
    drop(victim);
    let all = every_item_once(&c).await;
    // Its running jobs were reclaimed after their leases expired.
    let reclaimed: Vec<_> = all.iter().filter(|j| j.reclaims > 0).collect();
    assert!(!reclaimed.is_empty(), "no job was taken over");
    assert!(
        killed.elapsed() >= Duration::from_secs(3),
        "taken over before the lease could expire"
    );
    let (status, _) = send(c.nodes[0].as_ref().unwrap().tenant(
        c.tenant,
        Method::GET,
        "/jobs?state=failed",
    ))
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_mid_backfill_hands_its_jobs_over_at_once() {
    // Leases of 10 minutes: only a hand-over lets another node finish in time.
    let mut c = cluster("600").await;
    until_succeeded(&c.url, 5, Duration::from_secs(30)).await;
    let stopping = c.nodes[2].take().unwrap();
    let (took, dir) = stopping.terminate(Duration::from_secs(30));
    assert!(
        took < Duration::from_secs(10),
        "the node took {took:?} to stop"
    );
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(
        log.contains("handed back"),
        "the stopped node ran no job to hand over:\n{log}"
    );
    let all = every_item_once(&c).await;
    assert!(
        all.iter().all(|j| j.reclaims == 0),
        "a job waited for its lease to expire"
    );
}

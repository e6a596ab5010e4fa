//! Jobs start at once: an enqueue wakes the idle workers of its node at once,
//! and (PostgreSQL `LISTEN/NOTIFY`) those of other nodes, so a new
//! connection's backfill does not wait for the workers' poll interval (here
//! 30 s, far beyond the time allowed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use poblysh_connectors::sync::executor::{Executor, ExecutorSettings};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Backend, Node};

fn sleepy_workers(node: &Node) -> (Arc<Executor>, tokio::sync::watch::Sender<bool>) {
    let executor = Arc::new(Executor::new(
        Arc::clone(&node.services),
        ExecutorSettings {
            idle: Duration::from_secs(30),
            concurrency: 2,
            ..ExecutorSettings::default()
        },
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&executor).run_workers(stopped));
    (executor, stop)
}

/// Creates a connection on `api` and waits until `worker_node`'s workers have
/// finished its backfill; how long that took.
async fn backfill_latency(api: &Node, tenant: Uuid) -> Duration {
    let started = Instant::now();
    let (status, body) = api
        .api(
            "POST",
            "/connections",
            Some(poblysh_connectors::domain::TenantId::from_uuid(tenant)),
            Some(json!({"provider": "fake", "credentials": {"token": "t"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    loop {
        let (_, jobs) = api
            .api(
                "GET",
                "/jobs?state=succeeded",
                Some(poblysh_connectors::domain::TenantId::from_uuid(tenant)),
                None,
            )
            .await;
        if !jobs["jobs"].as_array().unwrap().is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the backfill waited for the poll interval"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn mock() -> MockServer {
    let server = MockServer::start().await;
    let fake = Fake::default();
    fake.add(1, 0);
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake)
        .mount(&server)
        .await;
    server
}

crate::on_both! {
    async fn an_enqueue_wakes_the_idle_workers_of_its_node(backend) {
        let server = mock().await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor));
        let (_workers, stop) = sleepy_workers(&node);
        // Let the workers find the queue empty and go idle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let took = backfill_latency(&node, Uuid::now_v7()).await;
        eprintln!("{backend:?}: backfill done {took:?} after POST /connections");
        stop.send(true).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enqueue_on_one_node_wakes_the_workers_of_another() {
    let server = mock().await;
    let (url, _) = crate::sync::harness::database(Backend::Postgres).await;
    let api = Node::on(&url, true, &[]).await;
    let worker = Node::on(&url, true, &[]).await;
    for n in [&api, &worker] {
        n.register(&descriptor(
            "fake",
            &server.uri(),
            Delta::Cursor,
            Paging::Cursor,
        ));
    }
    let (_workers, stop) = sleepy_workers(&worker);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = backfill_latency(&api, Uuid::now_v7()).await;
    eprintln!("PostgreSQL, two nodes: backfill done {took:?} after POST /connections");
    stop.send(true).unwrap();
}

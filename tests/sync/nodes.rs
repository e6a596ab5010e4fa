//! Nodes that agree: a runtime provider registered, replaced or deleted over
//! the API of one node reaches another node sharing the database (PostgreSQL:
//! announced at once, here with the periodic look turned far down; SQLite:
//! the periodic look), and a job claimed by a node that does not know its
//! provider yet is run after a catch-up, or put back for another node without
//! spending an attempt, never failed for good.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use poblysh_connectors::connector::native::Native;
use poblysh_connectors::connector::{Connector, DescriptorConnector};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Backend, Node, TOKEN, database};

async fn put_yaml(node: &Node, id: &str, yaml: &str) -> u16 {
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/providers/{id}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/yaml")
        .body(Body::from(yaml.to_owned()))
        .unwrap();
    node.send(req).await.0
}

/// Waits (at most 5 s) until `done` holds; how long it took.
async fn within_5s(what: &str, done: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} took over 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

async fn mock() -> MockServer {
    let server = MockServer::start().await;
    let fake = Fake::default();
    fake.add(1, 0);
    fake.add(2, 1);
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake)
        .mount(&server)
        .await;
    server
}

crate::on_both! {
    async fn a_provider_changed_on_one_node_reaches_the_other(backend) {
        let server = mock().await;
        let (url, _dir) = database(backend).await;
        let one = Node::on(&url, true, &[]).await;
        // PostgreSQL: the announcement, not the periodic look, must carry it.
        let poll = if backend == Backend::Postgres { "600" } else { "1" };
        let two = Node::on(&url, true, &[("POBLYSH_REGISTRY_POLL_SECONDS", poll)]).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let follower = tokio::spawn(poblysh_connectors::upkeep::providers::follow(
            Arc::clone(&two.services),
            two.services.config.ops.registry_poll,
            stopped,
        ));
        // Let the follower listen before the first change.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let yaml = descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor);
        assert_eq!(put_yaml(&one, "fake", &yaml).await, 201);
        let registry = &two.services.registry;
        within_5s("registering", || registry.get("fake").is_some()).await;
        let (status, body) = two.api("GET", "/providers/fake", None, None).await;
        assert_eq!((status, body["version"].as_str()), (200, Some("1.0.0")), "{body}");

        assert_eq!(put_yaml(&one, "fake", &yaml.replace("version: 1.0.0", "version: 1.0.1")).await, 200);
        within_5s("replacing", || {
            registry.get("fake").is_some_and(|e| e.connector.catalogue().version == "1.0.1")
        })
        .await;

        let (status, _) = one.api("DELETE", "/providers/fake", None, None).await;
        assert_eq!(status, 204);
        within_5s("deleting", || registry.get("fake").is_none()).await;
        let (status, _) = two.api("GET", "/providers/fake", None, None).await;
        assert_eq!(status, 404);

        stop.send(true).unwrap();
        follower.await.unwrap();
    }
}

crate::on_both! {
    async fn a_job_claimed_where_its_provider_is_unknown_is_not_failed(backend) {
        let server = mock().await;
        let (url, _dir) = database(backend).await;
        // `one` has a native connector `nat` that `two`'s build lacks.
        let one = Node::on_with(&url, &[], |b| {
            b.native(Native::new("nat", |input| {
                Arc::new(DescriptorConnector::new(input.descriptor)) as Arc<dyn Connector>
            }))
        })
        .await;
        let two = Node::on(&url, true, &[]).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());

        // A generic provider `two` never looked for: the claim catches up and runs it.
        let yaml = descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor);
        assert_eq!(put_yaml(&one, "fake", &yaml).await, 201);
        assert!(two.services.registry.get("fake").is_none());
        let (status, body) = one
            .api("POST", "/connections", Some(tenant), Some(json!({"provider": "fake", "credentials": {"token": "t"}})))
            .await;
        assert_eq!(status, 201, "{body}");
        let report = two.executor("two").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");

        // A native provider `two` cannot run: put back, the attempt not spent.
        let native = yaml.replace("id: fake", "id: nat").replace("kind: generic", "kind: native");
        assert_eq!(put_yaml(&one, "nat", &native).await, 201);
        let (status, body) = one
            .api("POST", "/connections", Some(tenant), Some(json!({"provider": "nat", "credentials": {"token": "t"}})))
            .await;
        assert_eq!(status, 201, "{body}");
        let report = two.executor("two").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Queued, "{report:?}");
        assert!(report.error.as_deref().unwrap().contains("not loaded on this node yet"), "{report:?}");
        let (_, job) = one.api("GET", &format!("/jobs/{}", report.job_id), Some(tenant), None).await;
        assert_eq!((job["state"].as_str(), job["attempt"].as_i64()), (Some("queued"), Some(0)), "{job}");

        // Put back only so long: an hour after its creation it fails, saying why.
        {
            use poblysh_connectors::db::entities::sync_job;
            use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
            let db = two.services.db.conn();
            let row = sync_job::Entity::find_by_id(report.job_id).one(db).await.unwrap().unwrap();
            let (created, due) = (row.created_at, row.run_after);
            let mut old: sync_job::ActiveModel = row.clone().into();
            old.created_at = Set(created - chrono::Duration::hours(2));
            old.run_after = Set(created - chrono::Duration::hours(2));
            old.update(db).await.unwrap();
            let failed = two.executor("two").try_execute_next().await.unwrap().unwrap();
            assert_eq!(failed.state, JobState::Failed, "{failed:?}");
            assert!(failed.error.as_deref().unwrap().contains("no node could run it"), "{failed:?}");
            // (Back as it was, for the node that can run it.)
            let mut back: sync_job::ActiveModel = row.into();
            back.created_at = Set(created);
            back.run_after = Set(due);
            back.state = Set("queued".into());
            back.finished_at = Set(None);
            back.lease_owner = Set(None);
            back.lease_expires_at = Set(None);
            back.update(db).await.unwrap();
        }

        // A node that has it runs it once it is due again.
        let started = Instant::now();
        let report = loop {
            if let Some(r) = one.executor("one").try_execute_next().await.unwrap() {
                break r;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "the released job never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
    }
}

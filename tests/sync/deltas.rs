//! Every delta strategy × pagination type: a full backfill gets every item
//! across pages; an incremental run sends the right checkpoint and gets only
//! what changed; nothing is lost or duplicated.

use std::collections::BTreeSet;

use poblysh_connectors::db::repo::jobs::{self, JobState, JobType, Trigger};
use poblysh_connectors::db::repo::{cursors, signals};
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Backend, Node};

async fn stored(node: &Node, tenant: TenantId) -> Vec<(String, String)> {
    let (list, _) = signals::list(&node.services.db, tenant, &Default::default(), 100, None)
        .await
        .unwrap();
    let mut v: Vec<(String, String)> = list
        .into_iter()
        .map(|s| (s.external_id, s.occurred_at.to_rfc3339()))
        .collect();
    v.sort();
    v
}

async fn scenario(backend: Backend, delta: Delta, paging: Paging) {
    let node = Node::new(backend, true, &[]).await;
    let server = MockServer::start().await;
    let fake = Fake::default();
    Mock::given(method("GET"))
        .and(path("/items"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    node.register(&descriptor("fake", &server.uri(), delta, paging));
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    for (id, second) in [(1, 0), (2, 1), (3, 1), (4, 2), (5, 3), (6, 3), (7, 4)] {
        fake.add(id, second);
    }
    let conn = node
        .connection(tenant, "fake", &[("token", "tok")], json!({}))
        .await;
    assert!(
        scheduler::enqueue_backfill(&node.services, tenant, conn, "fake")
            .await
            .unwrap()
    );
    let executor = node.executor("w1");

    // Full backfill: every item, across pages.
    let report = executor
        .try_execute_next()
        .await
        .unwrap()
        .expect("the backfill is due");
    assert_eq!(
        (report.state, report.signals),
        (JobState::Succeeded, 7),
        "{delta:?}/{paging:?}: {report:?}"
    );
    assert_eq!(stored(&node, tenant).await.len(), 7);
    let first_run_requests = server.received_requests().await.unwrap().len();
    assert_eq!(first_run_requests, 3, "7 items in pages of 3");

    // Changes: three new items, and (except for since_id) an edit.
    fake.add(8, 5);
    fake.add(9, 5);
    fake.add(10, 6);
    let edits = if delta == Delta::SinceId {
        0
    } else {
        fake.touch(2, 7);
        1
    };
    jobs::enqueue(
        &node.services.db,
        tenant,
        conn,
        "fake",
        JobType::Incremental,
        Trigger::Manual,
    )
    .await
    .unwrap();
    let report = executor
        .try_execute_next()
        .await
        .unwrap()
        .expect("the incremental job is due");
    assert_eq!(report.state, JobState::Succeeded, "{report:?}");
    assert_eq!(
        report.signals,
        3 + edits,
        "{delta:?}/{paging:?}: only what changed is new"
    );

    // The incremental run sent the checkpoint of the first run.
    let requests = server.received_requests().await.unwrap();
    let first = &requests[first_run_requests];
    let sent = |name: &str| {
        first
            .url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match delta {
        // The last item was at 10:00:04; sent one second early (overlap).
        Delta::Timestamp => assert_eq!(sent("since").as_deref(), Some("2024-03-01T10:00:03Z")),
        Delta::Cursor => assert_eq!(sent("after_seq").as_deref(), Some("7")),
        Delta::Token => assert_eq!(sent("delta").as_deref(), Some("tok-7")),
        Delta::SinceId => assert_eq!(sent("since_id").as_deref(), Some("7")),
    }

    // Nothing lost, nothing twice: one signal per item version.
    let all = stored(&node, tenant).await;
    let ids: BTreeSet<String> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, (1..=10).map(|i| i.to_string()).collect());
    assert_eq!(all.len(), 10 + edits as usize, "{all:?}");

    // A run with nothing new stores nothing and keeps the checkpoint.
    let before = cursors::load(&node.services.db, tenant, conn)
        .await
        .unwrap();
    jobs::enqueue(
        &node.services.db,
        tenant,
        conn,
        "fake",
        JobType::Incremental,
        Trigger::Manual,
    )
    .await
    .unwrap();
    let report = executor.try_execute_next().await.unwrap().unwrap();
    assert_eq!(
        (report.state, report.signals),
        (JobState::Succeeded, 0),
        "{report:?}"
    );
    assert_eq!(
        cursors::load(&node.services.db, tenant, conn)
            .await
            .unwrap(),
        before
    );
    assert!(
        executor.try_execute_next().await.unwrap().is_none(),
        "the queue is empty"
    );
}

macro_rules! matrix {
    ($($name:ident: $delta:ident, $paging:ident;)*) => {
        $(
            crate::on_both! {
                async fn $name(backend) {
                    scenario(backend, Delta::$delta, Paging::$paging).await;
                }
            }
        )*
    };
}

matrix! {
    timestamp_offset: Timestamp, Offset;
    timestamp_cursor: Timestamp, Cursor;
    timestamp_link: Timestamp, Link;
    cursor_offset: Cursor, Offset;
    cursor_cursor: Cursor, Cursor;
    cursor_link: Cursor, Link;
    token_offset: Token, Offset;
    token_cursor: Token, Cursor;
    token_link: Token, Link;
    since_id_offset: SinceId, Offset;
    since_id_cursor: SinceId, Cursor;
    since_id_link: SinceId, Link;
}

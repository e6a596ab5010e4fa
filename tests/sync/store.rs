//! The signal store round-trips every field on both backends (the batched
//! insert statements are hand-written): optional fields as NULL, JSON payloads,
//! microsecond timestamps, duplicates within and across batches.

use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::db::repo::signals::{self, SignalFilter};
use poblysh_connectors::descriptor::mapping::Priority;
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use serde_json::json;
use uuid::Uuid;

fn signal(tenant: TenantId, conn: ConnectionId, i: i64, full: bool) -> Signal {
    let at: DateTime<Utc> = "2024-03-01T10:00:00.123456Z".parse().unwrap();
    Signal {
        id: Uuid::nil(),
        tenant_id: tenant,
        connection_id: conn,
        provider: "github".into(),
        kind: if full { "pr_merged" } else { "issue_updated" }.into(),
        occurred_at: at + Duration::seconds(i),
        received_at: at + Duration::hours(1),
        external_id: format!("{}", 1_308_969_059 + i),
        summary: format!("Issue #{i}: it's \"quoted\" — and ünïcode"),
        priority: full.then_some(Priority::High),
        participants: if full {
            vec!["octocat".into(), "hubot".into()]
        } else {
            vec![]
        },
        tags: if full { vec!["bug".into()] } else { vec![] },
        related: vec![],
        url: full.then(|| format!("https://github.com/octo-org/hello-world/issues/{i}")),
        payload: json!({"number": i, "state": "open", "comments": 0, "author_association": "OWNER"}),
    }
.with_derived_id()
}

crate::on_both! {
    async fn every_field_round_trips_and_duplicates_are_skipped(backend) {
        let node = crate::sync::harness::Node::new(backend, true, &[]).await;
        let db = &node.services.db;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = ConnectionId::from_uuid(Uuid::now_v7());
        // More than one batch, alternating full and sparse signals.
        let batch: Vec<Signal> = (0..1203).map(|i| signal(tenant, conn, i, i % 2 == 0)).collect();
        assert_eq!(signals::insert(db.conn(), &batch).await.unwrap(), 1203);
        // The same events again (new ids), plus a duplicate inside one batch.
        let mut again: Vec<Signal> = (0..3).map(|i| signal(tenant, conn, i, i % 2 == 0)).collect();
        again.push(signal(tenant, conn, 5000, true));
        again.push(signal(tenant, conn, 5000, true));
        assert_eq!(signals::insert(db.conn(), &again).await.unwrap(), 1);

        let (page, _) = signals::list(db, tenant, &SignalFilter::default(), 200, None).await.unwrap();
        let newest = &page[0];
        assert_eq!(newest, &again[3]);
        let stored_full = page.iter().find(|s| s.id == batch[1202].id).unwrap();
        assert_eq!(stored_full, &batch[1202]);
        let stored_sparse = page.iter().find(|s| s.id == batch[1201].id).unwrap();
        assert_eq!(stored_sparse, &batch[1201]);
        assert_eq!(stored_sparse.url, None);
        assert_eq!(stored_sparse.priority, None);
        // Another tenant's identical events are not duplicates.
        let other = TenantId::from_uuid(Uuid::now_v7());
        let theirs: Vec<Signal> = (0..3).map(|i| signal(other, conn, i, true)).collect();
        assert_eq!(signals::insert(db.conn(), &theirs).await.unwrap(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_backfill_leaves_no_large_wal_behind() {
    use wiremock::MockServer;
    let (url, dir) = crate::sync::harness::database(crate::sync::harness::Backend::Sqlite).await;
    let dir = dir.unwrap();
    let node = crate::sync::harness::Node::on(&url, true, &[]).await;
    let server = MockServer::start().await;
    let items = poblysh_connectors::sync::executor::CHECKPOINT_WAL_AFTER + 500;
    crate::sync::fake::Counted::mount(&server, items, std::time::Duration::ZERO).await;
    let yaml = crate::sync::fake::descriptor(
        "fake",
        &server.uri(),
        crate::sync::fake::Delta::Cursor,
        crate::sync::fake::Paging::Cursor,
    )
    .replace("pageSize: 3", "pageSize: 500");
    node.register(&yaml);
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let conn = node
        .connection(tenant, "fake", &[("token", "t")], json!({}))
        .await;
    poblysh_connectors::sync::scheduler::enqueue_backfill(&node.services, tenant, conn, "fake")
        .await
        .unwrap();
    let report = node
        .executor("w")
        .try_execute_next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.signals, items, "{report:?}");
    let wal = dir.path().join("sync.db-wal");
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(size < 1 << 16, "the WAL is {size} bytes after the backfill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_reads_do_not_wait_behind_busy_writers_on_sqlite() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let (url, _dir) = crate::sync::harness::database(crate::sync::harness::Backend::Sqlite).await;
    let db = poblysh_connectors::db::Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let conn = ConnectionId::from_uuid(Uuid::now_v7());
    let batch: Vec<Signal> = (0..3).map(|i| signal(tenant, conn, i, false)).collect();
    signals::insert(db.conn(), &batch).await.unwrap();
    // Every connection of the write pool taken, one of them holding the write lock.
    let mut held = Vec::new();
    for i in 0..poblysh_connectors::db::WRITE_POOL {
        let txn = if i == 0 {
            db.begin_write().await.unwrap()
        } else {
            db.conn().begin().await.unwrap()
        };
        txn.execute_unprepared("SELECT 1").await.unwrap();
        held.push(txn);
    }
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        signals::list(&db, tenant, &SignalFilter::default(), 10, None),
    )
    .await
    .expect("a list read waited for a write-pool slot");
    assert_eq!(read.unwrap().0.len(), 3);
    let jobs = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        poblysh_connectors::db::repo::jobs::list(&db, tenant, &Default::default(), 10, None),
    )
    .await
    .expect("a jobs read waited for a write-pool slot");
    assert!(jobs.unwrap().0.is_empty());
    // The read pool cannot write.
    let refused = db
        .reads()
        .execute_unprepared("DELETE FROM signals")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("readonly"), "{refused}");
    drop(held);
}

//! Arrival positions never pass a Signal a transaction still in flight may
//! commit: on PostgreSQL a later transaction that commits first is held back
//! until the earlier one commits (then both come, in position order); and
//! with concurrent writers on two nodes, a subscription and a stream on
//! another node each see every Signal exactly once.

use std::time::Duration;

use chrono::Utc;
use poblysh_connectors::db::Db;
use poblysh_connectors::db::repo::arrivals::{self, Position};
use poblysh_connectors::db::repo::signals::{self, SignalFilter};
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use serde_json::json;
use uuid::Uuid;

use super::support::{Receiver, arrival_order, github, restart, subscribe, webhook_to};
use crate::api::harness::send;

fn signal(tenant: TenantId, n: u64) -> Signal {
    Signal {
        id: Uuid::nil(),
        tenant_id: tenant,
        connection_id: ConnectionId::from_uuid(Uuid::nil()),
        provider: "github".into(),
        kind: "pr_opened".into(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
        external_id: n.to_string(),
        summary: format!("#{n}"),
        priority: None,
        participants: vec![],
        tags: vec![],
        related: vec![],
        url: None,
        payload: json!({}),
    }
    .with_derived_id()
}

async fn read_all(db: &Db, tenant: TenantId) -> Vec<String> {
    let beginning = Position::beginning(db.backend());
    let read = arrivals::read(
        db,
        tenant,
        &SignalFilter::default(),
        &[],
        beginning,
        None,
        100,
    )
    .await
    .unwrap();
    read.signals
        .into_iter()
        .map(|(_, s)| s.external_id)
        .collect()
}

#[tokio::test]
async fn a_later_transaction_committed_first_waits_for_the_earlier_one() {
    let db = Db::connect(&crate::pg::fresh_database()).await.unwrap();
    db.migrate().await.unwrap();
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    use sea_orm::TransactionTrait;
    let early = db.conn().begin().await.unwrap();
    signals::insert(&early, &[signal(tenant, 1)]).await.unwrap();
    let late = db.conn().begin().await.unwrap();
    signals::insert(&late, &[signal(tenant, 2)]).await.unwrap();
    late.commit().await.unwrap();
    // Committed, but after a position an in-flight transaction may still fill.
    assert_eq!(read_all(&db, tenant).await, Vec::<String>::new());
    let listed = signals::list(&db, tenant, &SignalFilter::default(), 10, None)
        .await
        .unwrap()
        .0;
    assert_eq!(listed.len(), 1, "the pull API shows it already");
    early.commit().await.unwrap();
    assert_eq!(read_all(&db, tenant).await, ["1", "2"]);
}

#[tokio::test]
async fn a_token_refresh_in_progress_holds_no_signal_back() {
    // The lock a refresh holds across its HTTP call must not give its
    // transaction an id: arrival readers would wait behind it.
    let node =
        crate::sync::harness::Node::new(crate::sync::harness::Backend::Postgres, true, &[]).await;
    let db = &node.services.db;
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let id = node
        .connection(
            tenant,
            "github",
            &[("token", "t")],
            json!({"repos": ["o/r"]}),
        )
        .await;
    let locked = poblysh_connectors::db::repo::connections::lock(db, tenant, id)
        .await
        .unwrap()
        .unwrap();
    signals::insert(db.conn(), &[signal(tenant, 1)])
        .await
        .unwrap();
    // Visible while the lock is held (once the node's own short background
    // transactions of the moment have ended).
    let started = std::time::Instant::now();
    while read_all(db, tenant).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "held back by the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_all(db, tenant).await, ["1"]);
    // And it still excludes a second refresh of the same connection.
    let second = tokio::time::timeout(
        Duration::from_millis(300),
        poblysh_connectors::db::repo::connections::lock(db, tenant, id),
    )
    .await;
    assert!(
        second.is_err(),
        "a second lock was granted while the first is held"
    );
    drop(locked);
    let again = poblysh_connectors::db::repo::connections::lock(db, tenant, id)
        .await
        .unwrap();
    assert!(again.is_some());
}

#[tokio::test]
async fn sqlite_positions_follow_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/a.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    // Ids minted in one order, stored in the other: arrival is storage order.
    let (first, second) = (signal(tenant, 1), signal(tenant, 2));
    signals::insert(db.conn(), &[second]).await.unwrap();
    signals::insert(db.conn(), &[first]).await.unwrap();
    assert_eq!(read_all(&db, tenant).await, ["2", "1"]);
    let h = arrivals::horizon(&db).await.unwrap();
    let read = arrivals::read(&db, tenant, &SignalFilter::default(), &[], h, None, 10)
        .await
        .unwrap();
    assert!(read.signals.is_empty());
    assert_eq!(read.next, h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_nodes_skip_nothing() {
    let url = crate::pg::fresh_database();
    let a = restart(tempfile::tempdir().unwrap(), url.clone(), &[]).await;
    let b = restart(tempfile::tempdir().unwrap(), url, &[]).await;
    let tenant = Uuid::now_v7();
    github(&a, tenant).await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&a, tenant, &receiver.url, json!({"start": "beginning"})).await;
    receiver.trust(sub["secret"].as_str().unwrap());
    // Four senders, two on each node, 100 Signals each.
    let senders: Vec<_> = (0..4u64)
        .map(|k| {
            let base = if k % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            tokio::spawn(async move {
                for n in 0..100u64 {
                    let (status, ack) = send(webhook_to(&base, tenant, 1 + k * 1000 + n)).await;
                    assert_eq!(status, 200, "{ack}");
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    receiver.wait_for(400, Duration::from_secs(30)).await;
    let expected = arrival_order(&b, tenant, "beginning").await;
    assert_eq!(expected.len(), 400);
    receiver.assert_delivered_once_in_order(&expected);
}

//! Data that does not grow forever: with every retention at 3 days, a pruning
//! run 3 days after a marker deletes, in small batches while new Signals keep
//! being written, every Signal, finished job, webhook delivery id, expired
//! OAuth state and expired dashboard session from before the marker, and
//! nothing from after it; a second node meanwhile finds the lease taken.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::db::entities::{
    oauth_state, signal, sync_job, ui_session, webhook_delivery,
};
use poblysh_connectors::db::repo::deliveries::{self, NewDelivery};
use poblysh_connectors::db::repo::oauth_states::{self, NewState};
use poblysh_connectors::db::repo::{leases, signals, ui_sessions};
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use poblysh_connectors::upkeep::retention::{LEASE, prune};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::sync::fake::{Delta, Fake, Paging, descriptor};
use crate::sync::harness::{Node, database};

const ENV: [(&str, &str); 3] = [
    ("POBLYSH_SIGNAL_RETENTION_DAYS", "3"),
    ("POBLYSH_JOB_RETENTION_DAYS", "3"),
    ("POBLYSH_DELIVERY_RETENTION_DAYS", "3"),
];

fn signal(tenant: TenantId, connection: ConnectionId, n: usize) -> Signal {
    Signal {
        id: Uuid::nil(),
        tenant_id: tenant,
        connection_id: connection,
        provider: "fake".into(),
        kind: "item_updated".into(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
        external_id: format!("written-meanwhile-{n}"),
        summary: "written while pruning".into(),
        priority: None,
        participants: Vec::new(),
        tags: Vec::new(),
        related: Vec::new(),
        url: None,
        payload: json!({}),
    }
    .with_derived_id()
}

/// Rows of one table, and of those, how many were made after `marker`.
struct Counts {
    signals: u64,
    jobs: u64,
    deliveries: u64,
    states: u64,
    sessions: u64,
}

async fn counts(node: &Node) -> Counts {
    let db = node.services.db.conn();
    Counts {
        signals: signal::Entity::find().count(db).await.unwrap(),
        jobs: sync_job::Entity::find().count(db).await.unwrap(),
        deliveries: webhook_delivery::Entity::find().count(db).await.unwrap(),
        states: oauth_state::Entity::find().count(db).await.unwrap(),
        sessions: ui_session::Entity::find().count(db).await.unwrap(),
    }
}

/// Writes one generation of everything: a backfill of `items` Signals (its
/// job finished), `items` delivery ids, an OAuth state and a dashboard
/// session, each expiring `expiry` from now.
async fn generation(
    node: &Node,
    fake: &Fake,
    tenant: TenantId,
    connection: ConnectionId,
    first: u64,
    items: u64,
    expiry: Duration,
) {
    for i in first..first + items {
        fake.add(i, i as i64);
    }
    poblysh_connectors::sync::scheduler::enqueue_backfill(
        &node.services,
        tenant,
        connection,
        "fake",
    )
    .await
    .unwrap();
    // The second generation comes with an incremental job (the backfill is once).
    use poblysh_connectors::db::repo::jobs::{self, JobType, Trigger};
    jobs::enqueue(
        &node.services.db,
        tenant,
        connection,
        "fake",
        JobType::Incremental,
        Trigger::Manual,
    )
    .await
    .unwrap();
    crate::sync::harness::drain(node).await;
    let ids: Vec<String> = (first..first + items)
        .map(|i| format!("delivery-{i}"))
        .collect();
    let rows: Vec<NewDelivery> = ids
        .iter()
        .map(|id| NewDelivery {
            provider: "fake",
            delivery_id: id,
            tenant_id: tenant,
            connection_id: connection,
            received_at: Utc::now(),
            outcome: "accepted",
        })
        .collect();
    deliveries::record(node.services.db.conn(), &rows)
        .await
        .unwrap();
    oauth_states::create(
        &node.services.db,
        &node.services.keys,
        NewState {
            tenant,
            provider: "fake".into(),
            verifier: None,
            redirect_uri: "https://connectors.example.com/callback".into(),
            name: None,
            config: json!({}),
            connection: None,
            ttl: expiry,
        },
        Utc::now(),
    )
    .await
    .unwrap();
    ui_sessions::save(
        &node.services.db,
        &format!("session-{first}"),
        "{}",
        Utc::now() + expiry,
    )
    .await
    .unwrap();
}

crate::on_both! {
    async fn old_data_is_pruned_in_batches_and_nothing_newer(backend) {
        let (url, _dir) = database(backend).await;
        let node = Node::on(&url, true, &ENV).await;
        let other = Node::on(&url, true, &ENV).await;
        let server = MockServer::start().await;
        let fake = Fake::default();
        Mock::given(method("GET")).and(path("/items")).respond_with(fake.clone()).mount(&server).await;
        node.register(&descriptor("fake", &server.uri(), Delta::Cursor, Paging::Cursor));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let connection = node.connection(tenant, "fake", &[("token", "t")], json!({})).await;

        // Before the marker: 25 of each, states and sessions expiring at once.
        generation(&node, &fake, tenant, connection, 1, 25, Duration::minutes(1)).await;
        let before = counts(&node).await;
        assert_eq!((before.signals, before.deliveries, before.states, before.sessions), (25, 25, 1, 1));
        assert!(before.jobs >= 2, "{}", before.jobs);
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        let marker: DateTime<Utc> = Utc::now();
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        // After it: 7 more of each, states and sessions valid for 10 days.
        generation(&node, &fake, tenant, connection, 26, 7, Duration::days(10)).await;
        let after = counts(&node).await;

        // Another node holds the lease: this one prunes nothing.
        let now = marker + Duration::days(3);
        assert!(leases::take(&other.services.db, LEASE, "other", Utc::now(), Utc::now() + Duration::minutes(5)).await.unwrap());
        assert_eq!(prune(&node.services, "node", now, 10).await.unwrap(), None);
        leases::give_up(&other.services.db, LEASE, "other", Utc::now()).await.unwrap();

        // Writes go on while it prunes 10 rows per statement.
        let writer = {
            let db = node.services.db.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    signals::insert_owned(db.conn(), vec![signal(tenant, connection, n)]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let pruned = prune(&node.services, "node", now, 10).await.unwrap().expect("the lease was free");
        writer.await.unwrap();
        assert_eq!(pruned["signals"], 25, "{pruned:?}");
        assert_eq!(pruned["webhook_deliveries"], 25, "{pruned:?}");
        assert_eq!(pruned["jobs"], before.jobs, "{pruned:?}");
        assert_eq!((pruned["oauth_states"], pruned["ui_sessions"]), (1, 1), "{pruned:?}");

        let left = counts(&node).await;
        assert_eq!(left.signals, after.signals - 25 + 20);
        assert_eq!(left.jobs, after.jobs - before.jobs);
        assert_eq!((left.deliveries, left.states, left.sessions), (7, 1, 1));
        // What is left is what came after the marker.
        let (_, page) = node.api("GET", "/signals?limit=100", Some(tenant), None).await;
        let ids: Vec<&str> = page["signals"].as_array().unwrap().iter().map(|s| s["external_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 27, "{page}");
        assert!(ids.iter().all(|id| id.starts_with("written-meanwhile-") || id.parse::<u64>().unwrap() > 25), "{ids:?}");

        // The lease was given up: the other node can prune next (nothing is due).
        let again = prune(&other.services, "other", now, 10).await.unwrap().unwrap();
        assert!(again.values().all(|n| *n == 0), "{again:?}");
    }
}

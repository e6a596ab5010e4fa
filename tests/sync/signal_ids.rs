//! The signal-id migration over Signals stored the way they were before it:
//! every id becomes the derived one, SQLite keeps every rowid (the arrival
//! position), a PostgreSQL subscription's position follows its Signal, the
//! same events are not stored again, and down then up again keeps them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use migration::MigratorTrait;
use poblysh_connectors::db::repo::signals::{self, SignalFilter};
use poblysh_connectors::db::repo::subscriptions::{self, NewSubscription};
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId, dedupe_key};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::SecretString;
use uuid::Uuid;

use crate::sync::harness::Node;

fn event(tenant: TenantId, connection: ConnectionId, i: i64) -> Signal {
    let t0: DateTime<Utc> = "1969-12-31T23:59:00.250001Z".parse().unwrap();
    Signal {
        id: Uuid::nil(),
        tenant_id: tenant,
        connection_id: connection,
        provider: "github".into(),
        kind: "issue_updated".into(),
        // Before and after 1970, some in one microsecond.
        occurred_at: t0 + Duration::seconds(i / 2 * 30),
        received_at: t0,
        external_id: i.to_string(),
        summary: format!("item {i}"),
        priority: None,
        participants: vec![],
        tags: vec![],
        related: vec![],
        url: None,
        payload: serde_json::json!({}),
    }
    .with_derived_id()
}

/// `(rowid or arrival text, id)` of every stored Signal, by external id.
async fn stored(conn: &impl ConnectionTrait) -> Vec<(String, String, Uuid)> {
    let arrival = if conn.get_database_backend() == DbBackend::Postgres {
        "arrival_xid::text"
    } else {
        "CAST(rowid AS TEXT)"
    };
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT external_id, {arrival} AS a, id FROM signals ORDER BY external_id"),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "external_id").unwrap(),
                r.try_get("", "a").unwrap(),
                r.try_get("", "id").unwrap(),
            )
        })
        .collect()
}

crate::on_both! {
    async fn stored_signals_take_their_derived_ids(backend) {
        let node = Node::new(backend, true, &[]).await;
        let db = &node.services.db;
        let conn = db.conn();
        let pg = conn.get_database_backend() == DbBackend::Postgres;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let connection = ConnectionId::from_uuid(Uuid::now_v7());
        let events: Vec<Signal> = (0..40).map(|i| event(tenant, connection, i)).collect();

        // Back to the layout before the migration, and Signals stored as then:
        // UUID v7 ids and a dedupe key column.
        migration::Migrator::down(conn, Some(1)).await.unwrap();
        let mut old_ids = Vec::new();
        for e in &events {
            let old = Uuid::now_v7();
            old_ids.push(old);
            let key = dedupe_key(e.connection_id, &e.provider, &e.kind, &e.external_id, e.occurred_at);
            let sql = "INSERT INTO signals (id, tenant_id, connection_id, provider, kind, occurred_at, \
                 received_at, external_id, summary, participants, tags, related, payload, dedupe_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '[]', '[]', '[]', '{}', $10)";
            let sql = if pg { sql.to_owned() } else { sql.replace('$', "?") };
            conn.execute_raw(Statement::from_sql_and_values(
                conn.get_database_backend(),
                sql,
                [
                    old.into(),
                    (*tenant.as_uuid()).into(),
                    (*connection.as_uuid()).into(),
                    e.provider.clone().into(),
                    e.kind.clone().into(),
                    e.occurred_at.into(),
                    e.received_at.into(),
                    e.external_id.clone().into(),
                    e.summary.clone().into(),
                    key.into(),
                ],
            ))
            .await
            .unwrap();
        }
        let before = stored(conn).await;
        // A subscription passed the 8th Signal (PostgreSQL: an id within its transaction).
        let (_, arrival, _) = before.iter().find(|(x, _, _)| x == "7").unwrap();
        let position = if pg {
            URL_SAFE_NO_PAD.encode(format!("a1.x.{arrival}.{}", old_ids[7].simple()))
        } else {
            URL_SAFE_NO_PAD.encode(format!("a1.r.{arrival}"))
        };
        let new = NewSubscription {
            url: "https://example.com/hook".into(),
            provider: None,
            connection_id: None,
            kinds: vec![],
            include_payload: false,
            enabled: true,
            position: position.clone(),
        };
        let secret = SecretString::from("s".repeat(32));
        let subscription = subscriptions::create(db, &node.services.keys, tenant, new, &secret).await.unwrap();

        migration::Migrator::up(conn, None).await.unwrap();

        let after = stored(conn).await;
        assert_eq!(after.len(), events.len());
        for ((x, arrival, id), (x0, arrival0, _)) in after.iter().zip(&before) {
            assert_eq!(x, x0);
            assert_eq!(arrival, arrival0, "the arrival position of {x} moved");
            let e = events.iter().find(|e| &e.external_id == x).unwrap();
            assert_eq!(*id, e.id, "{x} is not under its derived id");
        }
        let moved = subscriptions::list(db, tenant).await.unwrap();
        let moved = moved.iter().find(|s| s.id == subscription.id).unwrap();
        if pg {
            assert_eq!(moved.position, URL_SAFE_NO_PAD.encode(format!("a1.x.{arrival}.{}", events[7].id.simple())));
        } else {
            assert_eq!(moved.position, position);
        }

        // The same events again: nothing new; listed newest first, across 1970.
        assert_eq!(signals::insert(conn, &events).await.unwrap(), 0);
        let (page, _) = signals::list(db, tenant, &SignalFilter::default(), 100, None).await.unwrap();
        let mut want = events.clone();
        want.sort_by_key(|s| std::cmp::Reverse((s.occurred_at, s.id)));
        let ids = |s: &[Signal]| s.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(&page), ids(&want));

        // Down and up again (the ids stay), and still nothing stored twice.
        migration::Migrator::down(conn, Some(1)).await.unwrap();
        migration::Migrator::up(conn, None).await.unwrap();
        assert_eq!(stored(conn).await, after);
        assert_eq!(signals::insert(conn, &events).await.unwrap(), 0);
    }
}

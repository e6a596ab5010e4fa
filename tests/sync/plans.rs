//! Query plans, asserted: every filter combination of `GET /signals` is one
//! index range walked in id order (occurrence order; no scan, no sort), on
//! SQLite (`EXPLAIN QUERY PLAN`) and PostgreSQL (`EXPLAIN`, sequential scans
//! priced out so the planner shows what it can do at volume). A regression
//! fails here deterministically, without timing anything.

use chrono::{DateTime, Utc};
use poblysh_connectors::db::repo::cursor::Cursor;
use poblysh_connectors::db::repo::signals::{self, SignalFilter};
use poblysh_connectors::db::repo::stats;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement, TransactionTrait};
use uuid::Uuid;

use crate::sync::harness::Node;

fn filters(connection: ConnectionId) -> Vec<(&'static str, SignalFilter)> {
    let after: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let provider = || Some("github".to_owned());
    let kind = || Some("pr_merged".to_owned());
    vec![
        ("none", SignalFilter::default()),
        (
            "provider",
            SignalFilter {
                provider: provider(),
                ..Default::default()
            },
        ),
        (
            "kind",
            SignalFilter {
                kind: kind(),
                ..Default::default()
            },
        ),
        (
            "provider+kind",
            SignalFilter {
                provider: provider(),
                kind: kind(),
                ..Default::default()
            },
        ),
        (
            "connection",
            SignalFilter {
                connection_id: Some(connection),
                ..Default::default()
            },
        ),
        (
            "connection+provider",
            SignalFilter {
                connection_id: Some(connection),
                provider: provider(),
                ..Default::default()
            },
        ),
        (
            "connection+kind",
            SignalFilter {
                connection_id: Some(connection),
                kind: kind(),
                ..Default::default()
            },
        ),
        (
            "provider+time",
            SignalFilter {
                provider: provider(),
                occurred_after: Some(after),
                occurred_before: Some(Utc::now()),
                ..Default::default()
            },
        ),
        (
            "time",
            SignalFilter {
                occurred_after: Some(after),
                ..Default::default()
            },
        ),
    ]
}

async fn plan(node: &Node, statement: Statement) -> String {
    let db = node.services.db.conn();
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let explain = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {}", statement.sql),
                statement.values.map(|v| v.0).unwrap_or_default(),
            );
            db.query_all_raw(explain)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String>("", "detail").unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => {
            let txn = db.begin().await.unwrap();
            // Price out sequential scans and sorts: a tiny test table would
            // otherwise be scanned, whatever the indexes.
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .unwrap();
            txn.execute_unprepared("SET LOCAL enable_sort = off")
                .await
                .unwrap();
            let explain = Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("EXPLAIN {}", statement.sql),
                statement.values.map(|v| v.0).unwrap_or_default(),
            );
            let lines = txn
                .query_all_raw(explain)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String>("", "QUERY PLAN").unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            txn.rollback().await.unwrap();
            lines
        }
    }
}

/// Signals spread like real data over 5 tenants, 40 connections (each of one
/// tenant and one provider, some tenants with two of a provider) and 6 kinds,
/// with jobs for one connection, and statistics, so the planner chooses as it
/// would at volume. One tenant and one of its connections.
async fn spread(node: &Node) -> (TenantId, ConnectionId) {
    let db = node.services.db.conn();
    let tenants: Vec<TenantId> = (0..5)
        .map(|_| TenantId::from_uuid(Uuid::now_v7()))
        .collect();
    let providers = ["github", "jira", "slack", "linear", "sentry"];
    let connections: Vec<(ConnectionId, TenantId, &str)> = (0..40)
        .map(|j| {
            (
                ConnectionId::from_uuid(Uuid::now_v7()),
                tenants[j % 5],
                providers[(j / 5) % 5],
            )
        })
        .collect();
    let (connection, tenant, _) = connections[0];
    let kinds = [
        "pr_merged",
        "issue_created",
        "message_received",
        "comment_created",
        "error_created",
        "pr_opened",
    ];
    let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let mut batch = Vec::new();
    for i in 0..8_000usize {
        let (connection_id, tenant_id, provider) = connections[i % connections.len()];
        batch.push(
            poblysh_connectors::domain::Signal {
                id: Uuid::nil(),
                tenant_id,
                connection_id,
                provider: provider.into(),
                kind: kinds[(i / 7) % kinds.len()].into(),
                occurred_at: t0 + chrono::Duration::minutes(i as i64),
                received_at: t0,
                external_id: i.to_string(),
                summary: "s".into(),
                priority: None,
                participants: vec![],
                tags: vec![],
                related: vec![],
                url: None,
                payload: serde_json::json!({}),
            }
            .with_derived_id(),
        );
    }
    signals::insert(db, &batch).await.unwrap();
    db.execute_unprepared("ANALYZE").await.unwrap();
    (tenant, connection)
}

crate::on_both! {
    async fn every_signal_filter_is_one_index_range_in_order(backend) {
        let node = Node::new(backend, true, &[]).await;
        let db = node.services.db.conn();
        let (tenant, connection) = spread(&node).await;
        let time = "2024-06-01T00:00:00Z".parse().unwrap();
        let cursor = Cursor { time, id: poblysh_connectors::domain::signal::last_id_at(time) };
        for (name, filter) in filters(connection) {
            for cursor in [None, Some(cursor)] {
                let statement = signals::page_select(tenant, &filter, 50, cursor).build(db.get_database_backend());
                let plan = plan(&node, statement).await;
                let context = format!("{name} (cursor: {}):\n{plan}", cursor.is_some());
                // The filter's columns narrow the index range (a connection
                // implies its provider, so with one the others may filter).
                let mut in_range: Vec<&str> = Vec::new();
                in_range.push("tenant_id");
                if filter.connection_id.is_some() {
                    in_range.push("connection_id");
                } else {
                    if filter.provider.is_some() {
                        in_range.push("provider");
                    }
                    if filter.kind.is_some() {
                        in_range.push("kind");
                    }
                }
                let timed = filter.occurred_after.is_some();
                match backend {
                    crate::sync::harness::Backend::Sqlite => {
                        assert!(plan.contains("SEARCH signals USING INDEX") || plan.contains("SEARCH signals USING COVERING INDEX"), "{context}");
                        assert!(!plan.contains("TEMP B-TREE"), "sorted per page: {context}");
                        // A time range may narrow the range instead (the planner's choice).
                        let by_time = timed && plan.contains("id>?");
                        for column in &in_range {
                            assert!(by_time || plan.contains(&format!("{column}=?")), "{column} is not in the index range: {context}");
                        }
                        // The time bounds and the keyset are id bounds, in the range.
                        if timed {
                            assert!(plan.contains("id>?"), "the time range is not in the index range: {context}");
                        }
                        if cursor.is_some() || filter.occurred_before.is_some() {
                            assert!(plan.contains("id<?"), "the keyset is not in the index range: {context}");
                        }
                    }
                    crate::sync::harness::Backend::Postgres => {
                        assert!(plan.contains("Index Scan"), "{context}");
                        assert!(!plan.contains("Seq Scan") && !plan.contains("Sort"), "{context}");
                        let cond = plan.lines().find(|l| l.contains("Index Cond")).unwrap_or_default();
                        let by_time = timed && cond.contains("(id > ");
                        for column in &in_range {
                            assert!(by_time || cond.contains(&format!("({column} = ")), "{column} is not in the index condition: {context}");
                        }
                        if timed {
                            assert!(cond.contains("(id > "), "the time range is not in the index condition: {context}");
                        }
                        if cursor.is_some() || filter.occurred_before.is_some() {
                            assert!(cond.contains("(id < "), "the keyset is not in the index condition: {context}");
                        }
                    }
                }
            }
        }
    }
}

crate::on_both! {
    async fn connection_stats_count_one_index_range(backend) {
        let node = Node::new(backend, true, &[]).await;
        let db = node.services.db.conn();
        let (tenant, connection) = spread(&node).await;
        let now: DateTime<Utc> = "2024-01-05T00:00:00Z".parse().unwrap();
        let signal_counts = stats::signal_counts(tenant, connection, now - chrono::Duration::hours(24), now - chrono::Duration::days(7))
            .build(db.get_database_backend());
        let job_counts = stats::job_counts(tenant, connection, now - chrono::Duration::days(7)).build(db.get_database_backend());
        for (name, statement, index) in [
            ("signals", signal_counts, "idx_signals_tenant_connection_id"),
            ("jobs", job_counts, "idx_sync_jobs_tenant_connection_created"),
        ] {
            let plan = plan(&node, statement).await;
            let context = format!("{name}:\n{plan}");
            match backend {
                crate::sync::harness::Backend::Sqlite => {
                    assert!(plan.contains(&format!("INDEX {index} (tenant_id=? AND connection_id=? AND ")), "{context}");
                    assert!(!plan.contains("SCAN "), "{context}");
                }
                crate::sync::harness::Backend::Postgres => {
                    assert!(plan.contains(index) && !plan.contains("Seq Scan"), "{context}");
                    let cond = plan.lines().find(|l| l.contains("Index Cond")).unwrap_or_default();
                    assert!(cond.contains("(tenant_id = ") && cond.contains("(connection_id = ") && cond.contains(" > "), "{context}");
                }
            }
        }
    }
}

crate::on_both! {
    async fn arrival_reads_walk_the_arrival_index_from_the_position(backend) {
        use poblysh_connectors::db::repo::arrivals::{self, Position};
        let node = Node::new(backend, true, &[]).await;
        let db = &node.services.db;
        let (tenant, connection) = spread(&node).await;
        let horizon = arrivals::horizon(db).await.unwrap();
        let after = match horizon {
            Position::Row(n) => Position::Row(n / 2),
            Position::Xact { xid, .. } => Position::Xact { xid: xid / 2, id: Uuid::nil() },
        };
        let kinds = ["pr_merged".to_owned(), "pr_opened".to_owned()];
        for (name, filter) in filters(connection).into_iter().filter(|(_, f)| f.occurred_after.is_none()) {
            for kinds in [&[][..], &kinds[..]] {
                let statement = arrivals::read_statement(db.backend(), tenant, &filter, kinds, after, horizon, 100);
                let plan = plan(&node, statement).await;
                let context = format!("{name} (kinds {kinds:?}):\n{plan}");
                match backend {
                    crate::sync::harness::Backend::Sqlite => {
                        assert!(plan.contains("USING INDEX idx_signals_tenant_arrival (tenant_id=? AND rowid>? AND rowid<?)"), "{context}");
                        assert!(!plan.contains("TEMP B-TREE"), "sorted: {context}");
                    }
                    crate::sync::harness::Backend::Postgres => {
                        assert!(plan.contains("idx_signals_tenant_arrival"), "{context}");
                        assert!(!plan.contains("Seq Scan") && !plan.contains("Sort"), "{context}");
                        let cond = plan.lines().find(|l| l.contains("Index Cond")).unwrap_or_default();
                        assert!(cond.contains("(tenant_id = ") && cond.contains("ROW(arrival_xid, id) >"), "{context}");
                    }
                }
            }
        }
    }
}

//! Signals, tenant-scoped: idempotent batch insert (unique per tenant and dedupe
//! key) and keyset pagination on `(occurred_at, id)`, newest first.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};
use serde_json::Value;
use uuid::Uuid;

use super::cursor::Cursor;
use crate::db::entities::signal::{Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::{ConnectionId, Priority, Signal, TenantId};

/// Rows per INSERT statement (16 columns; well under SQLite's variable limit).
const BATCH: usize = 500;

/// Filters of a signal listing.
#[derive(Debug, Clone, Default)]
pub struct SignalFilter {
    /// Connector id.
    pub provider: Option<String>,
    /// Connection.
    pub connection_id: Option<ConnectionId>,
    /// Kind.
    pub kind: Option<String>,
    /// Strictly after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Strictly before.
    pub occurred_before: Option<DateTime<Utc>>,
}

/// The stored columns, in statement order.
const COLUMNS: [&str; 16] = [
    "id",
    "tenant_id",
    "connection_id",
    "provider",
    "kind",
    "occurred_at",
    "received_at",
    "external_id",
    "summary",
    "priority",
    "participants",
    "tags",
    "related",
    "url",
    "payload",
    "dedupe_key",
];

/// One row's values, in `COLUMNS` order (the types the entity would bind).
fn push_row(values: &mut Vec<sea_orm::Value>, s: &Signal) {
    let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    values.extend([
        s.id.into(),
        (*s.tenant_id.as_uuid()).into(),
        (*s.connection_id.as_uuid()).into(),
        s.provider.clone().into(),
        s.kind.clone().into(),
        stored_time(s.occurred_at).into(),
        stored_time(s.received_at).into(),
        s.external_id.clone().into(),
        s.summary.clone().into(),
        s.priority.map(|p| p.as_str().to_owned()).into(),
        list(&s.participants).into(),
        list(&s.tags).into(),
        list(&s.related).into(),
        s.url.clone().into(),
        s.payload.clone().into(),
        s.dedupe_key().into(),
    ]);
}

/// `INSERT … VALUES (…), … ON CONFLICT (tenant_id, occurred_at, dedupe_key) DO NOTHING` for
/// `rows` rows (SQLite).
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 16 * 5);
    sql.push_str("INSERT INTO signals (");
    sql.push_str(&COLUMNS.join(", "));
    sql.push_str(") VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..COLUMNS.len() {
            sql.push_str(if c == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (tenant_id, occurred_at, dedupe_key) DO NOTHING");
    sql
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl From<Model> for Signal {
    fn from(m: Model) -> Self {
        Signal {
            id: m.id,
            tenant_id: TenantId::from_uuid(m.tenant_id),
            connection_id: ConnectionId::from_uuid(m.connection_id),
            provider: m.provider,
            kind: m.kind,
            occurred_at: m.occurred_at,
            received_at: m.received_at,
            external_id: m.external_id,
            summary: m.summary,
            priority: m.priority.as_deref().and_then(Priority::parse),
            participants: strings(m.participants),
            tags: strings(m.tags),
            related: strings(m.related),
            url: m.url,
            payload: m.payload,
        }
    }
}

/// The PostgreSQL statement: one array per column, `UNNEST`ed into rows (16
/// parameters per batch instead of 16 per row). Arrays cannot carry NULL here,
/// so the optional text columns travel as `''` and come back as NULL.
const INSERT_UNNEST: &str = "INSERT INTO signals (id, tenant_id, connection_id, provider, kind, \
     occurred_at, received_at, external_id, summary, priority, participants, tags, related, url, \
     payload, dedupe_key) \
     SELECT id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, \
     summary, NULLIF(priority, ''), participants, tags, related, NULLIF(url, ''), payload, dedupe_key \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], \
     $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], \
     $13::jsonb[], $14::text[], $15::jsonb[], $16::text[]) \
     AS t(id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, \
     summary, priority, participants, tags, related, url, payload, dedupe_key) \
     ON CONFLICT (tenant_id, occurred_at, dedupe_key) DO NOTHING";

/// The `INSERT_UNNEST` parameters of a batch.
fn unnest_values<S: Borrow<Signal>>(chunk: &[S]) -> Vec<sea_orm::Value> {
    fn column<T, S: Borrow<Signal>>(chunk: &[S], f: impl Fn(&Signal) -> T) -> sea_orm::Value
    where
        T: Into<sea_orm::Value>
            + sea_orm::sea_query::value::postgres_array::NotU8
            + sea_orm::sea_query::ValueType,
    {
        chunk
            .iter()
            .map(|s| f(s.borrow()))
            .collect::<Vec<T>>()
            .into()
    }
    let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    vec![
        column(chunk, |s| s.id),
        column(chunk, |s| *s.tenant_id.as_uuid()),
        column(chunk, |s| *s.connection_id.as_uuid()),
        column(chunk, |s| s.provider.clone()),
        column(chunk, |s| s.kind.clone()),
        column(chunk, |s| stored_time(s.occurred_at)),
        column(chunk, |s| stored_time(s.received_at)),
        column(chunk, |s| s.external_id.clone()),
        column(chunk, |s| s.summary.clone()),
        column(chunk, |s| {
            s.priority
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        }),
        column(chunk, |s| list(&s.participants)),
        column(chunk, |s| list(&s.tags)),
        column(chunk, |s| list(&s.related)),
        column(chunk, |s| s.url.clone().unwrap_or_default()),
        column(chunk, |s| s.payload.clone()),
        column(chunk, Signal::dedupe_key),
    ]
}

/// Stores signals; one already stored (same tenant and dedupe key; the key
/// includes the occurrence time, which leads the unique index) is skipped.
/// Returns how many were new. Pass a transaction to store them with other writes.
///
/// Hand-written statements rather than `insert_many`: this is the sync path's
/// hottest write, and building the query AST per row cost more than the
/// database's own work (`cargo bench --bench sync`).
pub async fn insert<C, S>(conn: &C, signals: &[S]) -> Result<u64, StoreError>
where
    C: ConnectionTrait,
    S: Borrow<Signal>,
{
    let backend = conn.get_database_backend();
    let mut inserted = 0;
    if backend == DbBackend::Postgres {
        for chunk in signals.chunks(BATCH) {
            let statement =
                Statement::from_sql_and_values(backend, INSERT_UNNEST, unnest_values(chunk));
            inserted += conn.execute_raw(statement).await?.rows_affected();
        }
        return Ok(inserted);
    }
    for chunk in signals.chunks(BATCH) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS.len());
        for s in chunk {
            push_row(&mut values, s.borrow());
        }
        let statement = Statement::from_sql_and_values(backend, insert_sql(chunk.len()), values);
        inserted += conn.execute_raw(statement).await?.rows_affected();
    }
    Ok(inserted)
}

/// As [`insert`], returning the ids of the Signals that were new (the others
/// were already stored: the same dedupe key).
pub async fn insert_returning<C, S>(
    conn: &C,
    signals: &[S],
) -> Result<std::collections::HashSet<Uuid>, StoreError>
where
    C: ConnectionTrait,
    S: Borrow<Signal>,
{
    let backend = conn.get_database_backend();
    let mut new = std::collections::HashSet::new();
    for chunk in signals.chunks(BATCH) {
        let statement = if backend == DbBackend::Postgres {
            Statement::from_sql_and_values(
                backend,
                format!("{INSERT_UNNEST} RETURNING id"),
                unnest_values(chunk),
            )
        } else {
            let mut values = Vec::with_capacity(chunk.len() * COLUMNS.len());
            for s in chunk {
                push_row(&mut values, s.borrow());
            }
            Statement::from_sql_and_values(
                backend,
                format!("{} RETURNING id", insert_sql(chunk.len())),
                values,
            )
        };
        for row in conn.query_all_raw(statement).await? {
            new.insert(row.try_get::<Uuid>("", "id")?);
        }
    }
    Ok(new)
}

/// A page of the tenant's signals, newest first, after `cursor`; with the cursor
/// of the next page when there is one.
pub async fn list(
    db: &Db,
    tenant: TenantId,
    filter: &SignalFilter,
    limit: u64,
    cursor: Option<Cursor>,
) -> Result<(Vec<Signal>, Option<Cursor>), StoreError> {
    let rows = page_select(tenant, filter, limit, cursor)
        .all(db.reads())
        .await?;
    let (rows, next) = super::cursor::split_page(rows, limit, |r| Cursor {
        time: r.occurred_at,
        id: r.id,
    });
    Ok((rows.into_iter().map(Signal::from).collect(), next))
}

/// The query of one page of the tenant's signals: every filter combination
/// walks an index range in `(occurred_at, id)` order (see the signal indexes'
/// migration; the query-plan tests hold it).
pub fn page_select(
    tenant: TenantId,
    filter: &SignalFilter,
    limit: u64,
    cursor: Option<Cursor>,
) -> sea_orm::Select<Entity> {
    let mut query = Entity::find().filter(Column::TenantId.eq(*tenant.as_uuid()));
    if let Some(p) = &filter.provider {
        query = query.filter(Column::Provider.eq(p.as_str()));
    }
    if let Some(c) = filter.connection_id {
        query = query.filter(Column::ConnectionId.eq(*c.as_uuid()));
    }
    if let Some(k) = &filter.kind {
        query = query.filter(Column::Kind.eq(k.as_str()));
    }
    if let Some(t) = filter.occurred_after {
        query = query.filter(Column::OccurredAt.gt(stored_time(t)));
    }
    // One upper bound, the tighter of the cursor and `occurred_before` (the
    // other is implied): given both, SQLite may range over the time bounds and
    // filter the keyset row by row.
    let before = filter.occurred_before.map(stored_time);
    let (before, cursor) = match (before, cursor) {
        (Some(b), Some(c)) if c.time < b => (None, Some(c)),
        (Some(b), Some(_)) => (Some(b), None),
        other => other,
    };
    if let Some(t) = before {
        query = query.filter(Column::OccurredAt.lt(t));
    }
    super::cursor::page_query(query, Column::OccurredAt, Column::Id, cursor, limit)
}

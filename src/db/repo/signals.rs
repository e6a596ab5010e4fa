//! Signals, tenant-scoped: idempotent batch insert (the primary key
//! `(tenant_id, id)` is the dedupe constraint: a Signal's id is derived from
//! its occurrence time and dedupe hash) and keyset pagination on the id, which
//! orders by occurrence time, newest first.

use std::borrow::Borrow;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::cursor::Cursor;
use crate::db::entities::signal::{Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::signal::{first_id_at, id_is_at, last_id_at};
use crate::domain::{ConnectionId, Priority, Signal, TenantId};

/// Rows per INSERT statement (15 columns; well under SQLite's variable limit).
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
pub(crate) const COLUMNS: [&str; 15] = [
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
];

/// One row's values, in `COLUMNS` order, moved out of the Signal (SQLite).
/// The JSON columns go as the text SQLite stores for them, encoded here: the
/// driver would otherwise copy each payload tree and encode it on the writer's
/// path.
fn push_row(values: &mut Vec<sea_orm::Value>, s: Signal) {
    debug_assert_eq!(
        s.id,
        s.derived_id(),
        "a Signal is stored under its derived id"
    );
    values.extend([
        s.id.into(),
        (*s.tenant_id.as_uuid()).into(),
        (*s.connection_id.as_uuid()).into(),
        s.provider.into(),
        s.kind.into(),
        stored_time(s.occurred_at).into(),
        stored_time(s.received_at).into(),
        s.external_id.into(),
        s.summary.into(),
        s.priority.map(|p| p.as_str().to_owned()).into(),
        json_text(&s.participants).into(),
        json_text(&s.tags).into(),
        json_text(&s.related).into(),
        s.url.into(),
        json_text(&s.payload).into(),
    ]);
}

/// `v` as JSON text.
fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("JSON values and string lists always encode")
}

/// `INSERT … VALUES (…), … ON CONFLICT (tenant_id, id) DO NOTHING` for
/// `rows` rows (SQLite).
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * COLUMNS.len() * 3);
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
    sql.push_str(" ON CONFLICT (tenant_id, id) DO NOTHING");
    sql
}

/// The strings of a stored JSON list (anything else: none).
pub(crate) fn strings(v: Value) -> Vec<String> {
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

/// The PostgreSQL statement: one array per column, `UNNEST`ed into rows (15
/// parameters per batch instead of 15 per row). Arrays cannot carry NULL here,
/// so the optional text columns travel as `''` and come back as NULL; the JSON
/// columns travel as their text (encoded with the statement, see [`prepare`]).
const INSERT_UNNEST: &str = "INSERT INTO signals (id, tenant_id, connection_id, provider, kind, \
     occurred_at, received_at, external_id, summary, priority, participants, tags, related, url, \
     payload) \
     SELECT id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, \
     summary, NULLIF(priority, ''), participants::json, tags::json, related::json, NULLIF(url, ''), \
     payload::json \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], \
     $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::text[], $15::text[]) \
     AS t(id, tenant_id, connection_id, provider, kind, occurred_at, received_at, external_id, \
     summary, priority, participants, tags, related, url, payload) \
     ON CONFLICT (tenant_id, id) DO NOTHING";

/// The `INSERT_UNNEST` parameters of a batch, moved out of its Signals.
fn unnest_values(chunk: impl ExactSizeIterator<Item = Signal>) -> Vec<sea_orm::Value> {
    let n = chunk.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(n);
    let (mut providers, mut kinds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut occurred, mut received) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut external, mut summaries) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut priorities = Vec::with_capacity(n);
    let (mut participants, mut tags) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut related, mut urls) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut payloads = Vec::with_capacity(n);
    for s in chunk {
        debug_assert_eq!(
            s.id,
            s.derived_id(),
            "a Signal is stored under its derived id"
        );
        ids.push(s.id);
        tenants.push(*s.tenant_id.as_uuid());
        connections.push(*s.connection_id.as_uuid());
        providers.push(s.provider);
        kinds.push(s.kind);
        occurred.push(stored_time(s.occurred_at));
        received.push(stored_time(s.received_at));
        external.push(s.external_id);
        summaries.push(s.summary);
        priorities.push(
            s.priority
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
        );
        participants.push(json_text(&s.participants));
        tags.push(json_text(&s.tags));
        related.push(json_text(&s.related));
        urls.push(s.url.unwrap_or_default());
        payloads.push(json_text(&s.payload));
    }
    vec![
        ids.into(),
        tenants.into(),
        connections.into(),
        providers.into(),
        kinds.into(),
        occurred.into(),
        received.into(),
        external.into(),
        summaries.into(),
        priorities.into(),
        participants.into(),
        tags.into(),
        related.into(),
        urls.into(),
        payloads.into(),
    ]
}

/// Signals made ready to store: their statements, built (the rows encoded)
/// wherever that is cheapest, so that storing them is only the database's
/// work (a sync builds them before they reach its writer).
pub struct Prepared {
    statements: Vec<Statement>,
}

/// `signals` ready to store on `backend`.
pub fn prepare(backend: DbBackend, signals: Vec<Signal>) -> Prepared {
    let mut statements = Vec::with_capacity(signals.len().div_ceil(BATCH));
    let mut rest = signals.into_iter();
    loop {
        let chunk: Vec<Signal> = rest.by_ref().take(BATCH).collect();
        if chunk.is_empty() {
            return Prepared { statements };
        }
        statements.push(insert_statement(backend, chunk.into_iter(), false));
    }
}

/// Stores prepared Signals (as [`insert`]); how many were new.
pub async fn insert_prepared<C>(conn: &C, prepared: Prepared) -> Result<u64, StoreError>
where
    C: ConnectionTrait,
{
    let mut inserted = 0;
    for statement in prepared.statements {
        inserted += conn.execute_raw(statement).await?.rows_affected();
    }
    Ok(inserted)
}

/// The statement storing `chunk` (at most `BATCH` Signals).
fn insert_statement(
    backend: DbBackend,
    chunk: impl ExactSizeIterator<Item = Signal>,
    returning: bool,
) -> Statement {
    let tail = if returning { " RETURNING id" } else { "" };
    if backend == DbBackend::Postgres {
        return Statement::from_sql_and_values(
            backend,
            format!("{INSERT_UNNEST}{tail}"),
            unnest_values(chunk),
        );
    }
    let rows = chunk.len();
    let mut values = Vec::with_capacity(rows * COLUMNS.len());
    for s in chunk {
        push_row(&mut values, s);
    }
    Statement::from_sql_and_values(backend, format!("{}{tail}", insert_sql(rows)), values)
}

/// Stores signals; one already stored (same tenant and id, that is the same
/// dedupe key: the id is derived from it) is skipped.
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
    let mut inserted = 0;
    for chunk in signals.chunks(BATCH) {
        let chunk = chunk.iter().map(|s| s.borrow().clone()).collect();
        inserted += insert_owned(conn, chunk).await?;
    }
    Ok(inserted)
}

/// As [`insert`], taking the Signals (their fields move into the statement).
pub async fn insert_owned<C>(conn: &C, signals: Vec<Signal>) -> Result<u64, StoreError>
where
    C: ConnectionTrait,
{
    insert_prepared(conn, prepare(conn.get_database_backend(), signals)).await
}

/// As [`insert`], returning the ids of the Signals that were new (the others
/// were already stored: the same id, or the same one earlier in `signals`).
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
        let chunk = chunk.iter().map(|s| s.borrow().clone());
        let statement = insert_statement(backend, chunk, true);
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
/// walks an index range in id order, which is occurrence-time order (see the
/// signal-id migration; the query-plan tests hold it). The time bounds and
/// the cursor are bounds on the id.
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
        query = query.filter(Column::Id.gt(last_id_at(t)));
    }
    // One upper bound, the tighter of the cursor and `occurred_before`.
    let before = filter.occurred_before.map(first_id_at);
    let after = cursor.map(|c| {
        if id_is_at(c.id, c.time) {
            c.id
        } else {
            // A cursor handed out before ids were derived from the time: its
            // id says nothing about the order, its time does (a Signal in the
            // same microsecond as the cursor's may be passed over).
            first_id_at(c.time)
        }
    });
    let upper = match (before, after) {
        (Some(b), Some(a)) => Some(b.min(a)),
        (b, a) => b.or(a),
    };
    if let Some(u) = upper {
        query = query.filter(Column::Id.lt(u));
    }
    query.order_by_desc(Column::Id).limit(limit + 1)
}

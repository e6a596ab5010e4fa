//! Signals, tenant-scoped: idempotent batch insert (unique per tenant and dedupe
//! key) and keyset pagination on `(occurred_at, id)`, newest first.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::Value;

use super::cursor::Cursor;
use crate::db::entities::signal::{ActiveModel, Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::descriptor::mapping::Priority;
use crate::domain::{ConnectionId, Signal, TenantId};

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

fn priority_text(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "high",
        Priority::Medium => "medium",
        Priority::Low => "low",
    }
}

fn priority_of(text: &str) -> Option<Priority> {
    Some(match text {
        "critical" => Priority::Critical,
        "high" => Priority::High,
        "medium" => Priority::Medium,
        "low" => Priority::Low,
        _ => return None,
    })
}

fn row(s: &Signal) -> ActiveModel {
    let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    ActiveModel {
        id: Set(s.id),
        tenant_id: Set(*s.tenant_id.as_uuid()),
        connection_id: Set(*s.connection_id.as_uuid()),
        provider: Set(s.provider.clone()),
        kind: Set(s.kind.clone()),
        occurred_at: Set(stored_time(s.occurred_at)),
        received_at: Set(stored_time(s.received_at)),
        external_id: Set(s.external_id.clone()),
        summary: Set(s.summary.clone()),
        priority: Set(s.priority.map(|p| priority_text(p).to_owned())),
        participants: Set(list(&s.participants)),
        tags: Set(list(&s.tags)),
        related: Set(list(&s.related)),
        url: Set(s.url.clone()),
        payload: Set(s.payload.clone()),
        dedupe_key: Set(s.dedupe_key()),
    }
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
            priority: m.priority.as_deref().and_then(priority_of),
            participants: strings(m.participants),
            tags: strings(m.tags),
            related: strings(m.related),
            url: m.url,
            payload: m.payload,
        }
    }
}

/// Stores signals; one already stored (same tenant and dedupe key) is skipped.
/// Returns how many were new. Pass a transaction to store them with other writes.
pub async fn insert<C: ConnectionTrait>(conn: &C, signals: &[Signal]) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in signals.chunks(BATCH) {
        inserted += Entity::insert_many(chunk.iter().map(row))
            .on_conflict(
                OnConflict::columns([Column::TenantId, Column::DedupeKey])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(inserted)
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
    if let Some(t) = filter.occurred_before {
        query = query.filter(Column::OccurredAt.lt(stored_time(t)));
    }
    let rows = super::cursor::page_query(query, Column::OccurredAt, Column::Id, cursor, limit)
        .all(db.conn())
        .await?;
    let (rows, next) = super::cursor::split_page(rows, limit, |r| Cursor {
        time: r.occurred_at,
        id: r.id,
    });
    Ok((rows.into_iter().map(Signal::from).collect(), next))
}

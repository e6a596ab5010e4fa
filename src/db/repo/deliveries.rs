//! `webhook_deliveries`: the delivery ids each connection has seen (unique per
//! provider, connection and id), so a retried delivery is stored once; also the
//! audit trail of what was accepted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::db::{StoreError, stored_time};
use crate::domain::{ConnectionId, TenantId};

/// Rows per statement (on SQLite 7 parameters each, well under its limit).
const BATCH: usize = 500;

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// Connector id.
    pub provider: &'a str,
    /// The provider's delivery id.
    pub delivery_id: &'a str,
    /// Tenant.
    pub tenant_id: TenantId,
    /// The connection it was delivered to.
    pub connection_id: ConnectionId,
    /// Received.
    pub received_at: DateTime<Utc>,
    /// What happened (`accepted`, `ignored`, …).
    pub outcome: &'a str,
}

/// The insert's target, on both backends.
const INSERT: &str = "INSERT INTO webhook_deliveries (id, provider, tenant_id, connection_id, \
     delivery_id, received_at, outcome) ";

/// What the insert answers: the rows that were new.
const ON_CONFLICT: &str = " ON CONFLICT (provider, connection_id, delivery_id) DO NOTHING \
     RETURNING provider, connection_id, delivery_id";

/// PostgreSQL: one array per column, so the statement is the same whatever
/// the number of rows (prepared once per connection, never re-planned by size).
fn unnest_statement(chunk: &[NewDelivery<'_>]) -> Statement {
    let sql = format!(
        "{INSERT}SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], \
         $6::timestamptz[], $7::text[]){ON_CONFLICT}"
    );
    let values: Vec<sea_orm::Value> = vec![
        uuids(chunk.iter().map(|_| Uuid::now_v7())),
        strings(chunk.iter().map(|r| r.provider)),
        uuids(chunk.iter().map(|r| *r.tenant_id.as_uuid())),
        uuids(chunk.iter().map(|r| *r.connection_id.as_uuid())),
        strings(chunk.iter().map(|r| r.delivery_id)),
        chunk
            .iter()
            .map(|r| stored_time(r.received_at))
            .collect::<Vec<_>>()
            .into(),
        strings(chunk.iter().map(|r| r.outcome)),
    ];
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn uuids(values: impl Iterator<Item = Uuid>) -> sea_orm::Value {
    values.collect::<Vec<_>>().into()
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> sea_orm::Value {
    values.map(str::to_owned).collect::<Vec<_>>().into()
}

/// SQLite: a row of placeholders per delivery.
fn values_statement(backend: DbBackend, chunk: &[NewDelivery<'_>]) -> Statement {
    let mut sql = format!("{INSERT}VALUES ");
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 7);
    for (i, row) in chunk.iter().enumerate() {
        sql.push_str(if i == 0 { "(?" } else { ", (?" });
        sql.push_str(", ?".repeat(6).as_str());
        sql.push(')');
        values.extend([
            Uuid::now_v7().into(),
            row.provider.to_owned().into(),
            (*row.tenant_id.as_uuid()).into(),
            (*row.connection_id.as_uuid()).into(),
            row.delivery_id.to_owned().into(),
            stored_time(row.received_at).into(),
            row.outcome.to_owned().into(),
        ]);
    }
    sql.push_str(ON_CONFLICT);
    Statement::from_sql_and_values(backend, sql, values)
}

/// Records deliveries; returns, for each, whether it is new (false: the
/// connection saw that delivery id before). Repeats within `rows` must be
/// removed by the caller.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    rows: &[NewDelivery<'_>],
) -> Result<Vec<bool>, StoreError> {
    let backend = conn.get_database_backend();
    let mut new = vec![false; rows.len()];
    for (chunk_index, chunk) in rows.chunks(BATCH).enumerate() {
        let statement = match backend {
            DbBackend::Postgres => unnest_statement(chunk),
            _ => values_statement(backend, chunk),
        };
        let inserted = conn.query_all_raw(statement).await?;
        let index: HashMap<(&str, Uuid, &str), usize> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.provider, *r.connection_id.as_uuid(), r.delivery_id), i))
            .collect();
        for result in inserted {
            let provider: String = result.try_get("", "provider")?;
            let connection: Uuid = result.try_get("", "connection_id")?;
            let id: String = result.try_get("", "delivery_id")?;
            if let Some(i) = index.get(&(provider.as_str(), connection, id.as_str())) {
                new[chunk_index * BATCH + i] = true;
            }
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_statement_is_the_same_for_any_number_of_rows() {
        let row = |id| NewDelivery {
            provider: "github",
            delivery_id: id,
            tenant_id: TenantId::from_uuid(Uuid::nil()),
            connection_id: ConnectionId::from_uuid(Uuid::nil()),
            received_at: DateTime::<Utc>::UNIX_EPOCH,
            outcome: "accepted",
        };
        let one = unnest_statement(&[row("a")]);
        let three = unnest_statement(&[row("a"), row("b"), row("c")]);
        assert_eq!(one.sql, three.sql, "one statement to prepare");
        let columns = three.values.map(|v| v.0.len()).unwrap_or_default();
        assert_eq!(columns, 7, "one array per column");
    }
}

//! `webhook_deliveries`: the delivery ids each connection has seen (unique per
//! provider, connection and id), so a retried delivery is stored once; also the
//! audit trail of what was accepted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::db::{StoreError, stored_time};
use crate::domain::{ConnectionId, TenantId};

/// Rows per statement (7 parameters each, well under both backends' limits).
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
        let mut sql = String::from(
            "INSERT INTO webhook_deliveries (id, provider, tenant_id, connection_id, delivery_id, received_at, outcome) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 7);
        for (i, row) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..7 {
                if c > 0 {
                    sql.push_str(", ");
                }
                match backend {
                    DbBackend::Postgres => sql.push_str(&format!("${}", values.len() + c + 1)),
                    _ => sql.push('?'),
                }
            }
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
        sql.push_str(
            " ON CONFLICT (provider, connection_id, delivery_id) DO NOTHING \
             RETURNING provider, connection_id, delivery_id",
        );
        let inserted = conn
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
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

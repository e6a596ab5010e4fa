//! Checkpoints per connection and partition, tenant-scoped. Saved only in the
//! transaction that stores the run's Signals.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::db::entities::sync_cursor::{ActiveModel, Column, Entity};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::Checkpoints;
use crate::domain::{ConnectionId, TenantId};

/// The connection's checkpoints.
pub async fn load(
    db: &Db,
    tenant: TenantId,
    connection: ConnectionId,
) -> Result<Checkpoints, StoreError> {
    let rows = Entity::find()
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::ConnectionId.eq(*connection.as_uuid()))
        .all(db.conn())
        .await?;
    Ok(rows.into_iter().map(|r| (r.stream, r.checkpoint)).collect())
}

/// Saves checkpoints (in the caller's transaction).
pub async fn save<C: ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    connection: ConnectionId,
    checkpoints: &Checkpoints,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if checkpoints.is_empty() {
        return Ok(());
    }
    let rows = checkpoints.iter().map(|(stream, checkpoint)| ActiveModel {
        connection_id: Set(*connection.as_uuid()),
        stream: Set(stream.clone()),
        tenant_id: Set(*tenant.as_uuid()),
        checkpoint: Set(checkpoint.clone()),
        updated_at: Set(stored_time(now)),
    });
    Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([Column::ConnectionId, Column::Stream])
                .update_columns([Column::Checkpoint, Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Checkpoints as one text: the checkpoint itself when unpartitioned, else a
/// JSON object by partition (`sync_jobs.cursor_before` / `cursor_after`).
pub fn describe(checkpoints: &Checkpoints) -> Option<String> {
    match checkpoints.len() {
        0 => None,
        1 if checkpoints.contains_key("") => checkpoints[""].clone(),
        _ => serde_json::to_string(checkpoints).ok(),
    }
}

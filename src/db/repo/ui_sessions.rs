//! The dashboard's sessions: operator-level (no tenant data; the tenant a
//! session acts for is in its data), stored under a digest of their id.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use crate::db::entities::ui_session::{ActiveModel, Column, Entity};
use crate::db::{Db, StoreError, stored_time};

/// The key a session id is stored under.
fn key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Stores (or replaces) the session `id`'s data until `expires_at`.
pub async fn save(
    db: &Db,
    id: &str,
    data: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    Entity::insert(ActiveModel {
        id: Set(key(id)),
        data: Set(data.to_owned()),
        expires_at: Set(stored_time(expires_at)),
    })
    .on_conflict(
        OnConflict::column(Column::Id)
            .update_columns([Column::Data, Column::ExpiresAt])
            .to_owned(),
    )
    .exec(db.conn())
    .await?;
    Ok(())
}

/// The session `id`'s data and stored expiry. Whether it is still signed in
/// is its data's to say, on the service's clock (`ui::session::Data`); the
/// stored expiry (the cookie's) only says when [`prune`] may forget it.
pub async fn load(db: &Db, id: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    Ok(Entity::find_by_id(key(id))
        .one(db.conn())
        .await?
        .map(|m| (m.data, m.expires_at)))
}

/// Forgets the session `id`.
pub async fn delete(db: &Db, id: &str) -> Result<(), StoreError> {
    Entity::delete_by_id(key(id)).exec(db.conn()).await?;
    Ok(())
}

/// Forgets every session that expired before `now`; how many.
pub async fn prune(db: &Db, now: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(Entity::delete_many()
        .filter(Column::ExpiresAt.lte(stored_time(now)))
        .exec(db.conn())
        .await?
        .rows_affected)
}

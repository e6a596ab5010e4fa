//! The provider registry table: built-ins synced from `descriptors/` at start,
//! runtime descriptors registered over the API. Not tenant data.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;

use crate::db::entities::provider::{ActiveModel, Column, Entity, Model};
use crate::db::{Db, StoreError};
use crate::descriptor::model::{ConnectorDescriptor, ConnectorKind};

/// A registered provider row.
pub type ProviderRow = Model;

/// What `put_runtime` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new provider.
    Created,
    /// A runtime provider replaced.
    Replaced,
    /// Refused: a built-in has this id.
    BuiltIn,
}

/// What `delete_runtime` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed.
    Deleted,
    /// No such provider.
    NotFound,
    /// Refused: built-ins are read-only.
    BuiltIn,
}

fn kind(d: &ConnectorDescriptor) -> &'static str {
    match d.kind {
        ConnectorKind::Generic => "generic",
        ConnectorKind::Native => "native",
    }
}

fn json(d: &ConnectorDescriptor) -> Value {
    serde_json::to_value(d).expect("a descriptor serializes")
}

/// Makes the built-in rows match the shipped descriptors: inserts new ones,
/// updates changed ones, removes built-ins no longer shipped. A runtime provider
/// with a shipped id is replaced by the built-in.
pub async fn sync_builtins(db: &Db, shipped: &[&ConnectorDescriptor]) -> Result<(), StoreError> {
    let now = db.now();
    let existing = Entity::find().all(db.conn()).await?;
    for d in shipped {
        let row = ActiveModel {
            id: Set(d.id.clone()),
            name: Set(d.name.clone()),
            kind: Set(kind(d).into()),
            built_in: Set(true),
            descriptor: Set(json(d)),
            version: Set(d.version.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match existing.iter().find(|r| r.id == d.id) {
            None => {
                row.insert(db.conn()).await?;
            }
            Some(current) => {
                if current.built_in && current.descriptor == json(d) {
                    continue;
                }
                if !current.built_in {
                    tracing::warn!(provider = %d.id, "a shipped descriptor replaces the runtime provider with the same id");
                }
                let mut update = row;
                update.created_at = Set(current.created_at);
                update.update(db.conn()).await?;
            }
        }
    }
    let shipped_ids: Vec<&str> = shipped.iter().map(|d| d.id.as_str()).collect();
    Entity::delete_many()
        .filter(Column::BuiltIn.eq(true))
        .filter(Column::Id.is_not_in(shipped_ids))
        .exec(db.conn())
        .await?;
    Ok(())
}

/// Every provider, by id.
pub async fn list(db: &Db) -> Result<Vec<ProviderRow>, StoreError> {
    Ok(Entity::find()
        .order_by_asc(Column::Id)
        .all(db.conn())
        .await?)
}

/// The runtime providers' ids and revisions (`updated_at`): what a node
/// compares its registry with (`upkeep::providers`).
pub async fn runtime_revisions(db: &Db) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::UpdatedAt)
        .filter(Column::BuiltIn.eq(false))
        .order_by_asc(Column::Id)
        .into_tuple()
        .all(db.conn())
        .await?)
}

/// One provider row.
pub async fn get(db: &Db, id: &str) -> Result<Option<ProviderRow>, StoreError> {
    Ok(Entity::find_by_id(id.to_owned()).one(db.conn()).await?)
}

/// Registers or replaces a runtime provider (already validated); with the
/// stored revision.
pub async fn put_runtime(
    db: &Db,
    d: &ConnectorDescriptor,
) -> Result<(PutOutcome, DateTime<Utc>), StoreError> {
    let now = db.now();
    let current = Entity::find_by_id(d.id.clone()).one(db.conn()).await?;
    let mut row = ActiveModel {
        id: Set(d.id.clone()),
        name: Set(d.name.clone()),
        kind: Set(kind(d).into()),
        built_in: Set(false),
        descriptor: Set(json(d)),
        version: Set(d.version.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let outcome = match current {
        Some(c) if c.built_in => PutOutcome::BuiltIn,
        Some(c) => {
            row.created_at = Set(c.created_at);
            row.update(db.conn()).await?;
            PutOutcome::Replaced
        }
        None => {
            row.insert(db.conn()).await?;
            PutOutcome::Created
        }
    };
    if outcome != PutOutcome::BuiltIn {
        db.announce_providers().await;
    }
    Ok((outcome, now))
}

/// Removes a runtime provider.
pub async fn delete_runtime(db: &Db, id: &str) -> Result<DeleteOutcome, StoreError> {
    match Entity::find_by_id(id.to_owned()).one(db.conn()).await? {
        None => Ok(DeleteOutcome::NotFound),
        Some(row) if row.built_in => Ok(DeleteOutcome::BuiltIn),
        Some(_) => {
            Entity::delete_by_id(id.to_owned()).exec(db.conn()).await?;
            db.announce_providers().await;
            Ok(DeleteOutcome::Deleted)
        }
    }
}

//! `providers`: the connector registry (built-in and runtime-registered).

use sea_orm::entity::prelude::*;

/// A registered connector.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "providers")]
pub struct Model {
    /// Connector id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Display name.
    pub name: String,
    /// `generic` or `native`.
    pub kind: String,
    /// Loaded from `descriptors/` (read-only over the API).
    pub built_in: bool,
    /// The descriptor, as JSON.
    #[sea_orm(column_type = "JsonBinary")]
    pub descriptor: Json,
    /// Descriptor version.
    pub version: String,
    /// First registered.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

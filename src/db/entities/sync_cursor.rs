//! `sync_cursors`: the checkpoint per connection and stream (partition).

use sea_orm::entity::prelude::*;

/// A checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_cursors")]
pub struct Model {
    /// Connection.
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: Uuid,
    /// Stream or partition (`""` when unpartitioned).
    #[sea_orm(primary_key, auto_increment = false)]
    pub stream: String,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// The checkpoint.
    pub checkpoint: Option<String>,
    /// Last moved.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

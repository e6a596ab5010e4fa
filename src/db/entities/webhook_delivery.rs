//! `webhook_deliveries`: delivery ids seen, for dedupe and audit.

use sea_orm::entity::prelude::*;

/// A delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Connector id.
    pub provider: String,
    /// Tenant, once known.
    pub tenant_id: Option<Uuid>,
    /// Connection, once known.
    pub connection_id: Option<Uuid>,
    /// Provider's delivery id (unique per provider).
    pub delivery_id: String,
    /// Received.
    pub received_at: DateTimeUtc,
    /// What happened.
    pub outcome: String,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

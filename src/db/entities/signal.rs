//! `signals`: normalized Signals, unique per tenant by id (an id derived from
//! the dedupe key; the table's primary key is `(tenant_id, id)`).

use sea_orm::entity::prelude::*;

/// A stored Signal.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signals")]
pub struct Model {
    /// Signal id (`domain::signal::signal_id`; the key declared here is the id
    /// alone, every lookup also names the tenant).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Connection.
    pub connection_id: Uuid,
    /// Connector id.
    pub provider: String,
    /// Kind.
    pub kind: String,
    /// When it happened (microsecond precision).
    pub occurred_at: DateTimeUtc,
    /// When it was received.
    pub received_at: DateTimeUtc,
    /// Provider's item id.
    pub external_id: String,
    /// Summary.
    pub summary: String,
    /// Priority.
    pub priority: Option<String>,
    /// JSON list of strings.
    #[sea_orm(column_type = "Json")]
    pub participants: Json,
    /// JSON list of strings.
    #[sea_orm(column_type = "Json")]
    pub tags: Json,
    /// JSON list of strings.
    #[sea_orm(column_type = "Json")]
    pub related: Json,
    /// Web URL.
    pub url: Option<String>,
    /// Payload.
    #[sea_orm(column_type = "Json")]
    pub payload: Json,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

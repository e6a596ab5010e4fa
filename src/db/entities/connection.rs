//! `connections`: a tenant's connection to a provider. Secrets are sealed
//! (`crypto::KeyRing`) and bound to the row.

use sea_orm::entity::prelude::*;

/// A connection row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    /// Connection id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Connector id.
    pub provider_id: String,
    /// Optional label.
    pub name: Option<String>,
    /// `active`, `needs_reauth` or `error`.
    pub status: String,
    /// Whether syncing is enabled.
    pub enabled: bool,
    /// Per-connection settings (`configFields`).
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    /// Sealed JSON object of credential fields.
    pub credentials: Option<Vec<u8>>,
    /// Sealed OAuth access token.
    pub access_token: Option<Vec<u8>>,
    /// Sealed OAuth refresh token.
    pub refresh_token: Option<Vec<u8>>,
    /// Access-token expiry.
    pub expires_at: Option<DateTimeUtc>,
    /// Provider facts learnt at connect time (team id, installation id, …).
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    /// Last health check.
    pub last_health_check: Option<DateTimeUtc>,
    /// Result of the last health check or sync.
    pub healthy: Option<bool>,
    /// Failures in a row.
    pub consecutive_failures: i32,
    /// Last error, for operators.
    pub last_error: Option<String>,
    /// When the connector's `Renew` hook is due (a watch channel before it expires).
    pub renew_at: Option<DateTimeUtc>,
    /// When the last sync attempt ended.
    pub last_sync_at: Option<DateTimeUtc>,
    /// How it ended: `succeeded`, `retrying` (it failed and is retried) or `failed`.
    pub last_sync_status: Option<String>,
    /// How long it ran, in milliseconds.
    pub last_sync_ms: Option<i64>,
    /// When its first Signal was stored.
    pub first_signal_at: Option<DateTimeUtc>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// No relations declared (joins are explicit in the repositories).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

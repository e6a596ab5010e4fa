//! `subscriptions`: where a tenant's Signals are pushed, with the delivery's
//! durable cursor (an arrival position) and its retry state.

use sea_orm::entity::prelude::*;

/// A push subscription.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscriptions")]
pub struct Model {
    /// Subscription id (UUID v7).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Only Signals of this connector.
    pub provider: Option<String>,
    /// Only Signals of this connection.
    pub connection_id: Option<Uuid>,
    /// Only Signals of these kinds (a JSON list of strings).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub kinds: Option<Json>,
    /// Whether each Signal carries its payload.
    pub include_payload: bool,
    /// The signing secret, sealed.
    pub secret: Vec<u8>,
    /// The secret before the last rotation, sealed: it signs too until `previous_until`.
    pub previous_secret: Option<Vec<u8>>,
    /// Until when the previous secret signs.
    pub previous_until: Option<DateTimeUtc>,
    /// Whether deliveries run.
    pub enabled: bool,
    /// `active`, `failing` (retries exhausted) or `disabled` (the subscriber answered 410).
    pub state: String,
    /// The arrival position delivered up to (durable cursor).
    pub position: String,
    /// The end of the batch being delivered (retried as is), if any.
    pub pending_end: Option<String>,
    /// The `webhook-id` of that batch.
    pub pending_id: Option<String>,
    /// What that batch carries: `{"ids": [Signal ids], "payload": bool}`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub pending_signals: Option<Json>,
    /// Failed attempts of the pending batch in a row.
    pub failures: i32,
    /// When the pending batch is tried again.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// The last attempt's HTTP status.
    pub last_status: Option<i32>,
    /// The last failure, scrubbed.
    pub last_error: Option<String>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTimeUtc>,
    /// The last batch taken.
    pub last_delivered_at: Option<DateTimeUtc>,
    /// Signals delivered in all.
    pub delivered: i64,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed by the API.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

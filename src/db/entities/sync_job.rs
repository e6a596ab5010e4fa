//! `sync_jobs`: the durable job queue and its history.

use sea_orm::entity::prelude::*;

/// A job.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_jobs")]
pub struct Model {
    /// Job id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Connection synced.
    pub connection_id: Uuid,
    /// Connector id.
    pub provider_id: String,
    /// `full` or `incremental`.
    pub job_type: String,
    /// `schedule`, `manual` or `webhook`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded`, `failed` or `retrying`.
    pub state: String,
    /// Attempts made.
    pub attempt: i32,
    /// Not before.
    pub run_after: DateTimeUtc,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Lease end.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Checkpoint at start.
    pub cursor_before: Option<String>,
    /// Checkpoint after success.
    pub cursor_after: Option<String>,
    /// Signals stored.
    pub signals_emitted: i64,
    /// Last error.
    pub error: Option<String>,
    /// Collapses duplicate triggers.
    #[sea_orm(unique)]
    pub idempotency_key: String,
    /// Enqueued.
    pub created_at: DateTimeUtc,
    /// First started.
    pub started_at: Option<DateTimeUtc>,
    /// Finished.
    pub finished_at: Option<DateTimeUtc>,
    /// Where an interrupted run resumes (committed with the Signals it covers).
    pub progress: Option<String>,
    /// How often its worker stopped without finishing it.
    pub reclaims: i32,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

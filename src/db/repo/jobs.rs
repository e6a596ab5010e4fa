//! Sync jobs, tenant-scoped: enqueue (collapsing a duplicate queued trigger, or
//! under an idempotency key), list with keyset pagination, get. The worker side
//! (claim, lease, finish) is `queue`'s.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::cursor::Cursor;
use crate::db::entities::sync_job::{ActiveModel, Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::{ConnectionId, TenantId};
pub use crate::domain::{JobState, JobType, Trigger};

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Connection.
    pub connection_id: ConnectionId,
    /// Connector id.
    pub provider: String,
    /// Type.
    pub job_type: JobType,
    /// Trigger.
    pub trigger: Trigger,
    /// State.
    pub state: JobState,
    /// Attempts made.
    pub attempt: i32,
    /// Not before.
    pub run_after: DateTime<Utc>,
    /// Checkpoint at start.
    pub cursor_before: Option<String>,
    /// Checkpoint after success.
    pub cursor_after: Option<String>,
    /// Signals stored.
    pub signals_emitted: i64,
    /// Last error.
    pub error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where an interrupted run resumes.
    pub progress: Option<String>,
    /// How often its worker stopped without finishing it.
    pub reclaims: i32,
}

impl TryFrom<Model> for Job {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str, v: &str| StoreError::Corrupt(format!("job {}: {what} `{v}`", m.id));
        Ok(Job {
            id: m.id,
            tenant_id: TenantId::from_uuid(m.tenant_id),
            connection_id: ConnectionId::from_uuid(m.connection_id),
            job_type: JobType::parse(&m.job_type)
                .ok_or_else(|| corrupt("job type", &m.job_type))?,
            trigger: Trigger::parse(&m.trigger).ok_or_else(|| corrupt("trigger", &m.trigger))?,
            state: JobState::parse(&m.state).ok_or_else(|| corrupt("state", &m.state))?,
            provider: m.provider_id,
            attempt: m.attempt,
            run_after: m.run_after,
            cursor_before: m.cursor_before,
            cursor_after: m.cursor_after,
            signals_emitted: m.signals_emitted,
            error: m.error,
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
            progress: m.progress,
            reclaims: m.reclaims,
        })
    }
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Connector id.
    pub provider: Option<String>,
    /// Connection.
    pub connection_id: Option<ConnectionId>,
    /// State.
    pub state: Option<JobState>,
}

/// Enqueues a job for one of the tenant's connections. A job of the same type
/// already queued for the connection is returned instead of a duplicate.
pub async fn enqueue(
    db: &Db,
    tenant: TenantId,
    connection: ConnectionId,
    provider: &str,
    job_type: JobType,
    trigger: Trigger,
) -> Result<Job, StoreError> {
    let job = NewJob {
        tenant,
        connection,
        provider,
        job_type,
        trigger,
    };
    let (model, new) = enqueue_coalesced(db.conn(), job, db.now()).await?;
    if new {
        db.wake_workers().await;
    }
    Job::try_from(model)
}

/// Enqueues `job`, due now, unless a job of its type is already queued (not
/// yet started) for its connection: then that one, which will see whatever
/// the new one would have. True when it is new. Works inside a transaction
/// (the caller wakes the workers after committing).
pub async fn enqueue_coalesced<C: ConnectionTrait>(
    conn: &C,
    job: NewJob<'_>,
    now: DateTime<Utc>,
) -> Result<(Model, bool), StoreError> {
    let queued = Entity::find()
        .filter(Column::TenantId.eq(*job.tenant.as_uuid()))
        .filter(Column::ConnectionId.eq(*job.connection.as_uuid()))
        .filter(Column::JobType.eq(job.job_type.as_str()))
        .filter(Column::State.eq(JobState::Queued.as_str()))
        .one(conn)
        .await?;
    if let Some(existing) = queued {
        return Ok((existing, false));
    }
    let id = Uuid::now_v7();
    let key = format!(
        "{}:{}:{}:{id}",
        job.trigger.as_str(),
        job.connection,
        job.job_type.as_str()
    );
    Ok((row(id, &job, key, now, now).insert(conn).await?, true))
}

/// A job to enqueue.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The tenant.
    pub tenant: TenantId,
    /// The connection.
    pub connection: ConnectionId,
    /// Its provider.
    pub provider: &'a str,
    /// What to run.
    pub job_type: JobType,
    /// What asked for it.
    pub trigger: Trigger,
}

fn row(
    id: Uuid,
    job: &NewJob<'_>,
    key: String,
    run_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ActiveModel {
    ActiveModel {
        id: Set(id),
        tenant_id: Set(*job.tenant.as_uuid()),
        connection_id: Set(*job.connection.as_uuid()),
        provider_id: Set(job.provider.to_owned()),
        job_type: Set(job.job_type.as_str().into()),
        trigger: Set(job.trigger.as_str().into()),
        state: Set(JobState::Queued.as_str().into()),
        attempt: Set(0),
        run_after: Set(stored_time(run_after)),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        cursor_before: Set(None),
        cursor_after: Set(None),
        signals_emitted: Set(0),
        error: Set(None),
        idempotency_key: Set(key),
        created_at: Set(stored_time(now)),
        started_at: Set(None),
        finished_at: Set(None),
        progress: Set(None),
        reclaims: Set(0),
    }
}

/// Enqueues a job under an idempotency key (a scheduler window, a backfill, a
/// webhook burst), due at `run_after`; false when a job with that key already
/// exists.
pub async fn enqueue_keyed<C: ConnectionTrait>(
    conn: &C,
    job: NewJob<'_>,
    key: &str,
    run_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let model = row(Uuid::now_v7(), &job, key.to_owned(), run_after, now);
    let inserted = Entity::insert(model)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

/// Whether the connection has a job of `job_type` waiting or running (the
/// scheduler's read, across tenants: it knows the connection, not the tenant).
pub async fn pending(
    db: &Db,
    connection: ConnectionId,
    job_type: JobType,
) -> Result<bool, StoreError> {
    use sea_orm::PaginatorTrait;
    let n = Entity::find()
        .filter(Column::ConnectionId.eq(*connection.as_uuid()))
        .filter(Column::JobType.eq(job_type.as_str()))
        .filter(Column::State.is_in([
            JobState::Queued.as_str(),
            JobState::Retrying.as_str(),
            JobState::Running.as_str(),
        ]))
        .count(db.conn())
        .await?;
    Ok(n > 0)
}

/// Jobs waiting or running, across tenants, by state: the queue depth.
pub async fn depth(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::{Expr, ExprTrait};
    Ok(Entity::find()
        .select_only()
        .column(Column::State)
        .column_as(Expr::col(Column::Id).count(), "n")
        .filter(Column::State.is_in([
            JobState::Queued.as_str(),
            JobState::Retrying.as_str(),
            JobState::Running.as_str(),
        ]))
        .group_by(Column::State)
        .into_tuple()
        .all(db.conn())
        .await?)
}

/// Full syncs, across tenants, that are still to run or finished after
/// `since`: connection → when it finished (`None`: not yet). What keeps the
/// scheduler from queueing an incremental right behind a backfill. A system
/// read in two index ranges (by state, by `finished_at`): full syncs are few.
pub async fn recent_full_syncs(
    db: &Db,
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<ConnectionId, Option<DateTime<Utc>>>, StoreError> {
    use sea_orm::QuerySelect;
    let full = || {
        Entity::find()
            .select_only()
            .column(Column::ConnectionId)
            .column(Column::FinishedAt)
            .filter(Column::JobType.eq(JobType::Full.as_str()))
    };
    let finished: Vec<(Uuid, Option<DateTime<Utc>>)> = full()
        .filter(Column::FinishedAt.gt(stored_time(since)))
        .into_tuple()
        .all(db.conn())
        .await?;
    let pending: Vec<(Uuid, Option<DateTime<Utc>>)> = full()
        .filter(Column::State.is_in([
            JobState::Queued.as_str(),
            JobState::Retrying.as_str(),
            JobState::Running.as_str(),
        ]))
        .into_tuple()
        .all(db.conn())
        .await?;
    let mut out = std::collections::HashMap::new();
    for (connection, at) in finished {
        let entry = out.entry(ConnectionId::from_uuid(connection)).or_insert(at);
        *entry = (*entry).max(at);
    }
    // One still to run wins over any that finished.
    for (connection, _) in pending {
        out.insert(ConnectionId::from_uuid(connection), None);
    }
    Ok(out)
}

/// A page of the tenant's jobs, newest first.
pub async fn list(
    db: &Db,
    tenant: TenantId,
    filter: &JobFilter,
    limit: u64,
    cursor: Option<Cursor>,
) -> Result<(Vec<Job>, Option<Cursor>), StoreError> {
    let mut query = Entity::find().filter(Column::TenantId.eq(*tenant.as_uuid()));
    if let Some(p) = &filter.provider {
        query = query.filter(Column::ProviderId.eq(p.as_str()));
    }
    if let Some(c) = filter.connection_id {
        query = query.filter(Column::ConnectionId.eq(*c.as_uuid()));
    }
    if let Some(s) = filter.state {
        query = query.filter(Column::State.eq(s.as_str()));
    }
    let rows = super::cursor::page_query(query, Column::CreatedAt, Column::Id, cursor, limit)
        .all(db.reads())
        .await?;
    let (rows, next) = super::cursor::split_page(rows, limit, |r| Cursor {
        time: r.created_at,
        id: r.id,
    });
    let jobs = rows
        .into_iter()
        .map(Job::try_from)
        .collect::<Result<_, _>>()?;
    Ok((jobs, next))
}

/// One of the tenant's jobs.
pub async fn get(db: &Db, tenant: TenantId, id: Uuid) -> Result<Option<Job>, StoreError> {
    Entity::find_by_id(id)
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .one(db.reads())
        .await?
        .map(Job::try_from)
        .transpose()
}

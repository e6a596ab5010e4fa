//! The job queue's storage: claim with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; SQLite serializes writers), heartbeats, putting a rate-limited
//! job back without spending its attempt, recording a failed attempt, and
//! completion only while the lease is still held. Policy (lease length, caps,
//! backoff) is the caller's (`sync::queue`).
//!
//! The worker side is a system process across tenants: it reads jobs by id and
//! each job carries its tenant, which scopes everything done for it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, ExprTrait, QueryFilter, Statement, Value,
};
use uuid::Uuid;

use super::jobs::{Job, JobState};
use crate::db::entities::sync_job::{Column, Entity};
use crate::db::{Db, StoreError, stored_time};

// A reclaim (the lease of a running job expired: its worker stopped) spends no
// attempt; it is counted apart, so a job that keeps crashing its worker can be
// quarantined.
const CLAIM: &str = "UPDATE sync_jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, \
     attempt = CASE WHEN state = 'running' THEN attempt ELSE attempt + 1 END, \
     reclaims = CASE WHEN state = 'running' THEN reclaims + 1 ELSE reclaims END, \
     started_at = COALESCE(started_at, $3) \
     WHERE id = (SELECT j.id FROM sync_jobs j \
       WHERE ((j.state IN ('queued', 'retrying') AND j.run_after <= $3) \
              OR (j.state = 'running' AND j.lease_expires_at < $3)) \
         AND NOT EXISTS (SELECT 1 FROM sync_jobs r WHERE r.connection_id = j.connection_id \
                         AND r.state = 'running' AND r.id <> j.id) \
         AND (SELECT COUNT(*) FROM sync_jobs r WHERE r.tenant_id = j.tenant_id \
              AND r.state = 'running' AND r.lease_expires_at >= $3) \
             < COALESCE((SELECT s.job_concurrency FROM tenant_settings s \
                         WHERE s.tenant_id = j.tenant_id), $4) \
       ORDER BY j.run_after, j.id LIMIT 1 {lock}) \
     RETURNING id";

/// Claims the next job that is due at `now` (or whose lease expired) for
/// `worker`, leased until `lease_until`, unless its tenant already runs its
/// cap of jobs (its own setting, else `tenant_cap`) or its connection runs one.
pub async fn claim(
    db: &Db,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    tenant_cap: u32,
) -> Result<Option<Job>, StoreError> {
    let now = stored_time(now);
    let backend = db.backend();
    let lock = match backend {
        DbBackend::Postgres => "FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let sql = super::sql(backend, &CLAIM.replace("{lock}", lock));
    let values: Vec<Value> = vec![
        worker.into(),
        stored_time(lease_until).into(),
        now.into(),
        i64::from(tenant_cap).into(),
    ];
    let row = match db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
    {
        Ok(row) => row,
        // Another worker started a job of the same connection first.
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.try_get("", "id")?;
    Entity::find_by_id(id)
        .one(db.conn())
        .await?
        .map(Job::try_from)
        .transpose()
}

/// Extends the lease to `lease_until`; false when `worker` no longer holds it.
pub async fn heartbeat(
    db: &Db,
    job: Uuid,
    worker: &str,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = Entity::update_many()
        .col_expr(
            Column::LeaseExpiresAt,
            Expr::value(stored_time(lease_until)),
        )
        .filter(Column::Id.eq(job))
        .filter(Column::LeaseOwner.eq(worker))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected == 1)
}

/// An update of `job` that gives up `worker`'s lease (and changes nothing
/// when `worker` no longer holds it).
fn release(job: Uuid, worker: &str) -> sea_orm::UpdateMany<Entity> {
    Entity::update_many()
        .col_expr(Column::LeaseOwner, Expr::value(Option::<String>::None))
        .col_expr(
            Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(job))
        .filter(Column::LeaseOwner.eq(worker))
}

/// Puts a rate-limited job back, due at `run_after`, without spending the attempt.
pub async fn reschedule_rate_limited(
    db: &Db,
    job: Uuid,
    worker: &str,
    run_after: DateTime<Utc>,
    error: &str,
) -> Result<bool, StoreError> {
    let result = release(job, worker)
        .col_expr(Column::State, Expr::value(JobState::Queued.as_str()))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).sub(1))
        .col_expr(Column::RunAfter, Expr::value(stored_time(run_after)))
        .col_expr(Column::Error, Expr::value(error))
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a failed attempt at `now`: `retrying`, due at `retry_at`, when
/// there is one; else `failed`. Returns the new state, or `None` when the
/// lease was lost.
pub async fn fail(
    db: &Db,
    job: Uuid,
    worker: &str,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<JobState>, StoreError> {
    let (state, run_after, finished) = match retry_at {
        Some(at) => (JobState::Retrying, at, None),
        None => (JobState::Failed, now, Some(stored_time(now))),
    };
    let result = release(job, worker)
        .col_expr(Column::State, Expr::value(state.as_str()))
        .col_expr(Column::RunAfter, Expr::value(stored_time(run_after)))
        .col_expr(Column::Error, Expr::value(error))
        .col_expr(Column::FinishedAt, Expr::value(finished))
        .exec(db.conn())
        .await?;
    Ok((result.rows_affected == 1).then_some(state))
}

/// Records how far a run got (when `progress` is given), inside the
/// transaction that stores the Signals it covers (`signals` of them new); false
/// (and the caller rolls back) when `worker` no longer holds the lease.
pub async fn commit_progress<C: ConnectionTrait>(
    conn: &C,
    job: Uuid,
    worker: &str,
    progress: Option<&str>,
    signals: u64,
) -> Result<bool, StoreError> {
    let mut update = Entity::update_many();
    if let Some(progress) = progress {
        update = update.col_expr(Column::Progress, Expr::value(progress));
    }
    let result = update
        .col_expr(
            Column::SignalsEmitted,
            Expr::col(Column::SignalsEmitted).add(signals as i64),
        )
        .filter(Column::Id.eq(job))
        .filter(Column::LeaseOwner.eq(worker))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Puts a job its worker stopped (a shutdown) back in the queue at once,
/// without spending the attempt; it resumes from its last committed progress.
pub async fn release_stopped(
    db: &Db,
    job: Uuid,
    worker: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = release(job, worker)
        .col_expr(Column::State, Expr::value(JobState::Queued.as_str()))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).sub(1))
        .col_expr(Column::RunAfter, Expr::value(stored_time(now)))
        .col_expr(
            Column::Error,
            Expr::value("stopped by a shutdown; resumes from its last commit"),
        )
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected == 1)
}

/// Marks a job succeeded (adding its last `signals`, clearing its progress),
/// inside the transaction that stores its results; false (and the caller rolls
/// back) when `worker` no longer holds the lease.
pub async fn succeed<C: ConnectionTrait>(
    conn: &C,
    job: Uuid,
    worker: &str,
    cursor_after: Option<String>,
    signals: u64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = release(job, worker)
        .col_expr(Column::State, Expr::value(JobState::Succeeded.as_str()))
        .col_expr(Column::CursorAfter, Expr::value(cursor_after))
        .col_expr(
            Column::SignalsEmitted,
            Expr::col(Column::SignalsEmitted).add(signals as i64),
        )
        .col_expr(Column::Progress, Expr::value(Option::<String>::None))
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(Column::FinishedAt, Expr::value(stored_time(now)))
        .filter(Column::State.eq(JobState::Running.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records the checkpoint a job starts from.
pub async fn set_cursor_before(
    db: &Db,
    job: Uuid,
    cursor: Option<String>,
) -> Result<(), StoreError> {
    Entity::update_many()
        .col_expr(Column::CursorBefore, Expr::value(cursor))
        .filter(Column::Id.eq(job))
        .exec(db.conn())
        .await?;
    Ok(())
}

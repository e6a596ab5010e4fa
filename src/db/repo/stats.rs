//! Counts for one connection's monitoring (`GET /connections/{id}/stats`, the
//! dashboard): Signals that occurred in the last 24 hours and 7 days, and its
//! jobs created in the last 7 days by state. Each is one index range
//! (`(tenant_id, connection_id, id)` for Signals, whose ids order by occurrence,
//! `(tenant_id, connection_id, created_at, id)` for jobs; the query-plan tests
//! hold it), so the cost follows the window, not the table.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ColumnTrait, EntityTrait, ExprTrait, QueryFilter, QuerySelect};

use crate::db::entities::{signal, sync_job};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::signal::last_id_at;
use crate::domain::{ConnectionId, JobState, TenantId};

/// What [`connection`] counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Signals that occurred in the 24 hours before `now`.
    pub signals_24h: u64,
    /// Signals that occurred in the 7 days before `now`.
    pub signals_7d: u64,
    /// Jobs created in the 7 days before `now`, by state (every state).
    pub jobs_7d: BTreeMap<String, u64>,
}

/// The statement counting the connection's Signals since `since_7d` (all) and
/// since `since_24h` (a sum over the same range).
pub fn signal_counts(
    tenant: TenantId,
    connection: ConnectionId,
    since_24h: DateTime<Utc>,
    since_7d: DateTime<Utc>,
) -> sea_orm::Select<signal::Entity> {
    use signal::Column;
    // Occurrence times as id bounds: ids order by them (`signal_id`).
    let recent = Expr::case(Expr::col(Column::Id).gt(last_id_at(since_24h)), 1).finally(0);
    signal::Entity::find()
        .select_only()
        .expr_as(Func::count(Expr::col(Column::Id)), "last_7d")
        .expr_as(
            Func::coalesce([Expr::from(Func::sum(recent)), Expr::val(0)]),
            "last_24h",
        )
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::ConnectionId.eq(*connection.as_uuid()))
        .filter(Column::Id.gt(last_id_at(since_7d)))
}

/// The statement counting the connection's jobs created since `since`, one
/// column per state (no grouping: one pass over one index range).
pub fn job_counts(
    tenant: TenantId,
    connection: ConnectionId,
    since: DateTime<Utc>,
) -> sea_orm::Select<sync_job::Entity> {
    use sync_job::Column;
    let mut query = sync_job::Entity::find().select_only();
    for state in JobState::ALL {
        let one = Expr::case(Expr::col(Column::State).eq(state.as_str()), 1).finally(0);
        query = query.expr_as(
            Func::coalesce([Expr::from(Func::sum(one)), Expr::val(0)]),
            state.as_str(),
        );
    }
    query
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::ConnectionId.eq(*connection.as_uuid()))
        .filter(Column::CreatedAt.gt(stored_time(since)))
}

/// The counts for one of the tenant's connections at `now`.
pub async fn connection(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
    now: DateTime<Utc>,
) -> Result<ConnectionStats, StoreError> {
    let week = now - Duration::days(7);
    let (last_7d, last_24h) = signal_counts(tenant, id, now - Duration::hours(24), week)
        .into_tuple::<(i64, i64)>()
        .one(db.reads())
        .await?
        .unwrap_or((0, 0));
    // One column per state, in `JobState::ALL`'s order (as `job_counts` makes them).
    const _: () = assert!(JobState::ALL.len() == 5);
    let (queued, running, succeeded, failed, retrying) = job_counts(tenant, id, week)
        .into_tuple::<(i64, i64, i64, i64, i64)>()
        .one(db.reads())
        .await?
        .unwrap_or_default();
    let jobs = [queued, running, succeeded, failed, retrying];
    Ok(ConnectionStats {
        signals_24h: u64::try_from(last_24h).unwrap_or(0),
        signals_7d: u64::try_from(last_7d).unwrap_or(0),
        jobs_7d: JobState::ALL
            .iter()
            .zip(jobs)
            .map(|(s, n)| (s.as_str().to_owned(), u64::try_from(n).unwrap_or(0)))
            .collect(),
    })
}

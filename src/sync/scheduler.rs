//! The scheduler: every enabled connection of a polling connector gets one
//! incremental job per interval (the first one interval after its backfill
//! finished), and a connection whose lifecycle hook asked to
//! be renewed gets its `Renew` job once that is due; a deleted connection whose
//! teardown has ended is removed. The window a job belongs
//! to is a pure function of the connection and the time (with a per-connection
//! offset spreading the load), and the job's idempotency key names that window,
//! so any number of scheduler nodes enqueue each window's job exactly once.

use chrono::{DateTime, Utc};

use crate::db::StoreError;
use crate::db::repo::jobs::{JobType, NewJob, Trigger};
use crate::db::repo::{connections, jobs};
use crate::domain::{ConnectionId, TenantId};
use crate::services::Services;

/// The schedule window `now` falls in for a connection, and its job key.
pub fn window(
    connection: ConnectionId,
    interval_seconds: u32,
    now: DateTime<Utc>,
) -> (i64, String) {
    let interval = i64::from(interval_seconds.max(1));
    let bytes = connection.as_uuid().as_bytes();
    let spread =
        u64::from_be_bytes(bytes[8..16].try_into().expect("16-byte uuid")) % interval as u64;
    let window = (now.timestamp() - spread as i64).div_euclid(interval);
    (window, format!("schedule:{connection}:{window}"))
}

/// How far back the scheduler looks for full syncs (longer polling intervals
/// than this do not wait for a backfill to age).
pub const FULL_SYNC_LOOKBACK: chrono::Duration = chrono::Duration::days(1);
/// How long a new connection gets no incremental: its backfill comes first.
pub const BACKFILL_GRACE: chrono::Duration = chrono::Duration::minutes(1);

/// After a renewal job failed for good, how long until the next one is tried.
pub const RENEW_RETRY_SECONDS: i64 = 3600;

/// Enqueues the due incremental and renewal jobs; returns how many were new.
pub async fn tick(services: &Services, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let db = &services.db;
    let mut enqueued = 0;
    let full_syncs = jobs::recent_full_syncs(db, now - FULL_SYNC_LOOKBACK).await?;
    // A connection's first sync is its backfill, enqueued just after the
    // connection is stored: a tick between the two must not slip an
    // incremental in ahead of it.
    let created_before = now - BACKFILL_GRACE;
    for (connection, tenant, provider) in connections::schedulable(db, created_before).await? {
        let Some(entry) = services.registry.get(&provider) else {
            continue;
        };
        let Some(polling) = entry.connector.capabilities().polling else {
            continue;
        };
        // The first incremental comes one interval after a backfill (or any
        // full sync), not right behind it.
        let waited = chrono::Duration::from_std(polling.interval).unwrap_or(chrono::Duration::MAX);
        match full_syncs.get(&connection) {
            Some(None) => continue,
            Some(Some(finished)) if finished.checked_add_signed(waited).is_none_or(|t| now < t) => {
                continue;
            }
            _ => {}
        }
        let interval = u32::try_from(polling.interval.as_secs()).unwrap_or(u32::MAX);
        let (_, key) = window(connection, interval, now);
        let job = NewJob {
            tenant,
            connection,
            provider: &provider,
            job_type: JobType::Incremental,
            trigger: Trigger::Schedule,
        };
        if jobs::enqueue_keyed(db.conn(), job, &key, now, now).await? {
            enqueued += 1;
        }
    }
    for (connection, tenant, provider, renew_at) in connections::due_for_renewal(db, now).await? {
        if services.registry.get(&provider).is_none()
            || jobs::pending(db, connection, JobType::Renew).await?
        {
            continue;
        }
        // One renewal per due time; after one failed for good, another an hour on.
        let retry = (now - renew_at)
            .num_seconds()
            .div_euclid(RENEW_RETRY_SECONDS);
        let key = format!("renew:{connection}:{}:{retry}", renew_at.timestamp_micros());
        let job = NewJob {
            tenant,
            connection,
            provider: &provider,
            job_type: JobType::Renew,
            trigger: Trigger::Schedule,
        };
        if jobs::enqueue_keyed(db.conn(), job, &key, now, now).await? {
            enqueued += 1;
        }
    }
    // A deletion whose teardown has ended (a node stopped between the two).
    for (connection, tenant) in connections::deleting(db).await? {
        if !jobs::pending(db, connection, JobType::Teardown).await?
            && connections::purge(db.conn(), tenant, connection).await?
        {
            tracing::info!(%connection, "removed a deleted connection whose teardown had ended");
        }
    }
    if enqueued > 0 {
        tracing::debug!(enqueued, "scheduled jobs");
        db.wake_workers().await;
    }
    let depth = jobs::depth(db).await?;
    for state in crate::observe::QUEUE_STATES {
        let n = depth
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("sync_queue_depth", "state" => state.as_str()).set(n as f64);
    }
    Ok(enqueued)
}

/// Enqueues the first (full) sync of a new connection, once.
pub async fn enqueue_backfill(
    services: &Services,
    tenant: TenantId,
    connection: ConnectionId,
    provider: &str,
) -> Result<bool, StoreError> {
    let now = services.ambient.now();
    let job = NewJob {
        tenant,
        connection,
        provider,
        job_type: JobType::Full,
        trigger: Trigger::Schedule,
    };
    let new = jobs::enqueue_keyed(
        services.db.conn(),
        job,
        &format!("backfill:{connection}"),
        now,
        now,
    )
    .await?;
    if new {
        services.db.wake_workers().await;
    }
    Ok(new)
}

/// Ticks every `every` until `shutdown` turns true.
pub async fn run(
    services: std::sync::Arc<Services>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = tick(&services, services.ambient.now()).await {
            tracing::error!(error = %e, "scheduling failed");
        }
        tokio::select! {
            _ = services.ambient.sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn one_window_per_interval_per_connection() {
        let c = ConnectionId::from_uuid(Uuid::now_v7());
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let (w0, k0) = window(c, 900, t0);
        // Within 15 minutes there are at most two windows, and keys follow windows.
        let windows: std::collections::BTreeSet<i64> = (0..900)
            .map(|s| window(c, 900, t0 + chrono::Duration::seconds(s)).0)
            .collect();
        assert!(windows.len() <= 2 && windows.contains(&w0));
        assert_eq!(
            window(c, 900, t0 + chrono::Duration::seconds(900)).0,
            w0 + 1
        );
        assert!(k0.starts_with(&format!("schedule:{c}:")));
        // Deterministic: every node computes the same key.
        assert_eq!(window(c, 900, t0), (w0, k0));
    }
}

//! The scheduler: every enabled connection of a polling connector gets one
//! incremental job per interval. The window a job belongs to is a pure function
//! of the connection and the time (with a per-connection offset spreading the
//! load), and the job's idempotency key names that window, so any number of
//! scheduler nodes enqueue each window's job exactly once.

use chrono::{DateTime, Utc};

use crate::db::StoreError;
use crate::db::repo::jobs::{JobType, Trigger};
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

/// Enqueues the due incremental jobs; returns how many were new.
pub async fn tick(services: &Services, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut enqueued = 0;
    for (connection, tenant, provider) in connections::schedulable(&services.db).await? {
        let Some(entry) = services.registry.get(&provider) else {
            continue;
        };
        let Some(polling) = &entry.compiled.polling else {
            continue;
        };
        let (_, key) = window(connection, polling.interval_seconds, now);
        if jobs::enqueue_keyed(
            services.db.conn(),
            tenant,
            connection,
            &provider,
            JobType::Incremental,
            Trigger::Schedule,
            &key,
            now,
        )
        .await?
        {
            enqueued += 1;
        }
    }
    if enqueued > 0 {
        tracing::debug!(enqueued, "scheduled incremental syncs");
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
    jobs::enqueue_keyed(
        services.db.conn(),
        tenant,
        connection,
        provider,
        JobType::Full,
        Trigger::Schedule,
        &format!("backfill:{connection}"),
        Utc::now(),
    )
    .await
}

/// Ticks every `every` until `shutdown` turns true.
pub async fn run(
    services: std::sync::Arc<Services>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = tick(&services, Utc::now()).await {
            tracing::error!(error = %e, "scheduling failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
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

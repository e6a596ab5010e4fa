//! Data that does not grow forever: Signals, finished jobs, webhook delivery
//! ids, used or expired OAuth states and expired dashboard sessions older than
//! their retention are deleted in small batches (each its own short
//! statement through an index, so writes go on meanwhile), on one node at a
//! time (the `retention` lease), every `POBLYSH_PRUNE_SECONDS`. Counted in
//! `retention_pruned_total{table}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::db::StoreError;
use crate::db::repo::leases;
use crate::db::repo::retention::{self, Table};
use crate::services::Services;

/// The lease pruning runs under.
pub const LEASE: &str = "retention";
/// Rows one statement deletes at most.
pub const BATCH: u64 = 1_000;
/// Batches per table per run at most (the rest waits for the next run).
pub const MAX_BATCHES: usize = 1_000;
/// How long used or expired OAuth states are kept (for support questions).
pub const OAUTH_STATE_KEEP: Duration = Duration::days(1);

/// How long the lease lasts without a renewal (renewed after every batch).
const LEASE_FOR: Duration = Duration::minutes(5);

/// Rows older than this are pruned from `table` at `now` (`None`: kept).
pub fn cutoff(services: &Services, table: Table, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let ops = &services.config.ops;
    let keep = match table {
        Table::Signals => ops.signal_retention?,
        Table::Jobs => ops.job_retention?,
        Table::Deliveries => ops.delivery_retention,
        Table::OAuthStates => OAUTH_STATE_KEEP,
        Table::Sessions => Duration::zero(),
    };
    now.checked_sub_signed(keep)
}

/// One pruning run at `now` as `holder`, `batch` rows per statement: what was
/// deleted per table, or `None` when another node holds the lease.
pub async fn prune(
    services: &Services,
    holder: &str,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<Option<BTreeMap<&'static str, u64>>, StoreError> {
    let db = &services.db;
    let ambient = &services.ambient;
    if !leases::take(db, LEASE, holder, ambient.now(), ambient.now() + LEASE_FOR).await? {
        return Ok(None);
    }
    let mut pruned = BTreeMap::new();
    for table in Table::ALL {
        let Some(cutoff) = cutoff(services, table, now) else {
            continue;
        };
        let mut total = 0;
        for _ in 0..MAX_BATCHES {
            let n = retention::prune_batch(db, table, cutoff, batch).await?;
            total += n;
            metrics::counter!("retention_pruned_total", "table" => table.as_str()).increment(n);
            if n < batch {
                break;
            }
            // Keep the lease, and let writers in between batches.
            if !leases::take(db, LEASE, holder, ambient.now(), ambient.now() + LEASE_FOR).await? {
                return Ok(Some(pruned));
            }
            tokio::task::yield_now().await;
        }
        pruned.insert(table.as_str(), total);
    }
    leases::give_up(db, LEASE, holder, ambient.now()).await?;
    Ok(Some(pruned))
}

/// Prunes every `POBLYSH_PRUNE_SECONDS` until `shutdown` turns true.
pub async fn run(services: Arc<Services>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let holder = format!("node-{}", uuid::Uuid::now_v7());
    let every = services.config.ops.prune_every;
    loop {
        tokio::select! {
            () = services.ambient.sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        match prune(&services, &holder, services.ambient.now(), BATCH).await {
            Ok(Some(pruned)) if pruned.values().any(|n| *n > 0) => {
                tracing::info!(?pruned, "pruned data past its retention");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "pruning failed"),
        }
    }
}

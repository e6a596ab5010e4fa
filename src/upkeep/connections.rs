//! Connections that heal without a job: on each pass the upkeep refreshes the
//! OAuth access tokens that expire within `POBLYSH_TOKEN_REFRESH_AHEAD_SECONDS`
//! (one refresh at a time per connection across nodes: the token code's row
//! lock) and runs the health check of each enabled connection whose last one
//! is older than `POBLYSH_HEALTH_CHECK_SECONDS` (each due check taken by one
//! node: `connections::claim_health_check`). What it finds is recorded on the
//! connection (`healthy`, failures in a row, last error, `needs_reauth`), so
//! the API and the dashboard show `healthy` / `degraded` / `error` as it is.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::db::StoreError;
use crate::db::repo::connections;
use crate::services::Services;
use crate::sync::open::{self, OpenError};
use crate::sync::tokens;

/// Health checks one pass runs at most (the rest wait for the next pass).
pub const HEALTH_CHECKS_PER_PASS: u64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Tokens refreshed (or found refreshed by another node meanwhile).
    pub refreshed: usize,
    /// Refreshes that failed (the connection records why).
    pub refresh_failed: usize,
    /// Health checks run.
    pub checked: usize,
    /// Of those, unhealthy.
    pub unhealthy: usize,
}

/// One pass at `now`.
pub async fn pass(services: &Services, now: DateTime<Utc>) -> Result<Pass, StoreError> {
    let ops = &services.config.ops;
    let db = &services.db;
    let mut report = Pass::default();
    let ahead = ops.token_refresh_ahead;
    for (id, tenant, _) in connections::tokens_expiring(db, now + ahead).await? {
        let opened = match open::open(services, tenant, id).await {
            Ok(o) => o,
            Err(OpenError::Store(e)) => return Err(e),
            Err(_) => continue,
        };
        if opened.connector.capabilities().oauth.is_none() {
            continue;
        }
        let connector = opened.connector.as_ref();
        match tokens::access_token_ahead(services, connector, &opened.stored, false, now, ahead)
            .await
        {
            Ok(_) => report.refreshed += 1,
            Err(tokens::TokenError::Store(e)) => return Err(e),
            Err(e) => {
                report.refresh_failed += 1;
                let error = opened.scrubber(services).scrub(&e.to_string());
                tracing::warn!(connection = %id, tenant_id = %tenant, provider = connector.id(), error = %error, "background token refresh failed");
                connections::record_health(db, tenant, id, Err(&error), false, None).await?;
            }
        }
    }
    if let Some(every) = ops.health_check_every {
        let due_before = now - every;
        for (id, tenant) in connections::health_due(db, due_before, HEALTH_CHECKS_PER_PASS).await? {
            if !connections::claim_health_check(db, tenant, id, due_before, now).await? {
                continue;
            }
            let opened = match open::open(services, tenant, id).await {
                Ok(o) => o,
                Err(OpenError::Store(e)) => return Err(e),
                Err(_) => continue,
            };
            let result = opened.check_health(services).await?;
            report.checked += 1;
            if !result.healthy {
                report.unhealthy += 1;
            }
        }
    }
    Ok(report)
}

/// Runs a pass every `POBLYSH_UPKEEP_SECONDS` until `shutdown` turns true.
pub async fn run(services: Arc<Services>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let every = services.config.ops.upkeep_every;
    loop {
        match pass(&services, services.ambient.now()).await {
            Ok(p) if p != Pass::default() => tracing::debug!(?p, "upkeep pass"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "upkeep failed"),
        }
        tokio::select! {
            () = services.ambient.sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

//! Connections that heal without a job: on each pass the upkeep refreshes the
//! OAuth access tokens that expire within `POBLYSH_TOKEN_REFRESH_AHEAD_SECONDS`
//! (one refresh at a time per connection across nodes: the token code's row
//! lock) and runs the health check of each enabled connection whose last one
//! is older than `POBLYSH_HEALTH_CHECK_SECONDS` (each due check taken by one
//! node: `connections::claim_health_check`; up to [`HEALTH_CHECKS_PER_PASS`]
//! per pass, [`HEALTH_CHECK_CONCURRENCY`] at once). What it finds is recorded
//! on the connection (`healthy`, failures in a row, last error,
//! `needs_reauth`), so the API and the dashboard show `healthy` / `degraded`
//! / `error` as it is. A node does not retry a connection's refresh at once:
//! after a refresh, not before half the look-ahead has passed (a token that
//! lives shorter than the look-ahead is not refreshed every pass); after a
//! failure, [`RETRY_AFTER_FAILURE`] later (an hour when it cannot pass, e.g.
//! no OAuth client configured).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;

use crate::db::StoreError;
use crate::db::repo::connections;
use crate::domain::ConnectionId;
use crate::services::Services;
use crate::sync::open::{self, OpenError};
use crate::sync::tokens;

/// Health checks one pass runs at most (the rest wait for the next pass).
pub const HEALTH_CHECKS_PER_PASS: u64 = 200;
/// Health checks a pass runs at once.
pub const HEALTH_CHECK_CONCURRENCY: usize = 8;
/// After a background refresh failed that may pass, how long until this node tries again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::minutes(5);
/// After one failed that cannot pass without a change, how long.
pub const RETRY_AFTER_REFUSAL: Duration = Duration::hours(1);

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

/// A node's upkeep: what it remembers between passes.
#[derive(Debug, Default)]
pub struct Upkeep {
    /// Connection → not before when its token is tried again by this node.
    not_before: HashMap<ConnectionId, DateTime<Utc>>,
}

impl Upkeep {
    /// One pass at `now`.
    pub async fn pass(
        &mut self,
        services: &Services,
        now: DateTime<Utc>,
    ) -> Result<Pass, StoreError> {
        let mut report = Pass::default();
        self.refresh_tokens(services, now, &mut report).await?;
        if let Some(every) = services.config.ops.health_check_every {
            check_health(services, now - every, now, &mut report).await?;
        }
        Ok(report)
    }

    async fn refresh_tokens(
        &mut self,
        services: &Services,
        now: DateTime<Utc>,
        report: &mut Pass,
    ) -> Result<(), StoreError> {
        let db = &services.db;
        let ahead = services.config.ops.token_refresh_ahead;
        self.not_before.retain(|_, at| *at > now);
        for (id, tenant, _) in connections::tokens_expiring(db, now + ahead).await? {
            if self.not_before.contains_key(&id) {
                continue;
            }
            let opened = match open::open(services, tenant, id).await {
                Ok(o) => o,
                Err(OpenError::Store(e)) => return Err(e),
                Err(_) => continue,
            };
            if opened.connector.capabilities().oauth.is_none() {
                continue;
            }
            let connector = opened.connector.as_ref();
            let refreshed =
                tokens::access_token_ahead(services, connector, &opened.stored, false, now, ahead)
                    .await;
            let wait = match refreshed {
                Ok(_) => {
                    report.refreshed += 1;
                    ahead / 2
                }
                Err(tokens::TokenError::Store(e)) => return Err(e),
                Err(e) => {
                    report.refresh_failed += 1;
                    let error = opened.scrubber(services).scrub(&e.to_string());
                    tracing::warn!(connection = %id, tenant_id = %tenant, provider = connector.id(), error = %error, "background token refresh failed");
                    connections::record_health(db, tenant, id, Err(&error), false, None).await?;
                    if e.is_retryable() {
                        RETRY_AFTER_FAILURE
                    } else {
                        RETRY_AFTER_REFUSAL
                    }
                }
            };
            self.not_before.insert(id, now + wait);
        }
        Ok(())
    }
}

/// Runs the due health checks (last one at or before `due_before`), a few at once.
async fn check_health(
    services: &Services,
    due_before: DateTime<Utc>,
    now: DateTime<Utc>,
    report: &mut Pass,
) -> Result<(), StoreError> {
    let db = &services.db;
    let due = connections::health_due(db, due_before, HEALTH_CHECKS_PER_PASS).await?;
    let mut checks = futures_util::stream::iter(due)
        .map(|(id, tenant)| async move {
            if !connections::claim_health_check(db, tenant, id, due_before, now).await? {
                return Ok(None);
            }
            match open::open(services, tenant, id).await {
                Ok(opened) => Ok(Some(opened.check_health(services).await?.healthy)),
                Err(OpenError::Store(e)) => Err(e),
                Err(_) => Ok(None),
            }
        })
        .buffer_unordered(HEALTH_CHECK_CONCURRENCY);
    while let Some(checked) = checks.next().await {
        if let Some(healthy) = checked? {
            report.checked += 1;
            if !healthy {
                report.unhealthy += 1;
            }
        }
    }
    Ok(())
}

/// Runs a pass every `POBLYSH_UPKEEP_SECONDS` until `shutdown` turns true.
pub async fn run(services: Arc<Services>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let every = services.config.ops.upkeep_every;
    let mut upkeep = Upkeep::default();
    loop {
        match upkeep.pass(&services, services.ambient.now()).await {
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

//! What the service starts when a connection is created, enabled, disabled or
//! deleted, as jobs (so hooks are retried like syncs and show in `GET /jobs`):
//! the connector's `Setup` hook after create or enable (and the first backfill
//! after create), its `Teardown` hook on disable or delete. A connector with a
//! teardown hook is deleted in two steps: gone for its tenant at once (in the
//! transaction that enqueues the teardown), removed once the hook has run.
//! A hook job that the connection's state has overtaken (a setup for a
//! connection disabled since, a teardown for one enabled again) does nothing.

use crate::connector::Connector;
use crate::db::StoreError;
use crate::db::repo::connections;
use crate::db::repo::jobs::{self, JobType, NewJob, Trigger};
use crate::domain::{ConnectionId, TenantId};
use crate::services::Services;

/// After a connection was created: its `Setup` hook, then its backfill.
pub async fn created(
    services: &Services,
    tenant: TenantId,
    connection: ConnectionId,
    connector: &dyn Connector,
) -> Result<(), StoreError> {
    let capabilities = connector.capabilities();
    if capabilities.hooks.setup {
        hook(services, tenant, connection, connector, JobType::Setup).await?;
    }
    if capabilities.polling.is_some() {
        super::scheduler::enqueue_backfill(services, tenant, connection, connector.id()).await?;
    }
    Ok(())
}

/// After a connection was enabled or disabled (`enabled` is the new state).
pub async fn enabled_changed(
    services: &Services,
    tenant: TenantId,
    connection: ConnectionId,
    connector: &dyn Connector,
    enabled: bool,
) -> Result<(), StoreError> {
    let hooks = connector.capabilities().hooks;
    match enabled {
        true if hooks.setup => hook(services, tenant, connection, connector, JobType::Setup).await,
        false if hooks.teardown => {
            hook(services, tenant, connection, connector, JobType::Teardown).await
        }
        _ => Ok(()),
    }
}

/// Deletes a connection: at once, or, when its connector must stop something
/// at the provider first, after its `Teardown` hook. False when the tenant has
/// no such connection.
pub async fn delete(
    services: &Services,
    tenant: TenantId,
    connection: ConnectionId,
    connector: Option<&dyn Connector>,
) -> Result<bool, StoreError> {
    let db = &services.db;
    match connector.filter(|c| c.capabilities().hooks.teardown) {
        Some(connector) => {
            let now = db.now();
            let txn = db.begin_write().await?;
            if !connections::mark_deleting(&txn, tenant, connection, now).await? {
                txn.rollback().await?;
                return Ok(false);
            }
            let job = NewJob {
                tenant,
                connection,
                provider: connector.id(),
                job_type: JobType::Teardown,
                trigger: Trigger::Manual,
            };
            jobs::enqueue_keyed(&txn, job, &format!("delete:{connection}"), now, now).await?;
            txn.commit().await?;
            db.wake_workers().await;
            Ok(true)
        }
        None => connections::delete(db, tenant, connection).await,
    }
}

async fn hook(
    services: &Services,
    tenant: TenantId,
    connection: ConnectionId,
    connector: &dyn Connector,
    job_type: JobType,
) -> Result<(), StoreError> {
    jobs::enqueue(
        &services.db,
        tenant,
        connection,
        connector.id(),
        job_type,
        Trigger::Schedule,
    )
    .await
    .map(|_| ())
}

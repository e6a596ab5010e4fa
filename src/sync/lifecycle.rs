//! What the service starts when a connection is created, enabled, disabled or
//! deleted, as jobs (so hooks are retried like syncs and show in `GET /jobs`):
//! the connector's `Setup` hook and the first backfill after create or enable,
//! its `Teardown` hook on disable or delete. A connector with a teardown hook
//! is deleted in two steps: gone for its tenant at once, removed once the hook
//! has run.

use crate::connector::Connector;
use crate::db::StoreError;
use crate::db::repo::connections;
use crate::db::repo::jobs::{self, JobType, Trigger};
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
            if !connections::mark_deleting(db, tenant, connection).await? {
                return Ok(false);
            }
            hook(services, tenant, connection, connector, JobType::Teardown).await?;
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

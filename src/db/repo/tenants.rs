//! Per-tenant settings, tenant-scoped: a job concurrency of the tenant's own
//! (running jobs at most, across nodes) instead of the global
//! `POBLYSH_TENANT_JOB_CONCURRENCY`. The job claim reads it in SQL
//! (`queue::claim`).

use sea_orm::{ConnectionTrait, Statement, Value};

use super::sql;
use crate::db::{Db, StoreError};
use crate::domain::TenantId;

/// The tenant's job concurrency override (`None`: the global default).
pub async fn job_concurrency(db: &Db, tenant: TenantId) -> Result<Option<u32>, StoreError> {
    let backend = db.backend();
    let row = db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT job_concurrency FROM tenant_settings WHERE tenant_id = $1",
            ),
            [(*tenant.as_uuid()).into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let value: Option<i32> = row.try_get("", "job_concurrency")?;
    Ok(value.and_then(|v| u32::try_from(v).ok()))
}

/// Sets (or, with `None`, clears) the tenant's job concurrency override.
pub async fn set_job_concurrency(
    db: &Db,
    tenant: TenantId,
    value: Option<u32>,
) -> Result<(), StoreError> {
    let backend = db.backend();
    let value: Value = value.map(|v| i32::try_from(v).unwrap_or(i32::MAX)).into();
    db.conn()
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "INSERT INTO tenant_settings (tenant_id, job_concurrency, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET job_concurrency = excluded.job_concurrency, \
                 updated_at = excluded.updated_at",
            ),
            [(*tenant.as_uuid()).into(), value, db.now().into()],
        ))
        .await?;
    Ok(())
}

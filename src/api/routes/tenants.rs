//! The tenant's settings (`GET/PUT /tenant/settings`): its own job
//! concurrency, overriding `POBLYSH_TENANT_JOB_CONCURRENCY` for it alone.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{ApiJson, Operator, Tenant};
use crate::db::repo::tenants;

/// Most jobs a tenant may be allowed to run at once.
pub const MAX_JOB_CONCURRENCY: u32 = 64;

/// A tenant's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSettings {
    /// Its own cap on running jobs across nodes (null: the default).
    pub job_concurrency: Option<u32>,
    /// The cap in effect: its own, else `POBLYSH_TENANT_JOB_CONCURRENCY`.
    pub effective_job_concurrency: u32,
}

/// New settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantSettings {
    /// Its own cap on running jobs (1–64), or null for the default.
    #[schema(example = 4)]
    pub job_concurrency: Option<u32>,
}

async fn settings(state: &AppState, tenant: crate::domain::TenantId) -> ApiResult<TenantSettings> {
    let own = tenants::job_concurrency(&state.0.db, tenant).await?;
    Ok(TenantSettings {
        job_concurrency: own,
        effective_job_concurrency: own.unwrap_or(state.0.config.tenant_job_concurrency),
    })
}

/// The tenant's settings.
#[utoipa::path(
    get, path = "/tenant/settings", operation_id = "getTenantSettings", tag = "tenants",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses((status = 200, description = "The settings", body = TenantSettings)),
    security(("bearer" = [])),
)]
pub async fn get(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<TenantSettings>> {
    Ok(axum::Json(settings(&state, tenant).await?))
}

/// Change the tenant's settings (its job concurrency takes effect at the next claim, on every node).
#[utoipa::path(
    put, path = "/tenant/settings", operation_id = "updateTenantSettings", tag = "tenants",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = UpdateTenantSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings", body = TenantSettings),
        (status = 400, description = "Invalid body or value", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn put(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UpdateTenantSettings>,
) -> ApiResult<axum::Json<TenantSettings>> {
    if let Some(n) = body.job_concurrency
        && !(1..=MAX_JOB_CONCURRENCY).contains(&n)
    {
        return Err(ApiError::invalid_field(
            "job_concurrency",
            format!("must be between 1 and {MAX_JOB_CONCURRENCY}, or null for the default"),
        ));
    }
    tenants::set_job_concurrency(&state.0.db, tenant, body.job_concurrency).await?;
    Ok(axum::Json(settings(&state, tenant).await?))
}

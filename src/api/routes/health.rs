//! Liveness and readiness.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// `ok` when the database answers.
    pub database: &'static str,
    /// Connectors loaded.
    pub providers: usize,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", responses((status = 200, body = Health)), security(()))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The database answers and the descriptors are loaded.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<axum::Json<Ready>> {
    if !state.0.db.ping().await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    Ok(axum::Json(Ready {
        status: "ready",
        database: "ok",
        providers: state.0.registry.len(),
    }))
}

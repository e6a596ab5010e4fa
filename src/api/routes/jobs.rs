//! Sync jobs of the tenant: enqueue (`POST /sync/{provider}`), list and read.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{ApiJson, Operator, PathId, QueryParams, Tenant};
use crate::db::repo::connections;
use crate::db::repo::cursor::Cursor;
use crate::db::repo::jobs::{self, Job, JobFilter, JobState, JobType, Trigger};
use crate::domain::ConnectionId;

/// The OpenAPI schema of a job enum: a string with its stored words (the
/// domain types know nothing of the API).
macro_rules! word_schema {
    ($t:ty, $description:literal) => {
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .description(Some($description))
                    .enum_values(Some(<$t>::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }
        impl ToSchema for $t {}
    };
}
word_schema!(
    JobType,
    "What a job runs: `full` or `incremental` sync, or a lifecycle hook (`setup`, `renew`, `teardown`)."
);
word_schema!(Trigger, "What started a job.");
word_schema!(JobState, "Where a job is.");

/// A sync job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    /// Job id.
    pub id: Uuid,
    /// Connector id.
    pub provider: String,
    /// Connection synced.
    pub connection_id: Uuid,
    /// `full`, `incremental`, `setup`, `renew` or `teardown`.
    pub job_type: JobType,
    /// `schedule`, `manual` or `webhook`.
    pub trigger: Trigger,
    /// `queued`, `running`, `succeeded`, `failed` or `retrying`.
    pub state: JobState,
    /// Attempts made.
    pub attempt: i32,
    /// Not before.
    pub run_after: DateTime<Utc>,
    /// Checkpoint at start.
    pub cursor_before: Option<String>,
    /// Checkpoint after success.
    pub cursor_after: Option<String>,
    /// Signals stored.
    pub signals_emitted: i64,
    /// Last error.
    pub error: Option<String>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        JobDto {
            id: j.id,
            provider: j.provider,
            connection_id: *j.connection_id.as_uuid(),
            job_type: j.job_type,
            trigger: j.trigger,
            state: j.state,
            attempt: j.attempt,
            run_after: j.run_after,
            cursor_before: j.cursor_before,
            cursor_after: j.cursor_after,
            signals_emitted: j.signals_emitted,
            error: j.error,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Jobs enqueued by a sync request.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncAccepted {
    /// One per connection.
    pub jobs: Vec<JobDto>,
}

/// What to sync.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// One connection; without it, every enabled connection of the tenant to the provider.
    #[serde(default)]
    pub connection_id: Option<Uuid>,
    /// `incremental` (default) or `full`.
    #[serde(default)]
    pub mode: SyncMode,
}

/// Which sync to run.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// From the initial checkpoint.
    Full,
    /// From the last checkpoint.
    #[default]
    Incremental,
}

impl From<SyncMode> for JobType {
    fn from(mode: SyncMode) -> JobType {
        match mode {
            SyncMode::Full => JobType::Full,
            SyncMode::Incremental => JobType::Incremental,
        }
    }
}

/// Query of `GET /jobs`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct JobsQuery {
    /// Connector id.
    provider: Option<String>,
    /// Connection id.
    connection_id: Option<Uuid>,
    /// `queued`, `running`, `succeeded`, `failed` or `retrying`.
    state: Option<String>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Enqueue sync jobs for the tenant's connections to a provider. Jobs run on the
/// workers; a job of the same type already queued for a connection is reused.
#[utoipa::path(
    post, path = "/sync/{provider}", operation_id = "syncProvider", tag = "jobs",
    params(("provider" = String, Path, description = "Connector id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = SyncRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Enqueued", body = SyncAccepted),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, or no such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The provider does not poll", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn sync(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(provider): Path<String>,
    ApiJson(body): ApiJson<SyncRequest>,
) -> ApiResult<(StatusCode, axum::Json<SyncAccepted>)> {
    let entry = state
        .0
        .registry
        .get(&provider)
        .ok_or_else(|| ApiError::NotFound(format!("no provider `{provider}`")))?;
    if entry.connector.capabilities().polling.is_none() {
        return Err(ApiError::Conflict(format!(
            "`{provider}` does not poll: its activity arrives by webhook"
        )));
    }
    let db = &state.0.db;
    let targets: Vec<ConnectionId> = match body.connection_id {
        Some(id) => {
            let c = connections::get(db, tenant, ConnectionId::from_uuid(id))
                .await?
                .filter(|c| c.provider == provider)
                .ok_or_else(|| ApiError::NotFound(format!("no `{provider}` connection {id}")))?;
            vec![c.id]
        }
        None => {
            let all = connections::list_for_provider(db, tenant, &provider).await?;
            let enabled: Vec<ConnectionId> = all
                .into_iter()
                .filter(|c| c.enabled)
                .map(|c| c.id)
                .collect();
            if enabled.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "no enabled `{provider}` connection for this tenant"
                )));
            }
            enabled
        }
    };
    let mut jobs_out = Vec::with_capacity(targets.len());
    for connection in targets {
        let job = jobs::enqueue(
            db,
            tenant,
            connection,
            &provider,
            body.mode.into(),
            Trigger::Manual,
        )
        .await?;
        jobs_out.push(JobDto::from(job));
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SyncAccepted { jobs: jobs_out }),
    ))
}

/// List the tenant's jobs, newest first.
#[utoipa::path(
    get, path = "/jobs", operation_id = "listJobs", tag = "jobs",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant"), JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "A bad query parameter (named in the message)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<axum::Json<JobList>> {
    let q = QueryParams::parse(
        query.as_deref(),
        &["provider", "connection_id", "state", "limit", "cursor"],
    )?;
    let filter = JobFilter {
        provider: q.text("provider").map(str::to_owned),
        connection_id: q
            .parsed("connection_id", "a UUID", |v| Uuid::parse_str(v).ok())?
            .map(ConnectionId::from_uuid),
        state: q.parsed(
            "state",
            "a job state (queued, running, succeeded, failed, retrying)",
            JobState::parse,
        )?,
    };
    let limit = q.limit(50, 100)?;
    let cursor = q.parsed("cursor", "a cursor returned by this API", Cursor::decode)?;
    let (jobs, next) = jobs::list(&state.0.db, tenant, &filter, limit, cursor).await?;
    Ok(axum::Json(JobList {
        jobs: jobs.into_iter().map(JobDto::from).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Read one job.
#[utoipa::path(
    get, path = "/jobs/{id}", operation_id = "getJob", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The job", body = JobDto),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<JobDto>> {
    jobs::get(&state.0.db, tenant, id)
        .await?
        .map(|j| axum::Json(j.into()))
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

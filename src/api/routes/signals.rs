//! `GET /signals`: the tenant's signals, filtered, newest first, keyset-paged.

use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::{Operator, QueryParams, Tenant};
use crate::db::repo::cursor::Cursor;
use crate::db::repo::signals::{self, SignalFilter};
use crate::domain::{ConnectionId, Signal};

/// A Signal.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalDto {
    /// Signal id (UUID v7).
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// Connection it came through.
    pub connection_id: Uuid,
    /// Connector id.
    #[schema(example = "github")]
    pub provider: String,
    /// Action-first kind.
    #[schema(example = "pr_merged")]
    pub kind: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// The provider's item id.
    pub external_id: String,
    /// One line for people.
    pub summary: String,
    /// `critical`, `high`, `medium`, `low` or null.
    #[schema(value_type = Option<String>)]
    pub priority: Option<crate::descriptor::mapping::Priority>,
    /// People involved.
    pub participants: Vec<String>,
    /// Tags or labels.
    pub tags: Vec<String>,
    /// Related items.
    pub related: Vec<String>,
    /// Web URL.
    pub url: Option<String>,
    /// The event and raw fields (with `include_payload=true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl SignalDto {
    fn new(s: Signal, include_payload: bool) -> Self {
        SignalDto {
            id: s.id,
            tenant_id: *s.tenant_id.as_uuid(),
            connection_id: *s.connection_id.as_uuid(),
            provider: s.provider,
            kind: s.kind,
            occurred_at: s.occurred_at,
            received_at: s.received_at,
            external_id: s.external_id,
            summary: s.summary,
            priority: s.priority,
            participants: s.participants,
            tags: s.tags,
            related: s.related,
            url: s.url,
            payload: include_payload.then_some(s.payload),
        }
    }
}

/// A page of signals.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalList {
    /// Newest first (by `occurred_at`, then id).
    pub signals: Vec<SignalDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /signals`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SignalsQuery {
    /// Connector id (`github`).
    provider: Option<String>,
    /// Connection id.
    connection_id: Option<Uuid>,
    /// Signal kind (`issue_created`).
    kind: Option<String>,
    /// Only signals that occurred after this instant (RFC 3339).
    occurred_after: Option<DateTime<Utc>>,
    /// Only signals that occurred before this instant (RFC 3339).
    occurred_before: Option<DateTime<Utc>>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Include each signal's `payload` (default false).
    include_payload: Option<bool>,
}

fn rfc3339(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v).ok().map(|t| t.to_utc())
}

/// List the tenant's signals, newest first.
#[utoipa::path(
    get, path = "/signals", operation_id = "listSignals", tag = "signals",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant"), SignalsQuery),
    responses(
        (status = 200, description = "A page of signals", body = SignalList),
        (status = 400, description = "A bad query parameter (named in the message)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<axum::Json<SignalList>> {
    let q = QueryParams::parse(
        query.as_deref(),
        &[
            "provider",
            "connection_id",
            "kind",
            "occurred_after",
            "occurred_before",
            "limit",
            "cursor",
            "include_payload",
        ],
    )?;
    let filter = SignalFilter {
        provider: q.text("provider").map(str::to_owned),
        connection_id: q
            .parsed("connection_id", "a UUID", |v| Uuid::parse_str(v).ok())?
            .map(ConnectionId::from_uuid),
        kind: q.text("kind").map(str::to_owned),
        occurred_after: q.parsed("occurred_after", "an RFC 3339 timestamp", rfc3339)?,
        occurred_before: q.parsed("occurred_before", "an RFC 3339 timestamp", rfc3339)?,
    };
    let limit = q.limit(50, 100)?;
    let cursor = q.parsed("cursor", "a cursor returned by this API", Cursor::decode)?;
    let include_payload = q
        .parsed("include_payload", "true or false", |v| match v {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        })?
        .unwrap_or(false);
    let (signals, next) = signals::list(&state.0.db, tenant, &filter, limit, cursor).await?;
    Ok(axum::Json(SignalList {
        signals: signals
            .into_iter()
            .map(|s| SignalDto::new(s, include_payload))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

#[allow(unused_imports)]
use Problem as _;

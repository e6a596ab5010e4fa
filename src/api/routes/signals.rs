//! `GET /signals`: the tenant's signals, filtered, newest first, keyset-paged
//! (or in arrival order from a position); `GET /signals/stream`: new Signals
//! as Server-Sent Events, resumable with `Last-Event-ID`.

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Operator, QueryParams, Tenant};
use crate::db::repo::arrivals::{self, Position};
use crate::db::repo::cursor::Cursor;
use crate::db::repo::signals::{self, SignalFilter};
use crate::domain::{ConnectionId, Signal, TenantId};

/// A Signal.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalDto {
    /// Signal id: derived from the event (occurrence time, then 64 bits of its
    /// dedupe hash), the same for the same event, ordered by `occurred_at`.
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
    /// The API shape of `s`, with its payload or not.
    pub fn new(s: Signal, include_payload: bool) -> Self {
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
    /// Newest first (by `occurred_at`, then id); with `after`, oldest arrival first.
    pub signals: Vec<SignalDto>,
    /// Pass as `cursor` for the next page; null on the last page. With
    /// `after`: the arrival position to pass as `after` next (always set).
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
    /// Arrival order instead: the Signals stored after this arrival position
    /// (a stream event id, a delivery's `cursor`, this list's `next_cursor`;
    /// `beginning` for all), oldest arrival first; `next_cursor` is then always set (where to go on
    /// from, or to stream from with `Last-Event-ID`). Not with `cursor`,
    /// `occurred_after` or `occurred_before`.
    after: Option<String>,
}

fn rfc3339(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v).ok().map(|t| t.to_utc())
}

/// The filters `GET /signals` and its stream share.
fn filter(q: &QueryParams) -> ApiResult<SignalFilter> {
    Ok(SignalFilter {
        provider: q.text("provider").map(str::to_owned),
        connection_id: q
            .parsed("connection_id", "a UUID", |v| Uuid::parse_str(v).ok())?
            .map(ConnectionId::from_uuid),
        kind: q.text("kind").map(str::to_owned),
        occurred_after: q.parsed("occurred_after", "an RFC 3339 timestamp", rfc3339)?,
        occurred_before: q.parsed("occurred_before", "an RFC 3339 timestamp", rfc3339)?,
    })
}

fn include_payload(q: &QueryParams) -> ApiResult<bool> {
    Ok(q.parsed("include_payload", "true or false", |v| match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    })?
    .unwrap_or(false))
}

/// An arrival position of this database, from `text` (`field` names it in
/// errors); never one ahead of its horizon (not made by this database: a
/// stream or page from it would wait, silently, for positions to catch up).
async fn position(state: &AppState, field: &str, text: &str) -> ApiResult<Position> {
    let db = &state.0.db;
    if text == "beginning" {
        return Ok(Position::beginning(db.backend()));
    }
    let p = Position::decode(text)
        .filter(|p| p.fits(db.backend()))
        .ok_or_else(|| {
            ApiError::invalid_field(field, "expected an arrival position returned by this API")
        })?;
    not_ahead(field, p, arrivals::horizon(db).await?)
}

/// `p`, unless it is ahead of `horizon` (`field` names it in the error).
pub(crate) fn not_ahead(field: &str, p: Position, horizon: Position) -> ApiResult<Position> {
    if p > horizon {
        return Err(ApiError::invalid_field(
            field,
            "this position is ahead of the database (not one of its positions)",
        ));
    }
    Ok(p)
}

/// List the tenant's signals: newest first (by `occurred_at`), or with
/// `after` in arrival order from a position (what a stream or a push
/// delivery resumes from).
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
            "after",
        ],
    )?;
    let filter = filter(&q)?;
    let limit = q.limit(50, 100)?;
    let include_payload = include_payload(&q)?;
    if let Some(after) = q.text("after") {
        if q.text("cursor").is_some() {
            return Err(ApiError::invalid_field(
                "after",
                "give `after` (arrival order) or `cursor` (newest first), not both",
            ));
        }
        if filter.occurred_after.is_some() || filter.occurred_before.is_some() {
            return Err(ApiError::invalid_field(
                "after",
                "`occurred_after` and `occurred_before` do not apply in arrival order",
            ));
        }
        let after = position(&state, "after", after).await?;
        let page = arrivals::read(&state.0.db, tenant, &filter, &[], after, None, limit).await?;
        return Ok(axum::Json(SignalList {
            next_cursor: Some(page.next.encode()),
            signals: page
                .signals
                .into_iter()
                .map(|(_, s)| SignalDto::new(s, include_payload))
                .collect(),
        }));
    }
    let cursor = q.parsed("cursor", "a cursor returned by this API", Cursor::decode)?;
    let (signals, next) = signals::list(&state.0.db, tenant, &filter, limit, cursor).await?;
    Ok(axum::Json(SignalList {
        signals: signals
            .into_iter()
            .map(|s| SignalDto::new(s, include_payload))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Query of `GET /signals/stream`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamQuery {
    /// Connector id (`github`).
    provider: Option<String>,
    /// Connection id.
    connection_id: Option<Uuid>,
    /// Signal kind (`issue_created`).
    kind: Option<String>,
    /// Include each signal's `payload` (default false).
    include_payload: Option<bool>,
    /// Start after this arrival position (an event id, a `next_cursor` of
    /// `GET /signals?after=`, `beginning`); without it and without `Last-Event-ID`: Signals
    /// arriving from now on.
    after: Option<String>,
}

/// Signals read per step of a stream.
const STREAM_BATCH: u64 = 100;

/// What a stream remembers between steps.
struct Streaming {
    state: AppState,
    tenant: TenantId,
    filter: SignalFilter,
    include_payload: bool,
    position: Position,
    stopping: tokio::sync::watch::Receiver<bool>,
    arrived: std::sync::Arc<tokio::sync::Notify>,
    done: bool,
}

/// A stream's `resync` event: it is too far behind; page `GET /signals?after=`.
fn resync(position: Position, why: &str) -> Event {
    Event::default().event("resync").data(
        serde_json::json!({
            "detail": why,
            "after": position.encode(),
        })
        .to_string(),
    )
}

impl Streaming {
    /// The next events: new Signals (waiting for them), a `resync`, or none
    /// (the node is stopping, the database failed).
    async fn next(mut self) -> Option<(Vec<Event>, Streaming)> {
        if self.done {
            return None;
        }
        let fallback = arrivals::fallback(self.state.0.db.backend());
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            let arrived = std::sync::Arc::clone(&self.arrived);
            let notified = arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let db = &self.state.0.db;
            let read = arrivals::read(
                db,
                self.tenant,
                &self.filter,
                &[],
                self.position,
                None,
                STREAM_BATCH,
            )
            .await;
            let read = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "a signal stream cannot read");
                    return None;
                }
            };
            let full = read.signals.len() as u64 >= STREAM_BATCH;
            // A filtered read that stopped looking before the horizon.
            let more = read.next < read.horizon;
            let mut events = Vec::with_capacity(read.signals.len());
            for (position, signal) in read.signals {
                let dto = SignalDto::new(signal, self.include_payload);
                let Ok(data) = serde_json::to_string(&dto) else {
                    continue;
                };
                events.push(
                    Event::default()
                        .id(position.encode())
                        .event("signal")
                        .data(data),
                );
            }
            self.position = read.next;
            if full {
                let cap = self.state.0.config.push.stream_max_backlog;
                match arrivals::backlog(db, self.tenant, self.position, cap).await {
                    Ok(n) if n > cap => {
                        events.push(resync(
                            self.position,
                            "this stream fell too far behind: page GET /signals?after= from `after`, then stream again from the last position",
                        ));
                        self.done = true;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "a signal stream cannot count its backlog")
                    }
                }
            }
            if !events.is_empty() {
                return Some((events, self));
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                () = self.state.0.ambient.sleep(fallback) => {}
                _ = self.stopping.changed() => {}
            }
        }
    }
}

/// Stream the tenant's new Signals as Server-Sent Events (`event: signal`,
/// `id`: its arrival position, `data`: the Signal), in arrival order.
/// Reconnecting with `Last-Event-ID` resumes after the last event seen, with
/// no gap and no repeat. A comment is sent every
/// `POBLYSH_STREAM_HEARTBEAT_SECONDS` while nothing happens. A stream further
/// behind than `POBLYSH_STREAM_MAX_BACKLOG` Signals gets `event: resync`
/// (`data.after`: where to page `GET /signals?after=` from) and ends.
#[utoipa::path(
    get, path = "/signals/stream", operation_id = "streamSignals", tag = "signals",
    params(
        ("X-Tenant-Id" = Uuid, Header, description = "Tenant"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: resume after it"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad query parameter or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn stream(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let q = QueryParams::parse(
        query.as_deref(),
        &[
            "provider",
            "connection_id",
            "kind",
            "include_payload",
            "after",
        ],
    )?;
    let filter = filter(&q)?;
    let include_payload = include_payload(&q)?;
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid_field("Last-Event-ID", "expected an event id of this stream")
        })?),
    };
    let start = match (last, q.text("after")) {
        (Some(id), _) => position(&state, "Last-Event-ID", id).await?,
        (None, Some(after)) => position(&state, "after", after).await?,
        (None, None) => arrivals::horizon(&state.0.db).await?,
    };
    let heartbeat = state.0.config.push.stream_heartbeat;
    let streaming = Streaming {
        tenant,
        filter,
        include_payload,
        position: start,
        stopping: state.0.stopping.subscribe(),
        arrived: state.0.db.signals_arrived(tenant),
        state,
        done: false,
    };
    let events = futures_util::stream::unfold(streaming, Streaming::next)
        .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat)))
}
#[allow(unused_imports)]
use Problem as _;

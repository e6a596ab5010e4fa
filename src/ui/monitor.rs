//! Monitoring: the tenant's connections and, for each, its health, last sync,
//! Signal counts, recent jobs and Signals (a fragment the page refreshes in
//! place), and what an operator does to it: enable or disable, test, sync
//! now, disconnect (after confirming). Each action is the API's handler.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use super::catalogue::{store_error, tenant_frame};
use super::session::SignedIn;
use super::view::{self, Frame, When, when};
use super::{FormFields, see_other};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, Operator, PathId, QueryParams, Tenant};
use crate::api::routes::connections::{self as api, UpdateConnection};
use crate::api::routes::jobs::{self as jobs_api, SyncMode, SyncRequest};
use crate::db::repo::connections::{self, Connection};
use crate::db::repo::jobs::{self, JobFilter};
use crate::db::repo::signals::{self, SignalFilter};
use crate::domain::{ConnectionId, TenantId};

/// Jobs and Signals a connection's page lists.
const RECENT: u64 = 10;

struct Row {
    id: String,
    title: String,
    provider: String,
    health: &'static str,
    status: String,
    enabled: bool,
    last_sync: Option<When>,
    last_sync_status: String,
    failures: i32,
}

impl Row {
    fn of(c: &Connection, state: &AppState, now: chrono::DateTime<chrono::Utc>) -> Self {
        let provider = state
            .0
            .registry
            .get(&c.provider)
            .map(|e| e.connector.catalogue().name.clone())
            .unwrap_or_else(|| c.provider.clone());
        Row {
            id: c.id.to_string(),
            title: c.name.clone().unwrap_or_else(|| provider.clone()),
            provider,
            health: c.health(),
            status: c.status.replace('_', " "),
            enabled: c.enabled,
            last_sync: c.last_sync.as_ref().map(|s| when(s.at, now)),
            last_sync_status: c
                .last_sync
                .as_ref()
                .map(|s| s.status.clone())
                .unwrap_or_default(),
            failures: c.consecutive_failures,
        }
    }
}

#[derive(Template)]
#[template(path = "connections.html")]
struct List {
    frame: Frame,
    rows: Vec<Row>,
    subscriptions: Vec<SubscriptionRow>,
}

/// A push subscription as the connections page shows it.
struct SubscriptionRow {
    url: String,
    state: &'static str,
    enabled: bool,
    delivered: u64,
    failures: u32,
    last_delivered: Option<When>,
    next_attempt: Option<When>,
    last_error: String,
}

impl SubscriptionRow {
    fn of(
        s: &crate::db::repo::subscriptions::Subscription,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        SubscriptionRow {
            url: url::Url::parse(&s.url)
                .map_or_else(|_| String::new(), |u| crate::engine::http::display_url(&u)),
            state: s.state.as_str(),
            enabled: s.enabled,
            delivered: s.delivered,
            failures: s.failures,
            last_delivered: s.last_delivered_at.map(|t| when(t, now)),
            next_attempt: s.next_attempt_at.map(|t| when(t, now)),
            last_error: s.last_error.clone().unwrap_or_default(),
        }
    }
}

/// `GET /ui/connections`.
pub async fn connections(signed: SignedIn, State(state): State<AppState>) -> Response {
    let (frame, tenant) = match tenant_frame(&signed, "Connections", "connections") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let now = state.0.ambient.now();
    let subscriptions = match crate::db::repo::subscriptions::list(&state.0.db, tenant).await {
        Ok(s) => s,
        Err(e) => return store_error(&e.into()),
    };
    match connections::list(&state.0.db, tenant).await {
        Ok(all) => view::page(
            StatusCode::OK,
            &List {
                frame,
                rows: all.iter().map(|c| Row::of(c, &state, now)).collect(),
                subscriptions: subscriptions
                    .iter()
                    .map(|s| SubscriptionRow::of(s, now))
                    .collect(),
            },
        ),
        Err(e) => store_error(&e.into()),
    }
}

struct JobRow {
    state: String,
    job_type: String,
    trigger: String,
    signals: i64,
    created: When,
    duration: String,
    error: String,
}

struct SignalRow {
    kind: String,
    summary: String,
    occurred: When,
    url: Option<String>,
}

#[derive(Template)]
#[template(path = "connection_live.html")]
struct Live {
    id: String,
    row: Row,
    last_sync_ms: Option<i64>,
    last_error: String,
    last_check: Option<When>,
    signals_24h: u64,
    signals_7d: u64,
    jobs_by_state: Vec<(String, u64)>,
    jobs: Vec<JobRow>,
    signals: Vec<SignalRow>,
    credentials: Vec<(String, bool)>,
    as_of: When,
}

#[derive(Template)]
#[template(path = "connection.html")]
struct Page {
    frame: Frame,
    live: Live,
    notice: Option<&'static str>,
    polls: bool,
    oauth: bool,
}

fn millis(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1_000.0)
    }
}

/// One of the tenant's connections, or the page saying there is none (or
/// that it could not be read).
async fn owned(state: &AppState, tenant: TenantId, id: Uuid) -> Result<Connection, Response> {
    match connections::get(&state.0.db, tenant, ConnectionId::from_uuid(id)).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(failed(&ApiError::NotFound(String::new()))),
        Err(e) => Err(store_error(&e.into())),
    }
}

/// The refreshing part of a connection's page, and whether its connector
/// polls and uses OAuth.
async fn live(
    state: &AppState,
    tenant: TenantId,
    id: Uuid,
) -> Result<(Live, bool, bool), Response> {
    let db = &state.0.db;
    let connection_id = ConnectionId::from_uuid(id);
    let now = state.0.ambient.now();
    let c = owned(state, tenant, id).await?;
    let stats = api::connection_stats(state, tenant, id)
        .await
        .map_err(|e| store_error(&e))?;
    let filter = JobFilter {
        connection_id: Some(connection_id),
        ..Default::default()
    };
    let (recent_jobs, _) = jobs::list(db, tenant, &filter, RECENT, None)
        .await
        .map_err(|e| store_error(&e.into()))?;
    let filter = SignalFilter {
        connection_id: Some(connection_id),
        ..Default::default()
    };
    let (recent_signals, _) = signals::list(db, tenant, &filter, RECENT, None)
        .await
        .map_err(|e| store_error(&e.into()))?;
    let entry = state.0.registry.get(&c.provider);
    let stored = connections::credentials(db, &state.0.keys, tenant, connection_id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let credentials = entry
        .as_ref()
        .map(|e| {
            e.connector
                .catalogue()
                .credential_fields
                .iter()
                .map(|f| (f.label.clone(), stored.contains_key(&f.key)))
                .collect()
        })
        .unwrap_or_default();
    let polls = entry
        .as_ref()
        .is_some_and(|e| e.connector.capabilities().polling.is_some());
    let oauth = entry
        .as_ref()
        .is_some_and(|e| e.connector.capabilities().oauth.is_some());
    let live = Live {
        id: id.to_string(),
        row: Row::of(&c, state, now),
        last_sync_ms: c.last_sync.as_ref().map(|s| s.ms),
        last_error: c.last_error.clone().unwrap_or_default(),
        last_check: c.last_health_check.map(|t| when(t, now)),
        signals_24h: stats.signals.last_24h,
        signals_7d: stats.signals.last_7d,
        jobs_by_state: stats.jobs_last_7d.into_iter().collect(),
        jobs: recent_jobs
            .into_iter()
            .map(|j| JobRow {
                state: j.state.as_str().to_owned(),
                job_type: j.job_type.as_str().to_owned(),
                trigger: j.trigger.as_str().to_owned(),
                signals: j.signals_emitted,
                created: when(j.created_at, now),
                duration: match (j.started_at, j.finished_at) {
                    (Some(s), Some(f)) => millis((f - s).num_milliseconds().max(0)),
                    _ => String::new(),
                },
                error: j.error.unwrap_or_default(),
            })
            .collect(),
        signals: recent_signals
            .into_iter()
            .map(|s| SignalRow {
                kind: s.kind,
                summary: s.summary,
                occurred: when(s.occurred_at, now),
                url: s.url.filter(|u| view::linkable(u)),
            })
            .collect(),
        credentials,
        as_of: when(now, now),
    };
    Ok((live, polls, oauth))
}

fn notice(query: Option<&str>) -> Option<&'static str> {
    let q = QueryParams::parse_lenient(query);
    Some(match q.text("done")? {
        "connected" => "Connected. The first sync has started.",
        "enabled" => "Enabled: it syncs again.",
        "disabled" => "Disabled: it no longer syncs.",
        "tested" => "Connection tested: see its health below.",
        "synced" => "A sync is queued.",
        _ => return None,
    })
}

/// `GET /ui/connections/{id}`.
pub async fn connection(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
    RawQuery(query): RawQuery,
) -> Response {
    let (frame, tenant) = match tenant_frame(&signed, "Connection", "connections") {
        Ok(f) => f,
        Err(r) => return r,
    };
    match live(&state, tenant, id).await {
        Ok((live, polls, oauth)) => {
            let mut frame = frame;
            frame.title = live.row.title.clone();
            view::page(
                StatusCode::OK,
                &Page {
                    frame,
                    live,
                    notice: notice(query.as_deref()),
                    polls,
                    oauth,
                },
            )
        }
        Err(r) => r,
    }
}

/// `GET /ui/connections/{id}/live`: the part of the page that refreshes.
pub async fn live_fragment(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Response {
    let Some(tenant) = signed.tenant() else {
        return view::error_page(StatusCode::BAD_REQUEST, "Choose a tenant first.");
    };
    match live(&state, tenant, id).await {
        Ok((live, _, _)) => view::page(StatusCode::OK, &live),
        Err(r) => r,
    }
}

/// An action's failure, as a page.
fn failed(e: &ApiError) -> Response {
    match e {
        ApiError::NotFound(_) => {
            view::error_page(StatusCode::NOT_FOUND, "This tenant has no such connection.")
        }
        ApiError::Conflict(m) => view::error_page(StatusCode::CONFLICT, m),
        ApiError::BadRequest { message, .. } => view::error_page(StatusCode::BAD_REQUEST, message),
        e => store_error(e),
    }
}

fn back(id: Uuid, done: &str) -> Response {
    see_other(&format!("/ui/connections/{id}?done={done}"))
}

/// `POST /ui/connections/{id}/enabled` (`enabled=true|false`).
pub async fn set_enabled(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
    form: FormFields,
) -> Response {
    let Some(tenant) = signed.tenant() else {
        return see_other("/ui/tenant");
    };
    let enabled = form.get("enabled") == Some("true");
    let body = UpdateConnection {
        enabled: Some(enabled),
        credentials: None,
        config: None,
        name: None,
    };
    match api::update(
        Operator,
        Tenant(tenant),
        State(state),
        PathId(id),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => back(id, if enabled { "enabled" } else { "disabled" }),
        Err(e) => failed(&e),
    }
}

/// `POST /ui/connections/{id}/test`: the health check with the stored
/// credentials (recorded on the connection, as through the API).
pub async fn test(signed: SignedIn, State(state): State<AppState>, PathId(id): PathId) -> Response {
    let Some(tenant) = signed.tenant() else {
        return see_other("/ui/tenant");
    };
    match api::test(Operator, Tenant(tenant), State(state), PathId(id)).await {
        Ok(_) => back(id, "tested"),
        Err(e) => failed(&e),
    }
}

/// `POST /ui/connections/{id}/sync`: an incremental sync now.
pub async fn sync(signed: SignedIn, State(state): State<AppState>, PathId(id): PathId) -> Response {
    let Some(tenant) = signed.tenant() else {
        return see_other("/ui/tenant");
    };
    let provider = match owned(&state, tenant, id).await {
        Ok(c) => c.provider,
        Err(r) => return r,
    };
    let body = SyncRequest {
        connection_id: Some(id),
        mode: SyncMode::default(),
    };
    match jobs_api::sync(
        Operator,
        Tenant(tenant),
        State(state),
        Path(provider),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => back(id, "synced"),
        Err(e) => failed(&e),
    }
}

/// `POST /ui/connections/{id}/reauthorize`: the provider's OAuth flow again,
/// for this connection in place (`POST /connect/{provider}` with its id).
pub async fn reauthorize(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Response {
    let (frame, tenant) = match tenant_frame(&signed, "Re-authorize", "connections") {
        Ok(f) => f,
        Err(r) => return r,
    };
    let provider = match owned(&state, tenant, id).await {
        Ok(c) => c.provider,
        Err(r) => return r,
    };
    let entry = match super::catalogue::entry(&state, &provider) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let request = serde_json::json!({"connection_id": id});
    match super::catalogue::authorize(&state, tenant, &entry, frame, request).await {
        Ok(page) => page,
        Err(outcome) => view::error_page(
            StatusCode::BAD_REQUEST,
            outcome
                .error
                .as_deref()
                .unwrap_or("The authorization could not start."),
        ),
    }
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct Confirm {
    frame: Frame,
    id: String,
    title: String,
}

/// `GET /ui/connections/{id}/delete`: are you sure?
pub async fn confirm_delete(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Response {
    let (frame, tenant) = match tenant_frame(&signed, "Disconnect", "connections") {
        Ok(f) => f,
        Err(r) => return r,
    };
    match owned(&state, tenant, id).await {
        Ok(c) => {
            let title = Row::of(&c, &state, state.0.ambient.now()).title;
            view::page(
                StatusCode::OK,
                &Confirm {
                    frame,
                    id: id.to_string(),
                    title,
                },
            )
        }
        Err(r) => r,
    }
}

/// `POST /ui/connections/{id}/delete`: disconnect.
pub async fn delete(
    signed: SignedIn,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Response {
    let Some(tenant) = signed.tenant() else {
        return see_other("/ui/tenant");
    };
    match api::delete(Operator, Tenant(tenant), State(state), PathId(id)).await {
        Ok(_) => see_other("/ui/connections"),
        Err(e) => failed(&e),
    }
}

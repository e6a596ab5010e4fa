//! `/subscriptions`: where the tenant's Signals are pushed (signed, in
//! arrival order, retried until taken). The signing secret is made by the
//! service and shown once, on create and on rotation.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{ApiJson, Operator, PathId, Tenant};
use crate::db::repo::arrivals::{self, Position};
use crate::db::repo::cursor::Cursor;
use crate::db::repo::subscriptions::{self, NewSubscription, Subscription, SubscriptionPatch};
use crate::domain::{ConnectionId, SubscriptionId, TenantId};
use crate::engine::http::check_url;
use crate::push::signing::SigningKey;

/// Kinds a subscription may filter on at most.
const MAX_KINDS: usize = 50;
/// The longest target URL.
const MAX_URL: usize = 2048;

/// A subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDto {
    /// Id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Only Signals of this connector.
    pub provider: Option<String>,
    /// Only Signals of this connection.
    pub connection_id: Option<Uuid>,
    /// Only Signals of these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Whether each Signal carries its payload.
    pub include_payload: bool,
    /// Whether deliveries run.
    pub enabled: bool,
    /// `active`, `failing` (the retry schedule ran out: re-enable with
    /// `PATCH {"enabled": true}` to retry) or `disabled` (the subscriber answered 410).
    #[schema(example = "active")]
    pub state: String,
    /// Delivered up to (an arrival position: pass as `start` or `Last-Event-ID`).
    pub cursor: String,
    /// A batch is being delivered (or retried).
    pub pending: bool,
    /// Failed attempts of that batch in a row.
    pub failures: u32,
    /// When it is tried again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last batch taken.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Signals delivered in all.
    pub delivered: u64,
    /// After a rotation: until when the previous secret signs too.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Changed.
    pub updated_at: DateTime<Utc>,
    /// The signing secret (`whsec_…`): only in the answer to a create or a
    /// rotation, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<Subscription> for SubscriptionDto {
    fn from(s: Subscription) -> Self {
        SubscriptionDto {
            id: *s.id.as_uuid(),
            url: s.url,
            provider: s.provider,
            connection_id: s.connection_id.map(|c| *c.as_uuid()),
            kinds: s.kinds,
            include_payload: s.include_payload,
            enabled: s.enabled,
            state: s.state.as_str().to_owned(),
            cursor: s.position,
            pending: s.pending.is_some(),
            failures: s.failures,
            next_attempt_at: s.next_attempt_at,
            last_status: s.last_status,
            last_error: s.last_error,
            last_attempt_at: s.last_attempt_at,
            last_delivered_at: s.last_delivered_at,
            delivered: s.delivered,
            previous_secret_until: s.previous_until,
            created_at: s.created_at,
            updated_at: s.updated_at,
            secret: None,
        }
    }
}

/// The tenant's subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    /// Oldest first.
    pub subscriptions: Vec<SubscriptionDto>,
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Where to POST deliveries (https in production; private addresses
    /// only where `POBLYSH_ALLOW_PRIVATE_NETWORKS` allows them).
    #[schema(example = "https://core.example.com/poblysh/signals")]
    pub url: String,
    /// Only Signals of this connector.
    #[serde(default)]
    pub provider: Option<String>,
    /// Only Signals of this connection.
    #[serde(default)]
    pub connection_id: Option<Uuid>,
    /// Only Signals of these kinds.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Include each Signal's payload (default false).
    #[serde(default)]
    pub include_payload: Option<bool>,
    /// Deliver at once (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Where delivery starts: `now` (default: Signals arriving from now on),
    /// `beginning` (every stored Signal), an arrival position (a delivery's
    /// `cursor`, a stream event id, a `next_cursor` of `GET /signals?after=`),
    /// or a `next_cursor` of `GET /signals` (Signals that arrived after the
    /// last one of that page).
    #[serde(default)]
    #[schema(example = "now")]
    pub start: Option<String>,
}

/// Changes to a subscription (absent fields stay; `null` clears a filter).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// New target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New connector filter (null: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub provider: Option<Value>,
    /// New connection filter (null: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub connection_id: Option<Value>,
    /// New kinds filter (null or empty: all).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub kinds: Option<Value>,
    /// Payloads or not.
    #[serde(default)]
    pub include_payload: Option<bool>,
    /// Pause (`false`) or resume (`true`; also ends a `failing` or
    /// `disabled` state and retries the pending batch at once).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `true`: a new signing secret, answered once; the old one keeps signing
    /// beside it for `POBLYSH_PUSH_SECRET_GRACE_HOURS`.
    #[serde(default)]
    pub rotate_secret: Option<bool>,
    /// Move the cursor (as `start` on create): replay, or skip ahead.
    #[serde(default)]
    pub start: Option<String>,
}

/// A field that is present, `null` included (absent: `None` by default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no subscription {id}"))
}

/// The target URL, checked: a URL, http(s) (https in production), short,
/// no credentials, allowed by the SSRF guard.
fn target(state: &AppState, url: &str) -> ApiResult<String> {
    let bad = |m: String| ApiError::invalid_field("url", m);
    if url.len() > MAX_URL {
        return Err(bad(format!("longer than {MAX_URL} bytes")));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
    if state.0.config.production && parsed.scheme() != "https" {
        return Err(bad("must be https in production".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry credentials".into()));
    }
    check_url(&parsed, state.0.http.policy()).map_err(|e| bad(e.to_string()))?;
    Ok(parsed.to_string())
}

/// The position `start` names for the tenant: never ahead of the horizon
/// (a position there could still be filled by a transaction in flight, or
/// was not made by this database).
async fn start_position(
    state: &AppState,
    tenant: TenantId,
    start: Option<&str>,
    field: &str,
) -> ApiResult<Position> {
    let db = &state.0.db;
    let backend = db.backend();
    let horizon = arrivals::horizon(db).await?;
    match start.map(str::trim) {
        None | Some("now") => Ok(horizon),
        Some("beginning") => Ok(Position::beginning(backend)),
        Some(text) => {
            if let Some(p) = Position::decode(text).filter(|p| p.fits(backend)) {
                return super::signals::not_ahead(field, p, horizon);
            }
            let Some(cursor) = Cursor::decode(text) else {
                return Err(ApiError::invalid_field(
                    field,
                    "expected `now`, `beginning`, an arrival position or a `GET /signals` cursor",
                ));
            };
            let at = arrivals::position_of(db, tenant, cursor.id)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid_field(field, "the cursor's Signal is no longer stored")
                })?;
            // Not past a transaction still in flight: a few repeats at most.
            Ok(at.min(horizon))
        }
    }
}

/// A filter that names a connection of another tenant (or none), or a
/// connector this node does not know, would deliver nothing, silently.
async fn check_filters(
    state: &AppState,
    tenant: TenantId,
    provider: Option<&str>,
    connection: Option<ConnectionId>,
) -> ApiResult<()> {
    if let Some(p) = provider
        && state.0.registry.get(p).is_none()
    {
        return Err(ApiError::invalid_field(
            "provider",
            format!("no connector `{p}`"),
        ));
    }
    if let Some(c) = connection
        && crate::db::repo::connections::get(&state.0.db, tenant, c)
            .await?
            .is_none()
    {
        return Err(ApiError::invalid_field(
            "connection_id",
            format!("the tenant has no connection {c}"),
        ));
    }
    Ok(())
}

fn kinds(list: Vec<String>) -> ApiResult<Vec<String>> {
    if list.len() > MAX_KINDS || list.iter().any(|k| k.is_empty() || k.len() > 100) {
        return Err(ApiError::invalid_field(
            "kinds",
            format!("at most {MAX_KINDS} kinds, each 1-100 characters"),
        ));
    }
    Ok(list)
}

fn nullable_text(value: Value, field: &str) -> ApiResult<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() && s.len() <= 100 => Ok(Some(s)),
        _ => Err(ApiError::invalid_field(field, "expected a string or null")),
    }
}

/// List the tenant's subscriptions.
#[utoipa::path(
    get, path = "/subscriptions", operation_id = "listSubscriptions", tag = "subscriptions",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The subscriptions", body = SubscriptionList),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<SubscriptionList>> {
    let list = subscriptions::list(&state.0.db, tenant).await?;
    Ok(axum::Json(SubscriptionList {
        subscriptions: list.into_iter().map(SubscriptionDto::from).collect(),
    }))
}

/// Subscribe: the tenant's Signals are pushed to `url`, signed with the
/// secret in the answer (shown this once).
#[utoipa::path(
    post, path = "/subscriptions", operation_id = "createSubscription", tag = "subscriptions",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = CreateSubscription, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = SubscriptionDto),
        (status = 400, description = "Invalid body, URL, filter or start (named in the message)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has the most subscriptions it may", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateSubscription>,
) -> ApiResult<(StatusCode, axum::Json<SubscriptionDto>)> {
    let url = target(&state, &body.url)?;
    let provider = body
        .provider
        .map(|p| nullable_text(Value::String(p), "provider"))
        .transpose()?
        .flatten();
    let kinds = kinds(body.kinds.unwrap_or_default())?;
    let connection_id = body.connection_id.map(ConnectionId::from_uuid);
    check_filters(&state, tenant, provider.as_deref(), connection_id).await?;
    let position = start_position(&state, tenant, body.start.as_deref(), "start").await?;
    let db = &state.0.db;
    if subscriptions::count(db, tenant).await? >= subscriptions::PER_TENANT {
        return Err(ApiError::Conflict(format!(
            "a tenant may have at most {} subscriptions",
            subscriptions::PER_TENANT
        )));
    }
    let secret = SigningKey::generate(&state.0.ambient);
    let new = NewSubscription {
        url,
        provider,
        connection_id,
        kinds,
        include_payload: body.include_payload.unwrap_or(false),
        enabled: body.enabled.unwrap_or(true),
        position: position.encode(),
    };
    let created = subscriptions::create(db, &state.0.keys, tenant, new, &secret).await?;
    let mut dto = SubscriptionDto::from(created);
    dto.secret = Some(secret.expose_secret().to_owned());
    Ok((StatusCode::CREATED, axum::Json(dto)))
}

/// One subscription.
#[utoipa::path(
    get, path = "/subscriptions/{id}", operation_id = "getSubscription", tag = "subscriptions",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant"), ("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionDto),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<SubscriptionDto>> {
    subscriptions::get(&state.0.db, tenant, SubscriptionId::from_uuid(id))
        .await?
        .map(|s| axum::Json(s.into()))
        .ok_or_else(|| not_found(id))
}

/// Change, pause or resume a subscription, rotate its secret, or move its cursor.
#[utoipa::path(
    patch, path = "/subscriptions/{id}", operation_id = "updateSubscription", tag = "subscriptions",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant"), ("id" = Uuid, Path, description = "Subscription id")),
    request_body(content = UpdateSubscription, content_type = "application/json"),
    responses(
        (status = 200, description = "The subscription (`secret` only after a rotation)", body = SubscriptionDto),
        (status = 400, description = "Invalid body, URL, filter or start", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateSubscription>,
) -> ApiResult<axum::Json<SubscriptionDto>> {
    let mut patch = SubscriptionPatch {
        url: body.url.as_deref().map(|u| target(&state, u)).transpose()?,
        provider: body
            .provider
            .map(|p| nullable_text(p, "provider"))
            .transpose()?,
        include_payload: body.include_payload,
        enabled: body.enabled,
        ..SubscriptionPatch::default()
    };
    if let Some(c) = body.connection_id {
        patch.connection_id = Some(match c {
            Value::Null => None,
            Value::String(s) => Some(ConnectionId::from_uuid(Uuid::parse_str(&s).map_err(
                |_| ApiError::invalid_field("connection_id", "expected a UUID or null"),
            )?)),
            _ => {
                return Err(ApiError::invalid_field(
                    "connection_id",
                    "expected a UUID or null",
                ));
            }
        });
    }
    if let Some(k) = body.kinds {
        let list: Option<Vec<String>> = serde_json::from_value(k)
            .map_err(|_| ApiError::invalid_field("kinds", "expected a list of strings or null"))?;
        patch.kinds = Some(kinds(list.unwrap_or_default())?);
    }
    check_filters(
        &state,
        tenant,
        patch.provider.as_ref().and_then(Option::as_deref),
        patch.connection_id.flatten(),
    )
    .await?;
    if let Some(start) = body.start.as_deref() {
        patch.position = Some(
            start_position(&state, tenant, Some(start), "start")
                .await?
                .encode(),
        );
    }
    let secret = body
        .rotate_secret
        .unwrap_or(false)
        .then(|| SigningKey::generate(&state.0.ambient));
    if let Some(secret) = &secret {
        let until = state.0.ambient.now() + state.0.config.push.secret_grace;
        patch.rotate = Some((secret.clone(), until));
    }
    let updated = subscriptions::update(
        &state.0.db,
        &state.0.keys,
        tenant,
        SubscriptionId::from_uuid(id),
        patch,
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    let mut dto = SubscriptionDto::from(updated);
    dto.secret = secret.map(|s| s.expose_secret().to_owned());
    Ok(axum::Json(dto))
}

/// Unsubscribe (a delivery in flight may still arrive).
#[utoipa::path(
    delete, path = "/subscriptions/{id}", operation_id = "deleteSubscription", tag = "subscriptions",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant"), ("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let sub_id = SubscriptionId::from_uuid(id);
    if subscriptions::delete(&state.0.db, tenant, sub_id).await? {
        // Its lease too (a deliverer that still runs it removes it again when it stops).
        crate::db::repo::leases::forget(&state.0.db, &crate::push::deliver::lease(sub_id)).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

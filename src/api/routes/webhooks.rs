//! `POST /webhooks/{provider}[/{tenant_id}]`: provider deliveries. Public (the
//! signature or token is the authentication). The body is read up to 256 KB
//! (413 beyond, nothing stored) and handed to the gateway as raw bytes.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::domain::TenantId;
use crate::engine::webhook::WebhookRequest;
use crate::gateway::Reply;

/// Largest webhook body accepted.
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// What a delivery became.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// `accepted`, `ignored` (an event the connector does not handle),
    /// `duplicate` (delivery id seen before) or `dropped` (no connection).
    pub status: &'static str,
    /// The event type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Signals stored.
    pub signals: usize,
    /// Why it was dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// A delivery for one tenant (the connection's secret, or the app's).
#[utoipa::path(
    post, path = "/webhooks/{provider}/{tenant_id}", operation_id = "receive_tenant_webhook", tag = "webhooks",
    params(("provider" = String, Path, description = "Connector id"), ("tenant_id" = String, Path, description = "Tenant (UUID)")),
    request_body(content = String, description = "The provider's payload, as sent", content_type = "application/json"),
    responses(
        (status = 200, description = "Verified and stored, or a handshake answered", body = WebhookAck),
        (status = 202, description = "No connection to deliver to: dropped", body = WebhookAck),
        (status = 400, description = "Not JSON, or no event type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Signature or token does not verify; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, or one without webhooks", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the connection's rate limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Could not be stored; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn receive_for_tenant(
    State(state): State<AppState>,
    Path((provider, tenant)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    match tenant.parse::<TenantId>() {
        Ok(tenant) => handle(state, provider, Some(tenant), method, uri, headers, body).await,
        // A method webhooks are not sent with is refused as such (405), however
        // the path looks; only a handshake that needs no tenant is answered.
        Err(_) if method != Method::POST => {
            handle(state, provider, None, method, uri, headers, body).await
        }
        Err(_) => Err(ApiError::invalid_field("tenant_id", "must be a UUID")),
    }
}

/// A delivery routed by a value in it (Slack `team_id`, GitHub repository, …):
/// app-level secret.
#[utoipa::path(
    post, path = "/webhooks/{provider}", operation_id = "receive_webhook", tag = "webhooks",
    params(("provider" = String, Path, description = "Connector id")),
    request_body(content = String, description = "The provider's payload, as sent", content_type = "application/json"),
    responses(
        (status = 200, description = "Verified and stored, or a handshake answered", body = WebhookAck),
        (status = 202, description = "No connection matches the routing value: dropped", body = WebhookAck),
        (status = 400, description = "Not JSON, or no event type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Signature or token does not verify; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown provider, or one without routing", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 256 KB", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over the connection's rate limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Could not be stored; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    handle(state, provider, None, method, uri, headers, body).await
}

/// Non-POST requests to the same paths (Trello's `HEAD` check): handshakes only.
pub async fn other_for_tenant(
    state: State<AppState>,
    path: Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive_for_tenant(state, path, method, uri, headers, body).await
}

/// Non-POST requests to the tenant-less path: handshakes only.
pub async fn other(
    state: State<AppState>,
    path: Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(state, path, method, uri, headers, body).await
}

async fn handle(
    state: AppState,
    provider: String,
    tenant: Option<TenantId>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    crate::api::trace::record("provider", &provider);
    if let Some(t) = tenant {
        crate::api::trace::record("tenant_id", t);
    }
    // A body somewhat over the limit is still read (up to the API's own limit)
    // and dropped, so the sender gets its 413 rather than a connection closed
    // under a request it is still writing; far beyond that, it is refused unread.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::api::BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = axum::body::to_bytes(body, crate::api::BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    if body.len() > WEBHOOK_BODY_LIMIT {
        return Err(ApiError::PayloadTooLarge);
    }
    let callback_url = callback_url(state.0.config.public_url.as_deref(), &headers, &uri);
    let request = WebhookRequest::new(
        method,
        headers,
        uri.query().map(str::to_owned),
        body,
        callback_url,
    );
    // A panic in a connector's webhook code is this request's 500, not a
    // dropped connection.
    let handled = std::panic::AssertUnwindSafe(state.0.gateway.handle(
        &provider,
        tenant,
        request,
        state.0.ambient.now(),
    ))
    .catch_unwind()
    .await;
    let reply = match handled {
        Ok(reply) => reply?,
        Err(_) => {
            return Err(ApiError::Internal(format!(
                "the `{provider}` webhook handler panicked"
            )));
        }
    };
    Ok(match reply {
        Reply::Handshake(h) => {
            let status = StatusCode::from_u16(h.status).unwrap_or(StatusCode::OK);
            let mut response = match h.body {
                Some(text) => (
                    status,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    )],
                    text,
                )
                    .into_response(),
                None => status.into_response(),
            };
            // The provider's format, whatever the status.
            response
                .extensions_mut()
                .insert(crate::api::error::NotAProblem);
            response
        }
        Reply::Accepted {
            event,
            handled,
            signals,
            duplicate,
        } => {
            let status = match (duplicate, handled) {
                (true, _) => "duplicate",
                (false, true) => "accepted",
                (false, false) => "ignored",
            };
            let ack = WebhookAck {
                status,
                event: Some(event),
                signals,
                reason: None,
            };
            (StatusCode::OK, axum::Json(ack)).into_response()
        }
        Reply::Dropped { reason } => {
            let ack = WebhookAck {
                status: "dropped",
                event: None,
                signals: 0,
                reason: Some(reason),
            };
            (StatusCode::ACCEPTED, axum::Json(ack)).into_response()
        }
    })
}

/// The URL the provider was given: `POBLYSH_PUBLIC_URL` (else `http://<Host>`)
/// plus the path and query as received.
fn callback_url(public_url: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    let base = match public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let path_and_query = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    format!("{base}{path_and_query}")
}

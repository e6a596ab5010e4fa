//! Every request runs in a `request` span carrying its request id (the
//! caller's `X-Request-Id` when it is a sane one, else a new UUID v7, sent back
//! in the response's `X-Request-Id`), method and route template; the tenant
//! and provider are recorded on it once known (the `Tenant` extractor, the
//! webhook routes), so a JSON log line can be traced to its request, tenant
//! and provider.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header a request id comes in and goes out in.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest request id taken from a caller.
pub const MAX_REQUEST_ID: usize = 128;

/// The caller's request id, when it is 1–128 visible ASCII characters.
fn given(request: &Request) -> Option<String> {
    let value = request.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value.bytes().all(|b| b.is_ascii_graphic()))
    .then(|| value.to_owned())
}

/// Runs the request in its span and answers with its request id.
pub async fn request(request: Request, next: Next) -> Response {
    let id = given(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // At the highest level: any line a filter lets through keeps its context.
    let span = tracing::error_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        tenant_id = tracing::field::Empty,
        provider = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Records a field (`tenant_id`, `provider`) on the current request's span.
pub fn record(field: &'static str, value: impl std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}

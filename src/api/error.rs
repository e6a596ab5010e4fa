//! The API's one error type. Every failure becomes `application/problem+json`
//! `{code, message, details?, retry_after?}` with the right status; internal
//! errors are logged here and answered with a generic message, never internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::db::StoreError;
use crate::gateway::GatewayError;

/// The problem+json body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Machine-readable code (`not_found`, `invalid_request`, …).
    #[schema(example = "invalid_request")]
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Structured detail (field errors, descriptor diagnostics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Seconds to wait before retrying (429, 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// Field-level detail.
        details: Option<Value>,
    },
    /// 401: missing or invalid operator token.
    #[error("missing or invalid operator token")]
    Unauthorized,
    /// 401: a webhook whose signature or token does not verify.
    #[error("{0}")]
    WebhookRejected(String),
    /// 404: no such resource (or another tenant's).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route does not take this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is too large.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 414: the URL is longer than the API reads.
    #[error("the request URL is longer than {0} bytes")]
    UriTooLong(usize),
    /// 415: the body's content type is not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but semantically invalid (a descriptor with diagnostics).
    #[error("{message}")]
    Unprocessable {
        /// What is wrong.
        message: String,
        /// Detail (diagnostics).
        details: Option<Value>,
    },
    /// 429: over a rate limit; retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What is limited.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 502: the provider failed (e.g. its token endpoint).
    #[error("{0}")]
    BadGateway(String),
    /// 503: a dependency is not ready.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged in full, answered generically.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    /// A 400 naming the offending query or body field.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            message: format!("{field}: {message}"),
            details: Some(
                serde_json::json!({"errors": [{"field": field, "message": message.to_string()}]}),
            ),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::WebhookRejected(_) => (StatusCode::UNAUTHORIZED, "webhook_rejected"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::BadGateway(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::NotFound(m) => ApiError::NotFound(m),
            GatewayError::MethodNotAllowed(_) => ApiError::MethodNotAllowed(e.to_string()),
            GatewayError::Rejected(_) => ApiError::WebhookRejected(e.to_string()),
            GatewayError::BadBody(m) => ApiError::bad_request(m),
            GatewayError::RateLimited(retry_after) => ApiError::TooManyRequests {
                message: e.to_string(),
                retry_after,
            },
            GatewayError::Unavailable | GatewayError::VerifierUnavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
            GatewayError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let details = match &self {
            ApiError::BadRequest { details, .. } | ApiError::Unprocessable { details, .. } => {
                details.clone()
            }
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let body = Problem {
            code: code.to_owned(),
            message: self.to_string(),
            details,
            retry_after,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Marks a response that is deliberately not problem+json (a webhook
/// handshake's answer, in the provider's own format).
#[derive(Debug, Clone, Copy)]
pub struct NotAProblem;

/// Longest request URL (path and query) the API reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Refuses URLs over [`MAX_URI_BYTES`] with a problem.
pub async fn bound_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong(MAX_URI_BYTES).into_response();
    }
    next.run(request).await
}

/// Every error answer is problem+json, including those made below the
/// handlers (body-limit and extractor rejections, the method router's 405):
/// one that is not is rewritten from its status (its short text kept as the
/// message).
pub async fn problems_only(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error())
        || is_problem
        || response.extensions().get::<NotAProblem>().is_some()
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= 300);
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    });
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong(MAX_URI_BYTES),
        StatusCode::NOT_FOUND => ApiError::NotFound(message),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(message),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable {
            message,
            details: None,
        },
        s if s.is_server_error() => ApiError::Internal(message),
        _ => ApiError::bad_request(message),
    };
    let mut rewritten = error.into_response();
    // The original status stands (a 400 variant stands in for other 4xx),
    // and headers such as `Allow` are kept.
    *rewritten.status_mut() = status;
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

//! Calls to Google's REST APIs for the native connectors: JSON requests with
//! the connection's access token (kept out of every error), bounded responses,
//! failures classified as for every connector (401 → refresh once, 429 → wait,
//! 5xx → the job is retried), and the status of a refused call for the flows that act on
//! one (Gmail's 404 for a history too old, Calendar's 410).

use http::{HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::connector::{ConnectionContext, ConnectorError};
use crate::engine::health::HealthResult;
use crate::engine::http::{HttpClient, HttpRequest, RetryPolicy};

/// Largest response read from Google (a page of history, changes or events).
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// A client for one connection's calls.
#[derive(Debug, Clone, Copy)]
pub struct Api<'a> {
    http: &'a HttpClient,
    token: &'a SecretString,
    /// Which API, for errors ("Gmail").
    name: &'static str,
}

/// The status Google refused a call with, if it answered one.
pub fn status(e: &ConnectorError) -> Option<u16> {
    match e {
        ConnectorError::Http(e) | ConnectorError::Unauthorized(e) => e.status(),
        _ => None,
    }
}

impl<'a> Api<'a> {
    /// The client of a connection: its access token is required.
    pub fn new(ctx: &'a ConnectionContext<'_>, name: &'static str) -> Result<Self, ConnectorError> {
        let token = ctx
            .credentials
            .access_token
            .as_ref()
            .ok_or_else(|| ConnectorError::Other {
                message: format!("{name}: the connection has no access token"),
                retryable: false,
            })?;
        Ok(Api {
            http: ctx.http,
            token,
            name,
        })
    }

    /// `GET url`, the JSON answer read as `T`.
    pub async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, ConnectorError> {
        self.call(Method::GET, url, None).await
    }

    /// `POST url` with a JSON body, the JSON answer read as `T`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        url: Url,
        body: &Value,
    ) -> Result<T, ConnectorError> {
        self.call(Method::POST, url, Some(body)).await
    }

    /// `POST url` with a JSON body, the answer (often empty) ignored.
    pub async fn post_empty(&self, url: Url, body: &Value) -> Result<(), ConnectorError> {
        self.send(Method::POST, url, Some(body)).await.map(|_| ())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, ConnectorError> {
        let shown = crate::engine::http::display_url(&url);
        let bytes = self.send(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Other {
            message: format!("{}: unexpected answer from {shown}: {e}", self.name),
            retryable: false,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, ConnectorError> {
        let mut request = HttpRequest::new(method, url);
        request.max_response_bytes = MAX_RESPONSE_BYTES;
        request.secrets.add(self.token.expose_secret());
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
            .map_err(|_| ConnectorError::Other {
                message: format!("{}: the access token cannot be sent in a header", self.name),
                retryable: false,
            })?;
        auth.set_sensitive(true);
        request.headers.insert(http::header::AUTHORIZATION, auth);
        request.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(body) = body {
            request.body = Some(body.to_string().into_bytes());
            request.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        // One attempt: the job queue retries a failed run with its backoff
        // (and resumes it from its last committed page).
        let once = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let response = self
            .http
            .send(&request, &once)
            .await
            .map_err(ConnectorError::from)?;
        Ok(response.body)
    }
}

/// A health check's result from a call's outcome and when it started.
pub fn health(
    started: chrono::DateTime<chrono::Utc>,
    ended: chrono::DateTime<chrono::Utc>,
    result: Result<(), ConnectorError>,
) -> HealthResult {
    let latency_ms = (ended - started).num_milliseconds().max(0) as u64;
    match result {
        Ok(()) => HealthResult {
            healthy: true,
            status: Some(200),
            latency_ms,
            error: None,
        },
        Err(e) => HealthResult {
            healthy: false,
            status: status(&e),
            latency_ms,
            error: Some(e.to_string()),
        },
    }
}

/// Whether `e` is Google answering `status`.
pub fn is_status(e: &ConnectorError, code: u16) -> bool {
    status(e) == Some(code)
}

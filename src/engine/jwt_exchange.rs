//! The signed-JWT exchange (`auth.method: jwt_exchange`): an RS256 JWT whose
//! issuer is the app id, signed with the app's private key, posted to the
//! token URL; the bearer token (and its expiry) in the answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::Method;
use http::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::http::{HttpClient, HttpError, HttpRequest, RetryPolicy};
use crate::descriptor::compile::{CompiledDescriptor, CompiledJwtExchange};
use crate::domain::TokenSet;

/// The JWT is dated this far back, for clock drift between us and the provider.
const BACKDATE_SECONDS: i64 = 60;

/// A token without an expiry in the answer is kept this long.
const DEFAULT_TOKEN_LIFETIME: i64 = 3600;

/// The app that signs the JWT.
pub struct AppKey {
    /// The JWT's `iss` (a GitHub App's id).
    pub app_id: String,
    /// The RSA private key, PEM (PKCS#1 or PKCS#8).
    pub private_key: SecretString,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The private key cannot sign.
    #[error("the app's private key is not a usable RSA PEM key")]
    Key,
    /// The token URL cannot be built.
    #[error("cannot build the token URL: {0}")]
    Url(String),
    /// The exchange request failed.
    #[error("the token exchange failed: {0}")]
    Http(#[from] HttpError),
    /// The answer holds no token.
    #[error("the token exchange answered without a token")]
    NoToken,
}

impl ExchangeError {
    /// Whether trying again later may succeed (a refused key or a 4xx is for good).
    pub fn is_retryable(&self) -> bool {
        match self {
            ExchangeError::Http(HttpError::Status { status, .. }) => *status >= 500,
            ExchangeError::Http(_) => true,
            ExchangeError::Key | ExchangeError::Url(_) | ExchangeError::NoToken => false,
        }
    }
}

/// The app's JWT: `iat` a minute back, `exp` `lifetime` seconds after now.
pub fn app_jwt(
    key: &AppKey,
    lifetime_seconds: u32,
    now: DateTime<Utc>,
) -> Result<String, ExchangeError> {
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.expose_secret().as_bytes())
            .map_err(|_| ExchangeError::Key)?;
    let claims = json!({
        "iat": now.timestamp() - BACKDATE_SECONDS,
        "exp": now.timestamp() + i64::from(lifetime_seconds),
        "iss": key.app_id,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &encoding,
    )
    .map_err(|_| ExchangeError::Key)
}

/// Whether `value` may stand in a URL path segment as it is.
pub fn path_safe(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Exchanges the app's JWT for a token at the descriptor's token URL (rendered
/// with the connection's config).
pub async fn exchange(
    http: &HttpClient,
    descriptor: &CompiledDescriptor,
    x: &CompiledJwtExchange,
    key: &AppKey,
    config: &Value,
    now: DateTime<Utc>,
) -> Result<TokenSet, ExchangeError> {
    let base_url = descriptor
        .base_url(config)
        .map_err(|e| ExchangeError::Url(e.to_string()))?;
    let url = descriptor
        .templates
        .render(x.token_url, &json!({"baseUrl": base_url, "config": config}))
        .map_err(|e| ExchangeError::Url(e.to_string()))?;
    let url = url::Url::parse(&url).map_err(|e| ExchangeError::Url(e.to_string()))?;
    // Config values become path segments of the token URL: nothing but
    // letters, digits, `-`, `_` and `.` (no `..`), or one could reach another
    // endpoint with the app's JWT.
    for name in &x.path_config {
        if let Some(v) = config.get(name).and_then(Value::as_str)
            && !path_safe(v)
        {
            return Err(ExchangeError::Url(format!(
                "config `{name}` may hold only letters, digits, `-`, `_` and `.`"
            )));
        }
    }
    let jwt = app_jwt(key, x.lifetime_seconds, now)?;
    let mut request = HttpRequest::new(Method::POST, url);
    request.timeout = Duration::from_secs(15);
    request.secrets.add(&jwt);
    request.secrets.add(key.private_key.expose_secret());
    for (name, value) in &x.headers {
        request.headers.insert(name.clone(), value.clone());
    }
    let mut bearer =
        HeaderValue::from_str(&format!("Bearer {jwt}")).map_err(|_| ExchangeError::Key)?;
    bearer.set_sensitive(true);
    request.headers.insert(AUTHORIZATION, bearer);
    let retry = RetryPolicy {
        statuses: vec![500, 502, 503, 504],
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let response = http.send(&request, &retry).await?;
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| ExchangeError::NoToken)?;
    let token = x
        .token_path
        .first(&body)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(ExchangeError::NoToken)?;
    let expires_at = x
        .expires_at_path
        .as_ref()
        .and_then(|p| p.first(&body))
        .and_then(super::timestamp::parse)
        .unwrap_or(now + chrono::Duration::seconds(DEFAULT_TOKEN_LIFETIME));
    Ok(TokenSet {
        access_token: SecretString::from(token.to_owned()),
        refresh_token: None,
        expires_at: Some(expires_at),
        metadata: Default::default(),
    })
}

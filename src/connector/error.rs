//! `ConnectorError`: why a connector operation failed, classified the same way
//! for every connector (generic or native) so the engine can act on it without
//! digging into the layers below: retry later (`is_retryable`), wait for the
//! provider (`RateLimited`), refresh the token once (`Unauthorized`), or give up.

use std::time::Duration;

use crate::engine::http::HttpError;
use crate::engine::mapping::WebhookMapError;
use crate::engine::oauth::OAuthError;
use crate::engine::poll::PollError;

/// Why a connector operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The provider asks to slow down: try again after `retry_after` (not a
    /// failed attempt).
    #[error("rate limited by {host}: retry after {} s", retry_after.as_secs())]
    RateLimited {
        /// The provider's host.
        host: String,
        /// How long to wait.
        retry_after: Duration,
    },
    /// The provider refused the credentials (HTTP 401): an OAuth token may have
    /// been revoked or rotated early.
    #[error(transparent)]
    Unauthorized(HttpError),
    /// Polling failed (HTTP, auth, response shape, pagination, sink).
    #[error(transparent)]
    Poll(PollError),
    /// A request of a connector's own failed.
    #[error(transparent)]
    Http(HttpError),
    /// A token request failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A webhook delivery could not be mapped.
    #[error(transparent)]
    Webhook(#[from] WebhookMapError),
    /// The connector does not do this (e.g. OAuth on an api_key connector).
    #[error("connector `{connector}` does not support {operation}")]
    Unsupported {
        /// The connector.
        connector: String,
        /// What was asked.
        operation: &'static str,
    },
    /// A URL could not be built from the descriptor and the connection's config.
    #[error("{0}")]
    Url(String),
    /// Anything else a connector reports, saying whether trying again may help.
    #[error("{message}")]
    Other {
        /// What went wrong (no secrets).
        message: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
}

impl ConnectorError {
    /// Whether the same operation may succeed later: transport failures, 5xx
    /// answers, rate limits and storage hiccups are; refusals and bad
    /// configuration are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ConnectorError::RateLimited { .. } => true,
            ConnectorError::Poll(PollError::Http(e))
            | ConnectorError::Http(e)
            | ConnectorError::OAuth(OAuthError::Http(e)) => http_retryable(e),
            ConnectorError::Poll(PollError::Sink(_)) => true,
            ConnectorError::Other { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

fn http_retryable(e: &HttpError) -> bool {
    match e {
        HttpError::Transport { .. } | HttpError::RateLimited { .. } => true,
        HttpError::Status { status, .. } => *status >= 500,
        HttpError::Blocked { .. } | HttpError::InvalidUrl(_) | HttpError::TooLarge { .. } => false,
    }
}

/// Lifts what the engine acts on out of an HTTP error.
fn lift(e: HttpError, other: impl FnOnce(HttpError) -> ConnectorError) -> ConnectorError {
    match e {
        HttpError::RateLimited { host, retry_after } => {
            ConnectorError::RateLimited { host, retry_after }
        }
        e @ HttpError::Status { status: 401, .. } => ConnectorError::Unauthorized(e),
        e => other(e),
    }
}

impl From<PollError> for ConnectorError {
    fn from(e: PollError) -> Self {
        match e {
            PollError::Http(e) => lift(e, |e| ConnectorError::Poll(PollError::Http(e))),
            e => ConnectorError::Poll(e),
        }
    }
}

impl From<HttpError> for ConnectorError {
    fn from(e: HttpError) -> Self {
        lift(e, ConnectorError::Http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> HttpError {
        HttpError::Status {
            method: "GET".into(),
            url: "https://api.example.com/x".into(),
            status,
            body: String::new(),
        }
    }

    #[test]
    fn failures_are_classified_the_same_for_every_connector() {
        let limited = ConnectorError::from(PollError::Http(HttpError::RateLimited {
            host: "api.example.com".into(),
            retry_after: Duration::from_secs(2),
        }));
        assert!(matches!(
            limited,
            ConnectorError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(2)
        ));
        assert!(limited.is_retryable());
        let unauthorized = ConnectorError::from(PollError::Http(status(401)));
        assert!(matches!(unauthorized, ConnectorError::Unauthorized(_)));
        assert!(!unauthorized.is_retryable());
        assert_eq!(unauthorized.to_string(), status(401).to_string());
        assert!(ConnectorError::from(PollError::Http(status(503))).is_retryable());
        assert!(!ConnectorError::from(PollError::Http(status(404))).is_retryable());
        assert!(ConnectorError::from(status(500)).is_retryable());
        assert!(ConnectorError::from(PollError::Sink("disk full".into())).is_retryable());
        assert!(!ConnectorError::from(PollError::InvalidResponse("x".into())).is_retryable());
        assert!(ConnectorError::OAuth(OAuthError::Http(status(502))).is_retryable());
        assert!(!ConnectorError::OAuth(OAuthError::InvalidGrant("x".into())).is_retryable());
        let transport = HttpError::Transport {
            method: "GET".into(),
            url: "u".into(),
            reason: "cannot connect".into(),
        };
        assert!(ConnectorError::from(transport).is_retryable());
        assert!(
            ConnectorError::Other {
                message: "x".into(),
                retryable: true
            }
            .is_retryable()
        );
    }
}

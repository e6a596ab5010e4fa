//! The `Connector` trait every provider implements, generic (a descriptor run by
//! the engine: [`DescriptorConnector`]) or native Rust (`native/`). It is the
//! one door: the API, the gateway, the scheduler, the executor and token
//! upkeep ask a connector what it can do (`capabilities`, `catalogue`,
//! `webhooks`) and call through it; none of them reads the descriptor behind
//! it. A connector does the provider-side work (URLs, token requests, fetching,
//! verifying and mapping); storage, locking, encryption, retries and
//! scheduling stay with the caller, so every connector gets them the same way.
//!
//! Error type: [`ConnectorError`] for everything a connector does.

mod capabilities;
mod descriptor;
mod error;
mod lifecycle;
pub mod native;
mod webhook;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

pub use capabilities::{Capabilities, Catalogue, Hooks, OAuthOptions, PollSchedule, TokenExchange};
pub use descriptor::DescriptorConnector;
pub use error::ConnectorError;
pub use lifecycle::{Hook, HookOutcome};
pub use webhook::{IssuedToken, RoutingTarget, WebhookProfile, WebhookReceiver};

use crate::domain::{Ambient, Checkpoints, ConnectionId, TenantId, TokenSet};
use crate::engine::auth::Credentials;
use crate::engine::health::HealthResult;
use crate::engine::http::HttpClient;
use crate::engine::oauth::ClientCredentials;
use crate::engine::poll::{PollOutcome, SignalSink};

/// Starting an authorization.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// The app's client id.
    pub client_id: &'a str,
    /// Where the provider sends the user back.
    pub redirect_uri: &'a str,
    /// The single-use state.
    pub state: &'a str,
    /// The PKCE S256 challenge, when the connector uses PKCE.
    pub code_challenge: Option<&'a str>,
    /// The connection-to-be's config (`{{config.*}}` in URLs).
    pub config: &'a Value,
}

/// What a token request needs.
pub struct TokenContext<'a> {
    /// The outbound client.
    pub http: &'a HttpClient,
    /// The app credentials.
    pub client: &'a ClientCredentials,
    /// The connection's config.
    pub config: &'a Value,
    /// Now (token expiry is computed from it).
    pub now: DateTime<Utc>,
}

/// One connection, ready to call the provider.
pub struct ConnectionContext<'a> {
    /// The outbound client.
    pub http: &'a HttpClient,
    /// The node's clock and randomness.
    pub ambient: &'a Ambient,
    /// The connection's credentials (fields, and a fresh access token for OAuth).
    pub credentials: &'a Credentials,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The connection's config.
    pub config: &'a Value,
    /// What the connection learnt from the provider (OAuth metadata, hook outcomes).
    pub metadata: &'a Value,
    /// The run's start.
    pub now: DateTime<Utc>,
    /// Where an interrupted run of this job left off: the last position its
    /// sink committed (`SignalSink::progress`), for `sync` to resume from.
    pub resume: Option<&'a Value>,
}

/// What kind of sync to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// From the stored checkpoints.
    Incremental,
    /// From the initial checkpoint (a backfill).
    Full,
}

/// A provider: everything the runtime asks of one. Operations a connector
/// does not have answer [`ConnectorError::Unsupported`] by default; its
/// `capabilities` say which it has, so callers need not try.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The provider id.
    fn id(&self) -> &str {
        &self.catalogue().id
    }

    /// Its catalogue entry.
    fn catalogue(&self) -> &Catalogue;

    /// What it can do.
    fn capabilities(&self) -> &Capabilities;

    /// Its webhook half, when it takes webhooks.
    fn webhooks(&self) -> Option<&dyn WebhookReceiver> {
        None
    }

    /// The provider's authorization URL for the user.
    async fn authorize(&self, _request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError> {
        Err(self.unsupported("OAuth 2.0 authorization"))
    }

    /// Exchanges an authorization code for tokens.
    async fn exchange_token(
        &self,
        _ctx: &TokenContext<'_>,
        _code: &str,
        _redirect_uri: &str,
        _code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        Err(self.unsupported("OAuth 2.0 code exchange"))
    }

    /// Exchanges the app's signed JWT for a bearer token
    /// (`Capabilities::token_exchange`).
    async fn exchange_app_token(
        &self,
        _http: &HttpClient,
        _key: &crate::engine::jwt_exchange::AppKey,
        _config: &Value,
        _now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        Err(self.unsupported("a signed-JWT token exchange"))
    }

    /// Refreshes the access token. A set without a refresh token means "keep
    /// the old one".
    async fn refresh_token(
        &self,
        _ctx: &TokenContext<'_>,
        _refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        Err(self.unsupported("OAuth 2.0 token refresh"))
    }

    /// Fetches what changed since `checkpoints` into `sink`; returns the new
    /// checkpoints. Nothing is committed by the connector.
    async fn sync(
        &self,
        _ctx: &ConnectionContext<'_>,
        _mode: SyncMode,
        _checkpoints: &Checkpoints,
        _sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        Err(self.unsupported("polling"))
    }

    /// Checks the connection against the provider.
    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult;

    /// Runs a lifecycle hook (only those `capabilities().hooks` names, and
    /// `Renew` when an outcome asked for it).
    async fn hook(
        &self,
        _hook: Hook,
        _ctx: &ConnectionContext<'_>,
    ) -> Result<HookOutcome, ConnectorError> {
        Ok(HookOutcome::default())
    }

    /// The error of an operation this connector does not have.
    fn unsupported(&self, operation: &'static str) -> ConnectorError {
        ConnectorError::Unsupported {
            connector: self.id().to_owned(),
            operation,
        }
    }
}

//! The `Connector` trait every provider implements, generic (a descriptor run by
//! the engine: [`DescriptorConnector`]) or native Rust. The registry maps a
//! provider id to one; the API, the executor and token upkeep only call
//! through it. A connector does the provider-side work (URLs, token requests,
//! fetching and mapping); storage, locking, encryption and scheduling stay with
//! the caller, so every connector gets them the same way.

mod descriptor;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use url::Url;

pub use descriptor::DescriptorConnector;

use crate::domain::{ConnectionId, TenantId};
use crate::engine::auth::Credentials;
use crate::engine::health::HealthResult;
use crate::engine::http::HttpClient;
use crate::engine::mapping::{MapContext, WebhookInput, WebhookMapError, WebhookMapped};
use crate::engine::oauth::{ClientCredentials, OAuthError, TokenSet};
use crate::engine::poll::{Checkpoints, PollError, PollOutcome, SignalSink};

/// Why a connector operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Polling failed (HTTP, auth, response shape, pagination, sink).
    #[error(transparent)]
    Poll(#[from] PollError),
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
}

/// How a connector authorizes with OAuth 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthOptions {
    /// Whether the authorization uses PKCE (S256).
    pub pkce: bool,
}

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
    /// The connection's credentials (fields, and a fresh access token for OAuth).
    pub credentials: &'a Credentials,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The connection's config.
    pub config: &'a Value,
    /// The run's start.
    pub now: DateTime<Utc>,
}

/// What kind of sync to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// From the stored checkpoints.
    Incremental,
    /// From the initial checkpoint (a backfill).
    Full,
}

/// A provider: everything the runtime asks of one.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// The provider id.
    fn id(&self) -> &str;

    /// How it uses OAuth 2.0; `None` when it does not.
    fn oauth(&self) -> Option<OAuthOptions>;

    /// Whether it polls (has a `sync`).
    fn polls(&self) -> bool;

    /// The provider's authorization URL for the user.
    async fn authorize(&self, request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError>;

    /// Exchanges an authorization code for tokens.
    async fn exchange_token(
        &self,
        ctx: &TokenContext<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError>;

    /// Refreshes the access token. A set without a refresh token means "keep
    /// the old one".
    async fn refresh_token(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError>;

    /// Fetches what changed since `checkpoints` into `sink`; returns the new
    /// checkpoints. Nothing is committed by the connector.
    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError>;

    /// Maps a verified webhook delivery to Signals.
    async fn handle_webhook(
        &self,
        delivery: WebhookInput<'_>,
        ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError>;

    /// Checks the connection against the provider.
    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult;
}

//! What a connector can do and how it shows in the catalogue, as plain data the
//! rest of the service reads instead of looking at a descriptor: OAuth, its
//! polling schedule, its lifecycle hooks, and its catalogue entry.

use std::time::Duration;

use crate::descriptor::model::{
    ConnectorCategory, ConnectorDescriptor, ConnectorKind, CredentialField,
};

/// How a connector authorizes with OAuth 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthOptions {
    /// Whether the authorization uses PKCE (S256).
    pub pkce: bool,
    /// The app whose client id and secret it falls back to when the provider
    /// has none of its own (`google`: `POBLYSH_GOOGLE_CLIENT_ID` serves Gmail,
    /// Drive and Calendar unless `POBLYSH_GMAIL_CLIENT_ID` is set).
    pub shared_app: Option<&'static str>,
}

/// How often a polling connector syncs each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSchedule {
    /// Between two scheduled incremental syncs.
    pub interval: Duration,
}

/// The lifecycle hooks a connector has (renewal is asked for by the outcome of
/// `Setup` or `Renew`: `HookOutcome::renew_at`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `Hook::Setup` runs after a connection is created or enabled.
    pub setup: bool,
    /// `Hook::Teardown` runs when a connection is disabled or deleted.
    pub teardown: bool,
}

/// How a connector gets its bearer token by exchanging a signed JWT (a GitHub
/// App installation token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchange {
    /// A credential field that, when a connection gives it, is the token as it
    /// is (a personal access token): no exchange.
    pub static_token_key: Option<String>,
    /// The config fields the exchange needs (those its token URL names), so a
    /// connection without the static token must give them.
    pub needs_config: Vec<String>,
}

/// What a connector can do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// How it uses OAuth 2.0; `None` when it does not.
    pub oauth: Option<OAuthOptions>,
    /// How it exchanges a signed JWT for its token; `None` when it does not.
    pub token_exchange: Option<TokenExchange>,
    /// Whether (and how often) it polls.
    pub polling: Option<PollSchedule>,
    /// Its lifecycle hooks.
    pub hooks: Hooks,
}

/// A connector's catalogue entry (`GET /providers`): who it is, what it needs
/// to connect, what it emits.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The provider id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Catalogue category.
    pub category: ConnectorCategory,
    /// Icon name or URL.
    pub icon: String,
    /// `generic` or `native`.
    pub kind: ConnectorKind,
    /// Version.
    pub version: String,
    /// `oauth2`, `api_key`, `pat`, `basic`, `webhook_secret` or `none`.
    pub auth_method: &'static str,
    /// `polling`, `webhook` or `polling_and_webhook`.
    pub ingestion_mode: &'static str,
    /// Signal kinds it can emit.
    pub signals: Vec<String>,
    /// What a connection takes in `credentials`.
    pub credential_fields: Vec<CredentialField>,
    /// What a connection takes in `config`.
    pub config_fields: Vec<CredentialField>,
    /// The catalogue descriptor as written (shown by `GET /providers/{id}`).
    pub descriptor: ConnectorDescriptor,
}

impl Catalogue {
    /// The entry a catalogue descriptor describes.
    pub fn of(d: &ConnectorDescriptor) -> Self {
        Catalogue {
            id: d.id.clone(),
            name: d.name.clone(),
            description: d.description.clone(),
            category: d.category,
            icon: d.icon.clone(),
            kind: d.kind,
            version: d.version.clone(),
            auth_method: d.auth.method_name(),
            ingestion_mode: d.ingestion.mode_name(),
            signals: d.signals.clone(),
            credential_fields: d.auth.credential_fields().to_vec(),
            config_fields: d.config_fields.clone(),
            descriptor: d.clone(),
        }
    }
}

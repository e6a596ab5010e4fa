//! Opening a connection to call its provider, written once for the executor,
//! the connection test and the lifecycle hooks: its stored record, its
//! connector from the registry, and (when asked) its credentials with an OAuth
//! access token kept fresh.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use super::tokens::{self, TokenError};
use crate::connector::{ConnectionContext, Connector};
use crate::db::StoreError;
use crate::db::repo::connections::{self, StoredConnection};
use crate::domain::{ConnectionId, Scrubber, TenantId};
use crate::engine::auth::Credentials;
use crate::services::Services;

/// A connection and the connector that runs it.
#[derive(Debug)]
pub struct Opened {
    /// The stored connection.
    pub stored: StoredConnection,
    /// Its connector.
    pub connector: Arc<dyn Connector>,
}

/// Why a connection cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The tenant has no such connection (any more).
    #[error("the connection no longer exists")]
    Gone,
    /// Its provider is not registered on this node.
    #[error("provider `{0}` is not registered")]
    UnknownProvider(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens one of the tenant's connections (whatever its status: the runtime's view).
pub async fn open(
    services: &Services,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Opened, OpenError> {
    let stored = connections::stored(&services.db, tenant, id)
        .await?
        .ok_or(OpenError::Gone)?;
    let connector = services
        .registry
        .get(&stored.connection.provider)
        .ok_or_else(|| OpenError::UnknownProvider(stored.connection.provider.clone()))?
        .connector;
    Ok(Opened { stored, connector })
}

/// A scrubber for credential `fields` (and HTTP Basic pairs of them), `tokens`
/// and the connector's app secrets (client, webhook, private key): what a
/// connection holds, stored or only given (a test before it is stored).
pub fn scrubber_for(
    services: &Services,
    connector: &dyn Connector,
    fields: &std::collections::BTreeMap<String, secrecy::SecretString>,
    tokens: impl IntoIterator<Item = secrecy::SecretString>,
) -> Scrubber {
    // A replaced webhook secret is kept as `<until> <secret>`: the bare secret too.
    let values: Vec<&str> = fields
        .iter()
        .map(|(k, v)| match k.as_str() {
            crate::domain::rotation::PREVIOUS_SECRET_FIELD => v
                .expose_secret()
                .split_once(' ')
                .map_or(v.expose_secret(), |(_, secret)| secret),
            _ => v.expose_secret(),
        })
        .collect();
    let mut scrubber = Scrubber::new(values.iter().copied());
    for user in &values {
        for password in &values {
            if user != password {
                scrubber.add_basic(user, password);
            }
        }
    }
    for token in tokens {
        scrubber.add(token.expose_secret());
    }
    let shared = connector.capabilities().oauth.and_then(|o| o.shared_app);
    for name in ["CLIENT_SECRET", "WEBHOOK_SECRET", "PRIVATE_KEY"] {
        if let Some(secret) = services.config.app_secret(connector.id(), shared, name) {
            scrubber.add(secret);
        }
    }
    scrubber
}

impl Opened {
    /// The credentials to call the provider with (`force_refresh` after a 401).
    pub async fn credentials(
        &self,
        services: &Services,
        force_refresh: bool,
        now: DateTime<Utc>,
    ) -> Result<Credentials, TokenError> {
        tokens::credentials(
            services,
            self.connector.as_ref(),
            &self.stored,
            force_refresh,
            now,
        )
        .await
    }

    /// Runs the connector's health check with the stored credentials (no
    /// usable credentials is an unhealthy result), scrubs what it says, and
    /// records it on the connection (`healthy`, failures in a row, last
    /// error, `last_health_check`).
    pub async fn check_health(
        &self,
        services: &Services,
    ) -> Result<crate::engine::health::HealthResult, StoreError> {
        let now = services.ambient.now();
        let scrubber = self.scrubber(services);
        let result = match self.credentials(services, false, now).await {
            Ok(credentials) => {
                self.connector
                    .health_check(&self.context(services, &credentials, now, None))
                    .await
            }
            Err(e) => crate::engine::health::HealthResult {
                healthy: false,
                status: None,
                latency_ms: 0,
                error: Some(e.to_string()),
            },
        };
        let error = result.error.as_deref().map(|e| scrubber.scrub(e));
        let c = &self.stored.connection;
        let outcome = match &error {
            None if result.healthy => Ok(()),
            None => Err("unhealthy"),
            Some(e) => Err(e.as_str()),
        };
        connections::record_health(&services.db, c.tenant_id, c.id, outcome, true, None).await?;
        metrics::counter!(
            "health_checks_total",
            "provider" => c.provider.clone(),
            "outcome" => if outcome.is_ok() { "healthy" } else { "unhealthy" },
        )
        .increment(1);
        Ok(crate::engine::health::HealthResult { error, ..result })
    }

    /// A scrubber for everything secret this connection holds: its credential
    /// fields (and HTTP Basic pairs of them), its tokens, the app's client and
    /// webhook secrets. Every error about the connection passes it before it
    /// is stored, returned or logged. A secret that cannot be opened is left
    /// out (the error saying so is a storage error, without the secret).
    pub fn scrubber(&self, services: &Services) -> Scrubber {
        let keys = &services.keys;
        let fields = self.stored.open_credentials(keys).unwrap_or_default();
        let tokens = [
            self.stored.open_access_token(keys),
            self.stored.open_refresh_token(keys),
        ]
        .into_iter()
        .flatten()
        .flatten();
        scrubber_for(services, self.connector.as_ref(), &fields, tokens)
    }

    /// The context a connector call runs in.
    pub fn context<'a>(
        &'a self,
        services: &'a Services,
        credentials: &'a Credentials,
        now: DateTime<Utc>,
        resume: Option<&'a serde_json::Value>,
    ) -> ConnectionContext<'a> {
        let c = &self.stored.connection;
        ConnectionContext {
            http: &services.http,
            ambient: &services.ambient,
            credentials,
            tenant_id: c.tenant_id,
            connection_id: c.id,
            config: &c.config,
            metadata: &c.metadata,
            now,
            resume,
        }
    }
}

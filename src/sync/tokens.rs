//! OAuth token upkeep for a connection: use the stored access token while it is
//! fresh, refresh it 5 minutes ahead of expiry (or once after a 401), one
//! refresh at a time per connection across every worker and node: the refresh
//! runs while the connection row is locked (`connections::lock`), and a worker
//! that got the lock after another refreshed uses the new token instead of
//! refreshing again. `invalid_grant` marks the connection `needs_reauth`.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::connector::{Connector, ConnectorError, TokenContext};
use crate::db::StoreError;
use crate::db::repo::connections::{self, StoredConnection};
use crate::engine::auth::Credentials;
use crate::engine::jwt_exchange::AppKey;
use crate::engine::oauth::{ClientCredentials, OAuthError};
use crate::services::Services;

/// Refresh this long before expiry.
pub const REFRESH_AHEAD: i64 = 5 * 60;

/// Why no usable access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The user must authorize again.
    #[error("{0}")]
    NeedsReauth(String),
    /// The app's client id or secret is not configured.
    #[error(
        "the OAuth client is not configured: set {0} and {1} (or the connection's clientId/clientSecret)"
    )]
    NoClient(String, String),
    /// The token endpoint failed.
    #[error("token refresh failed: {0}")]
    Refresh(ConnectorError),
    /// The app that signs the token exchange is not configured.
    #[error("the app is not configured: set {0} and {1} (or the connection's appId/privateKey)")]
    NoAppKey(String, String),
    /// The signed-JWT exchange failed.
    #[error("{0}")]
    Exchange(ConnectorError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenError {
    /// Whether trying again later may succeed: a failed refresh or storage
    /// may pass (the grant itself was not refused: that is `NeedsReauth`).
    pub fn is_retryable(&self) -> bool {
        match self {
            TokenError::Refresh(_) | TokenError::Store(_) => true,
            TokenError::Exchange(e) => e.is_retryable(),
            TokenError::NeedsReauth(_) | TokenError::NoClient(..) | TokenError::NoAppKey(..) => {
                false
            }
        }
    }
}

fn fresh(stored: &StoredConnection, now: DateTime<Utc>, ahead: Duration) -> bool {
    stored.token_fresh(now, ahead)
}

/// The app credentials for a connector: the connection's `clientId` /
/// `clientSecret` credential fields, else `POBLYSH_<PROVIDER>_CLIENT_ID` /
/// `_CLIENT_SECRET`, else those of the app the connector shares
/// (`OAuthOptions::shared_app`).
pub fn client_credentials(
    services: &Services,
    connector: &dyn Connector,
    fields: &std::collections::BTreeMap<String, SecretString>,
) -> Option<ClientCredentials> {
    let provider = connector.id();
    let shared = connector.capabilities().oauth.and_then(|o| o.shared_app);
    let field = |k: &str| {
        fields
            .get(k)
            .map(|v| v.expose_secret().to_owned())
            .filter(|v| !v.is_empty())
    };
    let app = |name: &str| {
        services
            .config
            .app_secret(provider, shared, name)
            .map(str::to_owned)
    };
    let id = field("clientId").or_else(|| app("CLIENT_ID"))?;
    let secret = field("clientSecret").or_else(|| app("CLIENT_SECRET"))?;
    Some(ClientCredentials {
        client_id: id,
        client_secret: SecretString::from(secret),
    })
}

/// The variables that configure a connector's OAuth client, for the error
/// saying they are missing.
pub fn client_variables(connector: &dyn Connector) -> (String, String) {
    let app = connector
        .capabilities()
        .oauth
        .and_then(|o| o.shared_app)
        .unwrap_or_else(|| connector.id());
    (
        crate::config::provider_var(app, "CLIENT_ID"),
        crate::config::provider_var(app, "CLIENT_SECRET"),
    )
}

/// The stored token while fresh, or the connection's row lock to renew it.
enum Renewal {
    /// Fresh: use it.
    Fresh(SecretString),
    /// Due: renew it while holding this lock.
    Due(Box<connections::Locked>),
}

/// The stored token while it is fresh (and not `force`d out by a 401), else
/// the row lock: then, if another worker renewed it while this one waited,
/// that token; otherwise the lock, to renew it under.
async fn stored_or_locked(
    services: &Services,
    stored: &StoredConnection,
    force: bool,
    now: DateTime<Utc>,
    ahead: Duration,
) -> Result<Renewal, TokenError> {
    let keys = &services.keys;
    if !force
        && fresh(stored, now, ahead)
        && let Some(token) = stored.open_access_token(keys)?
    {
        return Ok(Renewal::Fresh(token));
    }
    let (tenant, id) = (stored.connection.tenant_id, stored.connection.id);
    let locked = connections::lock(&services.db, tenant, id)
        .await?
        .ok_or_else(|| TokenError::NeedsReauth("the connection was deleted".into()))?;
    let current = locked.current();
    let renewed_meanwhile = !current.same_access_token(stored);
    if fresh(current, now, ahead)
        && (!force || renewed_meanwhile)
        && let Some(token) = current.open_access_token(keys)?
    {
        locked.release().await?;
        return Ok(Renewal::Fresh(token));
    }
    Ok(Renewal::Due(Box::new(locked)))
}

/// A usable access token for `stored`: the stored one while fresh (unless
/// `force`, after a 401), else a refreshed one.
pub async fn access_token(
    services: &Services,
    connector: &dyn Connector,
    stored: &StoredConnection,
    force: bool,
    now: DateTime<Utc>,
) -> Result<SecretString, TokenError> {
    let ahead = Duration::seconds(REFRESH_AHEAD);
    access_token_ahead(services, connector, stored, force, now, ahead).await
}

/// As [`access_token`], refreshing a token that expires within `ahead`
/// (the background upkeep looks further ahead than a job).
pub async fn access_token_ahead(
    services: &Services,
    connector: &dyn Connector,
    stored: &StoredConnection,
    force: bool,
    now: DateTime<Utc>,
    ahead: Duration,
) -> Result<SecretString, TokenError> {
    let keys = &services.keys;
    if connector.capabilities().oauth.is_none() {
        return Err(TokenError::NeedsReauth(
            "the connector does not use OAuth".into(),
        ));
    }
    let provider = connector.id();
    let locked = match stored_or_locked(services, stored, force, now, ahead).await? {
        Renewal::Fresh(token) => return Ok(token),
        Renewal::Due(locked) => locked,
    };
    let current = locked.current();
    let Some(refresh_token) = current.open_refresh_token(keys)? else {
        let message =
            "the access token expired and there is no refresh token: authorize again".to_owned();
        locked.needs_reauth(&message, now).await?;
        return Err(TokenError::NeedsReauth(message));
    };
    let fields = current.open_credentials(keys)?;
    let client = client_credentials(services, connector, &fields).ok_or_else(|| {
        let (id, secret) = client_variables(connector);
        TokenError::NoClient(id, secret)
    })?;
    let ctx = TokenContext {
        http: &services.http,
        client: &client,
        config: &current.connection.config,
        now,
    };
    let count = |outcome: &'static str| {
        metrics::counter!("oauth_token_refreshes_total", "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
    };
    match connector.refresh_token(&ctx, &refresh_token).await {
        Ok(set) => {
            let token = SecretString::from(set.access_token.expose_secret().to_owned());
            locked.save_tokens(keys, &set, now).await?;
            count("ok");
            Ok(token)
        }
        Err(ConnectorError::OAuth(OAuthError::InvalidGrant(reason))) => {
            let message =
                format!("the provider rejected the refresh token ({reason}): authorize again");
            locked.needs_reauth(&message, now).await?;
            count("invalid_grant");
            Err(TokenError::NeedsReauth(message))
        }
        Err(e) => {
            count("error");
            Err(TokenError::Refresh(e))
        }
    }
}

/// The app key that signs a connector's token exchange: the connection's
/// `appId` and `privateKey` credential fields when it gives them (both, never
/// half of its own and half of the app's), else `POBLYSH_<PROVIDER>_APP_ID` /
/// `_PRIVATE_KEY` (a PEM; `\n` written as two characters is read as a
/// newline). The app's key signs only for the descriptor's own API: with a
/// `baseUrl` of its own (`tenant_base_url`), a connection could otherwise take
/// the app's JWT (valid for every installation) to a host of its choosing.
fn app_key(
    services: &Services,
    provider: &str,
    fields: &std::collections::BTreeMap<String, SecretString>,
    tenant_base_url: bool,
) -> Result<AppKey, TokenError> {
    let refuse = |message: &str| {
        Err(TokenError::Exchange(ConnectorError::Other {
            message: message.into(),
            retryable: false,
        }))
    };
    let field = |key: &str| {
        fields
            .get(key)
            .map(|v| v.expose_secret().to_owned())
            .filter(|v| !v.is_empty())
    };
    let (app_id, pem) = match (field("appId"), field("privateKey")) {
        (Some(id), Some(pem)) => (id, pem),
        (Some(_), None) | (None, Some(_)) => {
            return refuse("give both `appId` and `privateKey`, or neither (the service's app)");
        }
        (None, None) if tenant_base_url => {
            return refuse(
                "a connection with its own `baseUrl` must give its own `appId` and `privateKey`: the service's app key signs for the provider's own API only",
            );
        }
        (None, None) => {
            let app = |var: &str| {
                services
                    .config
                    .provider_secret(provider, var)
                    .map(str::to_owned)
            };
            match (app("APP_ID"), app("PRIVATE_KEY")) {
                (Some(id), Some(pem)) => (id, pem),
                _ => {
                    return Err(TokenError::NoAppKey(
                        crate::config::provider_var(provider, "APP_ID"),
                        crate::config::provider_var(provider, "PRIVATE_KEY"),
                    ));
                }
            }
        }
    };
    let pem = if pem.contains('\n') {
        pem
    } else {
        pem.replace("\\n", "\n")
    };
    Ok(AppKey {
        app_id,
        private_key: SecretString::from(pem),
    })
}

/// A usable token of a connector that exchanges a signed JWT for it: the
/// stored one while it has 5 minutes left (unless `force`, after a 401), else
/// a new exchange, one at a time per connection (under the row lock, like an
/// OAuth refresh).
pub async fn exchanged_token(
    services: &Services,
    connector: &dyn Connector,
    stored: &StoredConnection,
    force: bool,
    now: DateTime<Utc>,
) -> Result<SecretString, TokenError> {
    let keys = &services.keys;
    let provider = connector.id();
    let ahead = Duration::seconds(REFRESH_AHEAD);
    let locked = match stored_or_locked(services, stored, force, now, ahead).await? {
        Renewal::Fresh(token) => return Ok(token),
        Renewal::Due(locked) => locked,
    };
    let current = locked.current();
    let fields = current.open_credentials(keys)?;
    let tenant_base_url = current
        .connection
        .config
        .get("baseUrl")
        .and_then(|v| v.as_str())
        .is_some_and(|v| !v.is_empty());
    let key = match app_key(services, provider, &fields, tenant_base_url) {
        Ok(key) => key,
        Err(e) => {
            locked.release().await?;
            return Err(e);
        }
    };
    let count = |outcome: &'static str| {
        metrics::counter!("token_exchanges_total", "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
    };
    match connector
        .exchange_app_token(&services.http, &key, &current.connection.config, now)
        .await
    {
        Ok(set) => {
            let token = SecretString::from(set.access_token.expose_secret().to_owned());
            locked.save_tokens(keys, &set, now).await?;
            count("ok");
            Ok(token)
        }
        Err(e) => {
            count("error");
            locked.release().await?;
            Err(TokenError::Exchange(e))
        }
    }
}

/// The credentials to call the provider with: the connection's fields, and a
/// fresh access token when the connector uses OAuth or a token exchange
/// (`force_refresh` after a 401).
pub async fn credentials(
    services: &Services,
    connector: &dyn Connector,
    stored: &StoredConnection,
    force_refresh: bool,
    now: DateTime<Utc>,
) -> Result<Credentials, TokenError> {
    let fields = stored.open_credentials(&services.keys)?;
    let capabilities = connector.capabilities();
    let access_token = match (capabilities.oauth, &capabilities.token_exchange) {
        (Some(_), _) => Some(access_token(services, connector, stored, force_refresh, now).await?),
        // A token given as a credential is used as it is.
        (None, Some(x))
            if !x
                .static_token_key
                .as_ref()
                .is_some_and(|k| fields.contains_key(k)) =>
        {
            Some(exchanged_token(services, connector, stored, force_refresh, now).await?)
        }
        _ => None,
    };
    Ok(Credentials {
        fields,
        access_token,
    })
}

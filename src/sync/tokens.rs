//! OAuth token upkeep for a connection: use the stored access token while it is
//! fresh, refresh it 5 minutes ahead of expiry (or once after a 401), one
//! refresh at a time per connection across every worker and node: the refresh
//! runs in a transaction holding the connection row (`FOR UPDATE` on
//! PostgreSQL; an immediate write transaction on SQLite), and a worker that got
//! the lock after another refreshed uses the new token instead of refreshing
//! again. `invalid_grant` marks the connection `needs_reauth`.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DbBackend, EntityTrait, QuerySelect};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::connector::{Connector, ConnectorError, TokenContext};
use crate::crypto::Binding;
use crate::db::entities::connection;
use crate::db::repo::connections::{self, ACCESS_TOKEN, REFRESH_TOKEN};
use crate::db::{StoreError, stored_time};
use crate::domain::{ConnectionId, TenantId};
use crate::engine::auth::Credentials;
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
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn binding(tenant: TenantId, id: ConnectionId, field: &str) -> Binding<'_> {
    Binding {
        tenant,
        record: id,
        field,
    }
}

fn open(
    services: &Services,
    row: &connection::Model,
    field: &str,
    sealed: &[u8],
) -> Result<SecretString, StoreError> {
    let plain = Zeroizing::new(services.keys.open(
        sealed,
        binding(
            TenantId::from_uuid(row.tenant_id),
            ConnectionId::from_uuid(row.id),
            field,
        ),
    )?);
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| StoreError::Corrupt(format!("{field} is not text")))?;
    Ok(SecretString::from(text))
}

fn fresh(row: &connection::Model, now: DateTime<Utc>) -> bool {
    row.access_token.is_some()
        && row
            .expires_at
            .is_none_or(|e| e > now + Duration::seconds(REFRESH_AHEAD))
}

/// The app credentials for a provider: the connection's `clientId`/`clientSecret`
/// credential fields, else `POBLYSH_<PROVIDER>_CLIENT_ID` / `_CLIENT_SECRET`.
pub fn client_credentials(
    services: &Services,
    provider: &str,
    fields: &std::collections::BTreeMap<String, SecretString>,
) -> Option<ClientCredentials> {
    let field = |k: &str| {
        fields
            .get(k)
            .map(|v| v.expose_secret().to_owned())
            .filter(|v| !v.is_empty())
    };
    let id = field("clientId").or_else(|| {
        services
            .config
            .provider_secret(provider, "CLIENT_ID")
            .map(str::to_owned)
    })?;
    let secret = field("clientSecret").or_else(|| {
        services
            .config
            .provider_secret(provider, "CLIENT_SECRET")
            .map(str::to_owned)
    })?;
    Some(ClientCredentials {
        client_id: id,
        client_secret: SecretString::from(secret),
    })
}

/// A usable access token for `row`: the stored one while fresh (unless `force`,
/// after a 401), else a refreshed one.
pub async fn access_token(
    services: &Services,
    connector: &dyn Connector,
    row: &connection::Model,
    force: bool,
    now: DateTime<Utc>,
) -> Result<SecretString, TokenError> {
    if !force
        && fresh(row, now)
        && let Some(sealed) = &row.access_token
    {
        return Ok(open(services, row, ACCESS_TOKEN, sealed)?);
    }
    if connector.oauth().is_none() {
        return Err(TokenError::NeedsReauth(
            "the connector does not use OAuth".into(),
        ));
    }
    let provider = connector.id();
    let txn = services.db.begin_write().await.map_err(StoreError::from)?;
    let mut query = connection::Entity::find_by_id(row.id);
    if services.db.backend() == DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    let current = query
        .one(&txn)
        .await
        .map_err(StoreError::from)?
        .ok_or_else(|| TokenError::NeedsReauth("the connection was deleted".into()))?;
    // Another worker refreshed while we waited for the lock.
    let refreshed_meanwhile = current.access_token != row.access_token;
    if fresh(&current, now)
        && (!force || refreshed_meanwhile)
        && let Some(sealed) = &current.access_token
    {
        let token = open(services, &current, ACCESS_TOKEN, sealed)?;
        txn.commit().await.map_err(StoreError::from)?;
        return Ok(token);
    }
    let tenant = TenantId::from_uuid(current.tenant_id);
    let id = ConnectionId::from_uuid(current.id);
    let Some(refresh_sealed) = current.refresh_token.clone() else {
        let message =
            "the access token expired and there is no refresh token: authorize again".to_owned();
        mark_needs_reauth(&txn, current, &message, now).await?;
        txn.commit().await.map_err(StoreError::from)?;
        return Err(TokenError::NeedsReauth(message));
    };
    let refresh_token = open(services, &current, REFRESH_TOKEN, &refresh_sealed)?;
    let fields =
        connections::open_credentials(&services.keys, tenant, id, current.credentials.as_deref())?;
    let client = client_credentials(services, provider, &fields).ok_or_else(|| {
        TokenError::NoClient(
            crate::config::provider_var(provider, "CLIENT_ID"),
            crate::config::provider_var(provider, "CLIENT_SECRET"),
        )
    })?;
    let ctx = TokenContext {
        http: &services.http,
        client: &client,
        config: &current.config,
        now,
    };
    match connector.refresh_token(&ctx, &refresh_token).await {
        Ok(set) => {
            let token = SecretString::from(set.access_token.expose_secret().to_owned());
            let mut active: connection::ActiveModel = current.into();
            connections::seal_tokens(&services.keys, &mut active, tenant, id, &set);
            active.updated_at = Set(stored_time(now));
            active.update(&txn).await.map_err(StoreError::from)?;
            txn.commit().await.map_err(StoreError::from)?;
            metrics::counter!("oauth_token_refreshes_total", "provider" => provider.to_owned(), "outcome" => "ok").increment(1);
            Ok(token)
        }
        Err(ConnectorError::OAuth(OAuthError::InvalidGrant(reason))) => {
            let message =
                format!("the provider rejected the refresh token ({reason}): authorize again");
            mark_needs_reauth(&txn, current, &message, now).await?;
            txn.commit().await.map_err(StoreError::from)?;
            metrics::counter!("oauth_token_refreshes_total", "provider" => provider.to_owned(), "outcome" => "invalid_grant").increment(1);
            Err(TokenError::NeedsReauth(message))
        }
        Err(e) => {
            metrics::counter!("oauth_token_refreshes_total", "provider" => provider.to_owned(), "outcome" => "error").increment(1);
            Err(TokenError::Refresh(e))
        }
    }
}

async fn mark_needs_reauth<C: sea_orm::ConnectionTrait>(
    conn: &C,
    row: connection::Model,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut active: connection::ActiveModel = row.into();
    active.status = Set("needs_reauth".into());
    active.healthy = Set(Some(false));
    active.last_error = Set(Some(message.to_owned()));
    active.updated_at = Set(stored_time(now));
    active.update(conn).await?;
    Ok(())
}

/// The credentials to call the provider with: the connection's fields, and a
/// fresh access token when the connector uses OAuth (`force_refresh` after a
/// 401).
pub async fn credentials(
    services: &Services,
    connector: &dyn Connector,
    row: &connection::Model,
    force_refresh: bool,
    now: DateTime<Utc>,
) -> Result<Credentials, TokenError> {
    let fields = connections::open_credentials(
        &services.keys,
        TenantId::from_uuid(row.tenant_id),
        ConnectionId::from_uuid(row.id),
        row.credentials.as_deref(),
    )?;
    let access_token = match connector.oauth() {
        Some(_) => Some(access_token(services, connector, row, force_refresh, now).await?),
        None => None,
    };
    Ok(Credentials {
        fields,
        access_token,
    })
}

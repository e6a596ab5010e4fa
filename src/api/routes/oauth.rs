//! OAuth connect flow: `POST /connect/{provider}` starts it (operator, tenant),
//! `GET /connect/{provider}/callback` completes it (public: the single-use,
//! expiring state bound to tenant and provider is the credential).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::connections::ConnectionDto;
use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Operator, QueryParams, Tenant};
use crate::api::fields;
use crate::connector::{AuthorizeRequest, Connector, ConnectorError, TokenContext};
use crate::db::repo::connections::{self, NewConnection};
use crate::db::repo::oauth_states::{self, NewState};
use crate::domain::ConnectionId;
use crate::engine::oauth::{self, ClientCredentials, OAuthError};
use crate::registry::Entry;
use crate::sync::tokens;

/// How long a started authorization stays valid.
const STATE_TTL_MINUTES: i64 = 10;

/// Starting an OAuth connection.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Where the provider sends the user back (Poblysh Core's callback URL). Default
    /// `POBLYSH_PUBLIC_URL` + `/connect/{provider}/callback`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Label of the connection to create.
    #[serde(default)]
    pub name: Option<String>,
    /// Values for the connector's `config_fields`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Re-authorize this connection of the tenant in place (e.g. one that
    /// `needs_reauth`): the callback stores the new tokens on it, keeping its
    /// id, config and checkpoints, instead of creating a connection. Takes no
    /// `config` or `name`.
    #[serde(default)]
    pub connection_id: Option<uuid::Uuid>,
}

/// Where to send the user.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectStarted {
    /// The provider's authorization URL.
    pub authorize_url: String,
    /// The state the callback must carry back (single use).
    pub state: String,
    /// When the state expires.
    pub expires_at: DateTime<Utc>,
}

/// Query of the callback.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CallbackQuery {
    /// The authorization code.
    code: Option<String>,
    /// The state from `POST /connect/{provider}`.
    state: Option<String>,
    /// Set by the provider when the user declined.
    error: Option<String>,
    /// Detail of `error`.
    error_description: Option<String>,
}

fn oauth_entry(state: &AppState, provider: &str) -> ApiResult<Entry> {
    let entry = state
        .0
        .registry
        .get(provider)
        .ok_or_else(|| ApiError::NotFound(format!("no provider `{provider}`")))?;
    if entry.connector.capabilities().oauth.is_none() {
        return Err(ApiError::bad_request(format!(
            "`{provider}` does not use OAuth 2.0: create the connection with POST /connections"
        )));
    }
    Ok(entry)
}

/// The app's OAuth client for a connector, from the environment.
fn oauth_client(state: &AppState, connector: &dyn Connector) -> ApiResult<ClientCredentials> {
    tokens::client_credentials(&state.0.services, connector, &Default::default()).ok_or_else(|| {
        let (id, secret) = tokens::client_variables(connector);
        ApiError::Conflict(format!(
            "the OAuth client of `{}` is not configured: set {id} and {secret}",
            connector.id()
        ))
    })
}

fn absolute_http(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// Start connecting an OAuth provider: returns the URL to send the user to.
#[utoipa::path(
    post, path = "/connect/{provider}", operation_id = "startConnect", tag = "connect",
    params(("provider" = String, Path, description = "Connector id"), ("X-Tenant-Id" = uuid::Uuid, Header, description = "Tenant")),
    request_body(content = ConnectRequest, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "Send the user to `authorize_url`", body = ConnectStarted),
        (status = 400, description = "Not an OAuth provider, no redirect URI, invalid config", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The app's OAuth client is not configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn start(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(provider): Path<String>,
    body: Bytes,
) -> ApiResult<axum::Json<ConnectStarted>> {
    let request: ConnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let entry = oauth_entry(&state, &provider)?;
    let connector = entry.connector.as_ref();
    let pkce = connector.capabilities().oauth.is_some_and(|o| o.pkce);
    let (config, connection) = match request.connection_id {
        None => (
            fields::config(&connector.catalogue().config_fields, &request.config).map_err(
                |errors| ApiError::BadRequest {
                    message: "invalid config".into(),
                    details: Some(serde_json::json!({ "errors": errors })),
                },
            )?,
            None,
        ),
        Some(id) => {
            if !request.config.is_empty() || request.name.is_some() {
                return Err(ApiError::bad_request(
                    "re-authorizing a connection keeps its config and name: give neither",
                ));
            }
            let current = connections::get(&state.0.db, tenant, ConnectionId::from_uuid(id))
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no connection {id}")))?;
            if current.provider != provider {
                return Err(ApiError::invalid_field(
                    "connection_id",
                    format!("connection {id} is a `{}` connection", current.provider),
                ));
            }
            (current.config, Some(current.id))
        }
    };
    let client = oauth_client(&state, connector)?;
    let redirect_uri = match (&request.redirect_uri, &state.0.config.public_url) {
        (Some(uri), _) => uri.clone(),
        (None, Some(public)) => format!(
            "{}/connect/{provider}/callback",
            public.trim_end_matches('/')
        ),
        (None, None) => {
            return Err(ApiError::bad_request(
                "give `redirect_uri`, or set POBLYSH_PUBLIC_URL",
            ));
        }
    };
    if !absolute_http(&redirect_uri) {
        return Err(ApiError::invalid_field(
            "redirect_uri",
            "must be an absolute http(s) URL",
        ));
    }
    let (verifier, challenge) = if pkce {
        let (v, c) = oauth::pkce_pair(&state.0.ambient);
        (Some(v), Some(c))
    } else {
        (None, None)
    };
    let name = fields::label(request.name).map_err(|errors| ApiError::BadRequest {
        message: "invalid name".into(),
        details: Some(serde_json::json!({ "errors": errors })),
    })?;
    let now = state.0.ambient.now();
    let (state_token, expires_at) = oauth_states::create(
        &state.0.db,
        &state.0.keys,
        NewState {
            tenant,
            provider: provider.clone(),
            verifier,
            redirect_uri: redirect_uri.clone(),
            name,
            config: config.clone(),
            connection,
            ttl: Duration::minutes(STATE_TTL_MINUTES),
        },
        now,
    )
    .await?;
    let url = connector
        .authorize(AuthorizeRequest {
            client_id: &client.client_id,
            redirect_uri: &redirect_uri,
            state: &state_token,
            code_challenge: challenge.as_deref(),
            config: &config,
        })
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(axum::Json(ConnectStarted {
        authorize_url: url.to_string(),
        state: state_token,
        expires_at,
    }))
}

/// Stores a new authorization on the connection it was asked for, unless the
/// provider authorized another account: the metadata its webhooks are routed
/// by (e.g. Slack's `team_id`) differs from what the connection learnt when
/// it was made.
async fn reauthorize(
    state: &AppState,
    connector: &dyn Connector,
    tenant: crate::domain::TenantId,
    id: ConnectionId,
    tokens: &crate::domain::TokenSet,
    now: DateTime<Utc>,
) -> ApiResult<connections::Connection> {
    let gone = || ApiError::NotFound(format!("no connection {id}"));
    let locked = connections::lock(&state.0.db, tenant, id)
        .await?
        .ok_or_else(gone)?;
    let current = &locked.current().connection;
    if current.status == connections::DELETING {
        locked.release().await?;
        return Err(gone());
    }
    let account = connector
        .webhooks()
        .and_then(|w| match &w.profile().routing {
            Some(crate::connector::RoutingTarget::MetadataKey(k)) => Some(k.clone()),
            _ => None,
        });
    let other = account.filter(|k| {
        matches!(
            (current.metadata.get(k.as_str()), tokens.metadata.get(k.as_str())),
            (Some(old), Some(new)) if old != new
        )
    });
    if let Some(key) = other {
        locked.release().await?;
        return Err(ApiError::Conflict(format!(
            "the provider authorized another account (its `{key}` differs): connect it as a new connection"
        )));
    }
    Ok(locked.reauthorized(&state.0.keys, tokens, now).await?)
}

/// Complete an OAuth connection: exchanges the code and creates the connection
/// for the tenant that started the flow (or, for a re-authorization, stores
/// the new tokens on the connection it named: 200).
#[utoipa::path(
    get, path = "/connect/{provider}/callback", operation_id = "completeConnect", tag = "connect",
    params(("provider" = String, Path, description = "Connector id"), CallbackQuery),
    responses(
        (status = 201, description = "Connected", body = ConnectionDto),
        (status = 200, description = "Re-authorized in place", body = ConnectionDto),
        (status = 409, description = "A re-authorization authorized another account", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Missing, unknown, used, expired or foreign state; or the user declined", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider's token endpoint failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<(StatusCode, axum::Json<ConnectionDto>)> {
    let q = QueryParams::parse_lenient(query.as_deref());
    let entry = oauth_entry(&state, &provider)?;
    if let Some(error) = q.text("error") {
        let detail = q
            .text("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "the provider did not authorize the connection ({error}{detail})"
        )));
    }
    let code = q
        .text("code")
        .ok_or_else(|| ApiError::invalid_field("code", "required"))?;
    let state_token = q
        .text("state")
        .ok_or_else(|| ApiError::invalid_field("state", "required"))?;
    let now = state.0.ambient.now();
    let consumed = oauth_states::consume(&state.0.db, &state.0.keys, &provider, state_token, now)
        .await?
        .map_err(|e| ApiError::invalid_field("state", e))?;
    let connector = entry.connector.as_ref();
    let client = oauth_client(&state, connector)?;
    let verifier = consumed
        .verifier
        .as_ref()
        .map(|v| secrecy::ExposeSecret::expose_secret(v).to_owned());
    let ctx = TokenContext {
        http: &state.0.http,
        client: &client,
        config: &consumed.config,
        now,
    };
    let tokens = connector
        .exchange_token(&ctx, code, &consumed.redirect_uri, verifier.as_deref())
        .await
        .map_err(|e| match e {
            ConnectorError::OAuth(OAuthError::InvalidGrant(_) | OAuthError::Provider { .. }) => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::BadGateway(other.to_string()),
        })?;
    if let Some(id) = consumed.connection {
        let reauthorized =
            reauthorize(&state, connector, consumed.tenant, id, &tokens, now).await?;
        return Ok((StatusCode::OK, axum::Json(reauthorized.into())));
    }
    let connection = connections::create(
        &state.0.db,
        &state.0.keys,
        consumed.tenant,
        NewConnection {
            provider: provider.clone(),
            name: consumed.name,
            config: consumed.config,
            credentials: Default::default(),
            tokens: Some(tokens),
        },
    )
    .await?;
    crate::sync::lifecycle::created(&state.0.services, consumed.tenant, connection.id, connector)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(connection.into())))
}

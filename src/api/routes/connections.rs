//! Connections of the tenant: create (credentials + config, validated against
//! the descriptor), list, read, update, delete. Credentials are never returned.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{ApiJson, Operator, PathId, Tenant};
use crate::api::fields::{self, FieldError};
use crate::db::repo::connections::{self, Connection, ConnectionPatch, NewConnection};
use crate::descriptor::webhook::{PENDING_SECRET_FIELD, pending_secrets};
use crate::domain::ConnectionId;
use crate::domain::rotation;
use crate::sync::lifecycle;
use crate::sync::open::{self, OpenError};

/// A connection as the API shows it: never credentials or tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionDto {
    /// Connection id.
    pub id: Uuid,
    /// Connector id.
    pub provider: String,
    /// Optional label.
    pub name: Option<String>,
    /// `active`, `needs_reauth` or `error`.
    pub status: String,
    /// Whether it syncs.
    pub enabled: bool,
    /// Config fields.
    pub config: Value,
    /// `healthy`, `degraded` (failed lately, fewer than 3 times in a row),
    /// `error` (3 or more, or `status` is not `active`) or `unknown` (never
    /// checked nor synced).
    #[schema(example = "healthy")]
    pub health: &'static str,
    /// Result of the last health check or sync (null before the first).
    pub healthy: Option<bool>,
    /// Failures in a row.
    pub consecutive_failures: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When health was last checked.
    pub last_health_check: Option<DateTime<Utc>>,
    /// When the last sync attempt ended (null before the first).
    pub last_sync_at: Option<DateTime<Utc>>,
    /// How it ended: `succeeded`, `retrying` (it failed and is retried) or `failed`.
    pub last_sync_status: Option<String>,
    /// How long it ran, in milliseconds.
    pub last_sync_ms: Option<i64>,
    /// When its first Signal was stored (null before it): minus
    /// `created_at`, its time to first Signal.
    pub first_signal_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Connection> for ConnectionDto {
    fn from(c: Connection) -> Self {
        let health = c.health();
        ConnectionDto {
            health,
            id: *c.id.as_uuid(),
            provider: c.provider,
            name: c.name,
            status: c.status,
            enabled: c.enabled,
            config: c.config,
            healthy: c.healthy,
            consecutive_failures: c.consecutive_failures,
            last_error: c.last_error,
            last_health_check: c.last_health_check,
            last_sync_at: c.last_sync.as_ref().map(|s| s.at),
            last_sync_ms: c.last_sync.as_ref().map(|s| s.ms),
            last_sync_status: c.last_sync.map(|s| s.status),
            first_signal_at: c.first_signal_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The tenant's connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// Newest first.
    pub connections: Vec<ConnectionDto>,
}

/// A connection to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Connector id.
    #[schema(example = "github")]
    pub provider: String,
    /// Values for the connector's `credential_fields` (strings).
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"token": "ghp_…"}))]
    pub credentials: Map<String, Value>,
    /// Values for the connector's `config_fields`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"repos": ["octo-org/hello"]}))]
    pub config: Map<String, Value>,
    /// Optional label.
    #[serde(default)]
    pub name: Option<String>,
}

/// Changes to a connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// Enable or disable syncing.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New values for some of the connector's `credential_fields` (a rotated
    /// token): the fields given replace the stored ones, `null` removes an
    /// optional one, the others stay; the result is checked like on create and
    /// sealed again. The connection keeps its id, config and checkpoints.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"token": "ghp_new…"}))]
    pub credentials: Option<Map<String, Value>>,
    /// New config (replaces the whole config; validated like on create).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    /// New label.
    #[serde(default)]
    pub name: Option<String>,
}

fn field_errors(errors: Vec<FieldError>) -> ApiError {
    let summary: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    ApiError::BadRequest {
        message: format!("invalid connection: {}", summary.join("; ")),
        details: Some(serde_json::json!({ "errors": errors })),
    }
}

/// A connector that exchanges a signed JWT for its token needs the config its
/// exchange names, unless the connection gives the token itself.
fn exchange_inputs(
    connector: &dyn crate::connector::Connector,
    credentials: &std::collections::BTreeMap<String, secrecy::SecretString>,
    config: &Value,
) -> Result<(), Vec<FieldError>> {
    let Some(x) = &connector.capabilities().token_exchange else {
        return Ok(());
    };
    if let Some(key) = &x.static_token_key
        && credentials.contains_key(key)
    {
        return Ok(());
    }
    let missing: Vec<FieldError> = x
        .needs_config
        .iter()
        .filter_map(|k| {
            let message = match config.get(k.as_str()).and_then(Value::as_str) {
                None => match &x.static_token_key {
                    Some(token) => format!("required without `credentials.{token}`"),
                    None => "required".into(),
                },
                Some(v) if !crate::engine::jwt_exchange::path_safe(v) => {
                    "may hold only letters, digits, `-`, `_` and `.`".into()
                }
                Some(_) => return None,
            };
            Some(FieldError {
                field: format!("config.{k}"),
                message,
            })
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// A connection to be made: the body of `POST /connections`, checked.
struct Checked {
    entry: crate::registry::Entry,
    credentials: std::collections::BTreeMap<String, secrecy::SecretString>,
    config: Value,
    name: Option<String>,
}

/// Checks a connection to be made as `POST /connections` does (the connector
/// exists and takes credentials, every field as its descriptor says).
fn check_new(state: &AppState, body: CreateConnection) -> ApiResult<Checked> {
    let entry = state.0.registry.get(&body.provider).ok_or_else(|| {
        ApiError::invalid_field("provider", format!("no provider `{}`", body.provider))
    })?;
    let connector = entry.connector.as_ref();
    let catalogue = connector.catalogue();
    if connector.capabilities().oauth.is_some() {
        return Err(ApiError::invalid_field(
            "provider",
            format!(
                "`{}` uses OAuth 2.0: connect with POST /connect/{}",
                body.provider, body.provider
            ),
        ));
    }
    let credentials = fields::credentials(&catalogue.credential_fields, &body.credentials);
    let config = fields::config(&catalogue.config_fields, &body.config);
    let (credentials, config) = match (credentials, config) {
        (Ok(c), Ok(k)) => match exchange_inputs(connector, &c, &k) {
            Ok(()) => (c, k),
            Err(errors) => return Err(field_errors(errors)),
        },
        (c, k) => {
            let mut errors = c.err().unwrap_or_default();
            errors.extend(k.err().unwrap_or_default());
            return Err(field_errors(errors));
        }
    };
    let name = fields::label(body.name).map_err(field_errors)?;
    Ok(Checked {
        entry,
        credentials,
        config,
        name,
    })
}

/// Create a connection with credentials and config.
#[utoipa::path(
    post, path = "/connections", operation_id = "createConnection", tag = "connections",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = CreateConnection, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ConnectionDto),
        (status = 400, description = "Invalid body, unknown provider or invalid fields (`details.errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, axum::Json<ConnectionDto>)> {
    let Checked {
        entry,
        credentials,
        config,
        name,
    } = check_new(&state, body)?;
    let connector = entry.connector.as_ref();
    let connection = connections::create(
        &state.0.db,
        &state.0.keys,
        tenant,
        NewConnection {
            provider: connector.id().to_owned(),
            name,
            config,
            credentials,
            tokens: None,
        },
    )
    .await?;
    lifecycle::created(&state.0.services, tenant, connection.id, connector).await?;
    Ok((StatusCode::CREATED, axum::Json(connection.into())))
}

/// List the tenant's connections.
#[utoipa::path(
    get, path = "/connections", operation_id = "listConnections", tag = "connections",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The connections", body = ConnectionList),
        (status = 400, description = "Missing or bad X-Tenant-Id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<ConnectionList>> {
    let connections = connections::list(&state.0.db, tenant).await?;
    Ok(axum::Json(ConnectionList {
        connections: connections.into_iter().map(ConnectionDto::from).collect(),
    }))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no connection {id}"))
}

/// Read one connection.
#[utoipa::path(
    get, path = "/connections/{id}", operation_id = "getConnection", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The connection", body = ConnectionDto),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ConnectionDto>> {
    connections::get(&state.0.db, tenant, ConnectionId::from_uuid(id))
        .await?
        .map(|c| axum::Json(c.into()))
        .ok_or_else(|| not_found(id))
}

/// Enable, disable, rename or reconfigure a connection, or give it new
/// credentials (a rotated token), keeping its checkpoints.
#[utoipa::path(
    patch, path = "/connections/{id}", operation_id = "updateConnection", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = UpdateConnection, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = ConnectionDto),
        (status = 400, description = "Invalid body or config", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<axum::Json<ConnectionDto>> {
    let connection_id = ConnectionId::from_uuid(id);
    let current = connections::get(&state.0.db, tenant, connection_id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let entry = state.0.registry.get(&current.provider);
    let config = match body.config {
        None => None,
        Some(given) => {
            let entry = entry
                .as_ref()
                .ok_or_else(|| unregistered(&current.provider))?;
            let config = fields::config(&entry.connector.catalogue().config_fields, &given)
                .map_err(field_errors)?;
            let credentials =
                connections::credentials(&state.0.db, &state.0.keys, tenant, connection_id)
                    .await?
                    .unwrap_or_default();
            exchange_inputs(entry.connector.as_ref(), &credentials, &config)
                .map_err(field_errors)?;
            Some(config)
        }
    };
    // Checked before anything is stored, so a bad label changes nothing.
    let name = match body.name {
        Some(given) => Some(fields::label(Some(given)).map_err(field_errors)?),
        None => None,
    };
    let credentials_changed = match &body.credentials {
        None => false,
        Some(given) => {
            let entry = entry
                .as_ref()
                .ok_or_else(|| unregistered(&current.provider))?;
            let connector = entry.connector.as_ref();
            if connector.capabilities().oauth.is_some() {
                return Err(ApiError::invalid_field(
                    "credentials",
                    format!(
                        "`{}` uses OAuth 2.0: re-authorize with POST /connect/{} and `connection_id`",
                        current.provider, current.provider
                    ),
                ));
            }
            let fields = &connector.catalogue().credential_fields;
            let config = config.as_ref().unwrap_or(&current.config);
            let secret_field = connector
                .webhooks()
                .and_then(|w| w.profile().secret_field.clone());
            let grace_until = state.0.ambient.now() + state.0.config.ops.webhook_secret_grace;
            let outcome = connections::update_credentials(
                &state.0.db,
                &state.0.keys,
                tenant,
                connection_id,
                |stored| {
                    use secrecy::ExposeSecret;
                    // What the service holds beside the declared fields
                    // (pending, previous or issued secrets) is kept as is.
                    let declared = |k: &str| fields.iter().any(|f| f.key == k);
                    let mut merged: Map<String, Value> = stored
                        .iter()
                        .filter(|(k, _)| declared(k))
                        .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned())))
                        .collect();
                    for (k, v) in given {
                        match v {
                            Value::Null => {
                                merged.remove(k);
                            }
                            v => {
                                merged.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    let checked = fields::credentials(fields, &merged)
                        .and_then(|c| exchange_inputs(connector, &c, config).map(|()| c));
                    match checked {
                        Ok(mut c) => {
                            for (k, v) in stored.iter().filter(|(k, _)| !declared(k)) {
                                c.insert(k.clone(), v.clone());
                            }
                            if let Some(field) = &secret_field {
                                rotation::keep_previous(stored, &mut c, field, grace_until);
                            }
                            *stored = c;
                            Ok(())
                        }
                        Err(errors) => Err(errors),
                    }
                },
            )
            .await?
            .ok_or_else(|| not_found(id))?;
            outcome.map_err(field_errors)?;
            true
        }
    };
    // An exchanged token belongs to the config it was exchanged for (an
    // installation): a new config exchanges anew.
    let exchanges = entry
        .as_ref()
        .is_some_and(|e| e.connector.capabilities().token_exchange.is_some());
    let forget_access_token =
        exchanges && (credentials_changed || config.as_ref().is_some_and(|c| *c != current.config));
    let patch = ConnectionPatch {
        enabled: body.enabled,
        config,
        name,
        forget_access_token,
    };
    let updated = connections::update(&state.0.db, tenant, connection_id, patch)
        .await?
        .ok_or_else(|| not_found(id))?;
    if updated.enabled != current.enabled
        && let Some(entry) = &entry
    {
        lifecycle::enabled_changed(
            &state.0.services,
            tenant,
            connection_id,
            entry.connector.as_ref(),
            updated.enabled,
        )
        .await?;
    }
    // This node's webhooks see a new secret (or the connection switched
    // off) at once; other nodes within their cache's few seconds.
    if credentials_changed || updated.enabled != current.enabled {
        state.0.gateway.forget_targets(&current.provider, tenant);
    }
    Ok(axum::Json(updated.into()))
}

/// Delete a connection (its jobs and checkpoints go with it; stored signals stay).
#[utoipa::path(
    delete, path = "/connections/{id}", operation_id = "deleteConnection", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let connection_id = ConnectionId::from_uuid(id);
    let current = connections::get(&state.0.db, tenant, connection_id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let entry = state.0.registry.get(&current.provider);
    let connector = entry.as_ref().map(|e| e.connector.as_ref());
    if lifecycle::delete(&state.0.services, tenant, connection_id, connector).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

/// What a connection test found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// Whether the provider answered the health check as expected.
    pub healthy: bool,
    /// The status it answered, if it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it is unhealthy.
    pub error: Option<String>,
}

/// One of the tenant's connections and its provider's registry entry: 404
/// without the connection, 409 when its provider is no longer registered.
async fn with_provider(
    state: &AppState,
    tenant: crate::domain::TenantId,
    id: Uuid,
) -> ApiResult<(Connection, crate::registry::Entry)> {
    let current = connections::get(&state.0.db, tenant, ConnectionId::from_uuid(id))
        .await?
        .ok_or_else(|| not_found(id))?;
    let entry = state
        .0
        .registry
        .get(&current.provider)
        .ok_or_else(|| unregistered(&current.provider))?;
    Ok((current, entry))
}

/// The 409 of a connection whose provider is no longer registered.
fn unregistered(provider: &str) -> ApiError {
    ApiError::Conflict(format!("provider `{provider}` is no longer registered"))
}

/// A webhook token issued for one connection: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedWebhookToken {
    /// The token. It is not shown again: issue a new one to replace it.
    pub token: String,
    /// The header the sender puts it in (after `prefix`), if a header.
    pub header: Option<String>,
    /// Text before the token in that header.
    pub prefix: Option<String>,
    /// The query parameter carrying it, if a query parameter.
    pub query_param: Option<String>,
    /// Where the sender posts: `{POBLYSH_PUBLIC_URL}/webhooks/{provider}/{tenant}`
    /// (a path only when no public URL is configured).
    pub url: String,
}

/// Issue a new webhook token for a connection whose provider verifies
/// deliveries with per-connection tokens (Zoho Cliq): the token it had stops
/// verifying (on every node within a second), and the new one is shown once.
#[utoipa::path(
    post, path = "/connections/{id}/webhook-token", operation_id = "issueWebhookToken", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "Issued; the token is shown only in this answer", body = IssuedWebhookToken),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its provider takes no issued webhook tokens, or is no longer registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn issue_webhook_token(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<IssuedWebhookToken>> {
    let services = &state.0.services;
    let (current, entry) = with_provider(&state, tenant, id).await?;
    let connection_id = current.id;
    let receiver = entry.connector.webhooks();
    let (Some(issued), Some(field)) = (
        receiver.and_then(|r| r.profile().issued_token.clone()),
        receiver.and_then(|r| r.profile().secret_field.clone()),
    ) else {
        return Err(ApiError::Conflict(format!(
            "provider `{}` takes no issued webhook tokens",
            current.provider
        )));
    };
    let token = services.ambient.token(32);
    let value = secrecy::SecretString::from(token.clone());
    connections::set_credentials(
        &services.db,
        &services.keys,
        tenant,
        connection_id,
        &[(field.as_str(), Some(value))],
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    state.0.gateway.forget_targets(&current.provider, tenant);
    let path = format!("/webhooks/{}/{tenant}", current.provider);
    let url = match &services.config.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    Ok(axum::Json(IssuedWebhookToken {
        token,
        header: issued.header,
        prefix: issued.prefix,
        query_param: issued.query_param,
        url,
    }))
}

/// A connection's webhook secret as a provider handed it over (Notion's
/// verification token), waiting for the operator to confirm it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingWebhookSecret {
    /// The secrets handed over for this connection, newest first (at most 5):
    /// paste one where the provider asks for it, and confirm here the one the
    /// provider accepted (anyone who knows the tenant URL can hand one over).
    pub pending: Vec<String>,
    /// Whether the connection has a webhook secret of its own already.
    pub set: bool,
}

/// The secret to confirm.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWebhookSecret {
    /// The pending secret, as shown by `GET /connections/{id}/webhook-secret`.
    pub secret: String,
}

/// The webhook secret field and the provider of a connection whose provider
/// hands its secret over in a handshake.
async fn handed_over(
    state: &AppState,
    tenant: crate::domain::TenantId,
    id: Uuid,
) -> ApiResult<(ConnectionId, String, String)> {
    let (current, entry) = with_provider(state, tenant, id).await?;
    let connection_id = current.id;
    let field = entry
        .connector
        .webhooks()
        .filter(|r| r.profile().hands_over_secret)
        .and_then(|r| r.profile().secret_field.clone())
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "provider `{}` hands over no webhook secret",
                current.provider
            ))
        })?;
    Ok((connection_id, field, current.provider))
}

/// Show the webhook secret the provider handed over for this connection (a
/// Notion subscription's verification token), to be confirmed.
#[utoipa::path(
    get, path = "/connections/{id}/webhook-secret", operation_id = "getPendingWebhookSecret", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The pending secret, if any", body = PendingWebhookSecret),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its provider hands over no webhook secret, or is no longer registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn pending_webhook_secret(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<PendingWebhookSecret>> {
    use secrecy::ExposeSecret;
    let (connection_id, field, _) = handed_over(&state, tenant, id).await?;
    let stored = connections::credentials(&state.0.db, &state.0.keys, tenant, connection_id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(axum::Json(PendingWebhookSecret {
        pending: pending_secrets(stored.get(PENDING_SECRET_FIELD).map(|s| s.expose_secret())),
        set: stored.contains_key(&field),
    }))
}

/// Confirm the pending webhook secret: from now on it verifies this
/// connection's deliveries (it replaces a secret set before).
#[utoipa::path(
    post, path = "/connections/{id}/webhook-secret", operation_id = "confirmWebhookSecret", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = ConfirmWebhookSecret, content_type = "application/json"),
    responses(
        (status = 200, description = "Confirmed", body = PendingWebhookSecret),
        (status = 400, description = "Not the pending secret", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No secret is pending, or the provider hands over none", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn confirm_webhook_secret(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<ConfirmWebhookSecret>,
) -> ApiResult<axum::Json<PendingWebhookSecret>> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let (connection_id, field, provider) = handed_over(&state, tenant, id).await?;
    let grace_until = state.0.ambient.now() + state.0.config.ops.webhook_secret_grace;
    // Under the row lock: a handshake that comes in meanwhile cannot undo it.
    let outcome = connections::update_credentials(
        &state.0.db,
        &state.0.keys,
        tenant,
        connection_id,
        |fields| {
            let stored = fields.get(PENDING_SECRET_FIELD).map(|s| s.expose_secret());
            let pending = pending_secrets(stored);
            if pending.is_empty() {
                return Err(ApiError::Conflict(
                    "no webhook secret is pending for this connection".into(),
                ));
            }
            // The value the operator gave the provider must be one waiting.
            let found = pending.iter().fold(false, |found, p| {
                found | bool::from(p.as_bytes().ct_eq(body.secret.as_bytes()))
            });
            if !found {
                return Err(ApiError::invalid_field(
                    "secret",
                    "is not a pending webhook secret of this connection",
                ));
            }
            let before = fields.clone();
            fields.insert(
                field.clone(),
                secrecy::SecretString::from(body.secret.clone()),
            );
            fields.remove(PENDING_SECRET_FIELD);
            rotation::keep_previous(&before, fields, &field, grace_until);
            Ok(())
        },
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    outcome?;
    state.0.gateway.forget_targets(&provider, tenant);
    Ok(axum::Json(PendingWebhookSecret {
        pending: Vec::new(),
        set: true,
    }))
}

/// Run the connector's health check with this connection's credentials (and
/// record the result on the connection).
#[utoipa::path(
    post, path = "/connections/{id}/test", operation_id = "testConnection", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The check ran; see `healthy`", body = TestResult),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its provider is no longer registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn test(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<TestResult>> {
    let services = &state.0.services;
    let connection_id = ConnectionId::from_uuid(id);
    let opened = match open::open(services, tenant, connection_id).await {
        Ok(o) if o.stored.connection.status != connections::DELETING => o,
        Ok(_) | Err(OpenError::Gone) => return Err(not_found(id)),
        Err(OpenError::UnknownProvider(provider)) => return Err(unregistered(&provider)),
        Err(OpenError::Store(e)) => return Err(e.into()),
    };
    let result = opened.check_health(services).await?;
    Ok(axum::Json(TestResult {
        healthy: result.healthy,
        status: result.status,
        latency_ms: result.latency_ms,
        error: result.error,
    }))
}

/// Run the connector's health check with credentials and config that are not
/// stored (the body of `POST /connections`, checked the same way): nothing is
/// stored, whatever the outcome.
#[utoipa::path(
    post, path = "/connections/test", operation_id = "testNewConnection", tag = "connections",
    params(("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    request_body(content = CreateConnection, content_type = "application/json"),
    responses(
        (status = 200, description = "The check ran; see `healthy`", body = TestResult),
        (status = 400, description = "Invalid body, unknown provider or invalid fields (`details.errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn test_new(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<axum::Json<TestResult>> {
    Ok(axum::Json(test_unsaved(&state, tenant, body).await?))
}

/// The health check of a connection to be made (`POST /connections/test`, the
/// dashboard's setup step).
pub async fn test_unsaved(
    state: &AppState,
    tenant: crate::domain::TenantId,
    body: CreateConnection,
) -> ApiResult<TestResult> {
    let Checked {
        entry,
        credentials,
        config,
        ..
    } = check_new(state, body)?;
    let connector = entry.connector.as_ref();
    let static_token = connector.capabilities().token_exchange.as_ref().map(|x| {
        x.static_token_key
            .as_ref()
            .is_some_and(|k| credentials.contains_key(k))
    });
    if static_token == Some(false) {
        return Err(ApiError::bad_request(format!(
            "`{}` exchanges a signed app token for its access token: create the connection, then test it with POST /connections/{{id}}/test",
            connector.id()
        )));
    }
    let services = &state.0.services;
    let scrubber = open::scrubber_for(services, connector, &credentials, []);
    let credentials = crate::engine::auth::Credentials {
        fields: credentials,
        access_token: None,
    };
    let metadata = Value::Object(Map::new());
    let result = connector
        .health_check(&crate::connector::ConnectionContext {
            http: &services.http,
            ambient: &services.ambient,
            credentials: &credentials,
            tenant_id: tenant,
            connection_id: ConnectionId::from_uuid(Uuid::now_v7()),
            config: &config,
            metadata: &metadata,
            now: services.ambient.now(),
            resume: None,
        })
        .await;
    Ok(TestResult {
        healthy: result.healthy,
        status: result.status,
        latency_ms: result.latency_ms,
        error: result.error.as_deref().map(|e| scrubber.scrub(e)),
    })
}

/// Signals of a connection over recent windows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalCounts {
    /// Signals that occurred in the last 24 hours.
    pub last_24h: u64,
    /// Signals that occurred in the last 7 days.
    pub last_7d: u64,
}

/// What a connection has done lately.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionStats {
    /// Connection id.
    pub connection_id: Uuid,
    /// Signal counts (by when they occurred).
    pub signals: SignalCounts,
    /// Its jobs created in the last 7 days, by state (`queued`, `running`,
    /// `succeeded`, `failed`, `retrying`; every state present, zero when none).
    #[schema(value_type = Object, example = json!({"queued": 0, "running": 1, "succeeded": 24, "failed": 0, "retrying": 0}))]
    pub jobs_last_7d: std::collections::BTreeMap<String, u64>,
    /// When they were counted.
    pub as_of: DateTime<Utc>,
}

/// Counts for one connection: its Signals over the last 24 hours and 7 days,
/// its recent jobs by state. Each count is one index range.
#[utoipa::path(
    get, path = "/connections/{id}/stats", operation_id = "getConnectionStats", tag = "connections",
    params(("id" = Uuid, Path, description = "Connection id"), ("X-Tenant-Id" = Uuid, Header, description = "Tenant")),
    responses(
        (status = 200, description = "The counts", body = ConnectionStats),
        (status = 404, description = "No such connection for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn stats(
    _: Operator,
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ConnectionStats>> {
    Ok(axum::Json(connection_stats(&state, tenant, id).await?))
}

/// The counts of `GET /connections/{id}/stats` (404 without the connection).
pub async fn connection_stats(
    state: &AppState,
    tenant: crate::domain::TenantId,
    id: Uuid,
) -> ApiResult<ConnectionStats> {
    let connection_id = ConnectionId::from_uuid(id);
    let db = &state.0.db;
    connections::get(db, tenant, connection_id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let now = state.0.services.ambient.now();
    let counted = crate::db::repo::stats::connection(db, tenant, connection_id, now).await?;
    Ok(ConnectionStats {
        connection_id: id,
        signals: SignalCounts {
            last_24h: counted.signals_24h,
            last_7d: counted.signals_7d,
        },
        jobs_last_7d: counted.jobs_7d,
        as_of: now,
    })
}

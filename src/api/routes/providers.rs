//! The connector catalogue: list and read (public), register and remove runtime
//! descriptors (operator). Registration validates exactly like `check`.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Operator, QueryParams, Tenant};
use crate::db::repo::connections::{self, Connection};
use crate::db::repo::providers::{self, DeleteOutcome, PutOutcome};
use crate::descriptor::load::Loader;
use crate::descriptor::model::{ConnectorCategory, CredentialField};
use crate::descriptor::source::Format;
use crate::registry::Entry;

/// A connector in the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderDto {
    /// Connector id (the Signals' `provider`).
    #[schema(example = "github")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// One sentence.
    pub description: String,
    /// Catalogue category (`code_devops`, `communication`, …).
    #[schema(value_type = String)]
    pub category: crate::descriptor::model::ConnectorCategory,
    /// Icon name or URL.
    pub icon: String,
    /// `generic` or `native`.
    #[schema(value_type = String)]
    pub kind: crate::descriptor::model::ConnectorKind,
    /// Descriptor version.
    pub version: String,
    /// Shipped with the service (read-only).
    pub built_in: bool,
    /// `oauth2`, `api_key`, `pat`, `basic`, `webhook_secret` or `none`.
    pub auth_method: &'static str,
    /// `polling`, `webhook` or `polling_and_webhook`.
    pub ingestion_mode: &'static str,
    /// Signal kinds it can emit.
    pub signals: Vec<String>,
    /// What `POST /connections` takes in `credentials`.
    pub credential_fields: Vec<FieldDto>,
    /// What `POST /connections` takes in `config`.
    pub config_fields: Vec<FieldDto>,
    /// The tenant's connections of it: `connected`, `error` (one of them needs
    /// attention: re-authorization, or its last check or sync failed) or
    /// `not_configured`. Only when the request names a tenant (`X-Tenant-Id`,
    /// with an operator token).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "connected")]
    pub status: Option<ProviderStatus>,
    /// How many connections the tenant has of it (with `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// The full descriptor (`GET /providers/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub descriptor: Option<crate::descriptor::model::ConnectorDescriptor>,
}

/// A form field of the connect flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldDto {
    /// Key in `credentials` / `config`.
    pub key: String,
    /// Label.
    pub label: String,
    /// `text`, `password`, `url`, `list` or `select`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub field_type: crate::descriptor::model::FieldType,
    /// Whether it must be given.
    pub required: bool,
    /// Placeholder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Help text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// The values a `select` field accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionDto>,
}

/// One value of a `select` field.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionDto {
    /// The value to send.
    pub value: String,
    /// What to show.
    pub label: String,
}

impl From<&CredentialField> for FieldDto {
    fn from(f: &CredentialField) -> Self {
        FieldDto {
            key: f.key.clone(),
            label: f.label.clone(),
            field_type: f.field_type,
            required: f.required,
            placeholder: f.placeholder.clone(),
            help_text: f.help_text.clone(),
            options: f
                .options
                .iter()
                .map(|o| OptionDto {
                    value: o.value.clone(),
                    label: o.label.clone().unwrap_or_else(|| o.value.clone()),
                })
                .collect(),
        }
    }
}

/// The catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    /// Connectors, by id.
    pub providers: Vec<ProviderDto>,
}

/// The DTO of a registry entry.
pub fn dto(entry: &Entry, with_descriptor: bool) -> ProviderDto {
    let c = entry.connector.catalogue();
    ProviderDto {
        id: c.id.clone(),
        name: c.name.clone(),
        description: c.description.clone(),
        category: c.category,
        icon: c.icon.clone(),
        kind: c.kind,
        version: c.version.clone(),
        built_in: entry.built_in,
        auth_method: c.auth_method,
        ingestion_mode: c.ingestion_mode,
        signals: c.signals.clone(),
        credential_fields: c.credential_fields.iter().map(FieldDto::from).collect(),
        config_fields: c.config_fields.iter().map(FieldDto::from).collect(),
        status: None,
        connections: None,
        descriptor: with_descriptor.then(|| c.descriptor.clone()),
    }
}

/// A tenant's standing with one connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    /// It has connections and none needs attention.
    Connected,
    /// One of its connections needs attention.
    Error,
    /// It has none.
    NotConfigured,
}

impl ProviderStatus {
    /// The status of a tenant's `connections` of one connector.
    pub fn of(connections: &[&Connection]) -> Self {
        if connections.is_empty() {
            ProviderStatus::NotConfigured
        } else if connections
            .iter()
            .any(|c| c.status != "active" || c.healthy == Some(false))
        {
            ProviderStatus::Error
        } else {
            ProviderStatus::Connected
        }
    }
}

/// What the catalogue is narrowed to.
#[derive(Debug, Default)]
pub struct CatalogueFilter {
    /// One category.
    pub category: Option<ConnectorCategory>,
    /// Words the name, id or description contain (case-insensitive).
    pub q: Option<String>,
}

impl CatalogueFilter {
    /// Whether `entry` is in it.
    pub fn admits(&self, entry: &Entry) -> bool {
        let c = entry.connector.catalogue();
        if self.category.is_some_and(|k| k != c.category) {
            return false;
        }
        let Some(q) = self.q.as_deref() else {
            return true;
        };
        let text = format!("{} {} {}", c.name, c.id, c.description).to_lowercase();
        q.to_lowercase()
            .split_whitespace()
            .all(|word| text.contains(word))
    }
}

/// The catalogue narrowed by `filter`, each connector with the tenant's status
/// when `connections` (the tenant's) are given.
pub fn catalogue(
    state: &AppState,
    filter: &CatalogueFilter,
    connections: Option<&[Connection]>,
) -> Vec<ProviderDto> {
    state
        .0
        .registry
        .list()
        .iter()
        .filter(|e| filter.admits(e))
        .map(|e| {
            let mut d = dto(e, false);
            if let Some(all) = connections {
                let own: Vec<&Connection> = all.iter().filter(|c| c.provider == d.id).collect();
                d.status = Some(ProviderStatus::of(&own));
                d.connections = Some(own.len());
            }
            d
        })
        .collect()
}

/// Query of `GET /providers`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ProvidersQuery {
    /// Only this category (`project_management`, `communication`,
    /// `code_devops`, `documents`, `email`, `calendar`, `monitoring`, `custom`).
    category: Option<String>,
    /// Only connectors whose name, id or description contain every word.
    q: Option<String>,
}

/// List the connectors. With `X-Tenant-Id` (and an operator token) each
/// carries the tenant's `status` and `connections`.
#[utoipa::path(
    get, path = "/providers", operation_id = "listProviders", tag = "providers",
    params(
        ProvidersQuery,
        ("X-Tenant-Id" = Option<Uuid>, Header, description = "Tenant whose status to show (needs an operator token)"),
    ),
    responses(
        (status = 200, description = "The catalogue", body = ProviderList),
        (status = 400, description = "A bad query parameter or X-Tenant-Id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "X-Tenant-Id without a good operator token", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    mut parts: Parts,
) -> ApiResult<axum::Json<ProviderList>> {
    let q = QueryParams::parse(query.as_deref(), &["category", "q"])?;
    let filter = CatalogueFilter {
        category: q.parsed("category", "a catalogue category", |v| {
            ConnectorCategory::ALL
                .iter()
                .copied()
                .find(|c| c.as_str() == v)
        })?,
        q: q.text("q").map(str::to_owned),
    };
    let connections = if parts.headers.contains_key("x-tenant-id") {
        Operator::from_request_parts(&mut parts, &state).await?;
        let Tenant(tenant) = Tenant::from_request_parts(&mut parts, &state).await?;
        Some(connections::list(&state.0.db, tenant).await?)
    } else {
        None
    };
    Ok(axum::Json(ProviderList {
        providers: catalogue(&state, &filter, connections.as_deref()),
    }))
}

/// Read one connector, with its descriptor.
#[utoipa::path(
    get, path = "/providers/{id}", operation_id = "getProvider", tag = "providers",
    params(("id" = String, Path, description = "Connector id")),
    responses(
        (status = 200, description = "The connector", body = ProviderDto),
        (status = 404, description = "No such connector", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ProviderDto>> {
    state
        .0
        .registry
        .get(&id)
        .map(|e| axum::Json(dto(&e, true)))
        .ok_or_else(|| ApiError::NotFound(format!("no provider `{id}`")))
}

/// Register or replace a runtime connector. The body is a descriptor in JSON
/// (`application/json`) or YAML (`application/yaml`), validated exactly like
/// `check`; its `id` must equal the path's.
#[utoipa::path(
    put, path = "/providers/{id}", operation_id = "putProvider", tag = "providers",
    params(("id" = String, Path, description = "Connector id")),
    request_body(content = Object, description = "A connector descriptor (JSON or YAML)", content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = ProviderDto),
        (status = 200, description = "Replaced", body = ProviderDto),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A built-in connector has this id", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON or YAML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid descriptor; `details.diagnostics` lists every problem", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn put(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let format = if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("yaml") {
        Format::Yaml
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "send the descriptor as `application/json` or `application/yaml`".into(),
        ));
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let natives = state.0.registry.native_ids();
    let loader = Loader::with_natives(&natives);
    let compiled = loader
        .load_str("<request body>", text, format)
        .map_err(|diagnostics| ApiError::Unprocessable {
            message: format!("the descriptor has {} problem(s)", diagnostics.len()),
            details: Some(serde_json::json!({ "diagnostics": diagnostics })),
        })?;
    if compiled.id() != id {
        return Err(ApiError::Unprocessable {
            message: format!(
                "the descriptor's id `{}` does not match the path's `{id}`",
                compiled.id()
            ),
            details: None,
        });
    }
    if state.0.registry.get(&id).is_some_and(|e| e.built_in) {
        return Err(ApiError::Conflict(format!(
            "`{id}` is a built-in connector and cannot be replaced"
        )));
    }
    let descriptor = compiled.descriptor.clone();
    let connector =
        state
            .0
            .registry
            .connector_for(compiled)
            .map_err(|e| ApiError::Unprocessable {
                message: e.to_string(),
                details: None,
            })?;
    // The stored row and this node's registry change together (the follower
    // of other nodes' changes waits meanwhile).
    let _changes = state.0.registry.lock_changes().await;
    let (outcome, revision) = providers::put_runtime(&state.0.db, &descriptor).await?;
    let status = match outcome {
        PutOutcome::BuiltIn => {
            return Err(ApiError::Conflict(format!(
                "`{id}` is a built-in connector and cannot be replaced"
            )));
        }
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced => StatusCode::OK,
    };
    state.0.registry.insert_connector(connector, false);
    state.0.registry.set_revision(&id, Some(revision));
    let entry = state
        .0
        .registry
        .get(&id)
        .ok_or_else(|| ApiError::Internal("registry lost an entry".into()))?;
    Ok((status, axum::Json(dto(&entry, true))))
}

/// Remove a runtime connector (built-ins are read-only).
#[utoipa::path(
    delete, path = "/providers/{id}", operation_id = "deleteProvider", tag = "providers",
    params(("id" = String, Path, description = "Connector id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad operator token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such connector", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A built-in connector", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let _changes = state.0.registry.lock_changes().await;
    match providers::delete_runtime(&state.0.db, &id).await? {
        DeleteOutcome::Deleted => {
            state.0.registry.remove(&id);
            state.0.registry.set_revision(&id, None);
            Ok(StatusCode::NO_CONTENT)
        }
        DeleteOutcome::NotFound => Err(ApiError::NotFound(format!("no provider `{id}`"))),
        DeleteOutcome::BuiltIn => Err(ApiError::Conflict(format!(
            "`{id}` is a built-in connector and cannot be removed"
        ))),
    }
}

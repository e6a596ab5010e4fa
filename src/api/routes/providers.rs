//! The connector catalogue: list and read (public), register and remove runtime
//! descriptors (operator). Registration validates exactly like `check`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::Operator;
use crate::db::repo::providers::{self, DeleteOutcome, PutOutcome};
use crate::descriptor::load::Loader;
use crate::descriptor::model::CredentialField;
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
        descriptor: with_descriptor.then(|| c.descriptor.clone()),
    }
}

/// List the connectors.
#[utoipa::path(
    get, path = "/providers", operation_id = "listProviders", tag = "providers",
    responses((status = 200, description = "The catalogue", body = ProviderList)),
    security(()),
)]
pub async fn list(State(state): State<AppState>) -> axum::Json<ProviderList> {
    axum::Json(ProviderList {
        providers: state
            .0
            .registry
            .list()
            .iter()
            .map(|e| dto(e, false))
            .collect(),
    })
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
    let status = match providers::put_runtime(&state.0.db, &descriptor).await? {
        PutOutcome::BuiltIn => {
            return Err(ApiError::Conflict(format!(
                "`{id}` is a built-in connector and cannot be replaced"
            )));
        }
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced => StatusCode::OK,
    };
    state.0.registry.insert_connector(connector, false);
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
    match providers::delete_runtime(&state.0.db, &id).await? {
        DeleteOutcome::Deleted => {
            state.0.registry.remove(&id);
            Ok(StatusCode::NO_CONTENT)
        }
        DeleteOutcome::NotFound => Err(ApiError::NotFound(format!("no provider `{id}`"))),
        DeleteOutcome::BuiltIn => Err(ApiError::Conflict(format!(
            "`{id}` is a built-in connector and cannot be removed"
        ))),
    }
}

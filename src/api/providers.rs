//! `GET /providers` and `GET /providers/{id}`: the connector catalogue.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::descriptor::compile::CompiledDescriptor;
use crate::descriptor::model::{ConnectorDescriptor, CredentialField};

/// A connector as the catalogue shows it.
#[derive(Debug, Serialize)]
pub struct ProviderDto {
    id: String,
    name: String,
    description: String,
    category: crate::descriptor::model::ConnectorCategory,
    icon: String,
    kind: crate::descriptor::model::ConnectorKind,
    version: String,
    built_in: bool,
    auth_method: &'static str,
    ingestion_mode: &'static str,
    signals: Vec<String>,
    credential_fields: Vec<FieldDto>,
    config_fields: Vec<FieldDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    descriptor: Option<ConnectorDescriptor>,
}

/// A form field of the connect flow.
#[derive(Debug, Serialize)]
pub struct FieldDto {
    key: String,
    label: String,
    #[serde(rename = "type")]
    field_type: crate::descriptor::model::FieldType,
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    placeholder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_text: Option<String>,
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
        }
    }
}

fn dto(compiled: &CompiledDescriptor, with_descriptor: bool) -> ProviderDto {
    let d = &compiled.descriptor;
    ProviderDto {
        id: d.id.clone(),
        name: d.name.clone(),
        description: d.description.clone(),
        category: d.category,
        icon: d.icon.clone(),
        kind: d.kind,
        version: d.version.clone(),
        built_in: true,
        auth_method: d.auth.method_name(),
        ingestion_mode: d.ingestion.mode_name(),
        signals: d.signals.clone(),
        credential_fields: d
            .auth
            .credential_fields()
            .iter()
            .map(FieldDto::from)
            .collect(),
        config_fields: d.config_fields.iter().map(FieldDto::from).collect(),
        descriptor: with_descriptor.then(|| d.clone()),
    }
}

/// The catalogue list.
#[derive(Debug, Serialize)]
pub struct ProviderList {
    providers: Vec<ProviderDto>,
}

/// `GET /providers`
pub async fn list(State(state): State<AppState>) -> Json<ProviderList> {
    Json(ProviderList {
        providers: state.0.registry.iter().map(|c| dto(c, false)).collect(),
    })
}

/// `GET /providers/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProviderDto>> {
    state
        .0
        .registry
        .get(&id)
        .map(|c| Json(dto(c, true)))
        .ok_or_else(|| ApiError::NotFound(format!("no provider `{id}`")))
}

//! The top-level `ConnectorDescriptor` and the small types shared by its parts.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::AuthDescriptor;
use super::ingestion::IngestionDescriptor;
use super::mapping::FieldMappingDescriptor;

/// A connector descriptor: everything the generic runtime needs to authenticate
/// against a provider, ingest its activity (polling and/or webhooks) and map it
/// to Signals. Field names follow the Universal Connector Framework spec
/// (seed 004, camelCase); the extensions are documented per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Poblysh connector descriptor")]
pub struct ConnectorDescriptor {
    /// Optional URL or path of this JSON Schema, for editor completion. Ignored by the runtime.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Unique connector id: lowercase, starts with a letter, then letters, digits, `_` or `-`
    /// (shipped connectors use snake_case, e.g. `google_drive`). It is the Signal's `provider`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]*$"))]
    pub id: String,
    /// Human-readable name, e.g. `GitHub`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Short description for the UI.
    pub description: String,
    /// Category used to group connectors in the catalogue.
    pub category: ConnectorCategory,
    /// Icon identifier: a lucide icon name or an absolute URL.
    pub icon: String,
    /// `generic` connectors are run entirely from this descriptor; `native` ones are
    /// implemented in Rust and use the descriptor for metadata, auth and mapping.
    pub kind: ConnectorKind,
    /// Extension: default API base URL, available to templates as `{{baseUrl}}`. A connection
    /// config field named `baseUrl` (declared in `configFields`) overrides it per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Extension: per-connection settings the user provides when connecting (e.g. `baseUrl`,
    /// `projectKey`, `repos`), available to templates as `{{config.<key>}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_fields: Vec<CredentialField>,
    /// Extension: the Signal kinds this connector can emit (shown by `GET /providers`). When
    /// present, every `then` and `defaultType` must be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<String>,
    /// How requests to the provider are authenticated.
    pub auth: AuthDescriptor,
    /// How activity is ingested: `polling`, `webhook` or `polling_and_webhook`.
    pub ingestion: IngestionDescriptor,
    /// How raw provider items become Signals.
    pub field_mapping: FieldMappingDescriptor,
    /// How a connection's health is checked (`POST /connections/{id}/test`).
    pub health_check: HealthCheckDescriptor,
    /// Descriptor version, semantic versioning (`1.0.0`).
    pub version: String,
}

/// Catalogue category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorCategory {
    /// Issue trackers and planning tools (Jira, Linear, Trello).
    ProjectManagement,
    /// Chat and incident communication (Slack, Zoho Cliq, PagerDuty).
    Communication,
    /// Code hosting, CI and error tracking (GitHub, Sentry).
    CodeDevops,
    /// Documents and wikis (Notion, Confluence, Google Drive).
    Documents,
    /// Email (Gmail, Zoho Mail).
    Email,
    /// Calendars (Google Calendar).
    Calendar,
    /// Monitoring and alerting (Datadog).
    Monitoring,
    /// Anything else.
    Custom,
}

impl ConnectorCategory {
    /// Every category, in the catalogue's order.
    pub const ALL: &[Self] = &[
        Self::ProjectManagement,
        Self::Communication,
        Self::CodeDevops,
        Self::Documents,
        Self::Email,
        Self::Calendar,
        Self::Monitoring,
        Self::Custom,
    ];

    /// The wire name (`code_devops`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProjectManagement => "project_management",
            Self::Communication => "communication",
            Self::CodeDevops => "code_devops",
            Self::Documents => "documents",
            Self::Email => "email",
            Self::Calendar => "calendar",
            Self::Monitoring => "monitoring",
            Self::Custom => "custom",
        }
    }

    /// What the catalogue calls it (`Code & DevOps`).
    pub fn label(self) -> &'static str {
        match self {
            Self::ProjectManagement => "Project Management",
            Self::Communication => "Communication",
            Self::CodeDevops => "Code & DevOps",
            Self::Documents => "Documents",
            Self::Email => "Email",
            Self::Calendar => "Calendar",
            Self::Monitoring => "Monitoring",
            Self::Custom => "Custom",
        }
    }
}

/// Whether the connector is run by the generic runtime or by Rust code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Implemented in Rust (Gmail, Google Drive, Google Calendar).
    Native,
    /// Interpreted from this descriptor.
    Generic,
}

/// A field the user fills in when connecting: a credential (`credentialFields`) or a
/// per-connection setting (`configFields`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialField {
    /// Key under which the value is stored and referenced (`config.<key>`, `credentialKey`).
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_]*$"))]
    pub key: String,
    /// Label shown in the connect form.
    pub label: String,
    /// Input type. `password` values are secrets; `list` (config fields) holds several values;
    /// `select` takes one of `options`.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether the user must provide a value.
    pub required: bool,
    /// Placeholder shown in the empty input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Help text shown under the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// Extension: the values a `select` field accepts (and only a `select`
    /// field has), e.g. a provider's data centres, so a template may build a
    /// host from the value without letting a tenant name any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<FieldOption>,
    /// Extension: with `required`, the field may be left out when the field
    /// named here is given instead (an API token or a personal access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_unless: Option<String>,
}

/// One value a `select` field accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldOption {
    /// The value stored and given to templates (`eu`).
    pub value: String,
    /// What the form shows (`Europe (zoho.eu)`); the value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Input type of a credential or config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Plain text.
    Text,
    /// A secret: stored encrypted, never returned by the API.
    Password,
    /// An absolute http(s) URL.
    Url,
    /// Extension: a list of strings (a JSON array, or comma-separated text).
    List,
    /// Extension: one of the field's `options`.
    Select,
}

/// How the connection's health is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckDescriptor {
    /// URL template of the health-check request (`{{baseUrl}}/user`).
    pub endpoint: String,
    /// HTTP method.
    pub method: HealthCheckMethod,
    /// HTTP status that means healthy (100-599).
    pub expect_status: u16,
    /// Timeout in milliseconds.
    #[schemars(range(min = 1))]
    pub timeout_ms: u32,
    /// Extension: fixed request headers (an API version, `Accept`), name → value.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// HTTP method of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HealthCheckMethod {
    /// `GET`
    #[serde(rename = "GET")]
    Get,
    /// `HEAD`
    #[serde(rename = "HEAD")]
    Head,
}

/// HTTP method of a polling request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HttpMethod {
    /// `GET`
    #[serde(rename = "GET")]
    Get,
    /// `POST`
    #[serde(rename = "POST")]
    Post,
}

/// Request headers: name → value template.
pub type Headers = BTreeMap<String, String>;

/// One value or a list of values (`event: push` or `event: [push, release]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// Several values.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

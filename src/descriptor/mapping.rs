//! Field-mapping descriptors: how raw provider items become Signals (paths,
//! summary template, signal-type rules, conditions, priority).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

pub use crate::domain::Priority;
use serde::{Deserialize, Serialize};

use super::model::OneOrMany;

/// How raw items (a polled page or a webhook body) become Signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldMappingDescriptor {
    /// JSONPath to the items: an array (a page) or a single object (`$` for a webhook body).
    pub items_path: String,
    /// JSONPath (per item) to the item's unique id.
    pub id_path: String,
    /// Extension: JSONPath to the provider's id shown as the Signal's `external_id`
    /// (defaults to `idPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_path: Option<String>,
    /// JSONPath to the item's timestamp (RFC 3339, RFC 2822, `YYYY-MM-DD HH:MM:SS`, unix
    /// seconds or milliseconds).
    pub timestamp_path: String,
    /// Handlebars template of the summary over the item's fields (`{{title}}`,
    /// `{{user.login}}`). A missing field renders empty.
    pub summary_template: String,
    /// Rules choosing the Signal kind, tried in order; the first match wins.
    pub signal_type_rules: Vec<SignalTypeRule>,
    /// Extension: kind used when no rule matches (without it such items are skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_type: Option<String>,
    /// Extension: conditions an item must meet to become a Signal (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<Condition>,
    /// Priority rules, tried in order; the first match wins (no match: no priority).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_mapping: Vec<PriorityRule>,
    /// JSONPath to the participants (user names or ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants_path: Option<String>,
    /// JSONPath to tags or labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_path: Option<String>,
    /// JSONPath to related items (linked tickets, parent issues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_items_path: Option<String>,
    /// Extension: JSONPath to the item's web URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    /// Fields kept in the Signal's payload: JSONPaths (`$.user.login`) or plain field names
    /// (`number`, `user.login`), each kept under its own text; or, an extension,
    /// `{name, path}` to keep a JSONPath under a name of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_fields: Vec<RawField>,
}

/// One field kept in a Signal's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawField {
    /// A JSONPath or plain field name, kept under its own text.
    Path(String),
    /// Extension: a JSONPath kept under `name`.
    Named(NamedRawField),
}

/// Extension: a payload field with a name of its own (`statusFrom` for
/// `$.changelog.items[?@.fieldId == 'status'].fromString`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedRawField {
    /// Key in the payload's `raw` object.
    pub name: String,
    /// JSONPath or plain field name of the value.
    pub path: String,
    /// Keep the first match instead of the list of matches of a path with
    /// wildcards or filters (absent when nothing matches).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first: bool,
}

impl RawField {
    /// The key the value is kept under.
    pub fn name(&self) -> &str {
        match self {
            RawField::Path(path) => path,
            RawField::Named(named) => &named.name,
        }
    }

    /// The path as written.
    pub fn path(&self) -> &str {
        match self {
            RawField::Path(path) => path,
            RawField::Named(named) => &named.path,
        }
    }

    /// Whether only the first match is kept.
    pub fn first(&self) -> bool {
        matches!(self, RawField::Named(NamedRawField { first: true, .. }))
    }
}

/// Chooses a Signal kind. `when`/`operator`/`value` is the seed's single condition;
/// `and` adds more; `event` matches the webhook event type. Everything given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignalTypeRule {
    /// JSONPath (per item) of the value tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Test applied to the `when` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// Value for the operator (`exists`/`not_exists` take none; `in` takes a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "condition_value_schema")]
    pub value: Option<serde_json::Value>,
    /// Extension: further conditions that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub and: Vec<Condition>,
    /// Extension: webhook event type(s) this rule applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<OneOrMany<String>>,
    /// Resulting Signal kind (action-first, snake_case: `pr_merged`).
    pub then: String,
}

/// A test on one value of the item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// JSONPath (per item) of the value tested.
    pub when: String,
    /// Test applied to the value.
    pub operator: Operator,
    /// Value for the operator (`exists`/`not_exists` take none; `in` takes a list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "condition_value_schema")]
    pub value: Option<serde_json::Value>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal to `value` (strings, numbers and booleans; `"true"` equals `true`).
    Equals,
    /// Extension: not equal to `value` (a missing value is not equal).
    NotEquals,
    /// A string containing `value`, or an array with an element equal to `value`.
    Contains,
    /// Present and not null. Takes no `value`.
    Exists,
    /// Extension: missing or null. Takes no `value`.
    NotExists,
    /// A string matching the regular expression `value`.
    Matches,
    /// Equal to one of the values in the list `value`.
    In,
}

impl Operator {
    /// The operator's name as written in descriptors.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "not_equals",
            Operator::Contains => "contains",
            Operator::Exists => "exists",
            Operator::NotExists => "not_exists",
            Operator::Matches => "matches",
            Operator::In => "in",
        }
    }
}

/// Chooses the Signal priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriorityRule {
    /// JSONPath (per item) of the value tested.
    pub when: String,
    /// `equals`, `contains` or `in` (the other operators work too).
    pub operator: Operator,
    /// Value for the operator: a string, or a list for `in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "condition_value_schema")]
    pub value: Option<serde_json::Value>,
    /// Resulting priority.
    pub then: Priority,
}

/// Schema of a condition value: a scalar, or a list of scalars for `in`.
pub(crate) fn condition_value_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A string, number or boolean; a list of them for `in`.",
        "type": ["string", "number", "boolean", "array"],
        "items": { "type": ["string", "number", "boolean"] }
    })
}

//! The build context of the compile step: collects problems and templates, knows
//! the declared config and credential fields, checks template variables against
//! their scope and renders URL templates with sample values.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde_json::{Map, Value, json};

use super::path::CompiledPath;
use super::template::{ItemTemplate, TemplateId, TemplateKind, Templates};
use crate::descriptor::diagnostic::{Code, Pointer, Problem};
use crate::descriptor::model::{ConnectorDescriptor, CredentialField, FieldType};
use crate::descriptor::schema::suggest;

/// Largest compiled regex accepted (bounds memory for hostile patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Which request variables a template may use, besides `baseUrl` and `config.*`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Scope {
    pub base_url: bool,
    pub checkpoint: bool,
    pub page_token: bool,
    pub partition: bool,
}

impl Scope {
    /// `baseUrl` and `config.*` only (health checks, OAuth URLs, partition listings).
    pub const CONFIG: Scope = Scope {
        base_url: true,
        checkpoint: false,
        page_token: false,
        partition: false,
    };
    /// `config.*` only (the `baseUrl` template itself).
    pub const BASE: Scope = Scope {
        base_url: false,
        checkpoint: false,
        page_token: false,
        partition: false,
    };
}

pub(super) struct Ctx<'d> {
    pub descriptor: &'d ConnectorDescriptor,
    problems: Vec<Problem>,
    templates: Templates,
    config_fields: BTreeMap<&'d str, FieldType>,
    credential_keys: BTreeSet<&'d str>,
    base_url_sample: Option<String>,
    checkpoint_sample: String,
}

impl<'d> Ctx<'d> {
    pub fn new(descriptor: &'d ConnectorDescriptor) -> Self {
        Ctx {
            descriptor,
            problems: Vec::new(),
            templates: Templates::default(),
            config_fields: descriptor
                .config_fields
                .iter()
                .map(|f| (f.key.as_str(), f.field_type))
                .collect(),
            credential_keys: descriptor
                .auth
                .credential_fields()
                .iter()
                .map(|f| f.key.as_str())
                .collect(),
            base_url_sample: None,
            checkpoint_sample: "2024-01-01T00:00:00Z".into(),
        }
    }

    pub fn finish(self) -> (Vec<Problem>, Templates) {
        (self.problems, self.templates)
    }

    pub fn error(&mut self, at: Pointer, code: Code, message: impl Into<String>) {
        self.problems.push(Problem::new(at, code, message));
    }

    pub fn config_field(&self, key: &str) -> Option<FieldType> {
        self.config_fields.get(key).copied()
    }

    /// Whether `key` names a declared credential field.
    pub fn has_credential(&self, key: &str) -> bool {
        self.credential_keys.contains(key)
    }

    /// Reports `key` unless it names a declared credential field.
    pub fn require_credential(&mut self, at: Pointer, key: &str) -> bool {
        if self.credential_keys.contains(key) {
            return true;
        }
        let declared: Vec<&str> = self.credential_keys.iter().copied().collect();
        let message = undeclared(
            key,
            "",
            "credential field",
            &declared,
            "the auth method declares no `credentialFields`",
        );
        self.error(at, Code::Invalid, message);
        false
    }

    /// Reports `key` unless it names a declared config field.
    pub fn require_config(&mut self, at: Pointer, key: &str) -> bool {
        match self.config_problem(key) {
            None => true,
            Some(message) => {
                self.error(at, Code::Invalid, message);
                false
            }
        }
    }

    fn config_problem(&self, key: &str) -> Option<String> {
        if self.config_fields.contains_key(key) {
            return None;
        }
        let declared: Vec<&str> = self.config_fields.keys().copied().collect();
        Some(undeclared(
            key,
            "config.",
            "config field",
            &declared,
            "the descriptor declares no `configFields`",
        ))
    }

    /// Reports every field key declared more than once in `fields`.
    pub fn unique_keys(&mut self, at: &Pointer, fields: &[CredentialField]) {
        let mut seen = BTreeSet::new();
        for (i, field) in fields.iter().enumerate() {
            if !seen.insert(field.key.as_str()) {
                self.error(
                    at.index(i).key("key"),
                    Code::Invalid,
                    format!("field key `{}` is declared twice", field.key),
                );
            }
        }
    }

    pub fn set_checkpoint_sample(&mut self, sample: &str) {
        sample.clone_into(&mut self.checkpoint_sample);
    }

    /// Renders the `baseUrl` template once, as the sample for `{{baseUrl}}`.
    pub fn set_base_url_sample(&mut self, id: TemplateId) {
        self.base_url_sample = self.templates.render(id, &self.samples()).ok();
    }

    fn has_base_url(&self) -> bool {
        self.descriptor.base_url.is_some() || self.config_fields.contains_key("baseUrl")
    }

    /// The context used to render templates at load time.
    fn samples(&self) -> Value {
        let config: Map<String, Value> = self
            .config_fields
            .iter()
            .map(|(k, t)| {
                let v = match t {
                    FieldType::Url => json!("https://example.com"),
                    FieldType::List => json!(["sample-a", "sample-b"]),
                    FieldType::Text | FieldType::Password => json!("sample"),
                    // The first option: a template may build a host from it.
                    FieldType::Select => self
                        .descriptor
                        .config_fields
                        .iter()
                        .find(|f| f.key == *k)
                        .and_then(|f| f.options.first())
                        .map_or_else(|| json!("sample"), |o| json!(o.value)),
                };
                ((*k).to_owned(), v)
            })
            .collect();
        json!({
            "baseUrl": self.base_url_sample.as_deref().unwrap_or("https://example.com"),
            "checkpoint": self.checkpoint_sample,
            "pageToken": "sample-page-token",
            "partition": "sample-partition",
            "config": config,
        })
    }

    /// Renders a compiled template with the sample context.
    pub fn render_sample(&self, id: TemplateId) -> Result<String, String> {
        self.templates.render(id, &self.samples()).map_err(|e| e.0)
    }

    /// Compiles a JSONPath.
    pub fn path(&mut self, at: &Pointer, source: &str) -> Option<CompiledPath> {
        match CompiledPath::parse(source) {
            Ok(p) => Some(p),
            Err(message) => {
                self.error(at.clone(), Code::JsonPath, message);
                None
            }
        }
    }

    /// Compiles a JSONPath that must select a single value.
    pub fn singular_path(&mut self, at: &Pointer, source: &str) -> Option<CompiledPath> {
        let path = self.path(at, source)?;
        if path.is_singular() {
            Some(path)
        } else {
            self.error(
                at.clone(),
                Code::JsonPath,
                format!(
                    "`{source}` must select a single value: use names and indexes only (no wildcards, slices, filters or `..`)"
                ),
            );
            None
        }
    }

    /// Compiles a regular expression.
    pub fn regex(&mut self, at: &Pointer, source: &str) -> Option<Regex> {
        match regex::RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                let detail = e.to_string();
                let detail = detail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(&detail)
                    .trim()
                    .trim_start_matches("error: ");
                self.error(
                    at.clone(),
                    Code::Regex,
                    format!("invalid regular expression `{source}`: {detail}"),
                );
                None
            }
        }
    }

    /// Compiles a template over an item's fields (no variable check).
    pub fn item_template(&mut self, at: &Pointer, source: &str) -> Option<ItemTemplate> {
        match self.templates.add_item(source) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(at.clone(), Code::Template, e.0);
                None
            }
        }
    }

    /// Compiles a request template and checks its variables; returns the variables.
    pub fn template(
        &mut self,
        at: &Pointer,
        source: &str,
        kind: TemplateKind,
        scope: Scope,
    ) -> Option<(TemplateId, BTreeSet<String>)> {
        let (id, vars) = match self.templates.add(kind, source) {
            Ok(t) => t,
            Err(e) => {
                self.error(at.clone(), Code::Template, e.0);
                return None;
            }
        };
        let vars = vars.vars;
        let mut ok = true;
        for var in &vars {
            if let Some(message) = self.variable_problem(var, scope) {
                self.error(at.clone(), Code::Template, message);
                ok = false;
            }
        }
        ok.then_some((id, vars))
    }

    /// Compiles a URL template, checks its variables, and checks that it renders to
    /// an absolute http(s) URL with sample values.
    pub fn url_template(&mut self, at: &Pointer, source: &str, scope: Scope) -> Option<TemplateId> {
        self.url_template_vars(at, source, scope).map(|(id, _)| id)
    }

    /// As `url_template`, also returning the variables used.
    pub fn url_template_vars(
        &mut self,
        at: &Pointer,
        source: &str,
        scope: Scope,
    ) -> Option<(TemplateId, BTreeSet<String>)> {
        let (id, vars) = self.template(at, source, TemplateKind::Url, scope)?;
        match self.render_sample(id) {
            Err(e) => {
                self.error(
                    at.clone(),
                    Code::Template,
                    format!("fails to render with sample values: {e}"),
                );
                None
            }
            Ok(rendered) => match absolute_http_url(&rendered) {
                Ok(()) => Some((id, vars)),
                Err(why) => {
                    let shown = if rendered == source {
                        format!("`{source}`")
                    } else {
                        format!("`{source}` renders to `{rendered}` with sample values, which")
                    };
                    self.error(
                        at.clone(),
                        Code::Url,
                        format!("{shown} is not an absolute http(s) URL: {why}"),
                    );
                    None
                }
            },
        }
    }

    fn variable_problem(&self, var: &str, scope: Scope) -> Option<String> {
        let (root, rest) = match var.split_once('.') {
            Some((root, rest)) => (root, Some(rest)),
            None => (var, None),
        };
        let polling = scope.checkpoint;
        match (root, rest) {
            ("baseUrl", None) if !scope.base_url => {
                Some("`{{baseUrl}}` cannot be used inside `baseUrl` itself".into())
            }
            ("baseUrl", None) if !self.has_base_url() => Some(
                "`{{baseUrl}}` is not defined: set the descriptor's `baseUrl` or declare a `baseUrl` config field".into(),
            ),
            ("baseUrl", None) => None,
            ("config", None) => {
                Some("use `{{config.<key>}}` to insert a config field".into())
            }
            ("config", Some(key)) => self
                .config_problem(key.split('.').next().unwrap_or(key)),
            ("checkpoint", None) if !scope.checkpoint => Some(
                "`{{checkpoint}}` is only available in polling request templates (endpoint, headers, body)".into(),
            ),
            ("pageToken", None) if !scope.page_token => Some(if polling {
                "`{{pageToken}}` needs `pagination` of type `cursor` or `offset`".into()
            } else {
                "`{{pageToken}}` is only available in polling request templates".into()
            }),
            ("partition", None) if !scope.partition => Some(if polling {
                "`{{partition}}` needs `partitions` to be declared".into()
            } else {
                "`{{partition}}` is only available in polling request templates".into()
            }),
            ("checkpoint" | "pageToken" | "partition", None) => None,
            _ => {
                let mut available = Vec::new();
                if scope.base_url {
                    available.push("baseUrl");
                }
                if scope.checkpoint {
                    available.push("checkpoint");
                }
                if scope.page_token {
                    available.push("pageToken");
                }
                if scope.partition {
                    available.push("partition");
                }
                available.push("config.<key>");
                let mut message = format!("unknown template variable `{{{{{var}}}}}`");
                if let Some(best) = suggest(root, available.iter().copied()) {
                    message.push_str(&format!(", did you mean `{{{{{best}}}}}`?"));
                } else {
                    message.push_str(&format!(" (available here: {})", ticks(&available)));
                }
                Some(message)
            }
        }
    }
}

/// "`prefix+key` is not a declared <what>", with a suggestion or the declared names.
fn undeclared(key: &str, prefix: &str, what: &str, declared: &[&str], none: &str) -> String {
    let mut message = format!("`{prefix}{key}` is not a declared {what}");
    match suggest(key, declared.iter().copied()) {
        Some(best) => message.push_str(&format!(", did you mean `{prefix}{best}`?")),
        None if declared.is_empty() => message.push_str(&format!(" ({none})")),
        None => message.push_str(&format!(" (declared: {})", ticks(declared))),
    }
    message
}

fn ticks(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn absolute_http_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(())
}

/// Signal kinds: lowercase snake_case starting with a letter.
pub(super) fn is_signal_kind(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// HTTP header names (RFC 9110 tokens).
pub(super) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

//! The compile step: turns a parsed `ConnectorDescriptor` into a
//! `CompiledDescriptor` (JSONPaths, templates, regexes, checked URLs), running
//! every cross-field check and collecting every problem with its field path, so
//! descriptor errors surface at load time and never during a sync.

mod auth;
mod context;
mod mapping;
pub mod path;
mod polling;
pub mod projection;
pub mod template;
mod webhook;

use std::collections::BTreeSet;

pub use auth::{CompiledAuth, CompiledJwtExchange};
pub use mapping::{CompiledCondition, CompiledMapping, CompiledRule, Test};
pub use path::CompiledPath;
pub use polling::{
    CompiledDelta, CompiledPagination, CompiledPartitions, CompiledPolling, CompiledRetry,
};
pub use projection::Projection;
pub use template::{ItemTemplate, Referenced, TemplateError, TemplateId, TemplateKind, Templates};
pub use webhook::{
    CompiledHandshake, CompiledRouting, CompiledSignature, CompiledVerification, CompiledWebhook,
    EventTypeSource, PayloadPart, RoutingTarget, ValueSource,
};

use context::{Ctx, Scope};

use super::diagnostic::{Code, Pointer, Problem};
use super::ingestion::IngestionDescriptor;
use super::model::ConnectorDescriptor;

/// A descriptor compiled into runtime objects. Built only by [`compile`], so every
/// instance has passed every check.
#[derive(Debug)]
pub struct CompiledDescriptor {
    /// The descriptor as written.
    pub descriptor: ConnectorDescriptor,
    /// All templates of the descriptor.
    pub templates: Templates,
    /// The `baseUrl` template, if the descriptor sets one.
    pub base_url: Option<TemplateId>,
    /// Request authentication.
    pub auth: CompiledAuth,
    /// The polling half, if the connector polls.
    pub polling: Option<CompiledPolling>,
    /// The webhook half, if the connector receives webhooks.
    pub webhook: Option<CompiledWebhook>,
    /// The top-level field mapping.
    pub mapping: CompiledMapping,
    /// The health-check request URL.
    pub health_check: TemplateId,
}

impl CompiledDescriptor {
    /// The connector id.
    pub fn id(&self) -> &str {
        &self.descriptor.id
    }

    /// `{{baseUrl}}` for a connection: its `baseUrl` config field when the
    /// descriptor declares one and it is set, else the descriptor's `baseUrl`
    /// rendered with its config; without a trailing `/`. A `baseUrl` key the
    /// descriptor does not declare is ignored: only a declared field may send
    /// a connection's credentials to a host of its choosing.
    pub fn base_url(&self, config: &serde_json::Value) -> Result<String, TemplateError> {
        let declared = self
            .descriptor
            .config_fields
            .iter()
            .any(|f| f.key == "baseUrl");
        if declared
            && let Some(serde_json::Value::String(url)) = config.get("baseUrl")
            && !url.is_empty()
        {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        match self.base_url {
            Some(id) => self
                .templates
                .render(id, &serde_json::json!({ "config": config }))
                .map(|u| u.trim_end_matches('/').to_owned()),
            None => Ok(String::new()),
        }
    }
}

/// Compiles a descriptor, or returns every problem found.
pub fn compile(descriptor: &ConnectorDescriptor) -> Result<CompiledDescriptor, Vec<Problem>> {
    let root = Pointer::root();
    let mut ctx = Ctx::new(descriptor);

    if semver::Version::parse(&descriptor.version).is_err() {
        ctx.error(
            root.key("version"),
            Code::Invalid,
            format!(
                "`{}` is not a semantic version (expected MAJOR.MINOR.PATCH, e.g. `1.0.0`)",
                descriptor.version
            ),
        );
    }
    ctx.unique_keys(&root.key("configFields"), &descriptor.config_fields);
    for (i, field) in descriptor.config_fields.iter().enumerate() {
        if field.field_type == super::model::FieldType::Password {
            ctx.error(
                root.key("configFields").index(i).key("type"),
                Code::Invalid,
                "config fields are not secret; declare secrets in the auth method's `credentialFields`",
            );
        }
    }
    let credential_fields = descriptor.auth.credential_fields();
    let forms = [
        (root.key("configFields"), &descriptor.config_fields[..]),
        (
            root.key("auth").key("config").key("credentialFields"),
            credential_fields,
        ),
    ];
    for (at, fields) in forms {
        for (i, field) in fields.iter().enumerate() {
            select_options(&mut ctx, at.index(i), field);
            required_unless(&mut ctx, at.index(i), field, fields);
        }
    }
    check_signals(&mut ctx, descriptor);

    let base_url = descriptor
        .base_url
        .as_ref()
        .and_then(|url| ctx.url_template(&root.key("baseUrl"), url, Scope::BASE));
    if let Some(id) = base_url {
        ctx.set_base_url_sample(id);
    }

    let auth = auth::compile(&mut ctx, &descriptor.auth, &root.key("auth"));

    let ingestion = root.key("ingestion");
    let (polling_at, webhook_at) = match &descriptor.ingestion {
        IngestionDescriptor::PollingAndWebhook(_) => {
            (ingestion.key("polling"), ingestion.key("webhook"))
        }
        _ => (ingestion.clone(), ingestion.clone()),
    };
    let polling = descriptor
        .ingestion
        .polling()
        .and_then(|p| polling::compile(&mut ctx, p, &polling_at));
    let webhook = descriptor
        .ingestion
        .webhook()
        .and_then(|w| webhook::compile(&mut ctx, w, &webhook_at, auth.as_ref()));

    let mapping = mapping::compile(
        &mut ctx,
        &descriptor.field_mapping,
        &root.key("fieldMapping"),
    );

    let health = root.key("healthCheck");
    let health_check = ctx.url_template(
        &health.key("endpoint"),
        &descriptor.health_check.endpoint,
        Scope::CONFIG,
    );
    for (name, value) in &descriptor.health_check.headers {
        let at = root.key("healthCheck").key("headers").key(name);
        let valid_value = http::HeaderValue::from_str(value).is_ok();
        if !context::is_header_name(name) || !valid_value {
            ctx.error(
                at,
                Code::Invalid,
                format!("`{name}: {value}` is not a valid HTTP header"),
            );
        }
    }
    if !(100..=599).contains(&descriptor.health_check.expect_status) {
        ctx.error(
            health.key("expectStatus"),
            Code::Invalid,
            format!(
                "{} is not an HTTP status (100-599)",
                descriptor.health_check.expect_status
            ),
        );
    }

    let polling = polling.map(|mut p| {
        if let Some(mapping) = &mapping {
            p.projection = std::sync::Arc::new(polling::projection(&p, mapping));
        }
        p
    });
    let webhook = webhook.map(|mut w| {
        w.projection = std::sync::Arc::new(webhook::projection(&w, mapping.as_ref()));
        w
    });

    let (problems, templates) = ctx.finish();
    match (problems.is_empty(), mapping, health_check, auth) {
        (true, Some(mapping), Some(health_check), Some(auth)) => Ok(CompiledDescriptor {
            descriptor: descriptor.clone(),
            templates,
            base_url,
            auth,
            polling,
            webhook,
            mapping,
            health_check,
        }),
        _ => Err(problems),
    }
}

/// Signal kinds are action-first snake_case; rules may only emit declared ones.
fn check_signals(ctx: &mut Ctx<'_>, descriptor: &ConnectorDescriptor) {
    let at = Pointer::root().key("signals");
    let mut seen = BTreeSet::new();
    for (i, kind) in descriptor.signals.iter().enumerate() {
        if !context::is_signal_kind(kind) {
            ctx.error(
                at.index(i),
                Code::Invalid,
                format!("`{kind}` is not a valid signal kind (lowercase snake_case, e.g. `issue_created`)"),
            );
        } else if !seen.insert(kind.as_str()) {
            ctx.error(
                at.index(i),
                Code::Invalid,
                format!("signal kind `{kind}` is listed twice"),
            );
        }
    }
}

/// `requiredUnless` names another field of the same form, on a required field.
fn required_unless(
    ctx: &mut Ctx<'_>,
    at: Pointer,
    field: &super::model::CredentialField,
    fields: &[super::model::CredentialField],
) {
    let Some(other) = &field.required_unless else {
        return;
    };
    let message = if !field.required {
        "only a `required` field can be left out for another".to_owned()
    } else if other == &field.key || !fields.iter().any(|f| &f.key == other) {
        format!("`{other}` is not another field of this form")
    } else {
        return;
    };
    ctx.error(at.key("requiredUnless"), Code::Invalid, message);
}

/// A `select` field has options, distinct and non-empty; no other field has any.
fn select_options(ctx: &mut Ctx<'_>, at: Pointer, field: &super::model::CredentialField) {
    let select = field.field_type == super::model::FieldType::Select;
    if !select {
        if !field.options.is_empty() {
            ctx.error(
                at.key("options"),
                Code::Invalid,
                "only a `select` field has `options`",
            );
        }
        return;
    }
    if field.options.is_empty() {
        ctx.error(
            at.key("type"),
            Code::Invalid,
            "a `select` field needs `options`",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, option) in field.options.iter().enumerate() {
        let here = at.key("options").index(i).key("value");
        if option.value.trim().is_empty() || option.value.contains('\0') {
            ctx.error(here, Code::Invalid, "must not be empty");
        } else if !seen.insert(option.value.as_str()) {
            let message = format!("`{}` is offered twice", option.value);
            ctx.error(here, Code::Invalid, message);
        }
    }
}

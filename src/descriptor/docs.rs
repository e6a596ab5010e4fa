//! Per-provider documentation generated from a compiled descriptor: what it
//! ingests, its auth and app-level variables, its credential and config fields,
//! its webhook URL and headers, and its signals with examples taken from the
//! golden fixtures. `poblysh-connectors docs` writes one Markdown file per
//! provider; CI fails when one is stale.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::auth::AuthDescriptor;
use super::compile::{CompiledDescriptor, CompiledVerification};
use super::model::{ConnectorKind, CredentialField};
use crate::config::provider_var;

/// Where the generated pages live.
pub const DOCS_DIR: &str = "docs/providers";

/// One example Signal of a kind, from a golden fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The fixture file the Signal comes from (`github/webhook.push.expected.json`).
    pub fixture: String,
    /// The Signal as the fixture has it.
    pub signal: Value,
}

/// The examples in a provider's golden fixtures (their `*.expected.json`
/// contents, by file name): the first Signal of each kind, by file name order.
pub fn examples(expected: &BTreeMap<String, Value>) -> BTreeMap<String, Example> {
    let mut out = BTreeMap::new();
    for (file, doc) in expected {
        for signal in doc["signals"].as_array().into_iter().flatten() {
            if let Some(kind) = signal["kind"].as_str() {
                out.entry(kind.to_owned()).or_insert_with(|| Example {
                    fixture: file.clone(),
                    signal: signal.clone(),
                });
            }
        }
    }
    out
}

/// An enum as written in descriptors (its serde name).
fn written<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Table cells stay on one line and keep their pipes.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn fields_table(out: &mut String, fields: &[CredentialField]) {
    out.push_str("| key | label | type | required | help |\n|---|---|---|---|---|\n");
    for f in fields {
        let mut help = f.help_text.clone().unwrap_or_default();
        if !f.options.is_empty() {
            let options: Vec<String> = f
                .options
                .iter()
                .map(|o| match &o.label {
                    Some(l) => format!("`{}` ({l})", o.value),
                    None => format!("`{}`", o.value),
                })
                .collect();
            let _ = write!(help, " One of: {}.", options.join(", "));
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} |",
            f.key,
            cell(&f.label),
            written(&f.field_type),
            if f.required { "yes" } else { "no" },
            cell(help.trim())
        );
    }
    out.push('\n');
}

/// "`what` sent as `delivery` in `param`."
fn sent_as(out: &mut String, what: &str, delivery: &str, param: &str) {
    let _ = write!(out, "{what} sent as `{delivery}`");
    if !param.is_empty() {
        let _ = write!(out, " in `{param}`");
    }
    out.push_str(".\n\n");
}

fn auth_section(out: &mut String, d: &CompiledDescriptor) {
    let id = d.id();
    let auth = &d.descriptor.auth;
    let _ = writeln!(out, "## Auth\n\nMethod: `{}`.\n", auth.method_name());
    match auth {
        AuthDescriptor::OAuth2(c) => {
            let _ = writeln!(
                out,
                "OAuth 2.0 authorization code{}: connect with `POST /connect/{id}`. \
                 Authorize URL `{}`, token URL `{}`. Scopes: {}. The app's client is \
                 `{}` / `{}`.\n",
                if c.pkce { " with PKCE (S256)" } else { "" },
                c.authorise_url,
                c.token_url,
                if c.scopes.is_empty() {
                    "none".to_owned()
                } else {
                    c.scopes
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                provider_var(id, "CLIENT_ID"),
                provider_var(id, "CLIENT_SECRET"),
            );
        }
        AuthDescriptor::ApiKey(c) => {
            sent_as(out, "An API key", &written(&c.delivery), &c.param_name)
        }
        AuthDescriptor::Pat(c) => sent_as(
            out,
            "A personal access token",
            &written(&c.delivery),
            &c.param_name,
        ),
        AuthDescriptor::Basic(_) => out.push_str("HTTP Basic.\n\n"),
        AuthDescriptor::JwtExchange(c) => {
            let _ = writeln!(
                out,
                "The app's RS256 JWT (`{}`, `{}`) exchanged at `{}` for a bearer \
                 token, reused until 5 minutes before it expires.{}\n",
                provider_var(id, "APP_ID"),
                provider_var(id, "PRIVATE_KEY"),
                c.token_url,
                match &c.token_key {
                    Some(k) => format!(" A connection that gives `{k}` uses it as it is."),
                    None => String::new(),
                }
            );
        }
        AuthDescriptor::WebhookSecret(_) => {
            out.push_str("No API calls: the connection holds its webhook signing secret.\n\n")
        }
        AuthDescriptor::None => out.push_str("None.\n\n"),
    }
}

fn ingestion_section(out: &mut String, d: &CompiledDescriptor) {
    let ingestion = &d.descriptor.ingestion;
    let _ = writeln!(
        out,
        "## What it ingests\n\nMode: `{}`.\n",
        ingestion.mode_name()
    );
    if d.descriptor.kind == ConnectorKind::Native {
        out.push_str(
            "A native connector (Rust): how it syncs and what it subscribes to is in \
             `docs/integration-guide.md`.\n\n",
        );
        return;
    }
    if let (Some(p), Some(c)) = (ingestion.polling(), &d.polling) {
        let _ = writeln!(
            out,
            "- Polling: `{} {}`, every {} s; delta `{}`{}{}{}.",
            written(&p.method),
            p.endpoint,
            c.interval_seconds,
            p.delta.type_name(),
            p.pagination
                .as_ref()
                .map(|pg| format!(", pagination `{}`", written(&pg.pagination_type)))
                .unwrap_or_default(),
            c.backfill_days
                .map(|days| format!(", the first sync reads {days} days back"))
                .unwrap_or_default(),
            match &p.partitions {
                Some(_) => ", one run per partition",
                None => "",
            }
        );
    }
    if let Some(w) = &d.webhook {
        let _ = writeln!(
            out,
            "- Webhooks: {}.",
            w.event_types
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push('\n');
}

fn webhook_section(out: &mut String, d: &CompiledDescriptor) {
    let Some(w) = &d.webhook else {
        return;
    };
    let id = d.id();
    out.push_str("## Webhooks\n\n");
    let _ = writeln!(
        out,
        "- URL: `/webhooks/{id}/{{tenant_id}}`{}.",
        match w.routing {
            Some(_) => format!(", or `/webhooks/{id}` (routed by the delivery)"),
            None => String::new(),
        }
    );
    let app = provider_var(id, "WEBHOOK_SECRET");
    match &w.verification {
        CompiledVerification::Signature(s) => {
            let _ = writeln!(
                out,
                "- Verified: `{}` in `{}`{}; the secret is {}.",
                written(&s.config.algorithm),
                s.config.signature_header,
                s.tolerance_seconds
                    .map(|t| format!(", signed timestamp within {t} s"))
                    .unwrap_or_default(),
                match &s.config.secret_field {
                    Some(f) => format!("credential `{f}`, else `{app}`"),
                    None => format!("`{app}`"),
                }
            );
        }
        CompiledVerification::Token(t) => {
            let carrier = match (&t.header, &t.query_param) {
                (Some(h), _) => format!("header `{h}`"),
                (None, Some(q)) => format!("query parameter `{q}`"),
                (None, None) => "`Authorization: Bearer`".to_owned(),
            };
            let secret = if t.per_connection {
                "the connection's own token, issued by `POST /connections/{id}/webhook-token`"
                    .to_owned()
            } else {
                match &t.secret_field {
                    Some(f) => format!("credential `{f}`, else `{app}`"),
                    None => format!("`{app}`"),
                }
            };
            let _ = writeln!(out, "- Verified: a token in the {carrier}; it is {secret}.");
        }
        CompiledVerification::None => out.push_str("- Not verified.\n"),
    }
    if w.handshakes.iter().any(|h| h.capture.is_some()) {
        out.push_str(
            "- The provider hands its secret over once: confirm it with \
             `GET`/`POST /connections/{id}/webhook-secret`.\n",
        );
    }
    out.push('\n');
}

fn signals_section(out: &mut String, d: &CompiledDescriptor, examples: &BTreeMap<String, Example>) {
    out.push_str(
        "## Signals\n\nMeanings are in `docs/signals.md`. Examples come from the golden \
         fixtures (`fixtures/`).\n\n| kind | example summary | fixture |\n|---|---|---|\n",
    );
    for kind in &d.descriptor.signals {
        match examples.get(kind) {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "| `{kind}` | {} | `{}` |",
                    cell(e.signal["summary"].as_str().unwrap_or_default()),
                    e.fixture
                );
            }
            None => {
                let _ = writeln!(out, "| `{kind}` | (no real sample) | |");
            }
        }
    }
    out.push('\n');
    if let Some(first) = d.descriptor.signals.iter().find_map(|k| examples.get(k)) {
        let _ = writeln!(
            out,
            "One as `GET /signals` returns it (`{}`):\n\n```json\n{}\n```",
            first.fixture,
            serde_json::to_string_pretty(&first.signal).unwrap_or_default()
        );
    }
}

/// The Markdown page of one provider.
pub fn render(d: &CompiledDescriptor, examples: &BTreeMap<String, Example>) -> String {
    let desc = &d.descriptor;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!-- Generated from descriptors/{}.yaml by `poblysh-connectors docs --write`; do not edit. -->\n",
        desc.id
    );
    let _ = writeln!(
        out,
        "# {} (`{}`)\n\n{}\n",
        desc.name, desc.id, desc.description
    );
    let _ = writeln!(
        out,
        "Category `{}`, {} connector, version {}.\n",
        written(&desc.category),
        written(&desc.kind),
        desc.version
    );
    ingestion_section(&mut out, d);
    auth_section(&mut out, d);
    let credential_fields = desc.auth.credential_fields();
    if !credential_fields.is_empty() {
        out.push_str("## Credential fields\n\nStored encrypted; never returned.\n\n");
        fields_table(&mut out, credential_fields);
    }
    if !desc.config_fields.is_empty() {
        out.push_str("## Config fields\n\n");
        fields_table(&mut out, &desc.config_fields);
    }
    webhook_section(&mut out, d);
    signals_section(&mut out, d, examples);
    out
}

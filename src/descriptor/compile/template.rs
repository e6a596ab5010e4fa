//! Handlebars templates of a descriptor: compiled once at load time, checked for
//! the variables and helpers they use, rendered with HTML escaping off. URL
//! templates percent-encode every value inserted into the query part.

use std::collections::BTreeSet;

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Handlebars, Template};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Marks where an inserted value starts and ends in a rendered URL template.
const VALUE_START: char = '\u{E000}';
const VALUE_END: char = '\u{E001}';

/// Characters percent-encoded in a query value: all but RFC 3986 unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Helpers templates may call, besides handlebars' built-ins.
const CUSTOM_HELPERS: &[&str] = &["json", "default", "join"];
/// Handlebars' built-in helpers.
const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or",
    "not", "len",
];
/// Block helpers that change the context (`this`) inside their block.
const SCOPE_HELPERS: &[&str] = &["each", "with"];

/// How a template's output is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A URL: values after the first `?` are percent-encoded.
    Url,
    /// Plain text (headers, bodies, summaries): values inserted as they are.
    Text,
}

/// A handle to a compiled template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateId {
    kind: TemplateKind,
    index: usize,
}

impl TemplateId {
    /// How the template's output is used.
    pub fn kind(self) -> TemplateKind {
        self.kind
    }
}

/// A template that failed to compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// The compiled templates of one descriptor.
pub struct Templates {
    url: Handlebars<'static>,
    text: Handlebars<'static>,
    count: usize,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("count", &self.count)
            .finish()
    }
}

/// The custom helpers (`json`, `default`, `join`).
mod helpers {
    use handlebars::handlebars_helper;
    use serde_json::Value;

    handlebars_helper!(json_helper: |v: Json| serde_json::to_string(v).unwrap_or_default());
    handlebars_helper!(default_helper: |v: Json, fallback: Json| {
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if empty { fallback.clone() } else { v.clone() }
    });
    handlebars_helper!(join_helper: |v: Json, sep: str| match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(sep),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    });
}

fn registry(kind: TemplateKind) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    match kind {
        TemplateKind::Url => hb.register_escape_fn(|s: &str| {
            let mut out = String::with_capacity(s.len() + 6);
            out.push(VALUE_START);
            out.extend(s.chars().filter(|c| *c != VALUE_START && *c != VALUE_END));
            out.push(VALUE_END);
            out
        }),
        TemplateKind::Text => hb.register_escape_fn(handlebars::no_escape),
    }
    hb.register_helper("json", Box::new(helpers::json_helper));
    hb.register_helper("default", Box::new(helpers::default_helper));
    hb.register_helper("join", Box::new(helpers::join_helper));
    hb
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            url: registry(TemplateKind::Url),
            text: registry(TemplateKind::Text),
            count: 0,
        }
    }
}

impl Templates {
    /// Compiles `source`, checks its helpers, and returns its handle and the
    /// variables it reads from the root context (`baseUrl`, `config.repo`, …).
    pub fn add(
        &mut self,
        kind: TemplateKind,
        source: &str,
    ) -> Result<(TemplateId, BTreeSet<String>), TemplateError> {
        let template = Template::compile(source).map_err(|e| describe_syntax_error(&e))?;
        let mut vars = BTreeSet::new();
        collect(&template.elements, false, &mut vars)?;
        let id = TemplateId {
            kind,
            index: self.count,
        };
        self.count += 1;
        let name = id.index.to_string();
        match kind {
            TemplateKind::Url => self.url.register_template(&name, template),
            TemplateKind::Text => self.text.register_template(&name, template),
        }
        Ok((id, vars))
    }

    /// Renders a template with `context`.
    pub fn render(&self, id: TemplateId, context: &Value) -> Result<String, TemplateError> {
        let name = id.index.to_string();
        match id.kind {
            TemplateKind::Url => self
                .url
                .render(&name, context)
                .map(|s| finish_url(&s))
                .map_err(|e| TemplateError(one_line(&e.to_string()))),
            TemplateKind::Text => self
                .text
                .render(&name, context)
                .map_err(|e| TemplateError(one_line(&e.to_string()))),
        }
    }
}

/// Removes the value markers of a rendered URL, percent-encoding the values that
/// landed in the query part.
fn finish_url(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut value = String::new();
    let (mut in_value, mut in_query) = (false, false);
    for c in rendered.chars() {
        match c {
            VALUE_START => in_value = true,
            VALUE_END => {
                in_value = false;
                if in_query {
                    out.extend(utf8_percent_encode(&value, QUERY_VALUE));
                } else {
                    out.push_str(&value);
                }
                value.clear();
            }
            c if in_value => value.push(c),
            '?' => {
                in_query = true;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A handlebars syntax error as one line: what is wrong and where in the template.
pub(crate) fn describe_syntax_error(e: &handlebars::TemplateError) -> TemplateError {
    let reason = one_line(&e.reason().to_string());
    TemplateError(match e.pos() {
        Some((line, col)) if line > 1 => {
            format!("invalid template: {reason} (template line {line}, character {col})")
        }
        Some((_, col)) => format!("invalid template: {reason} (at character {col})"),
        None => format!("invalid template: {reason}"),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Walks a template, collecting root-context variables and rejecting unknown
/// helpers, partials and decorators. Inside `each`/`with` blocks the context
/// changes, so only `@root.` paths are collected there.
fn collect(
    elements: &[TemplateElement],
    scoped: bool,
    vars: &mut BTreeSet<String>,
) -> Result<(), TemplateError> {
    for element in elements {
        match element {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                expression(ht, scoped, vars)?;
            }
            TemplateElement::HelperBlock(ht) => {
                let name = helper_name(ht)?;
                for p in &ht.params {
                    parameter(p, scoped, vars)?;
                }
                for p in ht.hash.values() {
                    parameter(p, scoped, vars)?;
                }
                let inner = scoped || SCOPE_HELPERS.contains(&name);
                if let Some(t) = &ht.template {
                    collect(&t.elements, inner, vars)?;
                }
                if let Some(t) = &ht.inverse {
                    collect(&t.elements, scoped, vars)?;
                }
            }
            _ => {
                return Err(TemplateError(
                    "partials and decorators are not supported in descriptor templates".into(),
                ));
            }
        }
    }
    Ok(())
}

fn helper_name(ht: &HelperTemplate) -> Result<&str, TemplateError> {
    let name = match &ht.name {
        Parameter::Name(n) => n.as_str(),
        Parameter::Path(p) => path_raw(p),
        _ => return Err(TemplateError("unsupported helper call".into())),
    };
    if BUILTIN_HELPERS.contains(&name) || CUSTOM_HELPERS.contains(&name) {
        Ok(name)
    } else {
        Err(TemplateError(format!(
            "unknown helper `{name}` (available: {})",
            BUILTIN_HELPERS
                .iter()
                .chain(CUSTOM_HELPERS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn expression(
    ht: &HelperTemplate,
    scoped: bool,
    vars: &mut BTreeSet<String>,
) -> Result<(), TemplateError> {
    let is_call =
        !ht.params.is_empty() || !ht.hash.is_empty() || matches!(ht.name, Parameter::Name(_));
    if is_call {
        helper_name(ht)?;
        for p in ht.params.iter().chain(ht.hash.values()) {
            parameter(p, scoped, vars)?;
        }
        Ok(())
    } else {
        parameter(&ht.name, scoped, vars)
    }
}

fn parameter(
    p: &Parameter,
    scoped: bool,
    vars: &mut BTreeSet<String>,
) -> Result<(), TemplateError> {
    match p {
        Parameter::Path(path) => {
            let raw = path_raw(path);
            if let Some(rest) = raw.strip_prefix("@root.") {
                vars.insert(normalize(rest));
            } else if !scoped && !raw.starts_with('@') && !raw.starts_with("..") && raw != "this" {
                vars.insert(normalize(raw.strip_prefix("this.").unwrap_or(raw)));
            }
            Ok(())
        }
        Parameter::Name(n) => {
            if !scoped {
                vars.insert(n.clone());
            }
            Ok(())
        }
        Parameter::Literal(_) => Ok(()),
        Parameter::Subexpression(sub) => match sub.element.as_ref() {
            TemplateElement::Expression(ht) => expression(ht, scoped, vars),
            _ => Err(TemplateError("unsupported sub-expression".into())),
        },
        _ => Err(TemplateError("unsupported template parameter".into())),
    }
}

fn path_raw(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)) => raw,
    }
}

/// `a/b` and `a.[b]` written as `a.b`.
fn normalize(raw: &str) -> String {
    raw.replace('/', ".")
        .replace(".[", ".")
        .replace(['[', ']'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(src: &str) -> Vec<String> {
        let mut t = Templates::default();
        t.add(TemplateKind::Text, src)
            .unwrap()
            .1
            .into_iter()
            .collect()
    }

    #[test]
    fn collects_root_variables_only() {
        assert_eq!(
            vars(
                "{{baseUrl}}/r/{{config.repo}}{{#if checkpoint}}?s={{checkpoint}}{{/if}}{{json pageToken}}{{#each config.repos}}{{this}}{{name}}{{@root.partition}}{{/each}}"
            ),
            vec![
                "baseUrl",
                "checkpoint",
                "config.repo",
                "config.repos",
                "pageToken",
                "partition"
            ]
        );
    }

    #[test]
    fn rejects_unknown_helpers_and_partials() {
        let mut t = Templates::default();
        let e = t.add(TemplateKind::Text, "{{shout name}}").unwrap_err();
        assert!(e.0.contains("unknown helper `shout`"), "{e}");
        assert!(t.add(TemplateKind::Text, "{{> header}}").is_err());
        assert!(
            t.add(TemplateKind::Text, "{{#if x}}")
                .unwrap_err()
                .0
                .starts_with("invalid template")
        );
    }

    #[test]
    fn url_query_values_are_percent_encoded_path_values_are_not() {
        let mut t = Templates::default();
        let (id, _) = t
            .add(TemplateKind::Url, "{{baseUrl}}/repos/{{partition}}/issues?since={{checkpoint}}&q={{config.q}}{{#if pageToken}}&page={{pageToken}}{{/if}}")
            .unwrap();
        let out = t
            .render(id, &json!({"baseUrl": "https://api.github.com", "partition": "octo/hello",
                "checkpoint": "2024-01-01T00:00:00+01:00", "config": {"q": "a b&c"}, "pageToken": ""}))
            .unwrap();
        assert_eq!(
            out,
            "https://api.github.com/repos/octo/hello/issues?since=2024-01-01T00%3A00%3A00%2B01%3A00&q=a%20b%26c"
        );
    }

    #[test]
    fn text_templates_do_not_escape_and_json_helper_quotes() {
        let mut t = Templates::default();
        let (id, _) = t
            .add(TemplateKind::Text, r#"{"after": {{json pageToken}}, "t": "{{title}}", "d": {{json (default checkpoint "x")}}}"#)
            .unwrap();
        let out = t
            .render(id, &json!({"title": "<b>&\"", "pageToken": null}))
            .unwrap();
        assert_eq!(out, r#"{"after": null, "t": "<b>&"", "d": "x"}"#);
        let (id, _) = t
            .add(TemplateKind::Text, "{{join config.repos \",\"}}")
            .unwrap();
        assert_eq!(
            t.render(id, &json!({"config": {"repos": ["a", "b"]}}))
                .unwrap(),
            "a,b"
        );
    }
}

//! Handlebars templates of a descriptor: compiled once at load time, checked for
//! the variables and helpers they use, rendered with HTML escaping off. URL
//! templates percent-encode every value inserted into the query part.

use std::collections::BTreeSet;

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Context, Handlebars, Template};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

/// Marks where an inserted value starts and ends in a rendered URL template.
const VALUE_START: char = '\u{E000}';
const VALUE_END: char = '\u{E001}';

/// Characters percent-encoded in a query value: all but RFC 3986 unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Deepest nesting of blocks (`{{#if}}…{{/if}}`) or of subexpressions
/// (`(json (json x))`) a template may have: handlebars parses and renders by
/// recursion, so deeper templates are refused before it sees them.
pub const MAX_TEMPLATE_DEPTH: usize = 32;

/// Helpers templates may call, besides handlebars' built-ins.
const CUSTOM_HELPERS: &[&str] = &["json", "default", "join", "formatTime"];
/// Handlebars' built-in helpers.
const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or",
    "not", "len",
];
/// Block helpers that change the context (`this`) inside their block.
const SCOPE_HELPERS: &[&str] = &["each", "with"];

/// What a template reads from its root context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    /// Dotted paths read from the root (`config.repo`, `pull_request.title`).
    pub vars: BTreeSet<String>,
    /// Whether it reads the whole context (`{{this}}` at the root, or `../`).
    pub whole: bool,
}

/// How a template's output is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A URL: values after the first `?` are percent-encoded.
    Url,
    /// Plain text (headers, bodies, summaries): values inserted as they are.
    Text,
}

/// A template rendered over one item (a summary). It reads only the fields it
/// names, so rendering copies those fields instead of the whole item.
#[derive(Debug, Clone)]
pub struct ItemTemplate {
    id: TemplateId,
    /// The field paths read, split into segments; `None` when the template reads
    /// the whole item (`{{this}}`, `../`).
    fields: Option<Vec<Vec<String>>>,
    /// For a template of text and plain field names only (`{{title}} (by
    /// @{{user.login}})`): its pieces, rendered without the template engine
    /// when every field is a scalar or missing (the engine's output, exactly).
    plain: Option<Vec<Piece>>,
}

/// A piece of a plain item template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Field(Vec<String>),
}

/// The pieces of a template that is only text and plain field references
/// (names of letters, digits, `_` and `-`, joined by `.`), or `None`.
fn plain_pieces(source: &str, template: &Template) -> Option<Vec<Piece>> {
    // Whitespace control and escapes change the text around mustaches.
    if source.contains('~') || source.contains('\\') {
        return None;
    }
    let plain_name = |segment: &str| {
        segment
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && segment != "this"
    };
    let mut pieces = Vec::new();
    for element in &template.elements {
        match element {
            TemplateElement::RawString(text) => pieces.push(Piece::Text(text.clone())),
            TemplateElement::Comment(_) => {}
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht)
                if ht.params.is_empty() && ht.hash.is_empty() && ht.template.is_none() =>
            {
                let Parameter::Path(handlebars::Path::Relative((_, raw))) = &ht.name else {
                    return None;
                };
                let segments: Vec<String> = raw.split('.').map(str::to_owned).collect();
                if !segments.iter().all(|s| plain_name(s)) {
                    return None;
                }
                pieces.push(Piece::Field(segments));
            }
            _ => return None,
        }
    }
    Some(pieces)
}

/// Renders plain pieces over `item`; `None` when a field is an array or an
/// object (or is reached through an array): the engine renders those.
fn render_plain(pieces: &[Piece], item: &Value) -> Option<String> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field(segments) => {
                let mut value = Some(item);
                for segment in segments {
                    value = match value {
                        Some(Value::Object(map)) => map.get(segment),
                        Some(Value::Array(_)) => return None,
                        _ => None,
                    };
                }
                match value {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    Some(Value::Array(_) | Value::Object(_)) => return None,
                }
            }
        }
    }
    Some(out)
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
    handlebars_helper!(format_time_helper: |v: Json, format: str, *args| {
        // Handlebars reads `-60` as a path, so a negative shift is written `"-60"`.
        // `args` holds every parameter; the shift is the third.
        let shift = args
            .get(2)
            .and_then(|a| a.as_i64().or_else(|| a.as_str()?.trim().parse().ok()))
            .unwrap_or(0);
        super::format_time(v, format, shift).unwrap_or_default()
    });
}

/// `formatTime`: an RFC 3339 string or unix seconds, shifted by `shift_minutes`,
/// formatted in UTC with a `strftime` pattern (`%Y/%m/%d %H:%M` for Jira JQL).
/// `None` for a value that is not a time.
fn format_time(value: &Value, format: &str, shift_minutes: i64) -> Option<String> {
    use std::fmt::Write;
    let time = match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .with_timezone(&chrono::Utc),
        Value::Number(n) => chrono::DateTime::from_timestamp(n.as_i64()?, 0)?,
        _ => return None,
    };
    let time = time.checked_add_signed(chrono::Duration::try_minutes(shift_minutes)?)?;
    let mut out = String::new();
    // An invalid pattern makes `write!` fail instead of panicking.
    write!(out, "{}", time.format(format)).ok()?;
    Some(out)
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
    hb.register_helper("formatTime", Box::new(helpers::format_time_helper));
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

impl ItemTemplate {
    /// The field paths the template reads (segments), or `None` for the whole item.
    pub fn fields(&self) -> Option<&[Vec<String>]> {
        self.fields.as_deref()
    }
}

impl Templates {
    /// Compiles `source`, checks its helpers, and returns its handle and what it
    /// reads from the root context (`baseUrl`, `config.repo`, …).
    pub fn add(
        &mut self,
        kind: TemplateKind,
        source: &str,
    ) -> Result<(TemplateId, Referenced), TemplateError> {
        let template = compile(source)?;
        self.register(kind, template)
    }

    /// Registers a compiled template; its handle and what it reads from the
    /// root context.
    fn register(
        &mut self,
        kind: TemplateKind,
        template: Template,
    ) -> Result<(TemplateId, Referenced), TemplateError> {
        let mut refs = Referenced::default();
        collect(&template.elements, false, &mut refs)?;
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
        Ok((id, refs))
    }

    /// Compiles a template over an item's fields (helpers are checked; fields are not).
    pub fn add_item(&mut self, source: &str) -> Result<ItemTemplate, TemplateError> {
        let template = compile(source)?;
        let plain = plain_pieces(source, &template);
        let (id, refs) = self.register(TemplateKind::Text, template)?;
        let fields = (!refs.whole).then(|| {
            refs.vars
                .iter()
                .map(|v| v.split('.').map(str::to_owned).collect())
                .collect()
        });
        Ok(ItemTemplate { id, fields, plain })
    }

    /// Renders an item template. A field the item lacks renders empty; a template
    /// that fails to render (a helper given the wrong type) yields an empty string.
    pub fn render_item(&self, template: &ItemTemplate, item: &Value) -> String {
        if let Some(out) = template
            .plain
            .as_deref()
            .and_then(|pieces| render_plain(pieces, item))
        {
            return out;
        }
        let context = match (&template.fields, item) {
            (Some(fields), Value::Object(_)) => {
                let mut reduced = Map::new();
                for path in fields {
                    copy_path(item, path, &mut reduced);
                }
                Context::from(Value::Object(reduced))
            }
            _ => Context::from(item.clone()),
        };
        self.text
            .render_with_context(&template.id.index.to_string(), &context)
            .unwrap_or_default()
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

/// Parses a template whose nesting is within bounds.
fn compile(source: &str) -> Result<Template, TemplateError> {
    check_nesting(source)?;
    Template::compile(source).map_err(|e| describe_syntax_error(&e))
}

/// Refuses a template nesting blocks or subexpressions deeper than
/// [`MAX_TEMPLATE_DEPTH`], by a scan of its text that needs no recursion (so
/// the parser never meets a template that would exhaust its stack).
fn check_nesting(source: &str) -> Result<(), TemplateError> {
    let bytes = source.as_bytes();
    let (mut blocks, mut deepest_block, mut deepest_parens) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' || bytes[i + 1] != b'{' {
            i += 1;
            continue;
        }
        // Inside a mustache: its kind, then its parentheses.
        let mut j = i + 2;
        while j < bytes.len() && matches!(bytes[j], b'{' | b'~' | b' ') {
            j += 1;
        }
        match bytes.get(j) {
            Some(b'#' | b'^') => {
                blocks += 1;
                deepest_block = deepest_block.max(blocks);
            }
            Some(b'/') => blocks = blocks.saturating_sub(1),
            _ => {}
        }
        let mut parens = 0usize;
        while j + 1 < bytes.len() && !(bytes[j] == b'}' && bytes[j + 1] == b'}') {
            match bytes[j] {
                b'(' => {
                    parens += 1;
                    deepest_parens = deepest_parens.max(parens);
                }
                b')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            j += 1;
        }
        i = j + 2;
    }
    let deepest = deepest_block.max(deepest_parens);
    if deepest > MAX_TEMPLATE_DEPTH {
        return Err(TemplateError(format!(
            "the template nests {deepest} levels deep; blocks and subexpressions nest at most {MAX_TEMPLATE_DEPTH} deep"
        )));
    }
    Ok(())
}

/// Copies the value at `path` in `item` into `out` at the same path. Objects are
/// descended key by key; anything else met on the way (an array, a scalar) is
/// copied whole, so handlebars resolves the rest of the path on it.
fn copy_path(item: &Value, path: &[String], out: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = item.get(first) else {
        return;
    };
    if rest.is_empty() || !value.is_object() {
        out.insert(first.clone(), value.clone());
        return;
    }
    let entry = out
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inner) = entry {
        copy_path(value, rest, inner);
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
    vars: &mut Referenced,
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
    vars: &mut Referenced,
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

fn parameter(p: &Parameter, scoped: bool, refs: &mut Referenced) -> Result<(), TemplateError> {
    match p {
        Parameter::Path(path) => {
            let raw = path_raw(path);
            if let Some(rest) = raw.strip_prefix("@root.") {
                refs.vars.insert(normalize(rest));
            } else if raw.starts_with("..") || (!scoped && matches!(raw, "this" | "." | "")) {
                refs.whole = true;
            } else if !scoped && !raw.starts_with('@') {
                refs.vars
                    .insert(normalize(raw.strip_prefix("this.").unwrap_or(raw)));
            }
            Ok(())
        }
        Parameter::Name(n) => {
            if !scoped {
                refs.vars.insert(n.clone());
            }
            Ok(())
        }
        Parameter::Literal(_) => Ok(()),
        Parameter::Subexpression(sub) => match sub.element.as_ref() {
            TemplateElement::Expression(ht) => expression(ht, scoped, refs),
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

    fn items() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-z é{}@]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("title"),
                        Just("user"),
                        Just("login"),
                        Just("n"),
                        Just("user-name")
                    ],
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    const PLAIN: [&str; 6] = [
        "{{title}} (by @{{user.login}})",
        "#{{n}}: {{title}}{{missing.deep}}",
        "{{! a comment }}{{title}}",
        "a{{{title}}}b",
        "{{user-name}} and {{user.login.n}}",
        "no fields at all",
    ];

    #[test]
    fn only_text_and_plain_names_take_the_plain_path() {
        let plain = |source: &str| plain_pieces(source, &Template::compile(source).unwrap());
        for source in PLAIN {
            assert!(plain(source).is_some(), "{source}");
        }
        for source in [
            "{{#if title}}x{{/if}}",
            "{{json title}}",
            "{{this}}",
            "{{labels.0}}",
            "{{labels.[0]}}",
            "{{~title}}",
            "{{@index}}",
            "{{../title}}",
            "{{default title \"x\"}}",
            "\\{{title}}",
        ] {
            assert!(plain(source).is_none(), "{source}");
        }
    }

    proptest::proptest! {
        /// The plain path renders exactly what the template engine renders.
        #[test]
        fn the_plain_path_renders_what_the_engine_renders(item in items()) {
            let mut t = Templates::default();
            for source in PLAIN {
                let template = t.add_item(source).unwrap();
                proptest::prop_assert!(template.plain.is_some());
                let engine = ItemTemplate { plain: None, ..template.clone() };
                proptest::prop_assert_eq!(
                    t.render_item(&template, &item),
                    t.render_item(&engine, &item),
                    "{} over {}", source, item
                );
            }
        }
    }

    #[test]
    fn format_time_formats_shifts_and_refuses_non_times() {
        let t = json!("2024-03-01T10:20:30Z");
        assert_eq!(
            format_time(&t, "%Y/%m/%d %H:%M", 0).unwrap(),
            "2024/03/01 10:20"
        );
        assert_eq!(
            format_time(&t, "%Y-%m-%d %H:%M", -840).unwrap(),
            "2024-02-29 20:20"
        );
        assert_eq!(
            format_time(&json!(1_709_288_430), "%Y-%m-%dT%H:%M:%S", 0).unwrap(),
            "2024-03-01T10:20:30"
        );
        assert_eq!(format_time(&json!("yesterday"), "%Y", 0), None);
        assert_eq!(format_time(&t, "%Q", 0), None);
        let mut templates = Templates::default();
        let (id, _) = templates
            .add(
                TemplateKind::Text,
                r#"updated >= "{{formatTime checkpoint "%Y/%m/%d %H:%M" "-60"}}""#,
            )
            .unwrap();
        assert_eq!(
            templates
                .render(id, &json!({"checkpoint": "2024-03-01T10:20:30Z"}))
                .unwrap(),
            r#"updated >= "2024/03/01 09:20""#
        );
    }

    fn vars(src: &str) -> Vec<String> {
        let mut t = Templates::default();
        t.add(TemplateKind::Text, src)
            .unwrap()
            .1
            .vars
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

#[cfg(test)]
mod item_tests {
    use super::*;
    use serde_json::json;

    /// Rendering over the copied fields equals rendering over the whole item.
    #[test]
    fn reduced_context_renders_like_the_whole_item() {
        let item = json!({
            "number": 7, "title": "Crash é 🦀", "user": {"login": "octo", "id": 1},
            "labels": [{"name": "bug"}, {"name": "p1"}], "pull_request": {"merged": true},
            "commits": [1, 2, 3], "nested": {"a": {"b": {"c": "deep"}}}, "empty": ""
        });
        let templates = [
            "#{{number}} {{title}} by {{user.login}}",
            "{{#if pull_request}}PR{{else}}Issue{{/if}} #{{number}}",
            "{{#each labels}}{{name}},{{/each}}",
            "{{#with user}}{{login}}/{{../number}}{{/with}}",
            "{{len commits}} commits; {{nested.a.b.c}} {{nested.a}}",
            "{{labels.[1].name}} {{missing.field}}|{{missing}}|",
            "{{#if empty}}x{{else}}empty{{/if}} {{#unless pull_request.merged}}open{{/unless}}",
            "{{this.title}} {{@root.number}}",
            "{{json user}}",
        ];
        let mut t = Templates::default();
        for source in templates {
            let compiled = t.add_item(source).unwrap();
            let reduced = t.render_item(&compiled, &item);
            let whole = t.render(compiled.id, &item).unwrap();
            assert_eq!(reduced, whole, "{source}");
        }
    }

    #[test]
    fn deep_templates_are_refused_before_parsing() {
        let mut t = Templates::default();
        // Blocks 1,500 and 5,000 deep (the parser and renderer recurse).
        for depth in [1_500, 5_000] {
            let source = format!(
                "{}x{}",
                "{{#if title}}".repeat(depth),
                "{{/if}}".repeat(depth)
            );
            let e = t.add_item(&source).unwrap_err();
            assert!(e.0.contains(&format!("nests {depth} levels")), "{}", e.0);
        }
        // Subexpressions 1,000 deep.
        let source = format!(
            "{{{{title {}title{}}}}}",
            "(json ".repeat(1_000),
            ")".repeat(1_000)
        );
        let e = t.add_item(&source).unwrap_err();
        assert!(e.0.contains("nests 1000 levels"), "{}", e.0);
        // At the bound they compile and render.
        let d = MAX_TEMPLATE_DEPTH;
        let source = format!("{}x{}", "{{#if title}}".repeat(d), "{{/if}}".repeat(d));
        let c = t.add_item(&source).unwrap();
        assert_eq!(t.render_item(&c, &json!({"title": "t"})), "x");
        let source = format!("{{{{json {}title{}}}}}", "(json ".repeat(d), ")".repeat(d));
        assert!(t.add_item(&source).is_ok(), "{source}");
        // Braces in text and parentheses outside mustaches do not count.
        assert!(t.add_item(&"((((".repeat(20)).is_ok());
    }

    #[test]
    fn missing_fields_render_empty_and_non_objects_render() {
        let mut t = Templates::default();
        let c = t.add_item("#{{number}} {{nope.deeper}}!").unwrap();
        assert_eq!(t.render_item(&c, &json!({"number": 1})), "#1 !");
        let c = t.add_item("[{{this}}]").unwrap();
        assert_eq!(t.render_item(&c, &json!("plain")), "[plain]");
    }
}

//! Compiles field mappings: item paths, the summary template, signal-type rules,
//! filter conditions and priority rules.

use regex::Regex;
use serde_json::Value;

use super::context::{Ctx, is_signal_kind};
use super::path::CompiledPath;
use super::template::ItemTemplate;
use crate::descriptor::diagnostic::{Code, Pointer};
use crate::descriptor::mapping::{FieldMappingDescriptor, Operator, Priority};

/// A compiled field mapping.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    /// The items of a payload.
    pub items: CompiledPath,
    /// The item id.
    pub id: CompiledPath,
    /// The provider-facing id, when it differs from `id`.
    pub external_id: Option<CompiledPath>,
    /// The item timestamp.
    pub timestamp: CompiledPath,
    /// The summary template.
    pub summary: ItemTemplate,
    /// Signal-type rules, in order.
    pub rules: Vec<CompiledRule>,
    /// Kind when no rule matches.
    pub default_type: Option<String>,
    /// Conditions every item must meet.
    pub filter: Vec<CompiledCondition>,
    /// Priority rules, in order.
    pub priority: Vec<(CompiledCondition, Priority)>,
    /// Participants.
    pub participants: Option<CompiledPath>,
    /// Tags.
    pub tags: Option<CompiledPath>,
    /// Related items.
    pub related: Option<CompiledPath>,
    /// Web URL.
    pub url: Option<CompiledPath>,
    /// Raw fields kept in the payload.
    pub raw_fields: Vec<RawFieldPath>,
}

/// One compiled `rawFields` entry.
#[derive(Debug, Clone)]
pub struct RawFieldPath {
    /// The key in the payload's `raw` object.
    pub name: String,
    /// Where its value is read.
    pub path: CompiledPath,
    /// Keep the first match only.
    pub first: bool,
}

/// A compiled signal-type rule: everything given must hold.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Webhook event types the rule applies to (empty: any).
    pub events: Vec<String>,
    /// Conditions on the item (`when` first, then `and`).
    pub conditions: Vec<CompiledCondition>,
    /// Resulting kind.
    pub then: String,
}

/// A compiled test on one value of an item.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    /// The value tested.
    pub path: CompiledPath,
    /// The test.
    pub test: Test,
}

/// A comparison with its operand.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal to the value.
    Equals(Value),
    /// Not equal to the value.
    NotEquals(Value),
    /// String contains / array has an element equal to the value.
    Contains(Value),
    /// Present and not null.
    Exists,
    /// Missing or null.
    NotExists,
    /// String matching the regex.
    Matches(Regex),
    /// Equal to one of the values.
    In(Vec<Value>),
}

pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    m: &FieldMappingDescriptor,
    at: &Pointer,
) -> Option<CompiledMapping> {
    let items = ctx.path(&at.key("itemsPath"), &m.items_path);
    let id = ctx.singular_path(&at.key("idPath"), &m.id_path);
    let external_id = m
        .external_id_path
        .as_ref()
        .map(|p| ctx.singular_path(&at.key("externalIdPath"), p));
    let timestamp = ctx.singular_path(&at.key("timestampPath"), &m.timestamp_path);
    let summary = ctx.item_template(&at.key("summaryTemplate"), &m.summary_template);

    let mut ok = true;
    let rules_at = at.key("signalTypeRules");
    let mut rules = Vec::with_capacity(m.signal_type_rules.len());
    for (i, rule) in m.signal_type_rules.iter().enumerate() {
        let rule_at = rules_at.index(i);
        let mut conditions = Vec::new();
        match (&rule.when, rule.operator) {
            (Some(when), Some(op)) => {
                match condition(ctx, &rule_at, when, op, rule.value.as_ref()) {
                    Some(c) => conditions.push(c),
                    None => ok = false,
                }
            }
            (Some(_), None) => {
                ctx.error(
                    rule_at.key("operator"),
                    Code::Invalid,
                    "`when` needs an `operator` (equals, not_equals, contains, exists, not_exists, matches, in)",
                );
                ok = false;
            }
            (None, Some(_)) => {
                ctx.error(
                    rule_at.key("when"),
                    Code::Invalid,
                    "`operator` needs a `when` path",
                );
                ok = false;
            }
            (None, None) => {
                if rule.value.is_some() {
                    ctx.error(
                        rule_at.key("value"),
                        Code::Invalid,
                        "`value` needs `when` and `operator`",
                    );
                    ok = false;
                }
            }
        }
        for (j, c) in rule.and.iter().enumerate() {
            match condition(
                ctx,
                &rule_at.key("and").index(j),
                &c.when,
                c.operator,
                c.value.as_ref(),
            ) {
                Some(c) => conditions.push(c),
                None => ok = false,
            }
        }
        let events: Vec<String> = rule
            .event
            .as_ref()
            .map(|e| e.as_slice().to_vec())
            .unwrap_or_default();
        check_events(ctx, &rule_at.key("event"), &events);
        if rule.when.is_none() && rule.and.is_empty() && rule.event.is_none() {
            ctx.error(
                rule_at.clone(),
                Code::Invalid,
                "a rule needs `when`, `and` or `event` (use `defaultType` for a catch-all)",
            );
            ok = false;
        }
        check_kind(ctx, &rule_at.key("then"), &rule.then);
        rules.push(CompiledRule {
            events,
            conditions,
            then: rule.then.clone(),
        });
    }
    if let Some(kind) = &m.default_type {
        check_kind(ctx, &at.key("defaultType"), kind);
    } else if m.signal_type_rules.is_empty() {
        ctx.error(
            rules_at.clone(),
            Code::Invalid,
            "no signal-type rules and no `defaultType`: every item would be skipped",
        );
    }

    let mut filter = Vec::new();
    for (i, c) in m.filter.iter().enumerate() {
        match condition(
            ctx,
            &at.key("filter").index(i),
            &c.when,
            c.operator,
            c.value.as_ref(),
        ) {
            Some(c) => filter.push(c),
            None => ok = false,
        }
    }
    let mut priority = Vec::new();
    for (i, p) in m.priority_mapping.iter().enumerate() {
        match condition(
            ctx,
            &at.key("priorityMapping").index(i),
            &p.when,
            p.operator,
            p.value.as_ref(),
        ) {
            Some(c) => priority.push((c, p.then)),
            None => ok = false,
        }
    }

    let optional = |ctx: &mut Ctx<'_>, key: &str, source: &Option<String>| {
        source.as_ref().map(|s| ctx.path(&at.key(key), s))
    };
    let participants = optional(ctx, "participantsPath", &m.participants_path);
    let tags = optional(ctx, "tagsPath", &m.tags_path);
    let related = optional(ctx, "relatedItemsPath", &m.related_items_path);
    let url = m
        .url_path
        .as_ref()
        .map(|p| ctx.singular_path(&at.key("urlPath"), p));

    let mut raw_fields: Vec<RawFieldPath> = Vec::new();
    for (i, field) in m.raw_fields.iter().enumerate() {
        let written = field.path();
        let source = if written.starts_with('$') {
            written.to_owned()
        } else {
            format!("$.{written}")
        };
        let here = at.key("rawFields").index(i);
        if raw_fields.iter().any(|r| r.name == field.name()) {
            let message = format!("`{}` is kept twice in rawFields", field.name());
            ctx.error(here, Code::Invalid, message);
            ok = false;
            continue;
        }
        match ctx.path(&here, &source) {
            Some(path) => raw_fields.push(RawFieldPath {
                name: field.name().to_owned(),
                path,
                first: field.first(),
            }),
            None => ok = false,
        }
    }

    let all = |o: Option<Option<CompiledPath>>| match o {
        None => Some(None),
        Some(Some(p)) => Some(Some(p)),
        Some(None) => None,
    };
    Some(CompiledMapping {
        items: items?,
        id: id?,
        external_id: all(external_id)?,
        timestamp: timestamp?,
        summary: summary?,
        rules,
        default_type: m.default_type.clone(),
        filter,
        priority,
        participants: all(participants)?,
        tags: all(tags)?,
        related: all(related)?,
        url: all(url)?,
        raw_fields,
    })
    .filter(|_| ok)
}

/// Compiles `when`/`operator`/`value` found at `at` (whose children they are).
pub(super) fn condition(
    ctx: &mut Ctx<'_>,
    at: &Pointer,
    when: &str,
    op: Operator,
    value: Option<&Value>,
) -> Option<CompiledCondition> {
    let path = ctx.path(&at.key("when"), when);
    let test = test(ctx, at, op, value);
    Some(CompiledCondition {
        path: path?,
        test: test?,
    })
}

/// Checks an operator against its value and builds the test.
pub(super) fn test(
    ctx: &mut Ctx<'_>,
    at: &Pointer,
    op: Operator,
    value: Option<&Value>,
) -> Option<Test> {
    let value_at = at.key("value");
    let name = op.name();
    match (op, value) {
        (Operator::Exists | Operator::NotExists, None) => Some(if op == Operator::Exists {
            Test::Exists
        } else {
            Test::NotExists
        }),
        (Operator::Exists | Operator::NotExists, Some(_)) => {
            ctx.error(
                value_at,
                Code::Invalid,
                format!("`{name}` takes no `value`"),
            );
            None
        }
        (Operator::In, Some(Value::Array(values))) => Some(Test::In(values.clone())),
        (Operator::In, Some(_)) => {
            ctx.error(
                value_at,
                Code::Invalid,
                "`in` takes a list of values, e.g. `[open, reopened]`",
            );
            None
        }
        (_, None) => {
            ctx.error(value_at, Code::Invalid, format!("`{name}` needs a `value`"));
            None
        }
        (_, Some(Value::Array(_))) => {
            ctx.error(
                value_at,
                Code::Invalid,
                format!("`{name}` takes a single value, not a list (use `in` for a list)"),
            );
            None
        }
        (Operator::Matches, Some(Value::String(pattern))) => {
            ctx.regex(&value_at, pattern).map(Test::Matches)
        }
        (Operator::Matches, Some(_)) => {
            ctx.error(
                value_at,
                Code::Invalid,
                "`matches` takes a regular expression string",
            );
            None
        }
        (Operator::Equals, Some(v)) => Some(Test::Equals(v.clone())),
        (Operator::NotEquals, Some(v)) => Some(Test::NotEquals(v.clone())),
        (Operator::Contains, Some(v)) => Some(Test::Contains(v.clone())),
    }
}

/// `event` values must be event types the webhook handles.
fn check_events(ctx: &mut Ctx<'_>, at: &Pointer, events: &[String]) {
    if events.is_empty() {
        return;
    }
    let Some(webhook) = ctx.descriptor.ingestion.webhook() else {
        ctx.error(
            at.clone(),
            Code::Invalid,
            "`event` matches webhook event types, but this connector has no webhook ingestion",
        );
        return;
    };
    let known: Vec<String> = webhook.event_types.clone();
    for event in events {
        if !known.contains(event) {
            let mut message = format!("event `{event}` is not in the webhook's `eventTypes`");
            if let Some(best) =
                crate::descriptor::schema::suggest(event, known.iter().map(String::as_str))
            {
                message.push_str(&format!(", did you mean `{best}`?"));
            }
            ctx.error(at.clone(), Code::Invalid, message);
        }
    }
}

/// A rule's kind is snake_case and, when `signals` is declared, one of them.
fn check_kind(ctx: &mut Ctx<'_>, at: &Pointer, kind: &str) {
    if !is_signal_kind(kind) {
        ctx.error(
            at.clone(),
            Code::Invalid,
            format!("`{kind}` is not a valid signal kind (lowercase snake_case, e.g. `pr_merged`)"),
        );
        return;
    }
    let signals = &ctx.descriptor.signals;
    if !signals.is_empty() && !signals.iter().any(|s| s == kind) {
        let mut message = format!("`{kind}` is not listed in `signals`");
        if let Some(best) =
            crate::descriptor::schema::suggest(kind, signals.iter().map(String::as_str))
        {
            message.push_str(&format!(", did you mean `{best}`?"));
        }
        ctx.error(at.clone(), Code::Invalid, message);
    }
}

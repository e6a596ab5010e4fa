//! The field-mapping engine: a compiled descriptor plus a raw payload (a polled
//! page, or a webhook body with its headers and event type) becomes Signals.
//! Everything is compiled already; nothing here parses a path or a template.
//! Items that cannot become a Signal are skipped and reported with the reason,
//! never guessed (an unreadable timestamp is never "now").

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timestamp;
use crate::descriptor::compile::{
    CompiledDescriptor, CompiledMapping, CompiledPath, CompiledWebhook, EventTypeSource,
};
use crate::domain::{ConnectionId, Signal, TenantId};

/// What the caller knows that the payload does not.
#[derive(Debug, Clone, Copy)]
pub struct MapContext {
    /// The tenant the signals belong to.
    pub tenant_id: TenantId,
    /// The connection they came through.
    pub connection_id: ConnectionId,
    /// When the payload was received.
    pub received_at: DateTime<Utc>,
}

/// The result of mapping one payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped {
    /// The signals, in item order.
    pub signals: Vec<Signal>,
    /// Items that produced no signal, and why.
    pub skipped: Vec<Skipped>,
}

/// An item that produced no signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position of the item in the payload (0-based).
    pub index: usize,
    /// The item's id, when it could be read.
    pub id: Option<String>,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why an item produced no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// `idPath` selected nothing usable.
    #[error("no id at `{0}`")]
    MissingId(String),
    /// `timestampPath` selected nothing.
    #[error("no timestamp at `{0}`")]
    MissingTimestamp(String),
    /// `timestampPath` selected a value that is not a date.
    #[error("timestamp {value} at `{path}` is not a recognized date or unix time")]
    BadTimestamp {
        /// The path.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// A `filter` condition did not hold.
    #[error("filtered out: the condition on `{0}` does not hold")]
    Filtered(String),
    /// No rule matched and there is no `defaultType`.
    #[error("no signal-type rule matched and the mapping has no defaultType")]
    NoRule,
}

/// A webhook delivery to map.
#[derive(Debug, Clone, Copy)]
pub struct WebhookInput<'a> {
    /// The parsed body.
    pub body: &'a Value,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The event type, when the caller already knows it (overrides the descriptor's
    /// `eventTypeHeader` / `eventTypePath`).
    pub event: Option<&'a str>,
}

/// The result of mapping a webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMapped {
    /// The event type.
    pub event: String,
    /// Whether the event type is one the descriptor handles; other events are
    /// acknowledged and produce nothing.
    pub handled: bool,
    /// The signals and skipped items.
    pub mapped: Mapped,
}

/// Why a webhook delivery could not be mapped at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookMapError {
    /// The descriptor has no webhook ingestion.
    #[error("connector `{0}` does not receive webhooks")]
    NoWebhook(String),
    /// The event type is not in the header or at the path the descriptor names.
    #[error("no event type: expected {0}")]
    MissingEventType(String),
}

/// Maps one polled page with the descriptor's top-level field mapping.
pub fn map_page(descriptor: &CompiledDescriptor, page: &Value, ctx: &MapContext) -> Mapped {
    map_items(descriptor, &descriptor.mapping, page, None, ctx)
}

/// Maps one webhook delivery: resolves its event type, picks the mapping
/// (`eventMappings[event]`, then the webhook `fieldMapping`, then the top-level
/// one) and maps the body. Events outside `eventTypes` produce nothing.
pub fn map_webhook(
    descriptor: &CompiledDescriptor,
    input: WebhookInput<'_>,
    ctx: &MapContext,
) -> Result<WebhookMapped, WebhookMapError> {
    let webhook = descriptor
        .webhook
        .as_ref()
        .ok_or_else(|| WebhookMapError::NoWebhook(descriptor.id().to_owned()))?;
    let event = match input.event {
        Some(e) => e.to_owned(),
        None => event_type(webhook, input.body, input.headers)?,
    };
    if !webhook.event_types.contains(&event) {
        return Ok(WebhookMapped {
            event,
            handled: false,
            mapped: Mapped::default(),
        });
    }
    let mapping = webhook
        .event_mappings
        .get(&event)
        .or(webhook.mapping.as_ref())
        .unwrap_or(&descriptor.mapping);
    let mapped = map_items(descriptor, mapping, input.body, Some(&event), ctx);
    Ok(WebhookMapped {
        event,
        handled: true,
        mapped,
    })
}

/// The event type of a delivery, per the descriptor.
pub fn event_type(
    webhook: &CompiledWebhook,
    body: &Value,
    headers: &HeaderMap,
) -> Result<String, WebhookMapError> {
    match &webhook.event_type {
        EventTypeSource::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| WebhookMapError::MissingEventType(format!("header `{name}`"))),
        EventTypeSource::Path(path) => path.first(body).and_then(scalar_string).ok_or_else(|| {
            WebhookMapError::MissingEventType(format!("`{}` in the body", path.source()))
        }),
    }
}

/// Maps the items `mapping` selects from `payload`.
pub fn map_items(
    descriptor: &CompiledDescriptor,
    mapping: &CompiledMapping,
    payload: &Value,
    event: Option<&str>,
    ctx: &MapContext,
) -> Mapped {
    let selected = mapping.items.select(payload);
    let items: Vec<&Value> = match selected.as_slice() {
        [Value::Array(items)] => items.iter().collect(),
        _ => selected,
    };
    let mut out = Mapped {
        signals: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match map_item(descriptor, mapping, item, event, ctx) {
            Ok(signal) => out.signals.push(signal),
            Err((id, reason)) => out.skipped.push(Skipped { index, id, reason }),
        }
    }
    out
}

fn map_item(
    descriptor: &CompiledDescriptor,
    mapping: &CompiledMapping,
    item: &Value,
    event: Option<&str>,
    ctx: &MapContext,
) -> Result<Signal, (Option<String>, SkipReason)> {
    let id = mapping
        .id
        .first(item)
        .and_then(scalar_string)
        .ok_or_else(|| (None, SkipReason::MissingId(mapping.id.source().to_owned())))?;
    let fail = |reason| (Some(id.clone()), reason);
    let external_id = match &mapping.external_id {
        Some(path) => path
            .first(item)
            .and_then(scalar_string)
            .unwrap_or_else(|| id.clone()),
        None => id.clone(),
    };
    let occurred_at = match mapping.timestamp.first(item) {
        None | Some(Value::Null) => {
            return Err(fail(SkipReason::MissingTimestamp(
                mapping.timestamp.source().to_owned(),
            )));
        }
        Some(value) => timestamp::parse(value).ok_or_else(|| {
            fail(SkipReason::BadTimestamp {
                path: mapping.timestamp.source().to_owned(),
                value: value.to_string(),
            })
        })?,
    };
    if let Some(failed) = mapping.filter.iter().find(|c| !c.holds(item)) {
        return Err(fail(SkipReason::Filtered(failed.path.source().to_owned())));
    }
    let kind = mapping
        .rules
        .iter()
        .find(|rule| {
            (rule.events.is_empty() || event.is_some_and(|e| rule.events.iter().any(|r| r == e)))
                && rule.conditions.iter().all(|c| c.holds(item))
        })
        .map(|rule| rule.then.clone())
        .or_else(|| mapping.default_type.clone())
        .ok_or_else(|| fail(SkipReason::NoRule))?;
    let priority = mapping
        .priority
        .iter()
        .find(|(condition, _)| condition.holds(item))
        .map(|(_, p)| *p);

    let mut raw = Map::with_capacity(mapping.raw_fields.len());
    for field in &mapping.raw_fields {
        let path = &field.path;
        let value = if path.is_singular() || field.first {
            path.first(item).cloned()
        } else {
            Some(Value::Array(
                path.select(item).into_iter().cloned().collect(),
            ))
        };
        if let Some(value) = value {
            raw.insert(field.name.clone(), value);
        }
    }
    let mut payload = Map::with_capacity(2);
    if let Some(event) = event {
        payload.insert("event".into(), Value::String(event.to_owned()));
    }
    payload.insert("raw".into(), Value::Object(raw));

    Ok(finished(Signal {
        id: Uuid::nil(),
        tenant_id: ctx.tenant_id,
        connection_id: ctx.connection_id,
        provider: descriptor.id().to_owned(),
        kind,
        occurred_at,
        received_at: ctx.received_at,
        external_id,
        summary: descriptor.templates.render_item(&mapping.summary, item),
        priority,
        participants: strings(mapping.participants.as_ref(), item),
        tags: strings(mapping.tags.as_ref(), item),
        related: strings(mapping.related.as_ref(), item),
        url: mapping
            .url
            .as_ref()
            .and_then(|p| p.first(item))
            .and_then(scalar_string),
        payload: Value::Object(payload),
    }))
}

/// A Signal a connector built, made ready to store: [`without_nul`], then its
/// id derived from its final fields ([`Signal::with_derived_id`]).
pub fn finished(s: Signal) -> Signal {
    without_nul(s).with_derived_id()
}

/// Removes NUL characters from every text of a Signal: PostgreSQL refuses them
/// in text and JSON (one such value would fail a whole batch of writes), and a
/// NUL in a title or a field is never meaningful.
fn without_nul(mut s: Signal) -> Signal {
    fn text(t: &mut String) {
        if t.contains('\0') {
            t.retain(|c| c != '\0');
        }
    }
    fn json(v: &mut Value) {
        match v {
            Value::String(t) => text(t),
            Value::Array(items) => items.iter_mut().for_each(json),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(mut k, v)| {
                            text(&mut k);
                            (k, v)
                        })
                        .collect();
                }
                map.values_mut().for_each(json);
            }
            _ => {}
        }
    }
    for t in [&mut s.external_id, &mut s.summary, &mut s.kind] {
        text(t);
    }
    if let Some(url) = &mut s.url {
        text(url);
    }
    for list in [&mut s.participants, &mut s.tags, &mut s.related] {
        list.iter_mut().for_each(text);
    }
    json(&mut s.payload);
    s
}

/// A scalar as text: strings as they are, numbers and booleans printed; `None`
/// for null, objects, arrays and empty strings.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scalars a path selects (arrays flattened one level), without repeats.
fn strings(path: Option<&CompiledPath>, item: &Value) -> Vec<String> {
    let Some(path) = path else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = scalar_string(v)
            && !out.contains(&s)
        {
            out.push(s);
        }
    };
    let selected = if path.is_singular() {
        path.first(item).into_iter().collect()
    } else {
        path.select(item)
    };
    for value in selected {
        match value {
            Value::Array(items) => items.iter().for_each(&mut push),
            other => push(other),
        }
    }
    out
}

/// Whether a payload is a polled page or a webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// A response page of the polling request.
    Page,
    /// A webhook body.
    Webhook,
}

/// A payload of either kind, as the `map` command and the golden fixtures give it.
#[derive(Debug, Clone, Copy)]
pub struct PayloadInput<'a> {
    /// The parsed body.
    pub body: &'a Value,
    /// Request headers (webhooks).
    pub headers: &'a HeaderMap,
    /// The webhook event type, if known.
    pub event: Option<&'a str>,
    /// The kind; by default a webhook when an event or headers are given or the
    /// descriptor does not poll, else a page.
    pub kind: Option<PayloadKind>,
}

/// The result of mapping a payload of either kind.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadMapped {
    /// How the payload was read.
    pub kind: PayloadKind,
    /// The webhook event type.
    pub event: Option<String>,
    /// False for a webhook event the descriptor does not handle.
    pub handled: bool,
    /// The signals and skipped items.
    pub mapped: Mapped,
}

/// Maps a page or a webhook delivery.
pub fn map_payload(
    descriptor: &CompiledDescriptor,
    input: PayloadInput<'_>,
    ctx: &MapContext,
) -> Result<PayloadMapped, WebhookMapError> {
    let kind = input.kind.unwrap_or(
        if input.event.is_some() || !input.headers.is_empty() || descriptor.polling.is_none() {
            PayloadKind::Webhook
        } else {
            PayloadKind::Page
        },
    );
    Ok(match kind {
        PayloadKind::Page => PayloadMapped {
            kind,
            event: None,
            handled: true,
            mapped: map_page(descriptor, input.body, ctx),
        },
        PayloadKind::Webhook => {
            let out = map_webhook(
                descriptor,
                WebhookInput {
                    body: input.body,
                    headers: input.headers,
                    event: input.event,
                },
                ctx,
            )?;
            PayloadMapped {
                kind,
                event: Some(out.event),
                handled: out.handled,
                mapped: out.mapped,
            }
        }
    })
}

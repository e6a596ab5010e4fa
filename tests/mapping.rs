//! The mapping engine over small descriptors: rules (`and`, `event`), filter,
//! defaultType, skipped items with reasons, missing fields, non-ASCII text, and
//! webhook event resolution and mapping choice.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use poblysh_connectors::descriptor::compile::CompiledDescriptor;
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::{
    MapContext, Mapped, SkipReason, WebhookInput, WebhookMapError, map_page, map_webhook,
};
use serde_json::{Value, json};

const DESCRIPTOR: &str = r#"
id: acme
name: Acme
description: Acme tickets.
category: custom
icon: ticket
kind: generic
version: 1.0.0
baseUrl: https://api.acme.example
auth: { method: none }
ingestion:
  mode: polling_and_webhook
  polling:
    endpoint: "{{baseUrl}}/tickets"
    method: GET
    delta: { type: timestamp_filter, queryParam: since, format: iso8601 }
    rateLimitRpm: 60
  webhook:
    eventTypes: [ticket, comment, note]
    eventTypeHeader: X-Acme-Event
    verification: none
    eventMappings:
      comment:
        itemsPath: $
        idPath: $.comment.id
        timestampPath: $.comment.at
        summaryTemplate: "comment: {{comment.body}}"
        signalTypeRules: []
        defaultType: ticket_commented
fieldMapping:
  itemsPath: $.tickets
  idPath: $.id
  externalIdPath: $.key
  timestampPath: $.updated
  summaryTemplate: "{{key}} {{title}} ({{assignee.name}})"
  filter:
    - { when: $.spam, operator: not_equals, value: true }
  signalTypeRules:
    - when: $.status
      operator: equals
      value: closed
      and:
        - { when: $.resolution, operator: equals, value: fixed }
      then: ticket_fixed
    - { when: $.status, operator: equals, value: closed, then: ticket_closed }
    - { event: ticket, when: $.created, operator: exists, then: ticket_created }
    - { when: $.labels, operator: contains, value: urgent, then: ticket_escalated }
  defaultType: ticket_updated
  priorityMapping:
    - { when: $.severity, operator: in, value: [s0, s1], then: critical }
    - { when: $.title, operator: contains, value: "!", then: high }
  participantsPath: $['reporter','assignee'].name
  tagsPath: $.labels
  relatedItemsPath: $.links[*].key
  urlPath: $.url
  rawFields: [status, $.assignee.name, missing.field, '$.labels[*]']
healthCheck: { endpoint: "{{baseUrl}}/ping", method: GET, expectStatus: 200, timeoutMs: 1000 }
"#;

fn descriptor(text: &str) -> CompiledDescriptor {
    load_str("<test>", text, Format::Yaml).unwrap_or_else(|d| panic!("{d:#?}"))
}

fn ctx() -> MapContext {
    MapContext {
        tenant_id: TenantId::nil(),
        connection_id: ConnectionId::nil(),
        received_at: "2024-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
    }
}

fn ticket(id: u32, extra: Value) -> Value {
    let mut t = json!({"id": id, "key": format!("AC-{id}"), "title": "Title", "updated": "2024-05-01T10:00:00Z",
        "status": "open"});
    t.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    t
}

fn kinds(m: &Mapped) -> Vec<&str> {
    m.signals.iter().map(|s| s.kind.as_str()).collect()
}

#[test]
fn rules_and_default_type() {
    let d = descriptor(DESCRIPTOR);
    let page = json!({"tickets": [
        ticket(1, json!({"status": "closed", "resolution": "fixed"})),
        ticket(2, json!({"status": "closed", "resolution": "wontfix"})),
        ticket(3, json!({"created": true})),
        ticket(4, json!({"labels": ["ops", "urgent"]})),
        ticket(5, json!({})),
    ]});
    let m = map_page(&d, &page, &ctx());
    // Rule 3 needs the webhook event `ticket`: polled items never match it.
    assert_eq!(
        kinds(&m),
        [
            "ticket_fixed",
            "ticket_closed",
            "ticket_updated",
            "ticket_escalated",
            "ticket_updated"
        ]
    );
    assert!(m.skipped.is_empty());
}

#[test]
fn a_signal_carries_every_mapped_field() {
    let d = descriptor(DESCRIPTOR);
    let page = json!({"tickets": [ticket(9, json!({
        "title": "Ünïcödé 🦀 日本語!", "severity": "s1",
        "reporter": {"name": "Zoë"}, "assignee": {"name": "Łukasz"},
        "labels": ["a", "b", "a"], "links": [{"key": "AC-1"}, {"key": "AC-2"}],
        "url": "https://acme.example/AC-9", "status": "review"
    }))]});
    let m = map_page(&d, &page, &ctx());
    let s = &m.signals[0];
    assert_eq!(s.provider, "acme");
    assert_eq!(s.external_id, "AC-9");
    assert_eq!(s.occurred_at.to_rfc3339(), "2024-05-01T10:00:00+00:00");
    assert_eq!(s.received_at, ctx().received_at);
    assert_eq!(s.summary, "AC-9 Ünïcödé 🦀 日本語! (Łukasz)");
    assert_eq!(
        s.priority.map(|p| format!("{p:?}")).as_deref(),
        Some("Critical")
    );
    assert_eq!(s.participants, ["Zoë", "Łukasz"]);
    assert_eq!(s.tags, ["a", "b"]);
    assert_eq!(s.related, ["AC-1", "AC-2"]);
    assert_eq!(s.url.as_deref(), Some("https://acme.example/AC-9"));
    assert_eq!(
        s.payload,
        json!({"raw": {"status": "review", "$.assignee.name": "Łukasz", "$.labels[*]": ["a", "b", "a"]}})
    );
    assert_eq!(s.id, s.derived_id());
}

#[test]
fn missing_optional_fields_are_empty_not_errors() {
    let d = descriptor(DESCRIPTOR);
    let page =
        json!({"tickets": [{"id": 1, "updated": 1717200000, "assignee": null, "labels": null}]});
    let m = map_page(&d, &page, &ctx());
    let s = &m.signals[0];
    assert_eq!(s.summary, "  ()", "missing fields render empty");
    assert_eq!(
        s.external_id, "1",
        "externalIdPath missing: falls back to the id"
    );
    assert!(s.participants.is_empty() && s.tags.is_empty() && s.related.is_empty());
    assert_eq!(s.url, None);
    assert_eq!(s.priority, None);
    assert_eq!(s.payload, json!({"raw": {"$.labels[*]": []}}));
}

#[test]
fn skipped_items_say_why() {
    let d = descriptor(DESCRIPTOR);
    let page = json!({"tickets": [
        {"key": "no-id", "updated": "2024-05-01T10:00:00Z"},
        {"id": 2},
        {"id": 3, "updated": null},
        {"id": 4, "updated": "last tuesday"},
        ticket(5, json!({"spam": true})),
        ticket(6, json!({})),
    ]});
    let m = map_page(&d, &page, &ctx());
    assert_eq!(kinds(&m), ["ticket_updated"]);
    let reasons: Vec<(usize, Option<&str>, &SkipReason)> = m
        .skipped
        .iter()
        .map(|s| (s.index, s.id.as_deref(), &s.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (0, None, &SkipReason::MissingId("$.id".into())),
            (
                1,
                Some("2"),
                &SkipReason::MissingTimestamp("$.updated".into())
            ),
            (
                2,
                Some("3"),
                &SkipReason::MissingTimestamp("$.updated".into())
            ),
            (
                3,
                Some("4"),
                &SkipReason::BadTimestamp {
                    path: "$.updated".into(),
                    value: "\"last tuesday\"".into()
                }
            ),
            (4, Some("5"), &SkipReason::Filtered("$.spam".into())),
        ]
    );
}

#[test]
fn without_default_type_unmatched_items_are_skipped() {
    let text = DESCRIPTOR.replace("  defaultType: ticket_updated\n", "");
    let d = descriptor(&text);
    let m = map_page(&d, &json!({"tickets": [ticket(1, json!({}))]}), &ctx());
    assert!(m.signals.is_empty());
    assert_eq!(m.skipped[0].reason, SkipReason::NoRule);
}

#[test]
fn webhook_event_matching_and_mapping_choice() {
    let d = descriptor(DESCRIPTOR);
    let mut headers = HeaderMap::new();
    headers.insert("x-acme-event", "ticket".parse().unwrap());
    let body = json!({"tickets": [ticket(1, json!({"created": true}))]});
    let out = map_webhook(
        &d,
        WebhookInput {
            body: &body,
            headers: &headers,
            event: None,
        },
        &ctx(),
    )
    .unwrap();
    assert!(out.handled);
    assert_eq!(out.event, "ticket");
    assert_eq!(
        kinds(&out.mapped),
        ["ticket_created"],
        "the `event: ticket` rule applies"
    );
    assert_eq!(out.mapped.signals[0].payload["event"], "ticket");

    // A per-event mapping wins over the top-level one.
    let body = json!({"comment": {"id": "c1", "at": "2024-05-02T00:00:00Z", "body": "Looks good"}});
    let out = map_webhook(
        &d,
        WebhookInput {
            body: &body,
            headers: &headers,
            event: Some("comment"),
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(kinds(&out.mapped), ["ticket_commented"]);
    assert_eq!(out.mapped.signals[0].summary, "comment: Looks good");

    // An event the descriptor does not handle is acknowledged, not mapped.
    let out = map_webhook(
        &d,
        WebhookInput {
            body: &body,
            headers: &headers,
            event: Some("deleted"),
        },
        &ctx(),
    )
    .unwrap();
    assert!(!out.handled);
    assert!(out.mapped.signals.is_empty());

    // No event header: an error naming where the event type was expected.
    let err = map_webhook(
        &d,
        WebhookInput {
            body: &body,
            headers: &HeaderMap::new(),
            event: None,
        },
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        WebhookMapError::MissingEventType("header `X-Acme-Event`".into())
    );
}

#[test]
fn webhook_field_mapping_override_and_event_from_path() {
    let text = DESCRIPTOR
        .replace("    eventTypeHeader: X-Acme-Event\n", "    eventTypePath: $.type\n")
        .replace(
            "    eventMappings:\n",
            "    fieldMapping:\n      itemsPath: $\n      idPath: $.note.id\n      timestampPath: $.note.at\n      summaryTemplate: \"{{note.text}}\"\n      signalTypeRules: []\n      defaultType: note_added\n    eventMappings:\n",
        );
    let d = descriptor(&text);
    let body = json!({"type": "note", "note": {"id": 5, "at": 1717200000000_i64, "text": "hi"}});
    let out = map_webhook(
        &d,
        WebhookInput {
            body: &body,
            headers: &HeaderMap::new(),
            event: None,
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(out.event, "note");
    assert_eq!(kinds(&out.mapped), ["note_added"]);
    assert_eq!(
        out.mapped.signals[0].occurred_at.to_rfc3339(),
        "2024-06-01T00:00:00+00:00"
    );
    let err = map_webhook(
        &d,
        WebhookInput {
            body: &json!({}),
            headers: &HeaderMap::new(),
            event: None,
        },
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        WebhookMapError::MissingEventType("`$.type` in the body".into())
    );
}

fn linear_webhook(body: &Value) -> poblysh_connectors::engine::mapping::WebhookMapped {
    let d = descriptor(&std::fs::read_to_string("descriptors/linear.yaml").unwrap());
    map_webhook(
        &d,
        WebhookInput {
            body,
            headers: &HeaderMap::new(),
            event: None,
        },
        &ctx(),
    )
    .unwrap()
}

/// Linear's `cycle_changed`. No public delivery of an issue moved between
/// cycles, nor of a `Cycle` entity, exists (`SOURCES.md`), so these are unit
/// cases: the real `Issue` sample turned into an update by adding
/// `updatedFrom` (the shape Linear documents for updates), and a `Cycle` body
/// with the fields of Linear's GraphQL `Cycle` type.
#[test]
fn linear_cycle_changes() {
    let sample: Value = serde_json::from_slice(
        &std::fs::read("fixtures/linear/webhook.Issue.create.json").unwrap(),
    )
    .unwrap();
    let update = |from: Value| {
        let mut body = sample.clone();
        body["action"] = json!("update");
        body["updatedFrom"] = from;
        body
    };
    let kind = |body: &Value| {
        let out = linear_webhook(body);
        assert_eq!(out.mapped.signals.len(), 1, "{:?}", out.mapped.skipped);
        out.mapped.signals[0].kind.clone()
    };
    // Into a cycle from none (`cycleId` was null), and between two cycles.
    let into = update(json!({"updatedAt": "2024-01-01T00:00:00.000Z", "cycleId": null}));
    assert_eq!(kind(&into), "cycle_changed");
    let out = linear_webhook(&into);
    assert_eq!(
        out.mapped.signals[0].payload["raw"]["previousCycleId"],
        Value::Null
    );
    let between = update(json!({"updatedAt": "2024-01-01T00:00:00.000Z", "cycleId": "c-1"}));
    assert_eq!(kind(&between), "cycle_changed");
    assert_eq!(
        linear_webhook(&between).mapped.signals[0].payload["raw"]["previousCycleId"],
        "c-1"
    );
    // Any other change is an update, even though `data` has a `cycleId`.
    let mut retitled = update(json!({"updatedAt": "2024-01-01T00:00:00.000Z", "title": "Old"}));
    retitled["data"]["cycleId"] = json!("c-2");
    assert_eq!(kind(&retitled), "issue_updated");

    let cycle = json!({
        "action": "update",
        "type": "Cycle",
        "createdAt": "2024-03-01T09:00:00.000Z",
        "url": "https://linear.app/acme/team/ENG/cycle/12",
        "webhookTimestamp": 1_709_283_600_000_i64,
        "data": {
            "id": "2f5a2bd5-4f0e-4d54-9a4f-4f0f7b1d2c3e",
            "number": 12,
            "name": "Spring",
            "startsAt": "2024-03-04T00:00:00.000Z",
            "endsAt": "2024-03-18T00:00:00.000Z",
            "updatedAt": "2024-03-01T09:00:00.000Z",
            "teamId": "team-1"
        }
    });
    let out = linear_webhook(&cycle);
    assert_eq!(kinds(&out.mapped), ["cycle_changed"]);
    assert_eq!(out.mapped.signals[0].summary, "Cycle 12 (Spring) update");
    assert_eq!(
        out.mapped.signals[0].payload["raw"]["data.endsAt"],
        "2024-03-18T00:00:00.000Z"
    );
}

/// Datadog's transitions. The one real rendered delivery is a `[Triggered]`
/// one (golden fixture); no `[Recovered]` delivery and no polled monitor
/// event exist in public (`SOURCES.md`), so these take the real delivery and
/// the real polled event with only the title changed.
#[test]
fn datadog_monitor_transitions_from_the_title() {
    let d = descriptor(&std::fs::read_to_string("descriptors/datadog.yaml").unwrap());
    let mut delivery: Value = serde_json::from_slice(
        &std::fs::read("fixtures/datadog/webhook.monitor_alert.test_notification.relay.json")
            .unwrap(),
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-poblysh-event", "monitor_notification".parse().unwrap());
    let mut kind_of = |title: &str| {
        delivery["title"] = json!(title);
        let out = map_webhook(
            &d,
            WebhookInput {
                body: &delivery,
                headers: &headers,
                event: None,
            },
            &ctx(),
        )
        .unwrap();
        kinds(&out.mapped)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kind_of("[Recovered] [TEST] Host Cluster Alert"),
        ["monitor_resolved"]
    );
    assert_eq!(
        kind_of("[P1] [Triggered on {host:web-1}] CPU"),
        ["monitor_triggered"]
    );
    assert!(
        kind_of("[Warn] CPU").is_empty(),
        "a warning is no transition"
    );

    let mut page: Value = serde_json::from_slice(
        &std::fs::read("fixtures/datadog/api.v2.events.list.page0.recorded.json").unwrap(),
    )
    .unwrap();
    page["data"][0]["attributes"]["attributes"]["title"] = json!("[Recovered] Disk full");
    page["data"][1]["attributes"]["attributes"]["title"] = json!("[Triggered] Disk full");
    let out = map_page(&d, &page, &ctx());
    assert_eq!(kinds(&out), ["monitor_resolved", "monitor_triggered"]);
    // The 64-bit numeric event id is kept as the string it is.
    assert_eq!(
        out.signals[0].payload["raw"]["eventId"],
        "6567977849972254562"
    );
}

/// Zoho Cliq mentions. No search result or handler payload with mentions is
/// public, so the recorded search example's message gains the `mentions` of
/// Zoho's own thread-message example (same message schema).
#[test]
fn zoho_cliq_mentions() {
    let d = descriptor(&std::fs::read_to_string("descriptors/zoho_cliq.yaml").unwrap());
    let mut page: Value = serde_json::from_slice(
        &std::fs::read("fixtures/zoho_cliq/api.v3.messages.search.openapi_example.json").unwrap(),
    )
    .unwrap();
    let thread: Value = serde_json::from_slice(
        &std::fs::read(
            "tests/webhooks/samples/zoho_cliq.api.v3.threads.main_message.openapi_example.json",
        )
        .unwrap(),
    )
    .unwrap();
    page["messages"][0]["mentions"] = thread["mentions"].clone();
    let out = map_page(&d, &page, &ctx());
    assert_eq!(out.signals[0].kind, "user_mentioned");
    assert_eq!(
        out.signals[0].payload["raw"]["mentions"],
        json!(["855727962", "855727963"])
    );
    // The others stay messages.
    assert!(out.signals[1..].iter().all(|s| s.kind != "user_mentioned"));
    // Pushed by the handler, the same.
    let mut headers = HeaderMap::new();
    headers.insert("x-poblysh-event", "message_sent".parse().unwrap());
    let out = map_webhook(
        &d,
        WebhookInput {
            body: &page["messages"][0],
            headers: &headers,
            event: None,
        },
        &ctx(),
    )
    .unwrap();
    assert_eq!(kinds(&out.mapped), ["user_mentioned"]);
}

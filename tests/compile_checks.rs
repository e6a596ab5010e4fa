//! Table-driven checks of the compile step's cross-field rules, each applied as
//! one change to a valid descriptor and expected to produce one named problem.

use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "id": "acme", "name": "Acme", "description": "Acme tickets.", "category": "custom",
        "icon": "ticket", "kind": "generic", "version": "1.0.0", "baseUrl": "https://api.acme.example",
        "configFields": [
            {"key": "project", "label": "Project", "type": "text", "required": true},
            {"key": "boards", "label": "Boards", "type": "list", "required": false}
        ],
        "auth": {"method": "api_key", "config": {"delivery": "header", "paramName": "X-Api-Key",
            "credentialFields": [
                {"key": "apiKey", "label": "API key", "type": "password", "required": true},
                {"key": "webhookSecret", "label": "Secret", "type": "password", "required": false}
            ],
            "credentialKey": "apiKey"}},
        "ingestion": {"mode": "polling_and_webhook",
            "polling": {"endpoint": "{{baseUrl}}/tickets", "method": "GET",
                "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
                "rateLimitRpm": 60},
            "webhook": {"eventTypes": ["created", "updated"], "eventTypePath": "$.event",
                "verification": "signature",
                "signature": {"signatureHeader": "X-Sig", "algorithm": "hmac-sha256", "secretField": "webhookSecret"}}},
        "fieldMapping": {"itemsPath": "$.items[*]", "idPath": "$.id", "timestampPath": "$.updated_at",
            "summaryTemplate": "{{title}}", "signalTypeRules": [], "defaultType": "ticket_updated"},
        "healthCheck": {"endpoint": "{{baseUrl}}/ping", "method": "GET", "expectStatus": 200, "timeoutMs": 1000}
    })
}

fn set(v: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = v
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match target {
        Value::Object(map) => {
            map.insert(key.replace("~1", "/"), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{parent} is not a container"),
    }
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
}

/// Loads `v`; returns its problems as (field path, message).
fn problems(v: &Value) -> Vec<(String, String)> {
    match load_str(
        "<test>",
        &serde_json::to_string_pretty(v).unwrap(),
        Format::Json,
    ) {
        Ok(_) => Vec::new(),
        Err(ds) => ds.into_iter().map(|d| (d.path, d.message)).collect(),
    }
}

#[test]
fn base_descriptor_is_valid() {
    assert_eq!(problems(&base()), Vec::<(String, String)>::new());
}

type Change = fn(&mut Value);

#[test]
fn each_rule_names_its_field() {
    let cases: Vec<(&str, Change, &str, &str)> = vec![
        (
            "both event type sources",
            |v| set(v, "/ingestion/webhook/eventTypeHeader", json!("X-Event")),
            "ingestion.webhook.eventTypeHeader",
            "not both",
        ),
        (
            "no event type source",
            |v| remove(v, "/ingestion/webhook/eventTypePath"),
            "ingestion.webhook.eventTypePath",
            "set `eventTypePath`",
        ),
        (
            "empty event types",
            |v| set(v, "/ingestion/webhook/eventTypes", json!([])),
            "ingestion.webhook.eventTypes",
            "at least one",
        ),
        (
            "bad header name",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/signatureHeader",
                    json!("X Sig"),
                )
            },
            "ingestion.webhook.signature.signatureHeader",
            "not a valid HTTP header name",
        ),
        (
            "signature twice",
            |v| {
                set(
                    v,
                    "/auth",
                    json!({"method": "webhook_secret", "config": {"signatureHeader": "X-Sig",
                "algorithm": "hmac-sha1", "credentialFields": [{"key": "webhookSecret", "label": "S", "type": "password", "required": true}]}}),
                );
            },
            "ingestion.webhook.signature",
            "declared twice",
        ),
        (
            "signature with verification none",
            |v| set(v, "/ingestion/webhook/verification", json!("none")),
            "ingestion.webhook.signature",
            "would not be verified",
        ),
        (
            "token with both header and query",
            |v| {
                set(v, "/ingestion/webhook/verification", json!("token"));
                remove(v, "/ingestion/webhook/signature");
                set(
                    v,
                    "/ingestion/webhook/token",
                    json!({"header": "X-Token", "queryParam": "token"}),
                );
            },
            "ingestion.webhook.token",
            "exactly one of `header` and `queryParam`",
        ),
        (
            "jwt with encoding",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/algorithm",
                    json!("jwt-hs256"),
                );
                set(v, "/ingestion/webhook/signature/encoding", json!("base64"));
            },
            "ingestion.webhook.signature.encoding",
            "does not apply to `jwt-hs256`",
        ),
        (
            "tolerance without timestamp",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/toleranceSeconds",
                    json!(60),
                )
            },
            "ingestion.webhook.signature.toleranceSeconds",
            "needs `timestampHeader` or `timestampPath`",
        ),
        (
            "timestamp in payload without source",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/signedPayload",
                    json!("{{timestamp}}.{{body}}"),
                )
            },
            "ingestion.webhook.signature.signedPayload",
            "`{{timestamp}}` needs",
        ),
        (
            "signed payload without body",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/signedPayload",
                    json!("{{header.x-id}}"),
                );
            },
            "ingestion.webhook.signature.signedPayload",
            "must include `{{body}}`",
        ),
        (
            "signed payload unknown variable",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/signature/signedPayload",
                    json!("{{secret}}{{body}}"),
                )
            },
            "ingestion.webhook.signature.signedPayload",
            "unknown signed-payload variable `{{secret}}`",
        ),
        (
            "both delivery id sources",
            |v| {
                set(v, "/ingestion/webhook/deliveryIdHeader", json!("X-Id"));
                set(v, "/ingestion/webhook/deliveryIdPath", json!("$.id"));
            },
            "ingestion.webhook.deliveryIdHeader",
            "not both",
        ),
        (
            "skip verification on POST",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/handshake",
                    json!([{"method": "POST", "skipVerification": true}]),
                )
            },
            "ingestion.webhook.handshake[0].skipVerification",
            "only `HEAD` or `GET`",
        ),
        (
            "handshake that matches nothing",
            |v| set(v, "/ingestion/webhook/handshake", json!([{"status": 200}])),
            "ingestion.webhook.handshake[0]",
            "needs a `method`, a `header` or a `when`",
        ),
        (
            "routing without target",
            |v| set(v, "/ingestion/webhook/routing", json!({"path": "$.team"})),
            "ingestion.webhook.routing",
            "exactly one of `configField` and `metadataKey`",
        ),
        (
            "routing to undeclared config",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/routing",
                    json!({"path": "$.team", "configField": "team"}),
                )
            },
            "ingestion.webhook.routing.configField",
            "not a declared config field",
        ),
        (
            "event mapping for an unknown event",
            |v| {
                set(
                    v,
                    "/ingestion/webhook/eventMappings",
                    json!({"deleted": base()["fieldMapping"].clone()}),
                )
            },
            "ingestion.webhook.eventMappings.deleted",
            "not in `eventTypes`",
        ),
        (
            "partitions from a text field",
            |v| {
                set(
                    v,
                    "/ingestion/polling/partitions",
                    json!({"type": "config", "field": "project"}),
                );
                set(
                    v,
                    "/ingestion/polling/endpoint",
                    json!("{{baseUrl}}/p/{{partition}}/tickets"),
                );
            },
            "ingestion.polling.partitions.field",
            "not of type `list`",
        ),
        (
            "partition without partitions",
            |v| {
                set(
                    v,
                    "/ingestion/polling/endpoint",
                    json!("{{baseUrl}}/p/{{partition}}"),
                )
            },
            "ingestion.polling.endpoint",
            "`{{partition}}` needs `partitions`",
        ),
        (
            "partitions unused",
            |v| {
                set(
                    v,
                    "/ingestion/polling/partitions",
                    json!({"type": "config", "field": "boards"}),
                )
            },
            "ingestion.polling.partitions",
            "no request template uses `{{partition}}`",
        ),
        (
            "bad initial checkpoint",
            |v| {
                set(
                    v,
                    "/ingestion/polling/initialCheckpoint",
                    json!("yesterday"),
                )
            },
            "ingestion.polling.initialCheckpoint",
            "not an RFC 3339 timestamp",
        ),
        (
            "backfill days with a cursor delta",
            |v| {
                set(
                    v,
                    "/ingestion/polling/delta",
                    json!({"type": "cursor", "cursorPath": "$.cursor", "cursorParam": "after"}),
                );
                set(v, "/ingestion/polling/backfillDays", json!(7));
            },
            "ingestion.polling.backfillDays",
            "applies to `timestamp_filter`",
        ),
        (
            "retry on a success status",
            |v| set(v, "/ingestion/polling/retry", json!({"statuses": [200]})),
            "ingestion.polling.retry.statuses[0]",
            "not an HTTP error status",
        ),
        (
            "invalid JSON body",
            |v| {
                set(v, "/ingestion/polling/method", json!("POST"));
                set(
                    v,
                    "/ingestion/polling/body",
                    json!("{\"since\": {{checkpoint}}}"),
                );
            },
            "ingestion.polling.body",
            "not valid JSON once rendered",
        ),
        (
            "header template with unknown variable",
            |v| {
                set(
                    v,
                    "/ingestion/polling/headers",
                    json!({"X-Since": "{{since}}"}),
                )
            },
            "ingestion.polling.headers.X-Since",
            "unknown template variable `{{since}}`",
        ),
        (
            "baseUrl referencing itself",
            |v| set(v, "/baseUrl", json!("{{baseUrl}}/v2")),
            "baseUrl",
            "cannot be used inside `baseUrl` itself",
        ),
        (
            "password config field",
            |v| set(v, "/configFields/0/type", json!("password")),
            "configFields[0].type",
            "config fields are not secret",
        ),
        (
            "rule with nothing to match",
            |v| {
                set(
                    v,
                    "/fieldMapping/signalTypeRules",
                    json!([{"then": "ticket_updated"}]),
                )
            },
            "fieldMapping.signalTypeRules[0]",
            "a rule needs `when`, `and` or `event`",
        ),
        (
            "operator without when",
            |v| {
                set(
                    v,
                    "/fieldMapping/signalTypeRules",
                    json!([{"operator": "exists", "then": "x"}]),
                )
            },
            "fieldMapping.signalTypeRules[0].when",
            "`operator` needs a `when` path",
        ),
        (
            "no rules and no default",
            |v| remove(v, "/fieldMapping/defaultType"),
            "fieldMapping.signalTypeRules",
            "every item would be skipped",
        ),
        (
            "kind not snake_case",
            |v| set(v, "/fieldMapping/defaultType", json!("TicketUpdated")),
            "fieldMapping.defaultType",
            "not a valid signal kind",
        ),
        (
            "several credentials without key",
            |v| remove(v, "/auth/config/credentialKey"),
            "auth.config.credentialKey",
            "set `credentialKey`",
        ),
        (
            "basic without password field",
            |v| {
                set(
                    v,
                    "/auth",
                    json!({"method": "basic", "config": {
                "credentialFields": [{"key": "username", "label": "U", "type": "text", "required": true}]}}),
                )
            },
            "auth.config.credentialFields",
            "`password` is not a declared credential field",
        ),
        (
            "oauth url not absolute",
            |v| {
                set(
                    v,
                    "/auth",
                    json!({"method": "oauth2", "config": {
                "authoriseUrl": "oauth/authorize", "tokenUrl": "https://acme.example/token", "scopes": []}}),
                )
            },
            "auth.config.authoriseUrl",
            "not an absolute http(s) URL",
        ),
        (
            "bearer extra param",
            |v| {
                set(
                    v,
                    "/auth/config/extraParams",
                    json!([{"delivery": "bearer", "paramName": "x", "credentialKey": "apiKey"}]),
                )
            },
            "auth.config.extraParams[0].delivery",
            "not `bearer`",
        ),
        (
            "event rule without webhook",
            |v| {
                let polling = v["ingestion"]["polling"].clone();
                let mut ingestion = polling;
                ingestion["mode"] = json!("polling");
                set(v, "/ingestion", ingestion);
                set(
                    v,
                    "/fieldMapping/signalTypeRules",
                    json!([{"event": "created", "then": "ticket_created"}]),
                );
            },
            "fieldMapping.signalTypeRules[0].event",
            "no webhook ingestion",
        ),
    ];
    let mut failures = Vec::new();
    for (name, change, path, message) in cases {
        let mut v = base();
        change(&mut v);
        let found = problems(&v);
        if !found.iter().any(|(p, m)| p == path && m.contains(message)) {
            failures.push(format!(
                "{name}: expected `{path}` containing {message:?}, got {found:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_auth_signature_block_is_checked_once() {
    let mut v = base();
    remove(&mut v, "/ingestion/webhook/signature");
    set(
        &mut v,
        "/auth",
        json!({"method": "webhook_secret", "config": {"signatureHeader": "X Sig",
            "algorithm": "hmac-sha256", "credentialFields": []}}),
    );
    let found = problems(&v);
    let header: Vec<_> = found
        .iter()
        .filter(|(p, _)| p == "auth.config.signatureHeader")
        .collect();
    assert_eq!(header.len(), 1, "{found:#?}");
}

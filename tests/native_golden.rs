//! Golden fixtures of the native connectors: every file under
//! `fixtures/native/<id>/` mapped by the connector's own code and compared
//! with its `<case>.expected.json` (see `fixtures/README.md`). Re-bless with
//! `POBLYSH_BLESS=1 cargo test --test main native_golden::` and review the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use poblysh_connectors::connector::native::google::calendar::{Event, EventPage, event_signal};
use poblysh_connectors::connector::native::google::drive::{ChangePage, change_signal};
use poblysh_connectors::connector::native::google::gmail::{
    GmailMapping, GmailMessage, message_signals, parse_push,
};
use poblysh_connectors::domain::Signal;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::MapContext;
use serde_json::{Value, json};

use crate::golden::{assert_accounted_for, bless, payloads, sibling};

fn dir(id: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/native")
        .join(id)
}

fn inputs(id: &str) -> Vec<PathBuf> {
    let files = payloads(&dir(id));
    assert!(!files.is_empty(), "no fixtures for {id}");
    files
}

fn compare(input: &Path, got: Value) {
    let expected = sibling(input, ".expected.json");
    if bless() {
        std::fs::write(
            &expected,
            serde_json::to_string_pretty(&got).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&expected)
            .unwrap_or_else(|_| panic!("{} has no expected file", input.display())),
    )
    .unwrap();
    assert_eq!(got, want, "{}", input.display());
}

fn received() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn ctx() -> MapContext {
    MapContext {
        tenant_id: TenantId::from_uuid(uuid::Uuid::from_u128(1)),
        connection_id: ConnectionId::from_uuid(uuid::Uuid::from_u128(2)),
        received_at: received(),
    }
}

/// Signals as JSON, their ids (derived: checked, then masked).
fn shown(signals: impl IntoIterator<Item = Signal>) -> Value {
    let signals: Vec<Value> = signals
        .into_iter()
        .map(|s| {
            assert_eq!(s.id, s.derived_id());
            let mut v = serde_json::to_value(&s).unwrap();
            v["id"] = json!("<derived-id>");
            v
        })
        .collect();
    json!({ "signals": signals })
}

#[test]
fn google_drive_fixtures_map_as_blessed() {
    for input in inputs("google_drive") {
        let page: ChangePage = serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        let got = shown(page.changes.iter().filter_map(|c| change_signal(c, &ctx())));
        compare(&input, got);
    }
}

#[test]
fn google_calendar_fixtures_map_as_blessed() {
    for input in inputs("google_calendar") {
        let body: Value = serde_json::from_slice(&std::fs::read(&input).unwrap()).unwrap();
        let events: Vec<Event> = if body.get("kind") == Some(&json!("calendar#events")) {
            serde_json::from_value::<EventPage>(body).unwrap().items
        } else {
            vec![serde_json::from_value(body).unwrap()]
        };
        let got = shown(
            events
                .iter()
                .filter_map(|e| event_signal(e, "primary", &ctx())),
        );
        compare(&input, got);
    }
}

#[test]
fn gmail_fixtures_map_as_blessed() {
    let ctx = ctx();
    for input in inputs("gmail") {
        let body = std::fs::read(&input).unwrap();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let got = if name.ends_with(".push.json") {
            let push = parse_push(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            json!({
                "emailAddress": push.email_address,
                "historyId": push.history_id,
                "messageId": push.message_id,
            })
        } else {
            let case: Value =
                serde_json::from_slice(&std::fs::read(sibling(&input, ".case.json")).unwrap())
                    .unwrap();
            let mapping = GmailMapping {
                account: case["account"].as_str().unwrap().to_owned(),
                press_domains: serde_json::from_value(case["pressDomains"].clone()).unwrap(),
            };
            let message: GmailMessage = serde_json::from_slice(&body).unwrap();
            shown(message_signals(&message, &mapping, &ctx))
        };
        compare(&input, got);
    }
}

#[test]
fn native_fixture_files_are_accounted_for() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/native");
    for dir in std::fs::read_dir(&root).unwrap() {
        let id = dir.unwrap().file_name().to_string_lossy().into_owned();
        let payloads: BTreeSet<PathBuf> = inputs(&id).into_iter().collect();
        assert_accounted_for(&self::dir(&id), &payloads);
    }
}

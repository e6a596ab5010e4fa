//! Golden fixtures: every payload under `fixtures/<provider>/` is mapped with
//! `descriptors/<provider>.yaml` and compared with its `<case>.expected.json`.
//!
//! Layout per case: `<case>.json` (the payload), optional `<case>.case.json`
//! (`{"kind": "page"|"webhook", "event": "...", "headers": {...}}`), and
//! `<case>.expected.json`. Generated ids and `received_at` are normalised.
//! After an intended change, re-bless with `POBLYSH_BLESS=1 cargo test --test main golden::`
//! and review the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use poblysh_connectors::descriptor::load::load_file;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::{
    MapContext, PayloadInput, PayloadKind, PayloadMapped, map_payload,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    kind: Option<PayloadKind>,
    event: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// The native connectors' fixtures (mapped by their code: `native_golden`).
const NATIVE: &str = "native";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `POBLYSH_BLESS` asks to rewrite the expected files.
pub fn bless() -> bool {
    std::env::var_os("POBLYSH_BLESS").is_some_and(|v| v != "0")
}

/// The payload files of one fixture directory (not its case or expected
/// files), sorted.
pub fn payloads(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json")
                && !name.ends_with(".case.json")
                && !name.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    files
}

/// Every payload file of the fixture tree, with its provider.
fn cases() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut providers: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with(NATIVE))
        .collect();
    providers.sort();
    for dir in providers {
        let provider = dir.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(payloads(&dir).into_iter().map(|f| (provider.clone(), f)));
    }
    out
}

/// Asserts that every case and expected file in `dir` belongs to one of `inputs`.
pub fn assert_accounted_for(dir: &Path, inputs: &BTreeSet<PathBuf>) {
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for suffix in [".case.json", ".expected.json"] {
            if let Some(stem) = name.strip_suffix(suffix) {
                assert!(
                    inputs.contains(&f.with_file_name(format!("{stem}.json"))),
                    "{} has no payload {stem}.json",
                    f.display()
                );
            }
        }
    }
}

/// The file beside payload `input` with `suffix` in place of `.json`.
pub fn sibling(input: &Path, suffix: &str) -> PathBuf {
    let name = input.file_name().unwrap().to_string_lossy();
    input.with_file_name(format!("{}{suffix}", name.trim_end_matches(".json")))
}

/// The comparable form of a mapping result.
fn normalise(out: &PayloadMapped) -> Value {
    let signals: Vec<Value> = out
        .mapped
        .signals
        .iter()
        .map(|s| {
            assert_eq!(s.id, s.derived_id(), "a Signal's id is derived from it");
            let mut v = serde_json::to_value(s).unwrap();
            v["id"] = json!("<derived-id>");
            v["received_at"] = json!("<received_at>");
            v
        })
        .collect();
    let skipped: Vec<Value> = out
        .mapped
        .skipped
        .iter()
        .map(|s| json!({"index": s.index, "id": s.id, "reason": s.reason.to_string()}))
        .collect();
    json!({
        "kind": out.kind,
        "event": out.event,
        "handled": out.handled,
        "signals": signals,
        "skipped": skipped,
    })
}

/// Page fixtures whose descriptor parses pages through a narrower projection.
static PROJECTED_PAGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn run(provider: &str, input: &Path) -> Result<Value, String> {
    let descriptor = load_file(&root().join(format!("descriptors/{provider}.yaml")))
        .map_err(|d| format!("descriptors/{provider}.yaml is invalid: {d:#?}"))?;
    let bytes = std::fs::read(input).unwrap();
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let case_path = sibling(input, ".case.json");
    let case: Case = if case_path.exists() {
        serde_json::from_str(&std::fs::read_to_string(&case_path).unwrap())
            .map_err(|e| format!("{}: {e}", case_path.display()))?
    } else {
        Case::default()
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &case.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let ctx = MapContext {
        tenant_id: TenantId::nil(),
        connection_id: ConnectionId::nil(),
        received_at: "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
    };
    let input = PayloadInput {
        body: &body,
        headers: &headers,
        event: case.event.as_deref(),
        kind: case.kind,
    };
    let out = map_payload(&descriptor, input, &ctx).map_err(|e| e.to_string())?;
    let full = normalise(&out);
    // The gateway parses webhook bodies, and a run its pages, through the
    // descriptor's projection: it must map to exactly the same Signals as the
    // full document (and, for a page, leave the same next page and delta).
    let projection = match out.kind {
        PayloadKind::Webhook => descriptor.webhook.as_ref().map(|w| &w.projection),
        PayloadKind::Page => descriptor.polling.as_ref().map(|p| &p.projection),
    };
    if let Some(projection) = projection {
        if !projection.is_all() && out.kind == PayloadKind::Page {
            PROJECTED_PAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let projected = projection.parse(&bytes).map_err(|e| e.to_string())?;
        if let Some(polling) = descriptor
            .polling
            .as_ref()
            .filter(|_| out.kind == PayloadKind::Page)
        {
            let read = |doc: &Value| -> Vec<Option<Value>> {
                let pagination = polling.pagination.as_ref();
                let mut paths = vec![
                    pagination.and_then(|p| p.next_path.as_ref()),
                    pagination.and_then(|p| p.total_path.as_ref()),
                    pagination.and_then(|p| p.has_more_path.as_ref()),
                ];
                use poblysh_connectors::descriptor::compile::CompiledDelta;
                if let CompiledDelta::Cursor { cursor_path: p, .. }
                | CompiledDelta::DeltaToken { token_path: p, .. } = &polling.delta
                {
                    paths.push(Some(p));
                }
                paths
                    .into_iter()
                    .map(|p| p.and_then(|p| p.first(doc)).cloned())
                    .collect()
            };
            if read(&projected) != read(&body) {
                return Err("the projection changes the pagination or delta values".into());
            }
        }
        let again = map_payload(
            &descriptor,
            PayloadInput {
                body: &projected,
                ..input
            },
            &ctx,
        )
        .map_err(|e| e.to_string())?;
        if normalise(&again) != full {
            return Err(format!(
                "the projection changes the mapping: {}",
                serde_json::to_string_pretty(&normalise(&again)).unwrap()
            ));
        }
    }
    Ok(full)
}

#[test]
fn every_fixture_maps_to_its_expected_signals() {
    let cases = cases();
    assert!(cases.len() >= 17, "only {} fixtures found", cases.len());
    let mut failures = Vec::new();
    for (provider, input) in &cases {
        let label = input.strip_prefix(root()).unwrap().display().to_string();
        let actual = match run(provider, input) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        let expected_path = sibling(input, ".expected.json");
        if bless() {
            let mut text = serde_json::to_string_pretty(&actual).unwrap();
            text.push('\n');
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!(
                "{label}: no {} (run `POBLYSH_BLESS=1 cargo test --test main golden::`, then review it)",
                expected_path.file_name().unwrap().to_string_lossy()
            ));
            continue;
        };
        let expected: Value = serde_json::from_str(&text).unwrap();
        if expected != actual {
            failures.push(format!(
                "{label}: the mapping changed.\n--- expected\n{}\n--- actual\n{}",
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Jira, Linear and Zoho Cliq read a few fields of each polled item.
    let projected = PROJECTED_PAGES.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        projected >= 3,
        "only {projected} page fixtures were projected"
    );
}

#[test]
fn fixtures_cover_the_signal_kinds_that_matter() {
    let mut kinds: BTreeSet<String> = BTreeSet::new();
    for (_, input) in cases() {
        let Ok(text) = std::fs::read_to_string(sibling(&input, ".expected.json")) else {
            continue;
        };
        let expected: Value = serde_json::from_str(&text).unwrap();
        for s in expected["signals"].as_array().unwrap() {
            kinds.insert(format!(
                "{}:{}",
                s["provider"].as_str().unwrap(),
                s["kind"].as_str().unwrap()
            ));
        }
    }
    for required in [
        "github:ref_deleted",
        "github:pr_opened",
        "github:pr_merged",
        "github:pr_closed",
        "github:issue_created",
        "github:release_published",
        "github:issue_updated",
        "slack:message_received",
        "slack:reaction_added",
        "slack:app_mentioned",
        "linear:issue_created",
        "linear:issue_updated",
        "linear:comment_created",
        "github:comment_created",
        "jira:issue_created",
        "jira:issue_resolved",
        "jira:issue_assigned",
        "jira:comment_created",
        "jira:issue_status_changed",
        "github:pr_reviewed",
        "github:code_pushed",
        "pagerduty:incident_triggered",
        "pagerduty:incident_resolved",
        "confluence:page_updated",
        "pagerduty:incident_priority_updated",
        "pagerduty:service_updated",
        "sentry:issue_created",
        "sentry:alert_triggered",
        "trello:card_created",
        "trello:card_moved",
        "trello:comment_created",
        "zoho_cliq:message_received",
    ] {
        assert!(
            kinds.contains(required),
            "no fixture yields {required}; have {kinds:?}"
        );
    }
}

#[test]
fn fixture_files_are_accounted_for() {
    // Every case file and expected file belongs to a payload.
    let inputs: BTreeSet<PathBuf> = cases().into_iter().map(|(_, p)| p).collect();
    for dir in std::fs::read_dir(root().join("fixtures")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() || dir.ends_with(NATIVE) {
            continue;
        }
        assert!(
            root()
                .join(format!(
                    "descriptors/{}.yaml",
                    dir.file_name().unwrap().to_string_lossy()
                ))
                .exists(),
            "fixtures/{} has no descriptor",
            dir.display()
        );
        assert_accounted_for(&dir, &inputs);
    }
}

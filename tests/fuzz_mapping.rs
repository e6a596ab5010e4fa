//! Property test: untrusted payloads never make the mapping engine panic. Real
//! fixture payloads have random subtrees replaced with random JSON, then are
//! mapped with every shipped descriptor, as pages and as each webhook event.

use std::path::PathBuf;
use std::sync::LazyLock;

use chrono::Utc;
use http::HeaderMap;
use poblysh_connectors::descriptor::compile::CompiledDescriptor;
use poblysh_connectors::descriptor::load::load_file;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::{MapContext, PayloadInput, PayloadKind, map_payload};
use proptest::prelude::*;
use serde_json::Value;

/// Every shipped descriptor, by id (`descriptors/<id>.yaml`).
fn shipped() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root().join("descriptors"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static DESCRIPTORS: LazyLock<Vec<CompiledDescriptor>> = LazyLock::new(|| {
    shipped()
        .iter()
        .map(|id| load_file(&root().join(format!("descriptors/{id}.yaml"))).unwrap())
        .collect()
});

static PAYLOADS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for dir in shipped() {
        let Ok(entries) = std::fs::read_dir(root().join("fixtures").join(&dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json")
                && !name.ends_with(".case.json")
                && !name.ends_with(".expected.json")
            {
                out.push(serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
            }
        }
    }
    out
});

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-01-01T00:00:00Z"),
            Just("1717200000"),
            Just("closed"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces the `n`-th node (pre-order, modulo the count) with `replacement`.
fn replace_nth(value: &mut Value, n: usize, replacement: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn go(v: &mut Value, n: &mut usize, replacement: &mut Option<Value>) {
        if *n == 0 {
            if let Some(r) = replacement.take() {
                *v = r;
            }
            return;
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().for_each(|c| go(c, n, replacement)),
            Value::Object(o) => o.values_mut().for_each(|c| go(c, n, replacement)),
            _ => {}
        }
    }
    let mut n = n % count(value);
    go(value, &mut n, &mut Some(replacement));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_payloads_never_panic(
        payload in any::<usize>(),
        edits in prop::collection::vec((any::<usize>(), json_value()), 0..4),
        whole in prop::option::weighted(0.1, json_value()),
    ) {
        let mut body = match whole {
            Some(v) => v,
            None => PAYLOADS[payload % PAYLOADS.len()].clone(),
        };
        for (n, replacement) in edits {
            replace_nth(&mut body, n, replacement);
        }
        let ctx = MapContext { tenant_id: TenantId::nil(), connection_id: ConnectionId::nil(), received_at: Utc::now() };
        let headers = HeaderMap::new();
        for descriptor in DESCRIPTORS.iter() {
            let mut events: Vec<Option<&str>> = vec![None];
            if let Some(w) = &descriptor.webhook {
                events.extend(w.event_types.iter().map(|e| Some(e.as_str())));
            }
            for event in events {
                let kind = if event.is_some() { PayloadKind::Webhook } else { PayloadKind::Page };
                let input = PayloadInput { body: &body, headers: &headers, event, kind: Some(kind) };
                if let Ok(out) = map_payload(descriptor, input, &ctx) {
                    for s in &out.mapped.signals {
                        prop_assert!(!s.external_id.is_empty());
                        prop_assert_eq!(s.provider.as_str(), descriptor.id());
                    }
                }
            }
        }
    }
}

//! Property tests with hostile, structure-aware inputs: deep nesting, YAML
//! alias bombs, huge strings, NUL characters and invalid UTF-8, against the
//! descriptor loader, the template engine, the mapper and the webhook
//! verifier. Every case must end in `Ok` or a clear error: no panic, no stack
//! overflow, and within a few seconds (the bounds on input make the work
//! small; a generous time limit catches an unbounded walk).

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use poblysh_connectors::descriptor::compile::{CompiledDescriptor, Templates};
use poblysh_connectors::descriptor::load::{load_file, load_str};
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::{MapContext, PayloadInput, map_payload};
use poblysh_connectors::engine::webhook::WebhookRequest;
use poblysh_connectors::engine::webhook::verify;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Time any one hostile case may take (far above what the bounds allow).
const CASE_LIMIT: Duration = Duration::from_secs(5);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static SHIPPED: LazyLock<Vec<CompiledDescriptor>> = LazyLock::new(|| {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("descriptors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| load_file(f).unwrap()).collect()
});

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < CASE_LIMIT,
        "{what} took {:?}",
        started.elapsed()
    );
    out
}

/// A hostile string: huge, NUL-laden, or a handful of odd characters.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,8}",
        Just("\u{0}".to_owned()),
        (1usize..200_000).prop_map(|n| "x".repeat(n)),
        "[\\u{0}-\\u{7f}é🦀{}()\\[\\]$.*\"':\\\\]{0,64}",
    ]
}

/// A JSON value nested up to 200 deep, with hostile strings at the leaves.
fn deep_json() -> impl Strategy<Value = Value> {
    (1usize..200, hostile_string(), any::<bool>()).prop_map(|(depth, leaf, arrays)| {
        let mut v = Value::String(leaf);
        for i in 0..depth {
            v = if arrays {
                Value::Array(vec![v])
            } else {
                json!({ format!("k{i}"): v })
            };
        }
        v
    })
}

/// A YAML document: deep flow nesting, an alias bomb, or a huge scalar,
/// spliced into a descriptor-shaped document.
fn hostile_yaml() -> impl Strategy<Value = String> {
    let nesting = (1usize..400).prop_map(|d| format!("x: {}1{}\n", "[".repeat(d), "]".repeat(d)));
    let laughs = (1usize..12, 2usize..12).prop_map(|(levels, fan)| {
        // Each level holds `fan` aliases of the one before: fan^levels nodes.
        let mut doc = "l0: &l0 [\"lol\"]\n".to_owned();
        for l in 1..=levels {
            let aliases = vec![format!("*l{}", l - 1); fan].join(", ");
            doc.push_str(&format!("l{l}: &l{l} [{aliases}]\n"));
        }
        doc
    });
    let big = (1usize..2_000, 1usize..3_000).prop_map(|(kb, aliases)| {
        format!(
            "big: &big \"{}\"\nlist: [{}]\n",
            "y".repeat(kb * 1024),
            vec!["*big"; aliases].join(", ")
        )
    });
    let nul = Just("id: \"a\\0b\"\nname: \"\\0\"\n".to_owned());
    prop_oneof![nesting, laughs, big, nul]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_loader_ends_every_hostile_document(doc in hostile_yaml()) {
        let base = std::fs::read_to_string(root().join("descriptors/github.yaml")).unwrap();
        for text in [doc.clone(), format!("{base}\n{doc}"), format!("{doc}\n{base}")] {
            let result = timed("loading", || load_str("<hostile>", &text, Format::Yaml));
            // Only a document without its descriptor can be valid, and none is.
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn templates_end_every_hostile_source(
        open in prop::collection::vec(prop_oneof![Just("{{#if a}}"), Just("{{#each a}}"), Just("{{#with a}}"), Just("(json "), Just("{{")], 0..400),
        close in prop::collection::vec(prop_oneof![Just("{{/if}}"), Just("{{/each}}"), Just("{{/with}}"), Just(")"), Just("}}")], 0..400),
        item in deep_json(),
    ) {
        let source = format!("{}{{{{a}}}}{}", open.concat(), close.concat());
        let mut templates = Templates::default();
        timed("compiling a template", || {
            if let Ok(t) = templates.add_item(&source) {
                let _ = timed("rendering", || templates.render_item(&t, &json!({"a": item})));
            }
        });
    }

    #[test]
    fn the_mapper_ends_every_hostile_payload(body in deep_json(), event in hostile_string()) {
        let ctx = MapContext {
            tenant_id: TenantId::nil(),
            connection_id: ConnectionId::nil(),
            received_at: Utc::now(),
        };
        let headers = HeaderMap::new();
        for descriptor in SHIPPED.iter() {
            for event in [None, Some(event.as_str())] {
                let input = PayloadInput { body: &body, headers: &headers, event, kind: None };
                let _ = timed("mapping", || map_payload(descriptor, input, &ctx));
            }
        }
    }

    #[test]
    fn the_verifier_ends_every_hostile_request(
        body in prop::collection::vec(any::<u8>(), 0..4096),
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 0..6),
        secret in hostile_string(),
    ) {
        // Raw header bytes (invalid UTF-8 included) under the names the
        // shipped descriptors read.
        let names = [
            "x-hub-signature-256", "x-slack-signature", "x-slack-request-timestamp",
            "linear-signature", "x-pagerduty-signature", "sentry-hook-signature",
            "x-trello-webhook", "authorization", "x-webhook-token", "webhook-signature",
        ];
        let mut headers = HeaderMap::new();
        for (name, value) in names.iter().zip(values.iter().cycle()) {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let request = WebhookRequest::new(
            Method::POST,
            headers,
            Some("token=%ff%00".into()),
            Bytes::from(body),
            "https://connectors.example.com/webhooks/x".into(),
        );
        let secret = SecretString::from(secret);
        for descriptor in SHIPPED.iter() {
            if let Some(webhook) = &descriptor.webhook {
                let result = timed("verifying", || verify::verify(&webhook.verification, Some(&secret), &request, Utc::now()));
                // Random bytes never verify (fail closed).
                if !matches!(webhook.verification, poblysh_connectors::descriptor::compile::CompiledVerification::None) {
                    prop_assert!(result.is_err(), "{} verified a random request", descriptor.id());
                }
            }
        }
    }
}

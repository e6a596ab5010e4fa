//! Mapping throughput: the GitHub `pull_request` webhook (the real 28 KB sample)
//! and a 100-item REST issues page, each against a parse-only baseline over the
//! same bytes. Run: `cargo bench --bench mapping`.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

use std::hint::black_box;
use std::sync::LazyLock;

use chrono::Utc;
use divan::counter::ItemsCount;
use http::HeaderMap;
use poblysh_connectors::descriptor::compile::CompiledDescriptor;
use poblysh_connectors::descriptor::load::load_file;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::mapping::{MapContext, WebhookInput, map_page, map_webhook};
use serde_json::Value;

fn main() {
    divan::main();
}

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static GITHUB: LazyLock<CompiledDescriptor> =
    LazyLock::new(|| load_file(&root().join("descriptors/github.yaml")).expect("valid descriptor"));

/// The real `pull_request` webhook sample, as received.
static PR_WEBHOOK: LazyLock<Vec<u8>> = LazyLock::new(|| {
    std::fs::read(root().join("fixtures/github/webhook.pull_request.opened.json")).unwrap()
});

/// A 100-item `GET /repos/{owner}/{repo}/issues` page: the real OpenAPI example
/// item repeated with distinct ids and numbers.
static ISSUES_PAGE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let text = std::fs::read_to_string(
        root().join("fixtures/github/rest.issues.list.openapi_example.json"),
    )
    .unwrap();
    let example: Value = serde_json::from_str(&text).unwrap();
    let item = example[0].clone();
    let page: Vec<Value> = (0..100)
        .map(|i| {
            let mut it = item.clone();
            it["id"] = Value::from(1_000_000 + i);
            it["number"] = Value::from(1000 + i);
            it
        })
        .collect();
    serde_json::to_vec(&page).unwrap()
});

fn ctx() -> MapContext {
    MapContext {
        tenant_id: TenantId::nil(),
        connection_id: ConnectionId::nil(),
        received_at: Utc::now(),
    }
}

mod pull_request_webhook {
    use super::*;

    #[divan::bench]
    fn parse_only(bencher: divan::Bencher) {
        bencher
            .counter(ItemsCount::new(1usize))
            .bench(|| serde_json::from_slice::<Value>(black_box(&PR_WEBHOOK)).unwrap());
    }

    #[divan::bench]
    fn parse_and_map(bencher: divan::Bencher) {
        let descriptor = &*GITHUB;
        let headers = HeaderMap::new();
        let ctx = ctx();
        bencher.counter(ItemsCount::new(1usize)).bench(|| {
            let body: Value = serde_json::from_slice(black_box(&PR_WEBHOOK)).unwrap();
            let input = WebhookInput {
                body: &body,
                headers: &headers,
                event: Some("pull_request"),
            };
            let out = map_webhook(descriptor, input, &ctx).unwrap();
            assert_eq!(out.mapped.signals.len(), 1);
            out
        });
    }

    /// What the webhook gateway does: parse only the fields the descriptor
    /// reads (its projection), then map.
    #[divan::bench]
    fn projected_parse_and_map(bencher: divan::Bencher) {
        let descriptor = &*GITHUB;
        let projection = &descriptor.webhook.as_ref().unwrap().projection;
        let headers = HeaderMap::new();
        let ctx = ctx();
        bencher.counter(ItemsCount::new(1usize)).bench(|| {
            let body = projection.parse(black_box(&PR_WEBHOOK)).unwrap();
            let input = WebhookInput {
                body: &body,
                headers: &headers,
                event: Some("pull_request"),
            };
            let out = map_webhook(descriptor, input, &ctx).unwrap();
            assert_eq!(out.mapped.signals.len(), 1);
            out
        });
    }

    #[divan::bench]
    fn map_only(bencher: divan::Bencher) {
        let descriptor = &*GITHUB;
        let headers = HeaderMap::new();
        let ctx = ctx();
        let body: Value = serde_json::from_slice(&PR_WEBHOOK).unwrap();
        bencher.counter(ItemsCount::new(1usize)).bench(|| {
            let input = WebhookInput {
                body: black_box(&body),
                headers: &headers,
                event: Some("pull_request"),
            };
            map_webhook(descriptor, input, &ctx).unwrap()
        });
    }
}

mod issues_page_100 {
    use super::*;

    #[divan::bench]
    fn parse_only(bencher: divan::Bencher) {
        bencher
            .counter(ItemsCount::new(100usize))
            .bench(|| serde_json::from_slice::<Value>(black_box(&ISSUES_PAGE)).unwrap());
    }

    #[divan::bench]
    fn parse_and_map(bencher: divan::Bencher) {
        let descriptor = &*GITHUB;
        let ctx = ctx();
        bencher.counter(ItemsCount::new(100usize)).bench(|| {
            let page: Value = serde_json::from_slice(black_box(&ISSUES_PAGE)).unwrap();
            let out = map_page(descriptor, &page, &ctx);
            assert_eq!(out.signals.len(), 100);
            out
        });
    }

    #[divan::bench]
    fn map_only(bencher: divan::Bencher) {
        let descriptor = &*GITHUB;
        let ctx = ctx();
        let page: Value = serde_json::from_slice(&ISSUES_PAGE).unwrap();
        bencher
            .counter(ItemsCount::new(100usize))
            .bench(|| map_page(descriptor, black_box(&page), &ctx));
    }
}

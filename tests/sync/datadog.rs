//! Datadog polled end to end against wiremock serving the three recorded v2
//! event pages, chained by their own cursors: every event stored once, both
//! key headers on every request, and an incremental run that asks
//! `filter[from]` from the checkpoint.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn shipped() -> String {
    std::fs::read_to_string(format!(
        "{}/descriptors/datadog.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The descriptor with its `baseUrl` (a fixed mapping of `site` to Datadog's
/// hosts: no config field can name another) pointed at the mock.
fn datadog_at(base: &str) -> String {
    let yaml = shipped();
    let start = yaml.find("\nbaseUrl: >-\n").expect("a folded baseUrl") + 1;
    let end = start + yaml[start..].find("\n\n").unwrap();
    format!("{}baseUrl: {base}{}", &yaml[..start], &yaml[end..])
}

/// The site picks the host; nothing a tenant types becomes one.
#[test]
fn datadog_site_maps_to_known_hosts_only() {
    let compiled = load_str("datadog.yaml", &shipped(), Format::Yaml).unwrap();
    for (config, host) in [
        (json!({}), "https://api.datadoghq.com"),
        (json!({"site": "datadoghq.eu"}), "https://api.datadoghq.eu"),
        (
            json!({"site": "us5.datadoghq.com"}),
            "https://api.us5.datadoghq.com",
        ),
        (json!({"site": "ddog-gov.com"}), "https://api.ddog-gov.com"),
        (
            json!({"site": "evil.example"}),
            "https://unknown-datadog-site.invalid",
        ),
        (
            json!({"baseUrl": "https://evil.example"}),
            "https://api.datadoghq.com",
        ),
    ] {
        assert_eq!(compiled.base_url(&config).unwrap(), host, "{config}");
    }
}

const DD_PAGE0: &str =
    include_str!("../../fixtures/datadog/api.v2.events.list.page0.recorded.json");
const DD_PAGE1: &str =
    include_str!("../../fixtures/datadog/api.v2.events.list.page1.recorded.json");
const DD_LAST: &str =
    include_str!("../../fixtures/datadog/api.v2.events.list.page2_last.recorded.json");

/// Serves the three recorded pages, chained by their own cursors: no
/// `page[cursor]` → page 0, page 0's `meta.page.after` → page 1, page 1's →
/// the empty last page (no `meta`).
async fn datadog_events_api(pages: [Value; 3]) -> MockServer {
    let server = MockServer::start().await;
    let after = |p: &Value| p["meta"]["page"]["after"].as_str().unwrap().to_owned();
    let [first, second, last] = pages;
    Mock::given(method("GET"))
        .and(path("/api/v2/events"))
        .and(query_param("page[cursor]", after(&second)))
        .respond_with(ResponseTemplate::new(200).set_body_json(last))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/events"))
        .and(query_param("page[cursor]", after(&first)))
        .respond_with(ResponseTemplate::new(200).set_body_json(second))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/events"))
        .and(query_param_is_missing("page[cursor]"))
        .respond_with(ResponseTemplate::new(200).set_body_json(first))
        .mount(&server)
        .await;
    server
}

fn recorded_pages() -> [Value; 3] {
    [DD_PAGE0, DD_PAGE1, DD_LAST].map(|p| serde_json::from_str(p).unwrap())
}

fn query(request: &Request, key: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn filter_from(request: &Request) -> DateTime<Utc> {
    let from = query(request, "filter[from]").expect("a filter[from]");
    DateTime::parse_from_rfc3339(&from).expect(&from).to_utc()
}

crate::on_both! {
    async fn datadog_reads_the_v2_events_through_their_cursors_and_goes_on_from_its_checkpoint(backend) {
        let server = datadog_events_api(recorded_pages()).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&datadog_at(&server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node
            .connection(tenant, "datadog", &[("apiKey", "dd-api-key"), ("appKey", "dd-app-key")], json!({}))
            .await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "datadog").await.unwrap());
        let started = Utc::now();
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 3), "{report:?}");
        // The recorded events are API-posted ones (`evt.type: api`, no monitor
        // title prefix): event_posted, each once, under its v2 string id.
        let want: Vec<(String, String)> = [
            "AgAAAYGCFTWI2hRvPgAAAAAAAAAYAAAAAEFZR0NGVFdJQUFEUjlDVlFydGhfS19rQgAAACQAAAAAMDE4MTgyMTUtMzU4OC00MDdhLWEyMDgtMjRlYzA5NjU1ZmNi",
            "AgAAAYGCFWhQ_AdvPgAAAAAAAAAYAAAAAEFZR0NGV2hRQUFCUHBNT241UDJfYUg1SQAAACQAAAAAMDE4MTgyMTUtNzAyMC00ZWM2LWIwYWItZDU1YmM3NTY2ZTQ3",
            "AgAAAYGCFXAgIVFvPgAAAAAAAAAYAAAAAEFZR0NGWEFnQUFBeFhHdU9OeF91OEZjSwAAACQAAAAAMDE4MTgyMTUtNzAyMC00ZWM2LWIwYWItZDU1YmM3NTY2ZTQ3",
        ].iter().map(|id| ("event_posted".to_owned(), (*id).to_owned())).collect();
        assert_eq!(signals(&node, tenant).await, want);

        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 3, "three pages, the last one empty");
        let pages: [Value; 3] = recorded_pages();
        assert_eq!(query(&requests[0], "page[cursor]"), None);
        assert_eq!(query(&requests[1], "page[cursor]").as_deref(), pages[0]["meta"]["page"]["after"].as_str());
        // Page 1 holds one event, fewer than the limit, and still a cursor: followed.
        assert_eq!(query(&requests[2], "page[cursor]").as_deref(), pages[1]["meta"]["page"]["after"].as_str());
        for r in &requests {
            assert_eq!(r.headers.get("dd-api-key").and_then(|v| v.to_str().ok()), Some("dd-api-key"));
            assert_eq!(r.headers.get("dd-application-key").and_then(|v| v.to_str().ok()), Some("dd-app-key"));
            assert_eq!(query(r, "sort").as_deref(), Some("timestamp"));
            assert_eq!(query(r, "page[limit]").as_deref(), Some("100"));
            assert_eq!(query(r, "filter[query]"), None);
        }
        // The backfill reads 7 days back (a second early: windows overlap).
        let backfill_from = filter_from(&requests[0]);
        let expected = started - Duration::days(7) - Duration::seconds(1);
        assert!((backfill_from - expected).num_seconds().abs() <= 5, "{backfill_from} vs {expected}");

        // Again: the same events (dedupe), from the checkpoint. The recorded
        // events (2022) are older than the window, so the checkpoint stays
        // where the backfill started: the same `filter[from]`.
        let (status, body) = node.api("POST", "/sync/datadog", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        assert_eq!(signals(&node, tenant).await, want);
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 6);
        assert_eq!(query(&requests[3], "page[cursor]"), None);
        assert_eq!(filter_from(&requests[3]), backfill_from);
    }
}

crate::on_both! {
    async fn datadog_checkpoint_is_the_newest_event_seen(backend) {
        // The recorded pages with each event's `attributes.timestamp` moved
        // into the backfill window (derived: nothing else changes), so the
        // checkpoint advances to the newest one.
        let mut pages = recorded_pages();
        let now = Utc::now();
        let at = |hours: i64| (now - Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true);
        let newest = at(1);
        pages[0]["data"][0]["attributes"]["timestamp"] = json!(at(3));
        pages[0]["data"][1]["attributes"]["timestamp"] = json!(newest);
        pages[1]["data"][0]["attributes"]["timestamp"] = json!(at(2));
        let server = datadog_events_api(pages).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&datadog_at(&server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node
            .connection(tenant, "datadog", &[("apiKey", "k"), ("appKey", "a")], json!({"query": "source:alert"}))
            .await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "datadog").await.unwrap());
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 3), "{report:?}");
        let (status, body) = node.api("POST", "/sync/datadog", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 6);
        // The incremental run asks from the newest event, a second early.
        let want = DateTime::parse_from_rfc3339(&newest).unwrap().to_utc() - Duration::seconds(1);
        assert_eq!(filter_from(&requests[3]), want);
        // The optional query goes along on every page.
        assert!(requests.iter().all(|r| query(r, "filter[query]").as_deref() == Some("source:alert")));
    }
}

//! Shipped descriptors polled end to end against wiremock APIs that serve
//! their providers' recorded pages: every item stored once across pages, and
//! an incremental run that asks from the right checkpoint.

use chrono::{Duration, NaiveDateTime, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn shipped(id: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/descriptors/{id}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The date a CQL query reads changes after (`lastmodified > "…"`).
fn cql_after(request: &Request) -> NaiveDateTime {
    let cql = request
        .url
        .query_pairs()
        .find(|(k, _)| k == "cql")
        .map(|(_, v)| v.into_owned())
        .expect("a cql query");
    let at = cql.split("lastmodified >= \"").nth(1).expect(&cql);
    NaiveDateTime::parse_from_str(&at[..16], "%Y-%m-%d %H:%M").expect(&cql)
}

crate::on_both! {
    async fn confluence_reads_the_cql_search_through_its_next_links_and_goes_on_from_its_checkpoint(backend) {
        // The recorded CQL search page, split in two pages of the same shape:
        // the first keeps the recording's `_links` (its `base` pointed at the
        // mock), the second has no `next`. Two results gain what
        // `expand=content.version,content.container` adds (API reference; the
        // recording was made without `expand`): a first version, and one
        // becomes a comment on a page.
        let server = MockServer::start().await;
        let recorded: Value = serde_json::from_str(include_str!(
            "../../fixtures/confluence/rest.api.search.cql.page1.recorded.json"
        ))
        .unwrap();
        let mut results = recorded["results"].as_array().unwrap().clone();
        results[1]["content"]["version"] = json!({"number": 1, "by": {"displayName": "Nango Developer"}});
        results[4]["content"]["type"] = json!("comment");
        results[4]["content"]["container"] = json!({"id": "98432", "type": "page"});
        let base = format!("{}/wiki", server.uri());
        let mut first = recorded.clone();
        first["results"] = json!(results[..3]);
        first["_links"]["base"] = json!(base);
        let mut last = recorded.clone();
        last["results"] = json!(results[3..]);
        last["_links"] = json!({"base": base, "context": "/wiki"});
        Mock::given(method("GET"))
            .and(path("/wiki/rest/api/search"))
            .and(query_param("next", "true"))
            .respond_with(ResponseTemplate::new(200).set_body_json(last))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/wiki/rest/api/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first))
            .mount(&server)
            .await;

        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped("confluence"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node
            .connection(tenant, "confluence", &[("email", "api@example.com"), ("apiToken", "atl-token")], json!({"baseUrl": server.uri()}))
            .await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "confluence").await.unwrap());
        let started = Utc::now();
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 5), "{report:?}");
        let got = signals(&node, tenant).await;
        let want: Vec<(String, String)> = [
            ("page_commented", "295095"), ("page_created", "98401"),
            ("page_updated", "295107"), ("page_updated", "98400"), ("page_updated", "98432"),
        ].iter().map(|(k, i)| ((*k).to_owned(), (*i).to_owned())).collect();
        assert_eq!(got, want);

        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2, "two pages");
        // The second page is the recording's own `next` link under `_links.base`.
        assert_eq!(requests[1].url.path(), "/wiki/rest/api/search");
        assert!(requests[1].url.query().unwrap().contains("cursor=_t_WyJcdDI5NTA5"), "{}", requests[1].url);
        let basic = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "api@example.com:atl-token"));
        assert!(requests.iter().all(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(basic.as_str())));
        // The backfill reads 30 days back, shifted 14 hours for CQL's time zone.
        let backfill_from = cql_after(&requests[0]);
        let expected = (started - Duration::days(30) - Duration::hours(14)).naive_utc();
        assert!((backfill_from - expected).num_minutes().abs() <= 2, "{backfill_from} vs {expected}");
        let q = requests[0].url.query_pairs().find(|(k, _)| k == "cql").unwrap().1.into_owned();
        assert!(q.starts_with("(type = page OR type = comment) AND lastmodified >= ") && q.ends_with("ORDER BY lastmodified ASC"), "{q}");

        // Again: the same items (dedupe), and the query starts from the checkpoint.
        let (status, body) = node.api("POST", "/sync/confluence", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        assert_eq!(signals(&node, tenant).await, want);
        // The recorded changes are older than the backfill window, so the
        // checkpoint stays where the backfill started (never back): the same
        // date, a second early, to the minute.
        let requests = server.received_requests().await.unwrap();
        let incremental_from = cql_after(&requests[2]);
        assert!((incremental_from - backfill_from).num_minutes().abs() <= 1, "{incremental_from} vs {backfill_from}");
        // Every first page asks for what tells a new page and a comment's page.
        for r in [&requests[0], &requests[2]] {
            let expand = r.url.query_pairs().find(|(k, _)| k == "expand").map(|(_, v)| v.into_owned());
            assert_eq!(expand.as_deref(), Some("content.version,content.container"));
        }
    }
}

crate::on_both! {
    async fn confluence_space_keys_are_quoted_in_the_cql(backend) {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/wiki/rest/api/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [], "_links": {"base": format!("{}/wiki", server.uri())}})))
            .mount(&server)
            .await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped("confluence"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // A personal space key starts with `~`, CQL's contains operator.
        let config = json!({"baseUrl": server.uri(), "spaceKeys": ["ENG", "~7120207bf4575869864e0eaefca3000196d8d2"]});
        let conn = node.connection(tenant, "confluence", &[("email", "a@example.com"), ("apiToken", "t")], config).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "confluence").await.unwrap());
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Succeeded, "{report:?}");
        let requests = server.received_requests().await.unwrap();
        let cql = requests[0].url.query_pairs().find(|(k, _)| k == "cql").unwrap().1.into_owned();
        assert!(cql.contains(r#"AND space in ("ENG","~7120207bf4575869864e0eaefca3000196d8d2") AND"#), "{cql}");
    }
}

crate::on_both! {
    async fn confluence_data_center_takes_a_personal_access_token(backend) {
        // The recorded search page again (one page: its `next` link dropped).
        let server = MockServer::start().await;
        let mut page: Value = serde_json::from_str(include_str!(
            "../../fixtures/confluence/rest.api.search.cql.page1.recorded.json"
        ))
        .unwrap();
        // A Data Center server under `/confluence`.
        page["_links"] = json!({"base": format!("{}/confluence", server.uri()), "context": "/confluence"});
        Mock::given(method("GET"))
            .and(path("/confluence/rest/api/search"))
            .and(wiremock::matchers::header("authorization", "Bearer dc-pat"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page))
            .mount(&server)
            .await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped("confluence"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // Through the API: neither an email and API token nor a PAT is refused,
        // naming the alternative; a PAT alone is enough.
        let create = |credentials: Value| json!({"provider": "confluence", "credentials": credentials, "config": {"baseUrl": server.uri(), "contextPath": "confluence"}});
        let (status, problem) = node.api("POST", "/connections", Some(tenant), Some(create(json!({})))).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["details"]["errors"][0]["message"], "required (or give `credentials.pat`)", "{problem}");
        let (status, created) = node.api("POST", "/connections", Some(tenant), Some(create(json!({"pat": "dc-pat"})))).await;
        assert_eq!(status, 201, "{created}");
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 5), "{report:?}");
        let requests = server.received_requests().await.unwrap();
        assert!(!requests.is_empty() && requests.iter().all(|r| r.headers.get("authorization").unwrap() == "Bearer dc-pat"));
    }
}

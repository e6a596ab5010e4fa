//! Notion polled end to end: `POST /v1/search` newest edit first, served by
//! wiremock from the recorded search page, paged by `start_cursor`; a run stops
//! at the first page that reaches back past its checkpoint (search cannot
//! filter by time).

use chrono::{Duration, SecondsFormat, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn cursor(request: &Request) -> Option<String> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["start_cursor"].as_str().map(str::to_owned)
}

crate::on_both! {
    async fn notion_searches_newest_first_and_stops_past_its_checkpoint(backend) {
        // The recorded search page (a database and a page), its two results
        // on pages of their own and their `last_edited_time` moved into the
        // last hours (only that changes), plus an empty third page: `has_more`
        // and `next_cursor` chain them as Notion does.
        let recorded: Value = serde_json::from_str(include_str!(
            "../../fixtures/notion/api.search.results.json"
        ))
        .unwrap();
        let now = Utc::now();
        let at = |h: i64| (now - Duration::hours(h)).to_rfc3339_opts(SecondsFormat::Millis, true);
        let (newest, older) = (at(1), at(2));
        let mut results = recorded["results"].as_array().unwrap().clone();
        results[0]["last_edited_time"] = json!(newest);
        results[1]["last_edited_time"] = json!(older);
        let page = |items: Vec<Value>, next: Option<&str>| {
            let mut p = recorded.clone();
            p["results"] = json!(items);
            p["has_more"] = json!(next.is_some());
            p["next_cursor"] = json!(next);
            p
        };
        let server = MockServer::start().await;
        let search = || Mock::given(method("POST")).and(path("/v1/search")).and(header("notion-version", "2022-06-28"));
        search()
            .and(body_partial_json(json!({"start_cursor": "c3"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![], None)))
            .with_priority(1)
            .mount(&server)
            .await;
        search()
            .and(body_partial_json(json!({"start_cursor": "c2"})))
            .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![results[1].clone()], Some("c3"))))
            .with_priority(1)
            .mount(&server)
            .await;
        search()
            .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![results[0].clone()], Some("c2"))))
            .with_priority(2)
            .mount(&server)
            .await;

        let node = Node::new(backend, true, &[]).await;
        let yaml = std::fs::read_to_string(format!("{}/descriptors/notion.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        node.register(&yaml.replace("baseUrl: https://api.notion.com", &format!("baseUrl: {}", server.uri())));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "notion", &[("token", "ntn_secret")], json!({})).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "notion").await.unwrap());
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
        let mut want = vec![("database_updated".to_owned(), "58".to_owned()), ("page_updated".to_owned(), "71".to_owned())];
        want.sort();
        assert_eq!(signals(&node, tenant).await, want);
        let requests = server.received_requests().await.unwrap();
        // The backfill (30 days) reads every page: nothing is older than that.
        let cursors: Vec<Option<String>> = requests.iter().map(cursor).collect();
        assert_eq!(cursors, [None, Some("c2".into()), Some("c3".into())]);
        for r in &requests {
            assert_eq!(r.headers.get("authorization").unwrap(), "Bearer ntn_secret");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["sort"], json!({"direction": "descending", "timestamp": "last_edited_time"}));
            assert_eq!(body["page_size"], 100);
        }

        // Again: the checkpoint is the newest edit; page 2 holds an older one,
        // so the run stops there and never asks for page 3.
        let (status, body) = node.api("POST", "/sync/notion", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        let requests = server.received_requests().await.unwrap();
        let cursors: Vec<Option<String>> = requests[3..].iter().map(cursor).collect();
        assert_eq!(cursors, [None, Some("c2".into())]);
        assert_eq!(signals(&node, tenant).await, want);
    }
}

//! The shipped polling descriptors that predate `catalogue.rs` (GitHub, Jira,
//! Linear, Trello, Zoho Cliq), each polled end to end against wiremock serving
//! its recorded pages: every item stored once with the kinds its golden file
//! has, then an incremental run that asks from the newest item. The items'
//! times are moved into the backfill window (derived: only the time fields
//! change, so the checkpoint visibly advances); everything else is as recorded.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::oauth::TokenSet;
use poblysh_connectors::sync::scheduler;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, kinds_and_ids, signals};

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap()
}

/// (kind, external id) of every Signal the golden files of `cases` expect.
fn expected(cases: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cases
        .iter()
        .flat_map(|c| kinds_and_ids(&fixture(&format!("{c}.expected.json"))["signals"]))
        .collect();
    out.sort();
    out
}

/// A shipped descriptor with its top-level `baseUrl` line pointed at `base`.
fn shipped_at(id: &str, base: &str) -> String {
    let yaml = std::fs::read_to_string(format!(
        "{}/descriptors/{id}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let line = yaml
        .lines()
        .find(|l| l.starts_with("baseUrl: "))
        .expect("a baseUrl line")
        .to_owned();
    yaml.replace(&line, &format!("baseUrl: {base}"))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn query(r: &Request, name: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Backfills, then runs an incremental sync; the requests of the second run.
async fn backfill_then_incremental(
    node: &Node,
    server: &MockServer,
    tenant: TenantId,
    conn: ConnectionId,
    provider: &str,
    want: &[(String, String)],
) -> Vec<Request> {
    assert!(
        scheduler::enqueue_backfill(&node.services, tenant, conn, provider)
            .await
            .unwrap()
    );
    let executor = node.executor("w");
    let report = executor.try_execute_next().await.unwrap().unwrap();
    assert_eq!(
        (report.state, report.signals),
        (JobState::Succeeded, want.len() as u64),
        "{provider}: {report:?}"
    );
    assert_eq!(
        signals(node, tenant).await,
        want,
        "{provider}: every item once"
    );
    let before = server.received_requests().await.unwrap().len();
    let (status, body) = node
        .api(
            "POST",
            &format!("/sync/{provider}"),
            Some(tenant),
            Some(json!({})),
        )
        .await;
    assert!(status < 300, "{body}");
    let report = executor.try_execute_next().await.unwrap().unwrap();
    assert_eq!(
        (report.state, report.signals),
        (JobState::Succeeded, 0),
        "{provider}: {report:?}"
    );
    assert_eq!(
        signals(node, tenant).await,
        want,
        "{provider}: nothing twice"
    );
    server.received_requests().await.unwrap()[before..].to_vec()
}

crate::on_both! {
    async fn github_issues_through_the_recorded_link_headers(backend) {
        // The recorded first and last pages. The first's `Link: rel="next"`
        // named page 2 of 5 on api.github.com; pages 2-4 were not recorded, so
        // it names the recorded last page on the mock instead.
        let server = MockServer::start().await;
        let now = Utc::now();
        let mut first = fixture("github/rest.issues.list.page1.json");
        let mut last = fixture("github/rest.issues.list.page5_last.json");
        let mut hours = 4;
        for item in first.as_array_mut().unwrap().iter_mut().rev().chain(last.as_array_mut().unwrap().iter_mut()) {
            item["updated_at"] = json!(iso(now - Duration::hours(hours)));
            hours -= 1;
        }
        let newest = iso(now - Duration::hours(1));
        let next = format!("<{}/repositories/515435940/issues?per_page=3&page=5>; rel=\"next\"", server.uri());
        Mock::given(method("GET")).and(path("/repositories/515435940/issues")).and(query_param("page", "5"))
            .respond_with(ResponseTemplate::new(200).set_body_json(last)).mount(&server).await;
        Mock::given(method("GET")).and(path("/repos/octokit-fixture-org/hello/issues"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first).insert_header("link", next.as_str()))
            .mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped_at("github", "https://api.github.com"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let config = json!({"repos": ["octokit-fixture-org/hello"], "baseUrl": server.uri()});
        let conn = node.connection(tenant, "github", &[("token", "ghp_t")], config).await;
        let want = expected(&["github/rest.issues.list.page1", "github/rest.issues.list.page5_last"]);
        let again = backfill_then_incremental(&node, &server, tenant, conn, "github", &want).await;
        // From the newest item, a second early; the Link is followed again.
        let since = DateTime::parse_from_rfc3339(&query(&again[0], "since").unwrap()).unwrap().to_utc();
        assert_eq!(since, DateTime::parse_from_rfc3339(&newest).unwrap().to_utc() - Duration::seconds(1));
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|r| r.headers.get("authorization").unwrap() == "Bearer ghp_t"));
    }
}

crate::on_both! {
    async fn jira_search_from_the_jql_checkpoint(backend) {
        // Atlassian's example page of the enhanced search (its one issue's
        // `updated` was `1`, i.e. 1970: moved to an hour ago).
        let server = MockServer::start().await;
        let mut page = fixture("jira/rest.v3.search_jql.openapi_example.json");
        let newest = Utc::now() - Duration::hours(1);
        page["issues"][0]["fields"]["updated"] = json!(iso(newest));
        Mock::given(method("GET")).and(path("/rest/api/3/search/jql"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string(format!("{}/descriptors/jira.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let creds = [("email", "me@example.com"), ("apiToken", "atl-token")];
        let conn = node.connection(tenant, "jira", &creds, json!({"baseUrl": server.uri()})).await;
        let want = expected(&["jira/rest.v3.search_jql.openapi_example"]);
        let again = backfill_then_incremental(&node, &server, tenant, conn, "jira", &want).await;
        // JQL dates are to the minute in the user's zone: the newest update, a
        // second early, shifted back 14 hours.
        let jql = query(&again[0], "jql").unwrap();
        let at = (newest - Duration::seconds(1) - Duration::hours(14)).format("%Y/%m/%d %H:%M").to_string();
        assert!(jql.contains(&format!("updated >= \"{at}\"")), "{jql}");
        assert_eq!(query(&again[0], "nextPageToken"), None);
    }
}

crate::on_both! {
    async fn linear_graphql_from_the_checkpoint_in_its_variables(backend) {
        let server = MockServer::start().await;
        let mut page = fixture("linear/graphql.issues.page.json");
        let newest = Utc::now() - Duration::hours(1);
        page["data"]["issues"]["nodes"][0]["updatedAt"] = json!(iso(newest));
        Mock::given(method("POST")).and(path("/graphql"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped_at("linear", &server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "linear", &[("apiKey", "lin_api_t")], json!({})).await;
        let want = expected(&["linear/graphql.issues.page"]);
        let again = backfill_then_incremental(&node, &server, tenant, conn, "linear", &want).await;
        let body: Value = serde_json::from_slice(&again[0].body).unwrap();
        assert_eq!(body["variables"]["since"], iso(newest - Duration::seconds(1)));
        assert_eq!(body["variables"]["after"], Value::Null);
        assert_eq!(again[0].headers.get("authorization").unwrap(), "lin_api_t");
    }
}

crate::on_both! {
    async fn trello_actions_per_board_back_to_an_empty_page(backend) {
        let server = MockServer::start().await;
        let mut page = fixture("trello/rest.boards.actions.page.json");
        let now = Utc::now();
        let board = page[0]["data"]["board"]["id"].as_str().unwrap().to_owned();
        // Newest first, as Trello lists actions.
        for (i, action) in page.as_array_mut().unwrap().iter_mut().enumerate() {
            action["date"] = json!(iso(now - Duration::hours(1 + i as i64)));
        }
        let newest = page[0]["date"].as_str().unwrap().to_owned();
        let last_id = page.as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_owned();
        let actions = format!("/1/boards/{board}/actions");
        Mock::given(method("GET")).and(path(actions.as_str())).and(query_param("before", last_id.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&server).await;
        Mock::given(method("GET")).and(path(actions.as_str())).and(query_param_is_missing("before"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped_at("trello", &server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let creds = [("apiKey", "trello-key"), ("token", "trello-token")];
        let conn = node.connection(tenant, "trello", &creds, json!({"boards": [board]})).await;
        let want = expected(&["trello/rest.boards.actions.page"]);
        let again = backfill_then_incremental(&node, &server, tenant, conn, "trello", &want).await;
        assert_eq!(again.len(), 2, "the page, then the empty one");
        let since = DateTime::parse_from_rfc3339(&query(&again[0], "since").unwrap()).unwrap().to_utc();
        assert_eq!(since, DateTime::parse_from_rfc3339(&newest).unwrap().to_utc() - Duration::seconds(1));
        assert_eq!(query(&again[1], "before").as_deref(), Some(last_id.as_str()));
    }
}

crate::on_both! {
    async fn zoho_cliq_search_by_next_token_from_the_checkpoint(backend) {
        // Zoho's example search page (two messages and a `next_token`), then a
        // page without one.
        let server = MockServer::start().await;
        let mut page = fixture("zoho_cliq/api.v3.messages.search.openapi_example.json");
        let now = Utc::now();
        for (i, m) in page["messages"].as_array_mut().unwrap().iter_mut().enumerate() {
            m["time"] = json!(iso(now - Duration::hours(1 + i as i64)));
        }
        let newest = page["messages"][0]["time"].as_str().unwrap().to_owned();
        let token = page["next_token"].to_string();
        Mock::given(method("GET")).and(path("/api/v3/messages/search")).and(query_param("next_token", token.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []}))).mount(&server).await;
        Mock::given(method("GET")).and(path("/api/v3/messages/search")).and(query_param_is_missing("next_token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&shipped_at("zoho_cliq", &server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = connections::create(&node.services.db, &node.services.keys, tenant, NewConnection {
            provider: "zoho_cliq".into(),
            name: None,
            config: json!({}),
            credentials: Default::default(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("cliq-access"),
                refresh_token: None,
                expires_at: Some(now + Duration::hours(1)),
                metadata: Default::default(),
            }),
        })
        .await
        .unwrap()
        .id;
        let want = expected(&["zoho_cliq/api.v3.messages.search.openapi_example"]);
        let again = backfill_then_incremental(&node, &server, tenant, conn, "zoho_cliq", &want).await;
        // Newest first: the first page reaches back past the checkpoint, so
        // the run ends there.
        assert_eq!(again.len(), 1);
        let from = DateTime::parse_from_rfc3339(&query(&again[0], "from_time").unwrap()).unwrap().to_utc();
        assert_eq!(from, DateTime::parse_from_rfc3339(&newest).unwrap().to_utc() - Duration::seconds(1));
        assert!(again.iter().all(|r| r.headers.get("authorization").unwrap() == "Bearer cliq-access"));
    }
}

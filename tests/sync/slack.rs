//! Slack history: one `conversations.history` partition per configured
//! channel, cursor pages, `oldest` from the checkpoint; served by wiremock
//! from the recorded (OpenAPI example) page.

use chrono::{Duration, Utc};
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::engine::oauth::TokenSet;
use poblysh_connectors::sync::scheduler;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn query(r: &Request, name: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

crate::on_both! {
    async fn slack_reads_each_configured_channel_and_goes_on_from_its_checkpoint(backend) {
        // The recorded page (two messages, `has_more` and a next cursor), its
        // `ts` moved to the last hours (derived: only `ts` changes), then an
        // empty last page; the second channel has nothing.
        let mut page: Value = serde_json::from_str(include_str!(
            "../../fixtures/slack/web.conversations.history.json"
        ))
        .unwrap();
        let now = Utc::now();
        let ts = |h: i64| format!("{}.000216", (now - Duration::hours(h)).timestamp());
        let newest = ts(1);
        page["messages"][0]["ts"] = json!(newest);
        page["messages"][1]["ts"] = json!(ts(2));
        let cursor = page["response_metadata"]["next_cursor"].as_str().unwrap().to_owned();
        let last = json!({"ok": true, "messages": [], "has_more": false});
        let server = MockServer::start().await;
        let history = || Mock::given(method("GET")).and(path("/conversations.history")).and(header("authorization", "Bearer xoxb-test"));
        history().and(query_param("channel", "C1")).and(query_param("cursor", cursor.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(last.clone())).mount(&server).await;
        history().and(query_param("channel", "C1")).and(query_param_is_missing("cursor"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page)).mount(&server).await;
        history().and(query_param("channel", "C2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(last)).mount(&server).await;

        let node = Node::new(backend, true, &[]).await;
        let yaml = std::fs::read_to_string(format!("{}/descriptors/slack.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        node.register(&yaml.replace("baseUrl: https://slack.com/api", &format!("baseUrl: {}", server.uri())));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = connections::create(&node.services.db, &node.services.keys, tenant, NewConnection {
            provider: "slack".into(),
            name: None,
            config: json!({"channels": ["C1", "C2"]}),
            credentials: Default::default(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("xoxb-test"),
                refresh_token: None,
                expires_at: None,
                metadata: json!({"team_id": "T1"}).as_object().unwrap().clone(),
            }),
        })
        .await
        .unwrap()
        .id;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "slack").await.unwrap());
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
        let mut want = vec![
            ("message_received".to_owned(), newest.clone()),
            ("message_received".to_owned(), ts(2)),
        ];
        want.sort();
        assert_eq!(signals(&node, tenant).await, want);
        let requests = server.received_requests().await.unwrap();
        let asked: Vec<(Option<String>, Option<String>)> = requests.iter().map(|r| (query(r, "channel"), query(r, "cursor"))).collect();
        assert_eq!(asked, [(Some("C1".into()), None), (Some("C1".into()), Some(cursor.clone())), (Some("C2".into()), None)]);
        // The backfill reads 7 days back (`oldest`, unix seconds, a second early).
        let oldest: i64 = query(&requests[0], "oldest").unwrap().parse().unwrap();
        let expected = (now - Duration::days(7)).timestamp() - 1;
        assert!((oldest - expected).abs() <= 5, "{oldest} vs {expected}");
        assert!(requests.iter().all(|r| query(r, "limit").as_deref() == Some("200")));

        // Again: C1 asks from its newest message, C2 from where it started.
        let (status, body) = node.api("POST", "/sync/slack", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        let requests = server.received_requests().await.unwrap();
        let c1 = requests[3..].iter().find(|r| query(r, "channel").as_deref() == Some("C1")).unwrap();
        let newest_secs: i64 = newest.split('.').next().unwrap().parse().unwrap();
        assert_eq!(query(c1, "oldest").unwrap().parse::<i64>().unwrap(), newest_secs - 1);
        let c2 = requests[3..].iter().find(|r| query(r, "channel").as_deref() == Some("C2")).unwrap();
        assert_eq!(query(c2, "oldest").unwrap().parse::<i64>().unwrap(), oldest);
    }
}

/// The example answer of Slack's `oauth.v2.access` documentation (no recorded
/// sample), for the workspace `team`.
fn oauth_access(team: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true,
        "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        "token_type": "bot",
        "scope": "commands,incoming-webhook",
        "bot_user_id": "U0KRQLJ9H",
        "app_id": "A0KRD7HC3",
        "team": {"name": "Slack Softworks", "id": team},
        "authed_user": {"id": "U1234", "scope": "chat:write", "access_token": "xoxp-1234", "token_type": "user"}
    }))
}

crate::on_both! {
    async fn reauthorizing_a_workspace_must_authorize_the_same_workspace(backend) {
        let server = MockServer::start().await;
        let node = Node::new(backend, true, &[
            ("POBLYSH_SLACK_CLIENT_ID", "3336676.569200954261"),
            ("POBLYSH_SLACK_CLIENT_SECRET", "slack-client-secret-value"),
            ("POBLYSH_PUBLIC_URL", "https://connectors.example.com"),
        ]).await;
        let yaml = std::fs::read_to_string(format!("{}/descriptors/slack.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        node.register(&yaml.replace("https://slack.com/api", &server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = connections::create(&node.services.db, &node.services.keys, tenant, NewConnection {
            provider: "slack".into(),
            name: None,
            config: json!({"channels": ["C1"]}),
            credentials: Default::default(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("xoxb-old"),
                refresh_token: None,
                expires_at: None,
                metadata: json!({"team_id": "T9TK3CUKW"}).as_object().unwrap().clone(),
            }),
        }).await.unwrap().id;
        let reauthorize = || async {
            let (status, started) = node.api("POST", "/connect/slack", Some(tenant), Some(json!({"connection_id": conn.to_string()}))).await;
            assert_eq!(status, 200, "{started}");
            started["state"].as_str().unwrap().to_owned()
        };
        // Another workspace: refused, the connection as it was.
        let other = Mock::given(method("POST")).and(path("/oauth.v2.access"))
            .respond_with(oauth_access("T0OTHER00")).mount_as_scoped(&server).await;
        let state = reauthorize().await;
        let (status, problem) = node.public("GET", &format!("/connect/slack/callback?code=c&state={state}")).await;
        assert_eq!(status, 409, "{problem}");
        assert!(problem["message"].as_str().unwrap().contains("team_id"), "{problem}");
        drop(other);
        let (_, list) = node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"].as_array().unwrap().len(), 1);
        // The same workspace: re-authorized in place.
        Mock::given(method("POST")).and(path("/oauth.v2.access"))
            .respond_with(oauth_access("T9TK3CUKW")).mount(&server).await;
        let state = reauthorize().await;
        let (status, done) = node.public("GET", &format!("/connect/slack/callback?code=c&state={state}")).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["id"], conn.to_string());
        let (_, list) = node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    }
}

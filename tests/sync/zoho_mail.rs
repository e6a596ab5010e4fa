//! Zoho Mail polled end to end against wiremock serving the recorded pages:
//! the accounts listing gives the one partition (its `accountId`), the
//! recorded search page is served as two pages through `start`/`limit`
//! offsets, every message is stored once with its kind, and an incremental
//! run searches `fromDate:` from the checkpoint (shifted back 14 hours). The
//! `region` picks Zoho's hosts from a fixed list only.

use chrono::{Duration, NaiveDate, Utc};
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::engine::oauth::TokenSet;
use poblysh_connectors::sync::scheduler;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn shipped(id: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/descriptors/{id}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The descriptor with its `baseUrl` (a fixed mapping of `region` to Zoho's
/// hosts, on purpose: no config field can override it) pointed at the mock.
fn zoho_mail_at(base: &str) -> String {
    let yaml = shipped("zoho_mail");
    let line = yaml
        .lines()
        .find(|l| l.starts_with("baseUrl: "))
        .expect("a baseUrl line")
        .to_owned();
    yaml.replace(&line, &format!("baseUrl: {base}"))
}

/// The day a Zoho search starts from (`searchKey=fromDate:DD-MMM-YYYY`).
fn search_from(request: &Request) -> NaiveDate {
    let key = request
        .url
        .query_pairs()
        .find(|(k, _)| k == "searchKey")
        .map(|(_, v)| v.into_owned())
        .expect("a searchKey");
    let day = key.strip_prefix("fromDate:").expect(&key);
    NaiveDate::parse_from_str(day, "%d-%b-%Y").expect(&key)
}

fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

crate::on_both! {
    async fn zoho_mail_searches_each_account_by_offset_and_goes_on_from_its_checkpoint(backend) {
        let server = MockServer::start().await;
        let accounts: Value = serde_json::from_str(include_str!(
            "../../fixtures/zoho_mail/api.accounts.list.recorded.json"
        ))
        .unwrap();
        let recorded: Value = serde_json::from_str(include_str!(
            "../../fixtures/zoho_mail/api.messages.search.recorded.json"
        ))
        .unwrap();
        let account = accounts["data"][0]["accountId"].as_str().unwrap().to_owned();
        // The recorded mail (2026-06-10) moved to yesterday, in order and as
        // far apart as recorded (only `receivedTime` changes): inside the
        // 7-day window, which a newest-first search stops at.
        let mut recorded = recorded;
        let newest = Utc::now() - Duration::days(1);
        let recorded_newest: i64 = recorded["data"][0]["receivedTime"].as_str().unwrap().parse().unwrap();
        for m in recorded["data"].as_array_mut().unwrap() {
            let t: i64 = m["receivedTime"].as_str().unwrap().parse().unwrap();
            m["receivedTime"] = json!((newest.timestamp_millis() - (recorded_newest - t)).to_string());
        }
        assert_eq!(account, "4845214000000008002");
        // The recorded page of 10, split as Zoho pages it with limit=6:
        // start=1 gives the first 6 (a full page), start=7 the last 4 (short: the end).
        let results = recorded["data"].as_array().unwrap().clone();
        let mut first = recorded.clone();
        first["data"] = json!(results[..6]);
        let mut last = recorded.clone();
        last["data"] = json!(results[6..]);

        Mock::given(method("GET"))
            .and(path("/api/accounts"))
            .and(header("authorization", "Bearer zoho-access"))
            .respond_with(ResponseTemplate::new(200).set_body_json(accounts.clone()))
            .mount(&server)
            .await;
        let search = format!("/api/accounts/{account}/messages/search");
        Mock::given(method("GET"))
            .and(path(search.as_str()))
            .and(query_param("start", "7"))
            .respond_with(ResponseTemplate::new(200).set_body_json(last))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(search.as_str()))
            .and(query_param("start", "1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(first))
            .mount(&server)
            .await;

        let node = Node::new(backend, true, &[]).await;
        // pageSize 6 instead of 200, so the 10 recorded messages are two pages.
        node.register(&zoho_mail_at(&server.uri()).replace("pageSize: 200", "pageSize: 6"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = connections::create(
            &node.services.db,
            &node.services.keys,
            tenant,
            NewConnection {
                provider: "zoho_mail".into(),
                name: None,
                config: json!({"region": "eu"}),
                credentials: Default::default(),
                tokens: Some(TokenSet {
                    access_token: SecretString::from("zoho-access"),
                    refresh_token: Some(SecretString::from("zoho-refresh")),
                    expires_at: Some(Utc::now() + Duration::hours(1)),
                    metadata: Default::default(),
                }),
            },
        )
        .await
        .unwrap()
        .id;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "zoho_mail").await.unwrap());
        let started = Utc::now();
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 10), "{report:?}");
        // Each Inbox copy received, each Sent copy (it has `mailDeliveryStatus`) sent.
        let mut want: Vec<(String, String)> = [
            ("email_received", "1781132595333143900"), ("email_sent", "1781132593284155300"),
            ("email_received", "1781132461131158500"), ("email_sent", "1781132460639138300"),
            ("email_received", "1781132453259143900"), ("email_sent", "1781132452334138400"),
            ("email_received", "1781132447122158500"), ("email_sent", "1781132445960138400"),
            ("email_received", "1781132424299154100"), ("email_sent", "1781132422435155100"),
        ].iter().map(|(k, i)| ((*k).to_owned(), (*i).to_owned())).collect();
        want.sort();
        assert_eq!(signals(&node, tenant).await, want);

        let requests = server.received_requests().await.unwrap();
        let paths: Vec<&str> = requests.iter().map(|r| r.url.path()).collect();
        assert_eq!(paths, ["/api/accounts", search.as_str(), search.as_str()], "the listing, then two pages");
        // 1-based offsets in items, the page size as `limit`, To details asked for.
        assert_eq!((query(&requests[1], "start").as_deref(), query(&requests[1], "limit").as_deref()), (Some("1"), Some("6")));
        assert_eq!(query(&requests[2], "start").as_deref(), Some("7"));
        assert!(requests[1..].iter().all(|r| query(r, "includeto").as_deref() == Some("true")));
        // The OAuth token on every request, as a bearer token.
        assert!(requests.iter().all(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer zoho-access")));
        // The backfill searches from 7 days back, shifted 14 hours (a day, in
        // the account's time zone): the day of `started - 7d - 14h`, or the one
        // before it when the second went by a midnight.
        let backfill_day = search_from(&requests[1]);
        let expected = (started - Duration::days(7) - Duration::hours(14)).date_naive();
        assert!(backfill_day == expected || backfill_day == expected.pred_opt().unwrap(), "{backfill_day} vs {expected}");
        assert_eq!(search_from(&requests[2]), backfill_day, "every page of a run searches the same window");

        // Again: nothing new stored (dedupe), the search starts from the
        // newest mail's day (shifted back 14 hours), and the first page, which
        // reaches back past the checkpoint, is the last one asked for.
        let (status, body) = node.api("POST", "/sync/zoho_mail", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        assert_eq!(signals(&node, tenant).await, want);
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests[3].url.path(), "/api/accounts", "the partitions are listed again each run");
        let want_day = (newest - Duration::milliseconds(1) - Duration::hours(14)).date_naive();
        assert_eq!(search_from(&requests[4]), want_day);
        assert_eq!(query(&requests[4], "start").as_deref(), Some("1"));
        assert_eq!(requests.len(), 5, "newest first: page 2 is older than the checkpoint");
    }
}

crate::on_both! {
    async fn zoho_mail_checkpoint_moves_to_the_newest_message_it_stored(backend) {
        // The recorded page, its times moved to yesterday (kept in order and
        // 1 ms apart as recorded): the incremental run searches from the newest
        // one's day, shifted back 14 hours. Only `receivedTime` is changed.
        let server = MockServer::start().await;
        let accounts: Value = serde_json::from_str(include_str!(
            "../../fixtures/zoho_mail/api.accounts.list.recorded.json"
        ))
        .unwrap();
        let mut page: Value = serde_json::from_str(include_str!(
            "../../fixtures/zoho_mail/api.messages.search.recorded.json"
        ))
        .unwrap();
        let newest = Utc::now() - Duration::days(1);
        let recorded_newest: i64 = page["data"][0]["receivedTime"].as_str().unwrap().parse().unwrap();
        for m in page["data"].as_array_mut().unwrap() {
            let t: i64 = m["receivedTime"].as_str().unwrap().parse().unwrap();
            m["receivedTime"] = json!((newest.timestamp_millis() - (recorded_newest - t)).to_string());
        }
        Mock::given(method("GET")).and(path("/api/accounts"))
            .respond_with(ResponseTemplate::new(200).set_body_json(accounts))
            .mount(&server).await;
        Mock::given(method("GET")).and(path("/api/accounts/4845214000000008002/messages/search"))
            .respond_with(ResponseTemplate::new(200).set_body_json(page))
            .mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&zoho_mail_at(&server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = connections::create(&node.services.db, &node.services.keys, tenant, NewConnection {
            provider: "zoho_mail".into(), name: None, config: json!({}), credentials: Default::default(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("zoho-access"), refresh_token: None,
                expires_at: Some(Utc::now() + Duration::hours(1)), metadata: Default::default(),
            }),
        }).await.unwrap().id;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "zoho_mail").await.unwrap());
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 10), "{report:?}");
        let (status, body) = node.api("POST", "/sync/zoho_mail", Some(tenant), Some(json!({}))).await;
        assert!(status < 300, "{body}");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 0), "{report:?}");
        let requests = server.received_requests().await.unwrap();
        let last_search = requests.iter().rev().find(|r| r.url.path().ends_with("/messages/search")).unwrap();
        // Checkpoint = newest receivedTime; sent one ms early, then shifted 14 h.
        let want = (newest - Duration::milliseconds(1) - Duration::hours(14)).date_naive();
        assert_eq!(search_from(last_search), want);
    }
}

/// The data centre picks the hosts; nothing a tenant types becomes a host.
#[test]
fn zoho_mail_region_maps_to_known_hosts_only() {
    let compiled = load_str("zoho_mail.yaml", &shipped("zoho_mail"), Format::Yaml).unwrap();
    for (region, host) in [
        (json!(null), "https://mail.zoho.com"),
        (json!("us"), "https://mail.zoho.com"),
        (json!("eu"), "https://mail.zoho.eu"),
        (json!("in"), "https://mail.zoho.in"),
        (json!("au"), "https://mail.zoho.com.au"),
        (json!("jp"), "https://mail.zoho.jp"),
        (json!("ca"), "https://mail.zohocloud.ca"),
        (json!("sa"), "https://mail.zoho.sa"),
        (json!("uk"), "https://mail.zoho.uk"),
        (json!("ae"), "https://mail.zoho.ae"),
        (json!("cn"), "https://mail.zoho.com.cn"),
        // Never reached through the API (a `select` refuses it); the template
        // still names no host of the value's choosing.
        (
            json!("evil.example/x?"),
            "https://mail.unknown-region.invalid",
        ),
        (
            json!("eu.evil.example"),
            "https://mail.unknown-region.invalid",
        ),
    ] {
        let config = if region.is_null() {
            json!({})
        } else {
            json!({"region": region})
        };
        assert_eq!(compiled.base_url(&config).unwrap(), host, "{config}");
    }
    // A `baseUrl` key the descriptor does not declare changes nothing.
    let config = json!({"region": "eu", "baseUrl": "https://evil.example"});
    assert_eq!(compiled.base_url(&config).unwrap(), "https://mail.zoho.eu");
}

crate::on_both! {
    async fn zoho_mail_connect_sends_each_data_centre_to_its_own_accounts_server_and_refuses_others(backend) {
        // POST /connect/{provider} validates config against configFields
        // (api/fields.rs) before it builds the authorize URL: a `select` value
        // outside its options, and an undeclared `baseUrl` (which would
        // otherwise override {{baseUrl}}: CompiledDescriptor::base_url), are
        // both refused (400 "invalid config"). A known one is sent to its own
        // accounts server.
        let env = [
            ("POBLYSH_ZOHO_MAIL_CLIENT_ID", "zm-client"),
            ("POBLYSH_ZOHO_MAIL_CLIENT_SECRET", "zm-secret"),
            ("POBLYSH_PUBLIC_URL", "https://connectors.example.com"),
        ];
        let node = Node::new(backend, true, &env).await;
        node.register(&shipped("zoho_mail"));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        for config in [json!({"region": "evil.example"}), json!({"region": "EU"}), json!({"baseUrl": "https://evil.example"})] {
            let (status, body) = node
                .api("POST", "/connect/zoho_mail", Some(tenant), Some(json!({"config": config})))
                .await;
            assert_eq!(status, 400, "{config}: {body}");
        }
        for (region, accounts) in [("eu", "accounts.zoho.eu"), ("ca", "accounts.zohocloud.ca"), ("au", "accounts.zoho.com.au")] {
            let (status, body) = node
                .api("POST", "/connect/zoho_mail", Some(tenant), Some(json!({"config": {"region": region}})))
                .await;
            assert_eq!(status, 200, "{body}");
            let url = url::Url::parse(body["authorize_url"].as_str().expect("authorize_url")).unwrap();
            assert_eq!((url.host_str(), url.path()), (Some(accounts), "/oauth/v2/auth"), "{region}");
            let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            assert_eq!(q.get("scope").map(String::as_str), Some("ZohoMail.accounts.READ,ZohoMail.messages.READ"));
            assert_eq!(q.get("access_type").map(String::as_str), Some("offline"));
        }
    }
}

/// Zoho Cliq picks its hosts the same way: from the `region` select only.
#[test]
fn zoho_cliq_region_maps_to_known_hosts_only() {
    let compiled = load_str("zoho_cliq.yaml", &shipped("zoho_cliq"), Format::Yaml).unwrap();
    for (config, host) in [
        (json!({}), "https://cliq.zoho.com"),
        (json!({"region": "eu"}), "https://cliq.zoho.eu"),
        (json!({"region": "ca"}), "https://cliq.zohocloud.ca"),
        (
            json!({"region": "evil.example"}),
            "https://cliq.unknown-region.invalid",
        ),
        (
            json!({"baseUrl": "https://evil.example"}),
            "https://cliq.zoho.com",
        ),
    ] {
        assert_eq!(compiled.base_url(&config).unwrap(), host, "{config}");
    }
    let region = compiled
        .descriptor
        .config_fields
        .iter()
        .find(|f| f.key == "region")
        .unwrap();
    assert_eq!(
        region.field_type,
        poblysh_connectors::descriptor::model::FieldType::Select
    );
    assert!(
        !compiled
            .descriptor
            .config_fields
            .iter()
            .any(|f| f.key.ends_with("Url"))
    );
}

crate::on_both! {
    async fn zoho_cliq_connections_keep_their_data_centre_across_the_region_migration(backend) {
        use migration::MigratorTrait;
        use poblysh_connectors::db::repo::connections;
        let node = Node::new(backend, true, &[]).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let old = [
            (json!({"baseUrl": "https://cliq.zoho.eu", "accountsUrl": "https://accounts.zoho.eu", "chats": ["CT_1"]}), json!({"region": "eu", "chats": ["CT_1"]})),
            (json!({"accountsUrl": "https://accounts.zoho.com.au"}), json!({"region": "au"})),
            (json!({"baseUrl": "https://cliq.zoho.com"}), json!({"region": "us"})),
            (json!({"chats": ["CT_2"]}), json!({"chats": ["CT_2"]})),
        ];
        let mut ids = Vec::new();
        for (config, _) in &old {
            ids.push(node.connection(tenant, "zoho_cliq", &[], config.clone()).await);
        }
        // Written as before the migration; run it again over them.
        let conn = node.services.db.conn();
        let since_region = migration::Migrator::migrations()
            .iter()
            .rev()
            .position(|m| m.name() == "m20261201_000009_zoho_cliq_region")
            .unwrap() as u32
            + 1;
        migration::Migrator::down(conn, Some(since_region)).await.unwrap();
        migration::Migrator::up(conn, None).await.unwrap();
        for (id, (_, want)) in ids.iter().zip(&old) {
            let got = connections::get(&node.services.db, tenant, *id).await.unwrap().unwrap();
            assert_eq!(&got.config, want);
        }
    }
}

//! What the dashboard's monitoring reads, through the API: a connection's last
//! sync (when, outcome, latency), `GET /connections/{id}/stats` (Signals by
//! when they occurred, jobs by state), the catalogue with the tenant's status
//! and its filters, and a health check of credentials before anything is
//! stored. Each on SQLite and PostgreSQL, and never across tenants.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use poblysh_connectors::domain::TenantId;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::sync::harness::{Node, drain};

/// The shipped GitHub descriptor with its `baseUrl` at `base`.
pub fn github_at(base: &str) -> String {
    let yaml = std::fs::read_to_string(format!(
        "{}/descriptors/github.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    yaml.replace(
        "baseUrl: https://api.github.com",
        &format!("baseUrl: {base}"),
    )
}

/// GitHub's recorded first page of issues, their times moved to `ages` ago.
pub fn issues(ages: &[Duration]) -> Value {
    let mut page: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/fixtures/github/rest.issues.list.page1.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let now = Utc::now();
    let items = page.as_array_mut().unwrap();
    assert!(items.len() >= ages.len());
    items.truncate(ages.len());
    for (item, age) in items.iter_mut().zip(ages) {
        let t = (now - *age).to_rfc3339_opts(SecondsFormat::Secs, true);
        item["created_at"] = json!(t);
        item["updated_at"] = json!(t);
    }
    page
}

/// The body GitHub documents for a bad token (no recorded sample of it).
pub fn bad_credentials() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest"
    }))
}

/// A GitHub connection made through the API with `credentials`, syncing
/// `repo` from `base`; its id.
pub async fn create(
    node: &Node,
    tenant: TenantId,
    credentials: Value,
    repo: &str,
    base: &str,
) -> String {
    let (status, body) = node
        .api(
            "POST",
            "/connections",
            Some(tenant),
            Some(json!({
                "provider": "github",
                "credentials": credentials,
                "config": {"repos": [repo], "baseUrl": base}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn status_of(providers: &Value, id: &str) -> (Value, Value) {
    let p = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {providers}"));
    (p["status"].clone(), p["connections"].clone())
}

crate::on_both! {
    async fn last_sync_stats_and_catalogue_status_per_tenant(backend) {
        let server = MockServer::start().await;
        let ages = [Duration::hours(1), Duration::hours(30), Duration::days(9)];
        Mock::given(method("GET")).and(path("/repos/octo-org/hello/issues"))
            .respond_with(ResponseTemplate::new(200).set_body_json(issues(&ages)))
            .mount(&server).await;
        Mock::given(method("GET")).and(path("/repos/octo-org/broken/issues"))
            .respond_with(bad_credentials())
            .mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&github_at("https://api.github.com"));
        let (a, b) = (TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7()));

        let (status, before) = node.api("GET", "/providers", Some(a), None).await;
        assert_eq!(status, 200, "{before}");
        assert_eq!(status_of(&before, "github"), (json!("not_configured"), json!(0)));

        let good = create(&node, a, json!({"token": "ghp_good"}), "octo-org/hello", &server.uri()).await;
        let (_, fresh) = node.api("GET", &format!("/connections/{good}"), Some(a), None).await;
        assert!(fresh["last_sync_at"].is_null() && fresh["last_sync_status"].is_null(), "{fresh}");
        drain(&node).await;

        let (status, c) = node.api("GET", &format!("/connections/{good}"), Some(a), None).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["last_sync_status"], "succeeded", "{c}");
        let at: DateTime<Utc> = c["last_sync_at"].as_str().unwrap().parse().unwrap();
        assert!((Utc::now() - at).num_seconds().abs() < 60, "{c}");
        assert!(c["last_sync_ms"].as_i64().unwrap() >= 0, "{c}");

        // The counts agree with the Signals listed, by when each occurred.
        let (_, listed) = node.api("GET", &format!("/signals?connection_id={good}&limit=100"), Some(a), None).await;
        let times: Vec<DateTime<Utc>> = listed["signals"].as_array().unwrap().iter()
            .map(|s| s["occurred_at"].as_str().unwrap().parse().unwrap()).collect();
        assert_eq!(times.len(), ages.len(), "{listed}");
        let now = Utc::now();
        let within = |d: Duration| times.iter().filter(|t| **t > now - d).count() as u64;
        let (status, stats) = node.api("GET", &format!("/connections/{good}/stats"), Some(a), None).await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(stats["connection_id"], good.as_str());
        assert_eq!(stats["signals"]["last_24h"], within(Duration::hours(24)), "{stats}");
        assert_eq!(stats["signals"]["last_7d"], within(Duration::days(7)), "{stats}");
        assert_eq!((within(Duration::hours(24)), within(Duration::days(7))), (1, 2), "the ages above");
        let jobs = &stats["jobs_last_7d"];
        assert_eq!(jobs["succeeded"], 1, "{stats}");
        for state in ["queued", "running", "failed", "retrying"] {
            assert!(jobs[state].as_u64().is_some(), "every state is counted: {stats}");
        }

        let (_, after) = node.api("GET", "/providers", Some(a), None).await;
        assert_eq!(status_of(&after, "github"), (json!("connected"), json!(1)));

        // A sync the provider refuses: shown as such, and the
        // tenant's GitHub needs attention.
        let broken = create(&node, a, json!({"token": "ghp_revoked"}), "octo-org/broken", &server.uri()).await;
        let executor = node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.job_type.as_str(), "full", "{report:?}");
        let (_, c) = node.api("GET", &format!("/connections/{broken}"), Some(a), None).await;
        assert_eq!(c["last_sync_status"], "failed", "a 401 is not retried: {c}");
        assert!(c["last_error"].as_str().unwrap().contains("Bad credentials"), "{c}");
        let (_, after) = node.api("GET", "/providers", Some(a), None).await;
        assert_eq!(status_of(&after, "github"), (json!("error"), json!(2)));

        // Another tenant sees none of it.
        let (status, _) = node.api("GET", &format!("/connections/{good}/stats"), Some(b), None).await;
        assert_eq!(status, 404);
        let (_, theirs) = node.api("GET", "/providers", Some(b), None).await;
        assert_eq!(status_of(&theirs, "github"), (json!("not_configured"), json!(0)));
        // Without a tenant, no status; a tenant needs the operator token.
        let (_, public) = node.public("GET", "/providers").await;
        assert!(public["providers"][0].get("status").is_none(), "{public}");
        let (status, _) = node.public("GET", &format!("/connections/{good}/stats")).await;
        assert_eq!(status, 401);
        let no_token = http::Request::builder().uri("/providers").header("x-tenant-id", a.to_string())
            .body(axum::body::Body::empty()).unwrap();
        assert_eq!(node.send(no_token).await.0, 401, "a tenant's status needs the operator token");
    }
}

crate::on_both! {
    async fn credentials_are_tested_before_anything_is_stored(backend) {
        let server = MockServer::start().await;
        Mock::given(method("GET")).and(path("/rate_limit")).and(header("authorization", "Bearer ghp_good"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resources": {}})))
            .mount(&server).await;
        Mock::given(method("GET")).and(path("/rate_limit"))
            .respond_with(bad_credentials())
            .mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&github_at("https://api.github.com"));
        let t = TenantId::from_uuid(Uuid::now_v7());
        let body = |token: &str| json!({
            "provider": "github",
            "credentials": {"token": token},
            "config": {"repos": ["octo-org/hello"], "baseUrl": server.uri()}
        });
        let (status, ok) = node.api("POST", "/connections/test", Some(t), Some(body("ghp_good"))).await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!((ok["healthy"].clone(), ok["status"].clone()), (json!(true), json!(200)), "{ok}");
        assert!(ok["latency_ms"].as_u64().is_some() && ok["error"].is_null(), "{ok}");

        let (status, bad) = node.api("POST", "/connections/test", Some(t), Some(body("ghp_wrong_secret"))).await;
        assert_eq!(status, 200, "{bad}");
        assert_eq!((bad["healthy"].clone(), bad["status"].clone()), (json!(false), json!(401)), "{bad}");
        let error = bad["error"].as_str().unwrap();
        assert!(error.contains("401") && error.contains("Bad credentials"), "the provider's own words: {error}");
        assert!(!bad.to_string().contains("ghp_wrong_secret"));

        // Checked like a create; nothing stored, nothing queued.
        let (status, invalid) = node.api("POST", "/connections/test", Some(t),
            Some(json!({"provider": "github", "credentials": {"token": "x"}, "config": {}}))).await;
        assert_eq!(status, 400, "{invalid}");
        assert_eq!(invalid["details"]["errors"][0]["field"], "config.repos", "{invalid}");
        let (_, list) = node.api("GET", "/connections", Some(t), None).await;
        assert_eq!(list["connections"], json!([]));
        assert!(drain(&node).await.is_empty());
        let (status, _) = node.public("POST", "/connections/test").await;
        assert_eq!(status, 401);
    }
}

crate::on_both! {
    async fn the_catalogue_filters_by_category_and_words(backend) {
        let node = Node::new(backend, true, &[]).await;
        for id in ["github", "jira", "slack", "notion"] {
            node.register(&std::fs::read_to_string(format!("{}/descriptors/{id}.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap());
        }
        let ids = |v: &Value| -> Vec<String> {
            v["providers"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
        };
        let (status, all) = node.public("GET", "/providers").await;
        assert_eq!(status, 200);
        assert_eq!(ids(&all), ["github", "jira", "notion", "slack"]);
        let (_, code) = node.public("GET", "/providers?category=code_devops").await;
        assert_eq!(ids(&code), ["github"]);
        let (_, words) = node.public("GET", "/providers?q=PULL%20requests").await;
        assert_eq!(ids(&words), ["github"], "every word, any case, in the description");
        let (_, both) = node.public("GET", "/providers?category=documents&q=not").await;
        assert_eq!(ids(&both), ["notion"]);
        let (_, none) = node.public("GET", "/providers?q=nothing-like-this").await;
        assert_eq!(ids(&none), Vec::<String>::new());
        let (status, bad) = node.public("GET", "/providers?category=games").await;
        assert_eq!(status, 400, "{bad}");
        assert!(bad["message"].as_str().unwrap().contains("category"), "{bad}");
        let (status, _) = node.public("GET", "/providers?sort=name").await;
        assert_eq!(status, 400);
    }
}

crate::on_both! {
    async fn new_credentials_replace_the_given_fields_and_keep_the_checkpoints(backend) {
        use poblysh_connectors::db::repo::cursors;
        use poblysh_connectors::domain::ConnectionId;
        let server = MockServer::start().await;
        Mock::given(method("GET")).and(path("/repos/octo-org/hello/issues"))
            .respond_with(ResponseTemplate::new(200).set_body_json(issues(&[Duration::hours(1)])))
            .mount(&server).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&github_at("https://api.github.com"));
        let t = TenantId::from_uuid(Uuid::now_v7());
        let id = create(&node, t, json!({"token": "ghp_old_token_value"}), "octo-org/hello", &server.uri()).await;
        let at = format!("/connections/{id}");
        let patch = |body: Value| node.api("PATCH", &at, Some(t), Some(json!({"credentials": body})));
        let (status, c) = patch(json!({"webhookSecret": "whsec-first"})).await;
        assert_eq!(status, 200, "{c}");
        drain(&node).await;
        let cid = ConnectionId::from_uuid(id.parse().unwrap());
        let before = cursors::load(&node.services.db, t, cid).await.unwrap();
        assert!(!before.is_empty());

        let (status, c) = patch(json!({"token": "ghp_new_token_value", "webhookSecret": null})).await;
        assert_eq!(status, 200, "{c}");
        assert!(!c.to_string().contains("ghp_new_token_value"));
        let stored = poblysh_connectors::db::repo::connections::credentials(&node.services.db, &node.services.keys, t, cid)
            .await.unwrap().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["token"], "the secret removed, the token replaced");
        assert_eq!(stored["token"].expose_secret(), "ghp_new_token_value");
        assert_eq!(cursors::load(&node.services.db, t, cid).await.unwrap(), before, "checkpoints kept");
        // The next sync calls with the new token.
        let (status, _) = node.api("POST", "/sync/github", Some(t), Some(json!({}))).await;
        assert!(status < 300);
        drain(&node).await;
        let last = server.received_requests().await.unwrap().pop().unwrap();
        assert_eq!(last.headers.get("authorization").unwrap(), "Bearer ghp_new_token_value");

        // Checked like on create; nothing changes when it fails.
        let (status, bad) = patch(json!({"tokn": "x"})).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(bad["details"]["errors"][0]["field"], "credentials.tokn", "{bad}");
        let (status, bad) = patch(json!({"token": 7})).await;
        assert_eq!(status, 400, "{bad}");
        let (status, _) = node.api("PATCH", &format!("/connections/{id}"), Some(t),
            Some(json!({"credentials": {"token": "ghp_third"}, "name": "bad\0label"}))).await;
        assert_eq!(status, 400, "a bad label stores no credentials either");
        let stored = poblysh_connectors::db::repo::connections::credentials(&node.services.db, &node.services.keys, t, cid)
            .await.unwrap().unwrap();
        assert_eq!(stored["token"].expose_secret(), "ghp_new_token_value");
        // Another tenant's: 404.
        let other = TenantId::from_uuid(Uuid::now_v7());
        let (status, _) = node.api("PATCH", &format!("/connections/{id}"), Some(other), Some(json!({"credentials": {"token": "x"}}))).await;
        assert_eq!(status, 404);
    }
}

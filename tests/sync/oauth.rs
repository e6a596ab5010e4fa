//! OAuth 2.0 end to end against a mock authorization server: connect (authorize
//! URL with PKCE, callback, code exchange, tokens sealed, backfill enqueued),
//! state errors, refresh ahead of expiry and on 401, one refresh for ten
//! concurrent users of a connection across two nodes, a refresh answer without
//! a refresh token, and `invalid_grant` → `needs_reauth`. Token responses use
//! the shapes of RFC 6749 §5.1 (success) and §5.2 (error), its example values.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use poblysh_connectors::crypto::Binding;
use poblysh_connectors::db::repo::connections::{self, ACCESS_TOKEN, NewConnection, REFRESH_TOKEN};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::db::repo::oauth_states::{self, NewState};
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::oauth::TokenSet;
use poblysh_connectors::sync::{scheduler, tokens};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::fake::{Delta, Fake, PAT_BLOCK, Paging, descriptor};
use crate::sync::harness::{Backend, Node};

/// RFC 6749 §5.1's example token response.
pub const ACCESS: &str = "2YotnFZFEjr1zCsicMWpAA";
pub const REFRESH: &str = "tGzv3JOkF0XG5Qx2TlKWIA";
/// RFC 6749 §4.1.2's example authorization code.
const CODE: &str = "SplxlOBeZQQYbYS6WxSbIA";
const PUBLIC_URL: &str = "https://connectors.example.com";

pub fn token_response(access: &str, refresh: Option<&str>, expires_in: u64) -> ResponseTemplate {
    let mut body = json!({
        "access_token": access,
        "token_type": "example",
        "expires_in": expires_in,
        "example_parameter": "example_value",
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    ResponseTemplate::new(200)
        .insert_header("cache-control", "no-store")
        .set_body_json(body)
}

pub fn oauth_descriptor(id: &str, server: &str) -> String {
    let block = format!(
        r#"auth:
  method: oauth2
  config:
    authoriseUrl: "{server}/oauth/authorize"
    tokenUrl: "{server}/oauth/token"
    scopes: [issues:read, user:read]
    pkce: true
    credentialFields: []"#
    );
    descriptor(id, server, Delta::Cursor, Paging::Cursor).replace(PAT_BLOCK, &block)
}

struct Setup {
    node: Node,
    server: MockServer,
    fake: Fake,
}

async fn setup(backend: Backend) -> Setup {
    let node = Node::new(
        backend,
        true,
        &[
            ("POBLYSH_OAUTHY_CLIENT_ID", "s6BhdRkqt3"),
            ("POBLYSH_OAUTHY_CLIENT_SECRET", "7Fjfp0ZBr1KtDRbnfVdmIw"),
            ("POBLYSH_OTHER_CLIENT_ID", "other-client"),
            ("POBLYSH_OTHER_CLIENT_SECRET", "other-secret"),
            ("POBLYSH_PUBLIC_URL", PUBLIC_URL),
        ],
    )
    .await;
    let server = MockServer::start().await;
    node.register(&oauth_descriptor("oauthy", &server.uri()));
    let fake = Fake::default();
    fake.add(1, 0);
    fake.add(2, 1);
    Setup { node, server, fake }
}

/// A connection holding tokens, as if connected earlier.
pub async fn connected(
    node: &Node,
    tenant: TenantId,
    expires_in: chrono::Duration,
) -> ConnectionId {
    connections::create(
        &node.services.db,
        &node.services.keys,
        tenant,
        NewConnection {
            provider: "oauthy".into(),
            name: None,
            config: json!({}),
            credentials: Default::default(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("old-access"),
                refresh_token: Some(SecretString::from(REFRESH)),
                expires_at: Some(Utc::now() + expires_in),
                metadata: Default::default(),
            }),
        },
    )
    .await
    .unwrap()
    .id
}

fn open(node: &Node, tenant: TenantId, id: ConnectionId, field: &str, sealed: &[u8]) -> String {
    let plain = node
        .services
        .keys
        .open(
            sealed,
            Binding {
                tenant,
                record: id,
                field,
            },
        )
        .unwrap();
    String::from_utf8(plain).unwrap()
}

pub async fn stored_tokens(node: &Node, tenant: TenantId, id: ConnectionId) -> (String, String) {
    let row = connections::row(&node.services.db, tenant, id)
        .await
        .unwrap()
        .unwrap();
    (
        open(
            node,
            tenant,
            id,
            ACCESS_TOKEN,
            row.access_token.as_ref().unwrap(),
        ),
        open(
            node,
            tenant,
            id,
            REFRESH_TOKEN,
            row.refresh_token.as_ref().unwrap(),
        ),
    )
}

fn form(req: &Request) -> std::collections::BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

fn query(url: &url::Url) -> std::collections::BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The problem's text, for asserting on its message.
fn text(v: &Value) -> String {
    v.to_string()
}

crate::on_both! {
    async fn connect_end_to_end(backend) {
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let (status, started) = s.node.api("POST", "/connect/oauthy", Some(tenant),
            Some(json!({"name": "Acme issues"}))).await;
        assert_eq!(status, 200, "{started}");
        let state = started["state"].as_str().unwrap().to_owned();
        let url = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
        assert_eq!(format!("{}{}", &url[..url::Position::BeforePath], url.path()),
            format!("{}/oauth/authorize", s.server.uri()));
        let q = query(&url);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "s6BhdRkqt3");
        assert_eq!(q["redirect_uri"], format!("{PUBLIC_URL}/connect/oauthy/callback"));
        assert_eq!(q["state"], state);
        assert_eq!(q["scope"], "issues:read user:read");
        assert_eq!(q["code_challenge_method"], "S256");
        let challenge = q["code_challenge"].clone();
        assert_eq!(URL_SAFE_NO_PAD.decode(&challenge).unwrap().len(), 32);
        let expires: chrono::DateTime<Utc> = started["expires_at"].as_str().unwrap().parse().unwrap();
        assert!((expires - Utc::now() - chrono::Duration::minutes(10)).num_seconds().abs() < 30);

        // The exchange must carry the code, the same redirect URI, the client
        // and a verifier whose S256 is the challenge sent to the browser.
        let expected = challenge.clone();
        Mock::given(method("POST")).and(path("/oauth/token"))
            .and(move |req: &Request| {
                let f = form(req);
                f.get("grant_type").map(String::as_str) == Some("authorization_code")
                    && f.get("code").map(String::as_str) == Some(CODE)
                    && f.get("redirect_uri").map(String::as_str)
                        == Some(&*format!("{PUBLIC_URL}/connect/oauthy/callback"))
                    && f.get("client_id").map(String::as_str) == Some("s6BhdRkqt3")
                    && f.get("client_secret").map(String::as_str) == Some("7Fjfp0ZBr1KtDRbnfVdmIw")
                    && f.get("code_verifier").is_some_and(|v| {
                        URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == expected
                    })
            })
            .respond_with(token_response(ACCESS, Some(REFRESH), 3600))
            .expect(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items"))
            .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
            .respond_with(s.fake.clone()).expect(1).mount(&s.server).await;

        // The callback is public: the state is the credential.
        let (status, conn) = s.node.public("GET",
            &format!("/connect/oauthy/callback?code={CODE}&state={state}")).await;
        assert_eq!(status, 201, "{conn}");
        assert_eq!(conn["provider"], "oauthy");
        assert_eq!(conn["name"], "Acme issues");
        assert_eq!(conn["status"], "active");
        for secret in [ACCESS, REFRESH, "7Fjfp0ZBr1KtDRbnfVdmIw"] {
            assert!(!text(&conn).contains(secret), "{conn}");
        }
        let id = ConnectionId::from_uuid(conn["id"].as_str().unwrap().parse().unwrap());
        let row = connections::row(&s.node.services.db, tenant, id).await.unwrap().unwrap();
        let sealed = row.access_token.clone().unwrap();
        assert!(!sealed.windows(ACCESS.len()).any(|w| w == ACCESS.as_bytes()), "stored in the clear");
        assert_eq!(stored_tokens(&s.node, tenant, id).await, (ACCESS.to_owned(), REFRESH.to_owned()));
        let expires_at = row.expires_at.unwrap();
        assert!((expires_at - Utc::now() - chrono::Duration::seconds(3600)).num_seconds().abs() < 30);
        // Only the tenant that started the flow sees it.
        let (_, list) = s.node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"].as_array().unwrap().len(), 1, "{list}");
        let (_, other) = s.node.api("GET", "/connections", Some(TenantId::from_uuid(Uuid::now_v7())), None).await;
        assert_eq!(other["connections"].as_array().unwrap().len(), 0, "{other}");

        // The backfill was enqueued with the connection, and runs on the token.
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");

        // The state is single use.
        let (status, problem) = s.node.public("GET",
            &format!("/connect/oauthy/callback?code={CODE}&state={state}")).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("already used"), "{problem}");
        s.server.verify().await;
    }
}

crate::on_both! {
    async fn state_and_start_errors(backend) {
        let s = setup(backend).await;
        s.node.register(&oauth_descriptor("other", &s.server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let callback = |provider: &str, query: &str| format!("/connect/{provider}/callback?{query}");

        // Unknown and forged states.
        let (status, problem) = s.node.public("GET", &callback("oauthy", "code=c&state=forged")).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("unknown state"), "{problem}");
        // A state issued for another provider.
        let (_, started) = s.node.api("POST", "/connect/other", Some(tenant), None).await;
        let foreign = started["state"].as_str().unwrap();
        let (status, problem) = s.node.public("GET", &callback("oauthy", &format!("code=c&state={foreign}"))).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("another provider"), "{problem}");
        // An expired state.
        let (expired, _) = oauth_states::create(&s.node.services.db, &s.node.services.keys, NewState {
            tenant,
            provider: "oauthy".into(),
            verifier: None,
            redirect_uri: format!("{PUBLIC_URL}/connect/oauthy/callback"),
            name: None,
            config: json!({}),
            connection: None,
            ttl: chrono::Duration::minutes(10),
        }, Utc::now() - chrono::Duration::minutes(11)).await.unwrap();
        let (status, problem) = s.node.public("GET", &callback("oauthy", &format!("code=c&state={expired}"))).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("expired"), "{problem}");
        // Missing code; the user declined.
        let (status, _) = s.node.public("GET", &callback("oauthy", "state=x")).await;
        assert_eq!(status, 400);
        let (status, problem) = s.node.public("GET",
            &callback("oauthy", "error=access_denied&error_description=The+user+denied+access&state=x")).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("access_denied"), "{problem}");

        // The provider refuses the code: 400, and no connection appears.
        Mock::given(method("POST")).and(path("/oauth/token")).and(body_string_contains("code=reused"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
            .mount(&s.server).await;
        let (_, started) = s.node.api("POST", "/connect/oauthy", Some(tenant),
            Some(json!({"redirect_uri": "https://core.example/oauth/done"}))).await;
        let url = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
        assert_eq!(query(&url)["redirect_uri"], "https://core.example/oauth/done");
        let state = started["state"].as_str().unwrap();
        let (status, problem) = s.node.public("GET", &callback("oauthy", &format!("code=reused&state={state}"))).await;
        assert_eq!(status, 400, "{problem}");
        assert!(text(&problem).contains("invalid_grant"), "{problem}");
        // The token endpoint is down: 502.
        Mock::given(method("POST")).and(path("/oauth/token")).and(body_string_contains("code=down"))
            .respond_with(ResponseTemplate::new(503)).mount(&s.server).await;
        let (_, started) = s.node.api("POST", "/connect/oauthy", Some(tenant), None).await;
        let state = started["state"].as_str().unwrap();
        let (status, problem) = s.node.public("GET", &callback("oauthy", &format!("code=down&state={state}"))).await;
        assert_eq!(status, 502, "{problem}");
        let (_, list) = s.node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"].as_array().unwrap().len(), 0, "{list}");

        // Starting: bad redirect URI, a non-OAuth provider, an unknown one, no client.
        let (status, _) = s.node.api("POST", "/connect/oauthy", Some(tenant),
            Some(json!({"redirect_uri": "/relative"}))).await;
        assert_eq!(status, 400);
        s.node.register(&descriptor("patty", &s.server.uri(), Delta::Cursor, Paging::Cursor));
        let (status, problem) = s.node.api("POST", "/connect/patty", Some(tenant), None).await;
        assert_eq!(status, 400);
        assert!(text(&problem).contains("POST /connections"), "{problem}");
        let (status, _) = s.node.api("POST", "/connect/nope", Some(tenant), None).await;
        assert_eq!(status, 404);
        s.node.register(&oauth_descriptor("unconfigured", &s.server.uri()));
        let (status, problem) = s.node.api("POST", "/connect/unconfigured", Some(tenant), None).await;
        assert_eq!(status, 409);
        assert!(text(&problem).contains("POBLYSH_UNCONFIGURED_CLIENT_ID"), "{problem}");
        // Starting needs the operator.
        let (status, _) = s.node.public("POST", "/connect/oauthy").await;
        assert_eq!(status, 401);
    }
}

crate::on_both! {
    async fn refresh_ahead_of_expiry_keeps_the_refresh_token(backend) {
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // Expires in 2 minutes: inside the 5-minute window.
        let id = connected(&s.node, tenant, chrono::Duration::minutes(2)).await;
        // The answer has no refresh token: the old one stays.
        Mock::given(method("POST")).and(path("/oauth/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains(format!("refresh_token={REFRESH}")))
            .respond_with(token_response("new-access", None, 3600))
            .expect(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items"))
            .and(header("authorization", "Bearer new-access"))
            .respond_with(s.fake.clone()).expect(1).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, tenant, id, "oauthy").await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
        assert_eq!(stored_tokens(&s.node, tenant, id).await, ("new-access".to_owned(), REFRESH.to_owned()));
        s.server.verify().await;
    }
}

crate::on_both! {
    async fn a_401_refreshes_once_and_retries(backend) {
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // Fresh by its expiry, but revoked at the provider.
        let id = connected(&s.node, tenant, chrono::Duration::hours(1)).await;
        Mock::given(method("GET")).and(path("/items"))
            .and(header("authorization", "Bearer old-access"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})))
            .expect(1).mount(&s.server).await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(token_response("new-access", Some("rotated-refresh"), 3600))
            .expect(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items"))
            .and(header("authorization", "Bearer new-access"))
            .respond_with(s.fake.clone()).expect(1).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, tenant, id, "oauthy").await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!((report.state, report.signals), (JobState::Succeeded, 2), "{report:?}");
        assert_eq!(stored_tokens(&s.node, tenant, id).await, ("new-access".to_owned(), "rotated-refresh".to_owned()));
        s.server.verify().await;
    }
}

crate::on_both! {
    async fn ten_concurrent_users_on_two_nodes_cause_one_refresh(backend) {
        let s = setup(backend).await;
        // A second node on the same database: the lock must be in the database.
        let other = Node::on(&s.node.database_url, true, &[
            ("POBLYSH_OAUTHY_CLIENT_ID", "s6BhdRkqt3"),
            ("POBLYSH_OAUTHY_CLIENT_SECRET", "7Fjfp0ZBr1KtDRbnfVdmIw"),
        ]).await;
        other.register(&oauth_descriptor("oauthy", &s.server.uri()));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = connected(&s.node, tenant, chrono::Duration::seconds(30)).await;
        // Slow enough that every caller arrives while the refresh is in flight.
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(token_response("new-access", None, 3600).set_delay(Duration::from_millis(300)))
            .expect(1).mount(&s.server).await;
        // Every caller read the connection before anyone refreshed.
        let row = connections::stored(&s.node.services.db, tenant, id).await.unwrap().unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let node = if i % 2 == 0 { &s.node } else { &other };
            let services = std::sync::Arc::clone(&node.services);
            let row = row.clone();
            tasks.push(tokio::spawn(async move {
                let entry = services.registry.get("oauthy").unwrap();
                tokens::access_token(&services, entry.connector.as_ref(), &row, false, Utc::now())
                    .await
                    .map(|t| t.expose_secret().to_owned())
                    .map_err(|e| e.to_string())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "new-access");
        }
        s.server.verify().await;
        assert_eq!(stored_tokens(&s.node, tenant, id).await, ("new-access".to_owned(), REFRESH.to_owned()));
    }
}

crate::on_both! {
    async fn invalid_grant_marks_the_connection_needs_reauth(backend) {
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = connected(&s.node, tenant, chrono::Duration::minutes(1)).await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": "invalid_grant",
                "error_description": "The refresh token is invalid or expired",
            })))
            .expect(1).mount(&s.server).await;
        Mock::given(method("GET")).and(path("/items")).respond_with(s.fake.clone())
            .expect(0).mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, tenant, id, "oauthy").await.unwrap();
        let executor = s.node.executor("w");
        let report = executor.try_execute_next().await.unwrap().unwrap();
        // Not retried: authorizing again is the only way out.
        assert_eq!(report.state, JobState::Failed, "{report:?}");
        assert!(report.error.as_deref().unwrap().contains("authorize again"), "{report:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(executor.try_execute_next().await.unwrap().is_none());
        let (status, conn) = s.node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 200);
        assert_eq!(conn["status"], "needs_reauth", "{conn}");
        assert_eq!(conn["healthy"], false);
        assert!(conn["last_error"].as_str().unwrap().contains("invalid_grant"), "{conn}");
        let (_, list) = s.node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"][0]["status"], "needs_reauth", "{list}");
        s.server.verify().await;
    }
}

crate::on_both! {
    async fn the_test_route_runs_the_health_check(backend) {
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        s.node.register(&descriptor("patty", &s.server.uri(), Delta::Cursor, Paging::Cursor));
        let id = s.node.connection(tenant, "patty", &[("token", "tok-9")], json!({})).await;
        Mock::given(method("GET")).and(path("/health")).and(header("authorization", "Bearer tok-9"))
            .respond_with(ResponseTemplate::new(200)).up_to_n_times(1).mount(&s.server).await;
        let (status, result) = s.node.api("POST", &format!("/connections/{id}/test"), Some(tenant), None).await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["healthy"], true, "{result}");
        assert_eq!(result["status"], 200);
        let (_, conn) = s.node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!((conn["healthy"].clone(), conn["consecutive_failures"].clone()), (json!(true), json!(0)), "{conn}");
        assert!(conn["last_health_check"].is_string(), "{conn}");

        Mock::given(method("GET")).and(path("/health"))
            .respond_with(ResponseTemplate::new(401)).mount(&s.server).await;
        let (status, result) = s.node.api("POST", &format!("/connections/{id}/test"), Some(tenant), None).await;
        assert_eq!(status, 200);
        assert_eq!((result["healthy"].clone(), result["status"].clone()), (json!(false), json!(401)), "{result}");
        assert!(result["error"].as_str().unwrap().contains("expected 200"), "{result}");
        let (_, conn) = s.node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!((conn["healthy"].clone(), conn["consecutive_failures"].clone()), (json!(false), json!(1)), "{conn}");
        // Another tenant cannot test it.
        let (status, _) = s.node.api("POST", &format!("/connections/{id}/test"),
            Some(TenantId::from_uuid(Uuid::now_v7())), None).await;
        assert_eq!(status, 404);
    }
}

crate::on_both! {
    async fn a_token_endpoint_that_fails_otherwise_is_retried(backend) {
        // Not `invalid_grant`: the grant may still be good, so the job waits
        // for its next attempt instead of failing for good.
        let s = setup(backend).await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = connected(&s.node, tenant, chrono::Duration::minutes(1)).await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "temporarily_unavailable"})))
            .mount(&s.server).await;
        scheduler::enqueue_backfill(&s.node.services, tenant, id, "oauthy").await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Retrying, "{report:?}");
        let (_, conn) = s.node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(conn["status"], "active", "{conn}");
    }
}

crate::on_both! {
    async fn the_dashboard_connects_with_oauth_and_the_provider_sends_the_operator_back(backend) {
        let s = setup(backend).await;
        let t = Uuid::now_v7();
        let back = format!("{PUBLIC_URL}/ui/connect/oauthy/callback");
        let mut operator = crate::ui::Browser::new(&s.node);
        operator.sign_in(t).await;
        operator.get("/ui/connect/oauthy").await;
        let page = operator.post("/ui/connect/oauthy/oauth", &[("name", "Acme issues")]).await;
        assert_eq!(page.status, 200, "{}", page.body);
        // The link to the provider's authorization page.
        let at = page.body.find("data-testid=\"authorize\"").expect("a link to the provider");
        let start = page.body[..at].rfind("href=\"").unwrap() + 6;
        let href = page.body[start..].split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
        let url = url::Url::parse(&href).unwrap();
        let q = query(&url);
        assert_eq!(q["redirect_uri"], back, "the provider sends the operator back to the dashboard");
        let redirect = back.clone();
        Mock::given(method("POST")).and(path("/oauth/token"))
            .and(move |req: &Request| form(req).get("redirect_uri") == Some(&redirect))
            .respond_with(token_response(ACCESS, Some(REFRESH), 3600))
            .expect(1).mount(&s.server).await;
        // The redirect from the provider's site brings no dashboard cookie
        // (SameSite=Strict): the single-use state is what counts.
        let mut arriving = crate::ui::Browser::new(&s.node);
        let callback = format!("/ui/connect/oauthy/callback?code={CODE}&state={}", q["state"]);
        let done = arriving.get(&callback).await;
        assert_eq!(done.status, 200, "{}", done.body);
        let (_, list) = s.node.api("GET", "/connections", Some(TenantId::from_uuid(t)), None).await;
        let id = list["connections"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(list["connections"][0]["name"], "Acme issues");
        assert!(done.body.contains(&format!("href=\"/ui/connections/{id}\"")), "{}", done.body);
        // The link opens it in the operator's session.
        let opened = operator.get(&format!("/ui/connections/{id}")).await;
        assert_eq!(opened.status, 200);
        assert!(opened.body.contains("Acme issues"));
        // The state is used up.
        let again = arriving.get(&callback).await;
        assert_eq!(again.status, 400);
        assert!(again.body.contains("was not connected"), "{}", again.body);
    }
}

crate::on_both! {
    async fn a_connection_that_needs_reauth_is_reauthorized_in_place(backend) {
        use poblysh_connectors::db::repo::cursors;
        let s = setup(backend).await;
        let t = Uuid::now_v7();
        let tenant = TenantId::from_uuid(t);
        let id = connected(&s.node, tenant, chrono::Duration::hours(1)).await;
        let mut checkpoints = poblysh_connectors::domain::Checkpoints::new();
        checkpoints.insert(poblysh_connectors::domain::NO_PARTITION.into(), Some("41".into()));
        cursors::save(s.node.services.db.conn(), tenant, id, &checkpoints, Utc::now()).await.unwrap();
        connections::lock(&s.node.services.db, tenant, id).await.unwrap().unwrap()
            .needs_reauth("invalid_grant: the refresh token was revoked", Utc::now()).await.unwrap();

        // Its page offers to re-authorize; the flow runs for this connection.
        let mut operator = crate::ui::Browser::new(&s.node);
        operator.sign_in(t).await;
        let page = operator.get(&format!("/ui/connections/{id}")).await;
        assert!(page.body.contains("data-testid=\"reauthorize\""), "{}", page.body);
        let started = operator.post(&format!("/ui/connections/{id}/reauthorize"), &[]).await;
        assert_eq!(started.status, 200, "{}", started.body);
        let at = started.body.find("data-testid=\"authorize\"").unwrap();
        let from = started.body[..at].rfind("href=\"").unwrap() + 6;
        let href = started.body[from..].split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
        let state = query(&url::Url::parse(&href).unwrap())["state"].clone();
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(token_response(ACCESS, Some(REFRESH), 3600))
            .expect(1).mount(&s.server).await;
        let done = crate::ui::Browser::new(&s.node)
            .get(&format!("/ui/connect/oauthy/callback?code={CODE}&state={state}")).await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("re-authorized"), "{}", done.body);

        // The same connection: active, its new tokens, its checkpoint kept; no second one.
        let (_, list) = s.node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"].as_array().unwrap().len(), 1);
        let c = &list["connections"][0];
        assert_eq!((c["id"].as_str().unwrap(), &c["status"], &c["last_error"]), (id.to_string().as_str(), &json!("active"), &Value::Null));
        assert_eq!(stored_tokens(&s.node, tenant, id).await, (ACCESS.to_owned(), REFRESH.to_owned()));
        assert_eq!(cursors::load(&s.node.services.db, tenant, id).await.unwrap(), checkpoints);
        // The next incremental sync sends the old checkpoint, with the new token.
        Mock::given(method("GET")).and(path("/items"))
            .and(wiremock::matchers::query_param("after_seq", "41"))
            .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
            .respond_with(s.fake.clone()).expect(1..).mount(&s.server).await;
        poblysh_connectors::db::repo::jobs::enqueue(&s.node.services.db, tenant, id, "oauthy",
            poblysh_connectors::db::repo::jobs::JobType::Incremental,
            poblysh_connectors::db::repo::jobs::Trigger::Manual).await.unwrap();
        let report = s.node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Succeeded, "{report:?}");
        s.server.verify().await;

        // Through the API: only the tenant's own connection, of this provider,
        // without new config.
        let other = TenantId::from_uuid(Uuid::now_v7());
        let (status, _) = s.node.api("POST", "/connect/oauthy", Some(other), Some(json!({"connection_id": id.to_string()}))).await;
        assert_eq!(status, 404);
        let (status, body) = s.node.api("POST", "/connect/oauthy", Some(tenant),
            Some(json!({"connection_id": id.to_string(), "config": {"x": 1}}))).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = s.node.api("POST", "/connect/oauthy", Some(tenant), Some(json!({"connection_id": id.to_string()}))).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["authorize_url"].as_str().unwrap().contains("state="));
    }
}

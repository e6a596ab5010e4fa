//! The dashboard's safety, over HTTP in process (SQLite and PostgreSQL):
//! every state-changing request needs its session's CSRF token; sessions end
//! when idle, after their absolute lifetime and on sign-out; sign-in attempts
//! are limited; every answer carries the security headers and the session
//! cookie its flags; no stored (or echoed) secret appears in any page.

use axum::body::Body;
use chrono::{Duration, Utc};
use http::Request;
use poblysh_connectors::domain::{Ambient, ManualClock, OsRandom, TenantId};
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Answer, Browser};
use crate::sync::harness::{Backend, Node};
use crate::sync::monitoring::{create, github_at};

use crate::sync::harness::TOKEN;

fn location(a: &Answer) -> &str {
    a.headers
        .get("location")
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

/// A GitHub connection holding a token and a webhook secret; its id.
async fn connection(node: &Node, tenant: TenantId, token: &str, base: &str) -> String {
    let credentials = json!({"token": token, "webhookSecret": "whsec-stored-secret-value"});
    create(node, tenant, credentials, "octo-org/hello", base).await
}

crate::on_both! {
    async fn every_state_changing_request_needs_the_sessions_csrf_token(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&github_at("https://api.github.com"));
        let t = Uuid::now_v7();
        let id = connection(&node, TenantId::from_uuid(t), "ghp_stored_secret_value", "https://api.github.com").await;
        let posts = [
            "/ui/login".to_owned(), "/ui/logout".to_owned(), "/ui/tenant".to_owned(),
            "/ui/connect/github".to_owned(), "/ui/connect/github/test".to_owned(), "/ui/connect/github/oauth".to_owned(),
            format!("/ui/connections/{id}/enabled"), format!("/ui/connections/{id}/test"),
            format!("/ui/connections/{id}/sync"), format!("/ui/connections/{id}/delete"),
        ];
        let mut stranger = Browser::new(&node);
        let mut signed = Browser::new(&node);
        signed.sign_in(t).await;
        for route in &posts {
            // No session at all; a session without the token; a wrong token.
            let a = stranger.request("POST", route, Some(&[("enabled", "false")])).await;
            assert_eq!(a.status, 403, "{route} without a session");
            let a = signed.request("POST", route, Some(&[("enabled", "false")])).await;
            assert_eq!(a.status, 403, "{route} without the token");
            let a = signed.request("POST", route, Some(&[("_csrf", "0123456789abcdef0123456789abcdef0123456789a"), ("enabled", "false")])).await;
            assert_eq!(a.status, 403, "{route} with a wrong token");
            assert!(a.body.contains("expired or did not come from this dashboard"), "{}", a.body);
        }
        // Nothing happened to the connection; with the token the same request works.
        let (status, c) = node.api("GET", &format!("/connections/{id}"), Some(TenantId::from_uuid(t)), None).await;
        assert_eq!((status, &c["enabled"]), (200, &json!(true)));
        let a = signed.post(&format!("/ui/connections/{id}/enabled"), &[("enabled", "false")]).await;
        assert_eq!((a.status, location(&a)), (303, format!("/ui/connections/{id}?done=disabled").as_str()));
        let (_, c) = node.api("GET", &format!("/connections/{id}"), Some(TenantId::from_uuid(t)), None).await;
        assert_eq!(c["enabled"], false);
        // The token header works as the form field does (the page's script uses it).
        let req = Request::builder().method("POST").uri(format!("/ui/connections/{id}/enabled"))
            .header("cookie", format!("poblysh_session={}", signed.cookie.clone().unwrap()))
            .header("x-csrf-token", signed.csrf.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("enabled=true")).unwrap();
        let (status, _, _) = node.send(req).await;
        assert_eq!(status, 303);
        // Pages need a signed-in session.
        for page in ["/ui/connections", "/ui/catalogue", "/ui/tenant", &format!("/ui/connections/{id}")] {
            let a = stranger.get(page).await;
            assert_eq!((a.status, location(&a)), (303, "/ui/login"), "{page}");
        }
    }
}

crate::on_both! {
    async fn no_stored_or_echoed_secret_appears_in_any_page(backend) {
        let github = MockServer::start().await;
        // A provider that echoes the credential it was sent (some do, in errors).
        Mock::given(method("GET")).and(path("/rate_limit"))
            .respond_with(|req: &wiremock::Request| {
                let auth = req.headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                ResponseTemplate::new(401).set_body_json(json!({"message": format!("Bad credentials: {auth}")}))
            })
            .mount(&github).await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&github_at("https://api.github.com"));
        let t = Uuid::now_v7();
        let id = connection(&node, TenantId::from_uuid(t), "ghp_stored_secret_value", &github.uri()).await;
        let mut b = Browser::new(&node);
        b.sign_in(t).await;
        // The stored connection's own test (GitHub echoes its token back).
        let a = b.post(&format!("/ui/connections/{id}/test"), &[]).await;
        assert_eq!(a.status, 303);
        let mut pages = Vec::new();
        for page in [
            "/ui/catalogue".to_owned(), "/ui/connections".to_owned(), format!("/ui/connections/{id}"),
            format!("/ui/connections/{id}/live"), format!("/ui/connections/{id}/delete"),
            "/ui/connect/github".to_owned(), "/ui/tenant".to_owned(),
        ] {
            let a = b.get(&page).await;
            assert_eq!(a.status, 200, "{page}: {}", a.body);
            pages.push((page, a.body));
        }
        assert!(pages[2].1.contains("Bad credentials"), "the error is shown: {}", pages[2].1);
        assert!(pages[2].1.contains("Personal access token: set"), "a stored credential shows as set");
        // A test of values not stored, whose secret the provider echoes too.
        let fields = [("credentials.token", "ghp_typed_secret_value"), ("config.repos", "octo-org/hello"), ("config.baseUrl", &github.uri())];
        let a = b.post("/ui/connect/github/test", &fields).await;
        assert!(a.body.contains("Bad credentials"), "{}", a.body);
        pages.push(("test".into(), a.body));
        let a = b.post("/ui/connect/github", &[("credentials.token", "ghp_typed_secret_value"), ("config.repos", "")]).await;
        assert_eq!(a.status, 400);
        assert!(a.body.contains("required"), "the API's message next to the field: {}", a.body);
        pages.push(("invalid form".into(), a.body));
        for (page, body) in &pages {
            for secret in ["ghp_stored_secret_value", "whsec-stored-secret-value", "ghp_typed_secret_value", TOKEN] {
                assert!(!body.contains(secret), "{page} shows a secret");
            }
        }
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_cookie_flags() {
    for (public, secure) in [
        (None, false),
        (Some("https://connectors.example.com"), true),
    ] {
        let env: Vec<(&str, &str)> = public
            .map(|p| vec![("POBLYSH_PUBLIC_URL", p)])
            .unwrap_or_default();
        let node = Node::new(Backend::Sqlite, true, &env).await;
        let mut b = Browser::new(&node);
        let flags = |cookie: &str, path: &str| {
            for flag in ["HttpOnly", "SameSite=Strict", &format!("Path={path}")] {
                assert!(cookie.contains(flag), "{cookie}");
            }
            assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
        };
        // The sign-in form stores nothing: its CSRF token is a cookie of its own.
        let login = b.get("/ui/login").await;
        let cookies: Vec<String> = login
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        assert!(
            cookies[0].starts_with(&format!("poblysh_login={};", b.csrf)),
            "{cookies:?}"
        );
        flags(&cookies[0], "/ui/login");
        // A session id planted before signing in is not the one signed in.
        b.cookie = Some("AAAAAAAAAAAAAAAAAAAAAA".into());
        let signed_in = b.post("/ui/login", &[("token", TOKEN)]).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        let session = signed_in
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("poblysh_session="))
            .expect("a session cookie");
        flags(&session, "/ui");
        assert!(!session.contains("AAAAAAAAAAAAAAAAAAAAAA"), "{session}");
        assert!(b.login.is_none(), "the sign-in cookie is cleared");
        for answer in [
            login,
            signed_in,
            b.get("/ui/tenant").await,
            b.get("/ui/assets/app.js").await,
            b.get("/ui/nope").await,
            b.get("/ui/connections/not-a-uuid").await,
        ] {
            let csp = answer
                .headers
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(
                csp.contains("script-src 'self'")
                    && csp.contains("frame-ancestors 'none'")
                    && !csp.contains("unsafe-inline"),
                "{csp}"
            );
            assert_eq!(answer.headers.get("x-frame-options").unwrap(), "DENY");
            assert_eq!(
                answer.headers.get("x-content-type-options").unwrap(),
                "nosniff"
            );
        }
        // No inline script anywhere: every <script> has a src.
        let page = b.get("/ui/tenant").await;
        assert!(
            page.body
                .contains("<script type=\"module\" src=\"/ui/assets/app.js")
        );
        assert_eq!(
            page.body.matches("<script").count(),
            page.body.matches("<script type=\"module\" src=").count()
        );
    }
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_client() {
    use sea_orm::{ConnectionTrait, Statement};
    let node = Node::new(Backend::Sqlite, true, &[]).await;
    let sessions = || async {
        let db = node.services.db.conn();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM ui_sessions",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    // Anyone may open the sign-in form; that stores nothing.
    for _ in 0..20 {
        Browser::new(&node).get("/ui/login").await;
    }
    assert_eq!(sessions().await, 0);
    let mut b = Browser::new(&node);
    b.get("/ui/login").await;
    for _ in 0..5 {
        let a = b
            .post("/ui/login", &[("token", "wrong-token-wrong-token")])
            .await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.body.contains("not an operator token"));
    }
    let a = b.post("/ui/login", &[("token", TOKEN)]).await;
    assert_eq!(a.status, 429, "even the right token waits: {}", a.body);
    assert!(a.body.contains("Too many sign-in attempts"));
    assert_eq!(sessions().await, 0, "refused sign-ins store nothing");
}

#[tokio::test]
async fn sessions_end_when_idle_after_their_lifetime_and_on_sign_out() {
    let clock = ManualClock::new(Utc::now());
    let ambient = Ambient {
        clock: std::sync::Arc::new(clock.clone()),
        random: std::sync::Arc::new(OsRandom),
    };
    let node = Node::with(Backend::Sqlite, &[], |b| b.ambient(ambient)).await;
    let t = Uuid::now_v7();
    let mut b = Browser::new(&node);
    b.sign_in(t).await;
    // Idle for 31 minutes: signed out.
    clock.advance(Duration::minutes(31));
    let a = b.get("/ui/connections").await;
    assert_eq!((a.status, location(&a)), (303, "/ui/login"));
    // Busy (a request every 20 minutes), but 12 hours after signing in: signed out.
    b.sign_in(t).await;
    for _ in 0..35 {
        clock.advance(Duration::minutes(20));
        let a = b.get("/ui/connections").await;
        assert_eq!(a.status, 200, "still signed in");
    }
    clock.advance(Duration::minutes(20));
    let a = b.get("/ui/connections").await;
    assert_eq!((a.status, location(&a)), (303, "/ui/login"));
    // Signing out ends it at once.
    b.sign_in(t).await;
    b.post("/ui/logout", &[]).await;
    let a = b.get("/ui/connections").await;
    assert_eq!((a.status, location(&a)), (303, "/ui/login"));
}

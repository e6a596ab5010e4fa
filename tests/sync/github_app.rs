//! GitHub App auth (`jwt_exchange`): the app's RS256 JWT (`iss` = the app id,
//! valid at most 10 minutes) is exchanged at the installation's
//! `access_tokens` endpoint on the mock, the installation token is used as a
//! bearer and reused while it has more than 5 minutes left, then exchanged
//! again, once.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::Node;

const APP_ID: &str = "123456";
const TOKEN_PATH: &str = "/app/installations/42/access_tokens";

/// The documented answer (`tests/webhooks/samples/`), its token and expiry
/// set for this run (the example's expired in 2016).
fn answer(token: &str, expires_at: DateTime<Utc>) -> Value {
    let mut body: Value = serde_json::from_str(include_str!(
        "../webhooks/samples/github.rest.apps.create_installation_access_token.json"
    ))
    .unwrap();
    body["token"] = json!(token);
    body["expires_at"] = json!(expires_at.to_rfc3339_opts(SecondsFormat::Secs, true));
    body
}

/// The claims of the app JWT a request carried, checked against the app's
/// public key.
fn app_claims(request: &Request) -> Value {
    let auth = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let jwt = auth.strip_prefix("Bearer ").expect(auth);
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_str(include_str!("../keys/test-rsa-a.jwk.json")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&[APP_ID]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap_or_else(|e| panic!("the app JWT does not verify: {e}"))
        .claims
}

crate::on_both! {
    async fn github_app_installation_tokens_are_exchanged_reused_and_renewed_once(backend) {
        let server = MockServer::start().await;
        let now = Utc::now();
        // First answer: a token with 4 minutes left (inside the 5-minute
        // margin, so the next run exchanges again); then one for an hour.
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .and(header("accept", "application/vnd.github+json"))
            .respond_with(ResponseTemplate::new(201).set_body_json(answer("ghs_first", now + Duration::minutes(4))))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(201).set_body_json(answer("ghs_second", now + Duration::hours(1))))
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repos/octo-org/hello/issues"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&server)
            .await;

        let pem = std::fs::read_to_string(format!("{}/tests/keys/test-rsa-a.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let env = [("POBLYSH_GITHUB_APP_ID", APP_ID), ("POBLYSH_GITHUB_PRIVATE_KEY", pem.as_str())];
        let node = Node::new(backend, true, &env).await;
        // The app key signs for the descriptor's own API only (a tenant's
        // `baseUrl` is refused below): the descriptor points at the mock.
        let yaml = std::fs::read_to_string(format!("{}/descriptors/github.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        node.register(&yaml.replace("baseUrl: https://api.github.com", &format!("baseUrl: {}", server.uri())));
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let config = json!({"repos": ["octo-org/hello"], "installationId": "42"});
        let conn = node.connection(tenant, "github", &[], config).await;
        let executor = node.executor("w");
        let run = |n: usize| {
            let node = &node;
            let executor = &executor;
            async move {
                if n == 0 {
                    assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "github").await.unwrap());
                } else {
                    let (status, body) = node.api("POST", "/sync/github", Some(tenant), Some(json!({}))).await;
                    assert!(status < 300, "{body}");
                }
                let report = executor.try_execute_next().await.unwrap().unwrap();
                assert_eq!(report.state, JobState::Succeeded, "run {n}: {report:?}");
            }
        };
        let requests = || async { server.received_requests().await.unwrap() };
        let exchanges = |r: &[Request]| r.iter().filter(|r| r.url.path() == TOKEN_PATH).cloned().collect::<Vec<_>>();
        let bearer_of_last_read = |r: &[Request]| {
            r.iter().rev().find(|r| !r.url.path().starts_with("/app/")).unwrap().headers.get("authorization").unwrap().to_str().unwrap().to_owned()
        };

        run(0).await;
        let seen = requests().await;
        let first = exchanges(&seen);
        assert_eq!(first.len(), 1, "one exchange");
        let claims = app_claims(&first[0]);
        let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
        assert_eq!(claims["iss"], APP_ID);
        assert!(exp - Utc::now().timestamp() <= 600, "exp at most 10 minutes ahead: {claims}");
        assert!(exp - iat <= 660 && iat <= Utc::now().timestamp(), "{claims}");
        assert_eq!(bearer_of_last_read(&seen), "Bearer ghs_first");

        // The stored token has 4 minutes left: the next run exchanges again, once.
        run(1).await;
        let seen = requests().await;
        assert_eq!(exchanges(&seen).len(), 2);
        assert_eq!(bearer_of_last_read(&seen), "Bearer ghs_second");
        // Now it has an hour: reused, no exchange.
        run(2).await;
        let seen = requests().await;
        assert_eq!(exchanges(&seen).len(), 2, "the token is reused");
        assert_eq!(bearer_of_last_read(&seen), "Bearer ghs_second");
        // Another installation: the stored token is forgotten and the next
        // run exchanges for the new one.
        Mock::given(method("POST"))
            .and(path("/app/installations/43/access_tokens"))
            .respond_with(ResponseTemplate::new(201).set_body_json(answer("ghs_third", now + Duration::hours(1))))
            .mount(&server)
            .await;
        let patch = json!({"config": {"repos": ["octo-org/hello"], "installationId": "43"}});
        let (status, body) = node.api("PATCH", &format!("/connections/{conn}"), Some(tenant), Some(patch)).await;
        assert_eq!(status, 200, "{body}");
        run(3).await;
        let seen = requests().await;
        assert!(seen.iter().any(|r| r.url.path() == "/app/installations/43/access_tokens"));
        assert_eq!(bearer_of_last_read(&seen), "Bearer ghs_third");
        // The installation token is stored sealed, never in the clear.
        let row = poblysh_connectors::db::repo::connections::row(&node.services.db, tenant, conn).await.unwrap().unwrap();
        let text = format!("{row:?}");
        assert!(!text.contains("ghs_third"), "{text}");
    }
}

crate::on_both! {
    async fn a_personal_access_token_is_used_as_it_is_and_nothing_is_exchanged(backend) {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/octo-org/hello/issues"))
            .and(header("authorization", "Bearer ghp_personal"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&server)
            .await;
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string(format!("{}/descriptors/github.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let config = json!({"repos": ["octo-org/hello"], "baseUrl": server.uri()});
        let conn = node.connection(tenant, "github", &[("token", "ghp_personal")], config).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "github").await.unwrap());
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Succeeded, "{report:?}");
        let seen = server.received_requests().await.unwrap();
        assert!(!seen.is_empty() && seen.iter().all(|r| r.url.path() != TOKEN_PATH));
    }
}

crate::on_both! {
    async fn without_the_app_configured_the_sync_fails_saying_what_to_set(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string(format!("{}/descriptors/github.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let config = json!({"repos": ["octo-org/hello"], "installationId": "42"});
        let conn = node.connection(tenant, "github", &[], config).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "github").await.unwrap());
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Failed, "{report:?}");
        let error = format!("{report:?}");
        assert!(error.contains("POBLYSH_GITHUB_APP_ID") && error.contains("POBLYSH_GITHUB_PRIVATE_KEY"), "{error}");
    }
}

crate::on_both! {
    async fn the_app_key_never_signs_for_a_host_or_path_a_tenant_chose(backend) {
        let server = MockServer::start().await;
        let pem = std::fs::read_to_string(format!("{}/tests/keys/test-rsa-a.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let env = [("POBLYSH_GITHUB_APP_ID", APP_ID), ("POBLYSH_GITHUB_PRIVATE_KEY", pem.as_str())];
        let node = Node::new(backend, true, &env).await;
        node.register(&std::fs::read_to_string(format!("{}/descriptors/github.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        // A connection whose config names another API host: no exchange, the
        // sync fails saying why, and the host never sees a request.
        let config = json!({"repos": ["octo-org/hello"], "installationId": "42", "baseUrl": server.uri()});
        let conn = node.connection(tenant, "github", &[], config).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "github").await.unwrap());
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Failed, "{report:?}");
        assert!(format!("{report:?}").contains("its own `appId` and `privateKey`"), "{report:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
        // Half a key of its own (the app id, which is no secret) does not get
        // the service's private key to sign for that host either.
        let config = json!({"repos": ["octo-org/hello"], "installationId": "42", "baseUrl": server.uri()});
        let conn = node.connection(tenant, "github", &[("appId", APP_ID)], config).await;
        assert!(scheduler::enqueue_backfill(&node.services, tenant, conn, "github").await.unwrap());
        let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
        assert_eq!(report.state, JobState::Failed, "{report:?}");
        assert!(server.received_requests().await.unwrap().is_empty());
        // An installation id that is not one path segment is refused by the API.
        for id in ["../../app/hook/config", "42?x=1", "4 2"] {
            let body = json!({"provider": "github", "config": {"repos": ["o/r"], "installationId": id}});
            let (status, problem) = node.api("POST", "/connections", Some(tenant), Some(body)).await;
            assert_eq!(status, 400, "{id}: {problem}");
            assert_eq!(problem["details"]["errors"][0]["field"], "config.installationId", "{problem}");
        }
    }
}

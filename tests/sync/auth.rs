//! Each auth method is applied as specified: asserted on the request the mock
//! provider received.

use base64::Engine;
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, Request};

use crate::sync::fake::{Delta, Fake, PAT_BLOCK, Paging, descriptor};

/// Adds the request matchers one auth case expects.
type Matcher = Box<dyn Fn(MockBuilder) -> MockBuilder>;
/// One auth case: name, descriptor auth block, credentials, expected request shape.
type Case = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Matcher,
);

fn field(key: &str) -> String {
    format!("{{key: {key}, label: {key}, type: password, required: true}}")
}

crate::on_both! {
    async fn every_method(backend) {
        let cases: Vec<Case> = vec![
            ("api_key_header",
             format!("auth: {{method: api_key, config: {{delivery: header, paramName: X-Api-Key, credentialFields: [{}]}}}}", field("key")),
             vec![("key", "k-123")],
             Box::new(|m| m.and(header("x-api-key", "k-123")))),
            ("api_key_query",
             format!("auth: {{method: api_key, config: {{delivery: query, paramName: api_key, credentialFields: [{}]}}}}", field("key")),
             vec![("key", "k-456")],
             Box::new(|m| m.and(query_param("api_key", "k-456")))),
            ("api_key_bearer",
             format!("auth: {{method: api_key, config: {{delivery: bearer, paramName: '', credentialFields: [{}]}}}}", field("key")),
             vec![("key", "k-789")],
             Box::new(|m| m.and(header("authorization", "Bearer k-789")))),
            ("api_key_extra_params",
             format!("auth: {{method: api_key, config: {{delivery: query, paramName: key, credentialKey: key, credentialFields: [{}, {}], extraParams: [{{delivery: query, paramName: token, credentialKey: token}}]}}}}", field("key"), field("token")),
             vec![("key", "app-key"), ("token", "user-token")],
             Box::new(|m| m.and(query_param("key", "app-key")).and(query_param("token", "user-token")))),
            ("pat_header",
             format!("auth: {{method: pat, config: {{delivery: header, paramName: Authorization, prefix: 'token ', credentialFields: [{}]}}}}", field("pat")),
             vec![("pat", "ghp_abc")],
             Box::new(|m| m.and(header("authorization", "token ghp_abc")))),
            ("pat_bearer", PAT_BLOCK.to_owned(), vec![("token", "tok-1")],
             Box::new(|m| m.and(header("authorization", "Bearer tok-1")))),
            ("basic",
             format!("auth: {{method: basic, config: {{credentialFields: [{}, {}]}}}}", field("username"), field("password")),
             vec![("username", "me@acme.io"), ("password", "api-token")],
             Box::new(|m| m.and(header(
                 "authorization",
                 format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("me@acme.io:api-token")).as_str(),
             )))),
            ("none", "auth: {method: none}".to_owned(), vec![],
             Box::new(|m| m.and(|req: &Request| !req.headers.contains_key("authorization")))),
        ];
        let node = crate::sync::harness::Node::new(backend, true, &[]).await;
        for (name, auth, credentials, matcher) in cases {
            let server = MockServer::start().await;
            let fake = Fake::default();
            fake.add(1, 0);
            matcher(Mock::given(method("GET")).and(path("/items")))
                .respond_with(fake.clone())
                .expect(1)
                .mount(&server)
                .await;
            let id = format!("auth_{name}");
            let yaml = descriptor(&id, &server.uri(), Delta::Cursor, Paging::Cursor).replace(PAT_BLOCK, &auth);
            node.register(&yaml);
            let tenant = TenantId::from_uuid(Uuid::now_v7());
            let conn = node.connection(tenant, &id, &credentials, json!({})).await;
            scheduler::enqueue_backfill(&node.services, tenant, conn, &id).await.unwrap();
            let report = node.executor("w").try_execute_next().await.unwrap().unwrap();
            assert_eq!((report.state, report.signals), (JobState::Succeeded, 1), "{name}: {report:?}");
            server.verify().await;
        }
    }
}

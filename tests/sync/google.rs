//! What the Google connector tests share: a node whose every Google endpoint
//! points at one wiremock server (the OAuth token endpoint mounted here:
//! `code-<x>` and `refresh-<x>` become `tok-<x>`, and Google refuses the
//! grant of `revoked`), on a manual clock; connecting through the real OAuth
//! flow; running the queue dry; reading a tenant's Signals.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::Loader;
use poblysh_connectors::domain::{Ambient, ConnectionId, ManualClock, SeededRandom, TenantId};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sync::harness::{Backend, Node};
pub use crate::sync::harness::{drain, get_connection as connection, signals};

pub const CLIENT_ID: &str = "google-client-id";
pub const CLIENT_SECRET: &str = "google-client-secret";
/// `POBLYSH_PUBLIC_URL` of the node.
pub const PUBLIC_URL: &str = "https://connectors.example.com";

pub fn t0() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

/// A node serving the Google connector `provider` (its shipped descriptor).
pub struct Google {
    pub node: Node,
    pub clock: ManualClock,
    pub server: MockServer,
}

/// Starts the mock and the node (`env` on top of the Google settings).
pub async fn start(backend: Backend, provider: &str, env: &[(&str, &str)]) -> Google {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(|req: &Request| {
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
            let who = match form["grant_type"].as_str() {
                "authorization_code" => form["code"].strip_prefix("code-"),
                "refresh_token" => form["refresh_token"]
                    .strip_prefix("refresh-")
                    .filter(|w| *w != "revoked"),
                _ => None,
            };
            let Some(who) = who else {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
            };
            ResponseTemplate::new(200).set_body_json(json!({
                "access_token": format!("tok-{who}"),
                "expires_in": 3599,
                "refresh_token": format!("refresh-{who}"),
                "token_type": "Bearer"
            }))
        })
        .mount(&server)
        .await;
    let clock = ManualClock::new(t0());
    let ambient = Ambient {
        clock: Arc::new(clock.clone()),
        random: Arc::new(SeededRandom::new(11)),
    };
    let uri = server.uri();
    let urls = [
        format!("{uri}/auth"),
        format!("{uri}/token"),
        format!("{uri}/oauth2/v3/certs"),
    ];
    let mut vars = vec![
        ("POBLYSH_GOOGLE_CLIENT_ID", CLIENT_ID),
        ("POBLYSH_GOOGLE_CLIENT_SECRET", CLIENT_SECRET),
        ("POBLYSH_GOOGLE_AUTHORIZE_URL", urls[0].as_str()),
        ("POBLYSH_GOOGLE_TOKEN_URL", urls[1].as_str()),
        ("POBLYSH_GOOGLE_GMAIL_URL", uri.as_str()),
        ("POBLYSH_GOOGLE_API_URL", uri.as_str()),
        ("POBLYSH_GOOGLE_JWKS_URL", urls[2].as_str()),
        ("POBLYSH_PUBLIC_URL", PUBLIC_URL),
    ];
    vars.extend_from_slice(env);
    let file = format!("{}/descriptors/{provider}.yaml", env!("CARGO_MANIFEST_DIR"));
    let compiled = Loader::with_natives(&["gmail", "google_drive", "google_calendar"])
        .load_file(std::path::Path::new(&file))
        .unwrap_or_else(|d| panic!("{d:#?}"));
    let node = Node::with(backend, &vars, |b| {
        b.ambient(ambient).builtins(vec![compiled])
    })
    .await;
    Google {
        node,
        clock,
        server,
    }
}

/// Connects `who`'s account to `provider` for `tenant` through the OAuth
/// flow; returns the connection and the consent URL's query.
pub async fn connect(
    node: &Node,
    provider: &str,
    tenant: TenantId,
    who: &str,
    config: Value,
) -> (ConnectionId, BTreeMap<String, String>) {
    let (status, started) = node
        .api(
            "POST",
            &format!("/connect/{provider}"),
            Some(tenant),
            Some(json!({"config": config})),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let url = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
    let consent: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let callback = format!(
        "/connect/{provider}/callback?code=code-{who}&state={}",
        consent["state"]
    );
    let (status, created) = node.public("GET", &callback).await;
    assert_eq!(status, 201, "{created}");
    let id = ConnectionId::from_uuid(created["id"].as_str().unwrap().parse().unwrap());
    (id, consent)
}

/// Jobs of `types` that succeeded, in order.
pub fn ran(types: &[&str]) -> Vec<(String, JobState)> {
    types
        .iter()
        .map(|t| ((*t).to_owned(), JobState::Succeeded))
        .collect()
}

/// A query parameter of a request.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

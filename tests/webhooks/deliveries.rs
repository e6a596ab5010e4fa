//! For every webhook provider, its real samples (`fixtures/<provider>/`, from
//! `../shared/provider-samples/`) posted over the router, signed the way the
//! provider signs: the Signal kinds of the sample's golden file appear in
//! `GET /signals` for the right tenant and nothing for another tenant that has
//! a connection of its own. Handshakes (Slack `url_verification`, Trello's
//! `HEAD`, Google's `sync` message) answer without Signals.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use poblysh_connectors::db::repo::connections::{self, NewConnection};
use poblysh_connectors::domain::{ConnectionId, TenantId};
use poblysh_connectors::engine::oauth::TokenSet;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::sync::harness::{Backend, Node};
use crate::webhooks::support::{
    deliveries, fixture, hmac_sha1_base64, hmac_sha256_hex, kinds, post,
};

static NEXT_EVENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const PUBLIC_URL: &str = "https://connectors.example.com";

/// Headers for a body (the signature among them), given the path, the
/// sample's case file and a delivery number.
type Sign = fn(body: &[u8], path: &str, case: &Value, n: usize) -> Vec<(&'static str, String)>;

/// How a provider is connected and how it signs.
struct Provider {
    id: &'static str,
    /// The samples (under `fixtures/<id>/`) to post.
    cases: &'static [&'static str],
    /// Whether deliveries go to `/webhooks/{id}` (routed) instead of the tenant URL.
    routed: bool,
    env: &'static [(&'static str, &'static str)],
    credentials: &'static [(&'static str, &'static str)],
    config: fn() -> Value,
    metadata: fn() -> Map<String, Value>,
    /// The header carrying the signature or token.
    signed_by: &'static str,
    /// Headers for a body (the signature among them); `case` is the sample's case file.
    sign: Sign,
    /// The body as posted (the sample, or the sample with a fresh signed timestamp).
    body: fn(sample: Vec<u8>) -> Vec<u8>,
}

fn empty() -> Map<String, Value> {
    Map::new()
}

fn same(b: Vec<u8>) -> Vec<u8> {
    b
}

fn now_secs() -> String {
    Utc::now().timestamp().to_string()
}

fn case_header(case: &Value, name: &str) -> Option<String> {
    case["headers"][name].as_str().map(str::to_owned)
}

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const LINEAR_SECRET: &str = "lin_wh_secret";
const JIRA_SECRET: &str = "jira-shared-secret";
const PAGERDUTY_SECRET: &str = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
const SENTRY_SECRET: &str = "sentry-client-secret";
const TRELLO_SECRET: &str = "trello-app-secret";
const CLIQ_TOKEN: &str = "cliq-app-level-token";

fn providers() -> Vec<Provider> {
    vec![
        Provider {
            id: "github",
            signed_by: "x-hub-signature-256",
            cases: &[
                "webhook.pull_request.opened",
                "webhook.pull_request.closed_unmerged",
                "webhook.issues.opened",
                "webhook.issue_comment.created",
                "webhook.push",
                "webhook.push.with_commits",
                "webhook.pull_request_review.submitted",
                "webhook.release.published",
            ],
            routed: false,
            env: &[],
            credentials: &[("token", "github_pat_x"), ("webhookSecret", GITHUB_SECRET)],
            config: || json!({"repos": ["Codertocat/Hello-World"]}),
            metadata: empty,
            sign: |body, _, case, n| {
                let event = case["event"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| case_header(case, "X-GitHub-Event"))
                    .unwrap();
                vec![
                    ("x-github-event", event),
                    ("x-github-delivery", format!("gh-{n}")),
                    (
                        "x-hub-signature-256",
                        format!("sha256={}", hmac_sha256_hex(GITHUB_SECRET, &[body])),
                    ),
                ]
            },
            body: same,
        },
        Provider {
            id: "slack",
            signed_by: "x-slack-signature",
            cases: &[
                "events.event_callback.message_channels",
                "events.event_callback.app_mention",
                "events.event_callback.reaction_added",
            ],
            routed: true,
            env: &[("POBLYSH_SLACK_WEBHOOK_SECRET", SLACK_SECRET)],
            credentials: &[],
            config: || json!({}),
            metadata: || {
                let mut m = Map::new();
                m.insert("team_id".into(), json!("T123ABC456"));
                m
            },
            sign: |body, _, _, _| slack_headers(body, &now_secs()),
            // Slack's documentation samples share one `event_id` (the dedupe
            // key): each gets its own, as real deliveries have.
            body: |sample| {
                let text = String::from_utf8(sample).unwrap();
                let n = NEXT_EVENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                text.replace("Ev123ABC456", &format!("Ev123ABC{n:03}"))
                    .into_bytes()
            },
        },
        Provider {
            id: "linear",
            signed_by: "linear-signature",
            cases: &["webhook.Issue.create", "webhook.Issue.update"],
            routed: false,
            env: &[],
            credentials: &[("apiKey", "lin_api_x"), ("webhookSecret", LINEAR_SECRET)],
            config: || json!({}),
            metadata: empty,
            sign: |body, _, _, n| {
                vec![
                    ("linear-delivery", format!("lin-{n}")),
                    ("linear-signature", hmac_sha256_hex(LINEAR_SECRET, &[body])),
                ]
            },
            // Linear signs `webhookTimestamp` (ms) and allows 60 s: the sample's
            // 2024 value is replaced by now (same length, nothing else changes).
            body: |sample| {
                let text = String::from_utf8(sample).unwrap();
                text.replace("1716141329394", &Utc::now().timestamp_millis().to_string())
                    .into_bytes()
            },
        },
        Provider {
            id: "jira",
            signed_by: "authorization",
            cases: &[
                "webhook.jira_issue_created",
                "webhook.jira_issue_updated.assigned",
                "webhook.jira_issue_updated.status_resolved_changelog",
                "webhook.comment_created",
            ],
            routed: false,
            env: &[],
            credentials: &[
                ("email", "a@example.com"),
                ("apiToken", "x"),
                ("webhookSecret", JIRA_SECRET),
            ],
            config: || json!({"baseUrl": "https://some-instance-test.atlassian.net"}),
            metadata: empty,
            sign: |_, _, _, n| {
                vec![
                    (
                        "authorization",
                        format!(
                            "JWT {}",
                            jwt_hs256(JIRA_SECRET, Utc::now().timestamp() + 180)
                        ),
                    ),
                    ("x-atlassian-webhook-identifier", format!("jira-{n}")),
                ]
            },
            body: same,
        },
        Provider {
            id: "pagerduty",
            signed_by: "x-pagerduty-signature",
            cases: &[
                "webhook.v3.incident.priority_updated.signed_raw_body",
                "webhook.v3.service.updated.docs_example",
                "webhook.v3.incident.triggered",
                "webhook.v3.incident.resolved",
            ],
            routed: false,
            env: &[],
            credentials: &[("signingSecret", PAGERDUTY_SECRET)],
            config: || json!({}),
            metadata: empty,
            sign: |body, _, _, _| {
                vec![(
                    "x-pagerduty-signature",
                    format!(
                        "v1=deadbeef,v1={}",
                        hmac_sha256_hex(PAGERDUTY_SECRET, &[body])
                    ),
                )]
            },
            body: same,
        },
        Provider {
            id: "sentry",
            signed_by: "sentry-hook-signature",
            cases: &[
                "webhook.issue.created.docs_example",
                "webhook.event_alert.triggered.docs_example",
            ],
            routed: false,
            env: &[],
            credentials: &[("clientSecret", SENTRY_SECRET)],
            config: || json!({"installationUuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"}),
            metadata: empty,
            sign: |body, _, case, n| {
                vec![
                    (
                        "sentry-hook-resource",
                        case_header(case, "Sentry-Hook-Resource").unwrap(),
                    ),
                    ("sentry-hook-timestamp", now_secs()),
                    ("request-id", format!("sentry-{n}")),
                    (
                        "sentry-hook-signature",
                        hmac_sha256_hex(SENTRY_SECRET, &[body]),
                    ),
                ]
            },
            body: same,
        },
        Provider {
            id: "trello",
            signed_by: "x-trello-webhook",
            cases: &[
                "webhook.envelope.createCard",
                "webhook.envelope.updateCard.moved_list",
                "webhook.envelope.commentCard",
                "webhook.envelope.copyChecklist",
            ],
            routed: true,
            env: &[("POBLYSH_PUBLIC_URL", PUBLIC_URL)],
            credentials: &[
                ("apiKey", "k"),
                ("token", "t"),
                ("appSecret", TRELLO_SECRET),
            ],
            config: || json!({"boards": ["54c2f73c734b5b084777d1aa", "5387e0a7e10724f99ecd0766", "597f3c854baa6e43db4f07d7"]}),
            metadata: empty,
            // Trello signs the body followed by the callback URL it was given.
            sign: |body, path, _, _| {
                let url = format!("{PUBLIC_URL}{path}");
                vec![(
                    "x-trello-webhook",
                    hmac_sha1_base64(TRELLO_SECRET, &[body, url.as_bytes()]),
                )]
            },
            body: same,
        },
    ]
}

fn slack_headers(body: &[u8], ts: &str) -> Vec<(&'static str, String)> {
    let signature = hmac_sha256_hex(SLACK_SECRET, &[b"v0:", ts.as_bytes(), b":", body]);
    vec![
        ("x-slack-request-timestamp", ts.to_owned()),
        ("x-slack-signature", format!("v0={signature}")),
    ]
}

/// An HS256 JWT as Atlassian Connect signs webhooks (claims `iss`, `iat`, `exp`, `qsh`).
fn jwt_hs256(secret: &str, exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": "jira:client-key", "iat": exp - 180, "exp": exp, "qsh": "context-qsh"})
            .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(hmac::Mac::finalize(mac).into_bytes());
    format!("{signing_input}.{signature}")
}

async fn connect(node: &Node, p: &Provider, tenant: TenantId, credentials: &[(&str, &str)]) {
    let metadata = (p.metadata)();
    if metadata.is_empty() {
        node.connection(tenant, p.id, credentials, (p.config)())
            .await;
    } else {
        assert!(
            credentials.is_empty(),
            "OAuth connections hold no credential fields"
        );
        connect_with_metadata(node, p.id, tenant, Value::Object(metadata)).await;
    }
}

/// A connection as OAuth creates it: no credentials, provider facts in metadata.
pub async fn connect_with_metadata(
    node: &Node,
    provider: &str,
    tenant: TenantId,
    metadata: Value,
) -> ConnectionId {
    connections::create(
        &node.services.db,
        &node.services.keys,
        tenant,
        NewConnection {
            provider: provider.to_owned(),
            name: None,
            config: json!({}),
            credentials: BTreeMap::new(),
            tokens: Some(TokenSet {
                access_token: SecretString::from("xoxb-test"),
                refresh_token: None,
                expires_at: None,
                metadata: metadata.as_object().unwrap().clone(),
            }),
        },
    )
    .await
    .unwrap()
    .id
}

fn expected_kinds(provider: &str, case: &str) -> Vec<String> {
    let expected: Value =
        serde_json::from_slice(&fixture(&format!("{provider}/{case}.expected.json"))).unwrap();
    expected["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn provider_end_to_end(backend: Backend, p: &Provider) {
    let node = Node::new(backend, true, p.env).await;
    node.register(&std::fs::read_to_string(format!("descriptors/{}.yaml", p.id)).unwrap());
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let other = TenantId::from_uuid(Uuid::now_v7());
    connect(&node, p, tenant, p.credentials).await;
    // Another tenant with a connection of its own (other secrets, same config):
    // on the tenant URL it must not receive this tenant's deliveries.
    if !p.routed {
        let others: Vec<(&str, &str)> = p
            .credentials
            .iter()
            .map(|(k, _)| (*k, "someone-else's secret"))
            .collect();
        connect(&node, p, other, &others).await;
    }
    let path = if p.routed {
        format!("/webhooks/{}", p.id)
    } else {
        format!("/webhooks/{}/{tenant}", p.id)
    };
    let mut want = Vec::new();
    for (n, case) in p.cases.iter().enumerate() {
        let n = n + 1;
        let body = (p.body)(fixture(&format!("{}/{case}.json", p.id)));
        let case_file: Value = std::fs::read(format!("fixtures/{}/{case}.case.json", p.id))
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(Value::Null);
        let headers = (p.sign)(&body, &path, &case_file, n);
        let (status, ack, _) = post(&node, "POST", &path, &headers, body.clone()).await;
        assert_eq!(status, 200, "{} {case}: {ack}", p.id);
        let expected = expected_kinds(p.id, case);
        assert_eq!(ack["signals"], expected.len(), "{} {case}: {ack}", p.id);
        want.extend(expected);

        // The same delivery, its signature (or token) one character off: 401.
        let mut forged = (p.sign)(&body, &path, &case_file, n + 1000);
        let signed = forged.iter_mut().find(|(k, _)| *k == p.signed_by).unwrap();
        let at = signed.1.len() - 10;
        let flipped = if signed.1.as_bytes()[at] == b'a' {
            "b"
        } else {
            "a"
        };
        signed.1.replace_range(at..=at, flipped);
        let (status, problem, _) = post(&node, "POST", &path, &forged, body).await;
        assert_eq!(status, 401, "{} {case}: {problem}", p.id);
    }
    want.sort();
    assert_eq!(kinds(&node, tenant).await, want, "{}", p.id);
    assert_eq!(
        kinds(&node, other).await,
        Vec::<String>::new(),
        "{}: another tenant",
        p.id
    );
}

macro_rules! provider_tests {
    ($($name:ident),*) => {$(
        crate::on_both! {
            async fn $name(backend) {
                let p = providers().into_iter().find(|p| p.id == stringify!($name)).unwrap();
                provider_end_to_end(backend, &p).await;
            }
        }
    )*};
}

provider_tests!(github, slack, linear, jira, pagerduty, sentry, trello);

crate::on_both! {
    async fn zoho_cliq_tokens_are_issued_per_connection(backend) {
        // The app-level variable is set: it must verify nothing.
        let node = Node::new(
            backend,
            true,
            &[("POBLYSH_ZOHO_CLIQ_WEBHOOK_SECRET", CLIQ_TOKEN), ("POBLYSH_PUBLIC_URL", PUBLIC_URL)],
        )
        .await;
        for id in ["zoho_cliq", "github"] {
            node.register(&std::fs::read_to_string(format!("descriptors/{id}.yaml")).unwrap());
        }
        let (a, b) = (TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7()));
        let conn_a = connect_with_metadata(&node, "zoho_cliq", a, json!({})).await;
        let conn_b = connect_with_metadata(&node, "zoho_cliq", b, json!({})).await;
        let body = fixture("zoho_cliq/webhook.message_sent.json");
        let event = || ("x-poblysh-event", "message_sent".to_owned());
        let send = |tenant: TenantId, token: String| {
            let body = body.clone();
            let node = &node;
            async move {
                let path = format!("/webhooks/zoho_cliq/{tenant}");
                post(node, "POST", &path, &[event(), ("x-poblysh-token", token)], body).await
            }
        };

        // Before a token is issued nothing verifies, the app-level one included.
        let (status, problem, _) = send(a, CLIQ_TOKEN.into()).await;
        assert_eq!(status, 401, "{problem}");

        let issue = |conn: ConnectionId, tenant: TenantId| {
            let node = &node;
            async move {
                node.api("POST", &format!("/connections/{conn}/webhook-token"), Some(tenant), None).await
            }
        };
        let (status, issued_a) = issue(conn_a, a).await;
        assert_eq!(status, 200, "{issued_a}");
        assert_eq!(issued_a["header"], "X-Poblysh-Token");
        assert_eq!(issued_a["url"], format!("{PUBLIC_URL}/webhooks/zoho_cliq/{a}"));
        let token_a = issued_a["token"].as_str().unwrap().to_owned();
        assert!(token_a.len() >= 40, "{token_a}");
        let (status, issued_b) = issue(conn_b, b).await;
        assert_eq!(status, 200);
        let token_b = issued_b["token"].as_str().unwrap().to_owned();
        assert_ne!(token_a, token_b);
        // Another tenant's connection id: not found; a provider without issued tokens: 409.
        assert_eq!(issue(conn_a, b).await.0, 404);
        let gh = node.connection(a, "github", &[("token", "t")], json!({"repos": ["octo-org/hello"]})).await;
        let (status, problem) = issue(gh, a).await;
        assert_eq!(status, 409, "{problem}");

        // Connection A's token on B's URL: refused, nothing stored for B.
        let (status, problem, _) = send(b, token_a.clone()).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(kinds(&node, b).await, Vec::<String>::new());
        // On A's URL it is A's delivery.
        let (status, ack, _) = send(a, token_a.clone()).await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(kinds(&node, a).await, expected_kinds("zoho_cliq", "webhook.message_sent"));
        // B's own token works for B only.
        assert_eq!(send(a, token_b.clone()).await.0, 401);
        assert_eq!(send(b, token_b.clone()).await.0, 200);

        // Issuing again rotates: the old token stops verifying at once.
        let (status, rotated) = issue(conn_a, a).await;
        assert_eq!(status, 200);
        let rotated = rotated["token"].as_str().unwrap().to_owned();
        assert_eq!(send(a, token_a.clone()).await.0, 401);
        assert_eq!(send(a, rotated.clone()).await.0, 200);

        // The token is never shown again.
        let (_, shown) = node.api("GET", &format!("/connections/{conn_a}"), Some(a), None).await;
        let (_, listed) = node.api("GET", "/connections", Some(a), None).await;
        for text in [shown.to_string(), listed.to_string()] {
            assert!(!text.contains(&rotated) && !text.contains(&token_a), "{text}");
        }
    }
}

crate::on_both! {
    async fn datadog_default_template_delivery_with_the_connection_token(backend) {
        let node = Node::new(backend, true, &[("POBLYSH_PUBLIC_URL", PUBLIC_URL)]).await;
        node.register(&std::fs::read_to_string("descriptors/datadog.yaml").unwrap());
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let conn = node.connection(tenant, "datadog", &[("apiKey", "k"), ("appKey", "a")], json!({})).await;
        let body = fixture("datadog/webhook.monitor_alert.test_notification.relay.json");
        let path = format!("/webhooks/datadog/{tenant}");
        // The constant event header set in the webhook's custom headers.
        let event = || ("x-poblysh-event", "monitor_notification".to_owned());

        // No token issued yet: nothing verifies.
        let (status, problem, _) = post(&node, "POST", &path, &[event(), ("x-poblysh-token", "guess".into())], body.clone()).await;
        assert_eq!(status, 401, "{problem}");
        let (status, issued) = node.api("POST", &format!("/connections/{conn}/webhook-token"), Some(tenant), None).await;
        assert_eq!(status, 200, "{issued}");
        assert_eq!(issued["header"], "X-Poblysh-Token");
        let token = issued["token"].as_str().unwrap().to_owned();

        // Without the token header: 401, nothing stored.
        let (status, _, _) = post(&node, "POST", &path, &[event()], body.clone()).await;
        assert_eq!(status, 401);
        assert_eq!(kinds(&node, tenant).await, Vec::<String>::new());
        // Another tenant's connection, with a token of its own: this tenant's
        // token on its URL is refused, and nothing is stored there.
        let other = TenantId::from_uuid(Uuid::now_v7());
        let other_conn = node.connection(other, "datadog", &[("apiKey", "k2"), ("appKey", "a2")], json!({})).await;
        let (status, _) = node.api("POST", &format!("/connections/{other_conn}/webhook-token"), Some(other), None).await;
        assert_eq!(status, 200);
        let other_path = format!("/webhooks/datadog/{other}");
        let (status, _, _) = post(&node, "POST", &other_path, &[event(), ("x-poblysh-token", token.clone())], body.clone()).await;
        assert_eq!(status, 401);
        // A forged token (one character off): 401.
        let mut forged = token.clone();
        forged.replace_range(0..1, if forged.starts_with('a') { "b" } else { "a" });
        let (status, _, _) = post(&node, "POST", &path, &[event(), ("x-poblysh-token", forged)], body.clone()).await;
        assert_eq!(status, 401);
        // The real rendered default-template delivery: `[Triggered] …` → monitor_triggered.
        let (status, ack, _) = post(&node, "POST", &path, &[event(), ("x-poblysh-token", token.clone())], body.clone()).await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(kinds(&node, tenant).await, expected_kinds("datadog", "webhook.monitor_alert.test_notification.relay"));
        assert_eq!(kinds(&node, tenant).await, vec!["monitor_triggered".to_owned()]);
        // Datadog retries 5xx with the same body: the same `$ID`, stored once.
        let (status, _, _) = post(&node, "POST", &path, &[event(), ("x-poblysh-token", token.clone())], body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(kinds(&node, tenant).await, vec!["monitor_triggered".to_owned()]);
        // Another event header value: acknowledged and dropped.
        let (status, _, _) = post(&node, "POST", &path, &[("x-poblysh-event", "other".into()), ("x-poblysh-token", token)], body).await;
        assert_eq!(status, 200);
        assert_eq!(kinds(&node, tenant).await, vec!["monitor_triggered".to_owned()]);
        assert_eq!(kinds(&node, other).await, Vec::<String>::new());
    }
}

crate::on_both! {
    async fn notion_hands_over_its_token_which_verifies_only_once_confirmed(backend) {
        let node = Node::new(backend, true, &[]).await;
        node.register(&std::fs::read_to_string("descriptors/notion.yaml").unwrap());
        let (a, b) = (TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7()));
        let conn_a = node.connection(a, "notion", &[("token", "ntn_a")], json!({})).await;
        let conn_b = node.connection(b, "notion", &[("token", "ntn_b")], json!({})).await;
        // The documented vector: Notion's verification request and its token.
        let vectors: Value = serde_json::from_slice(&fixture("signature-vectors.json")).unwrap();
        let vector = vectors["vectors"].as_array().unwrap().iter().find(|v| v["provider"] == "notion").unwrap();
        let token = vector["secret"].as_str().unwrap().to_owned();
        let verification = vector["payload"].as_str().unwrap().as_bytes().to_vec();
        let path_a = format!("/webhooks/notion/{a}");
        let path_b = format!("/webhooks/notion/{b}");

        // The verification request arrives unsigned: answered 200, nothing stored.
        let (status, answer, _) = post(&node, "POST", &path_a, &[], verification.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(!answer.to_string().contains(&token), "the token is never echoed: {answer}");
        // A delivery signed with it does not verify yet: the token is only pending.
        let body = fixture("notion/webhook.page.created.docs_example.json");
        let signed = |secret: &str, body: &[u8]| vec![("x-notion-signature", format!("sha256={}", hmac_sha256_hex(secret, &[body])))];
        let (status, problem, _) = post(&node, "POST", &path_a, &signed(&token, &body), body.clone()).await;
        assert_eq!(status, 401, "{problem}");

        // Anyone who knows the URL can hand over a token too: both wait, newest first.
        let forged = br#"{"verification_token":"secret_forged"}"#.to_vec();
        assert_eq!(post(&node, "POST", &path_a, &[], forged).await.0, 200);

        // The operator reads them, pastes the one Notion accepts, and confirms it.
        let secret_path = format!("/connections/{conn_a}/webhook-secret");
        let (status, pending) = node.api("GET", &secret_path, Some(a), None).await;
        assert_eq!(status, 200, "{pending}");
        assert_eq!((pending["pending"].clone(), pending["set"].as_bool()), (json!(["secret_forged", token]), Some(false)));
        // Another tenant sees nothing of it.
        assert_eq!(node.api("GET", &secret_path, Some(b), None).await.0, 404);
        let (_, pending_b) = node.api("GET", &format!("/connections/{conn_b}/webhook-secret"), Some(b), None).await;
        assert_eq!(pending_b["pending"], json!([]));
        let (status, problem) = node.api("POST", &secret_path, Some(a), Some(json!({"secret": "secret_guess"}))).await;
        assert_eq!(status, 400, "{problem}");
        let (status, confirmed) = node.api("POST", &secret_path, Some(a), Some(json!({"secret": token}))).await;
        assert_eq!(status, 200, "{confirmed}");
        assert_eq!((confirmed["pending"].clone(), confirmed["set"].clone()), (json!([]), json!(true)));
        // Confirming twice: nothing pending any more.
        assert_eq!(node.api("POST", &secret_path, Some(a), Some(json!({"secret": token}))).await.0, 409);

        // Now every real sample, signed with the token, becomes its Signals for A only.
        let mut want = Vec::new();
        for case in [
            "webhook.page.created.docs_example",
            "webhook.page.content_updated.docs_example",
            "webhook.page.deleted.docs_example",
            "webhook.comment.created.docs_example",
        ] {
            let body = fixture(&format!("notion/{case}.json"));
            let (status, ack, _) = post(&node, "POST", &path_a, &signed(&token, &body), body.clone()).await;
            assert_eq!(status, 200, "{case}: {ack}");
            want.extend(expected_kinds("notion", case));
            // Forged (another secret): 401; and A's signature on B's URL: 401.
            let (status, _, _) = post(&node, "POST", &path_a, &signed("secret_other", &body), body.clone()).await;
            assert_eq!(status, 401, "{case}");
            let (status, _, _) = post(&node, "POST", &path_b, &signed(&token, &body), body).await;
            assert_eq!(status, 401, "{case}");
        }
        want.sort();
        assert_eq!(kinds(&node, a).await, want);
        assert_eq!(kinds(&node, b).await, Vec::<String>::new());
        // The documented signed vector verifies through the gateway too (it is a
        // verification body: answered as a handshake, nothing stored).
        let headers: Vec<(&str, String)> = vec![("x-notion-signature", vector["headers"]["X-Notion-Signature"].as_str().unwrap().to_owned())];
        assert_eq!(post(&node, "POST", &path_a, &headers, verification).await.0, 200);
        // Without a tenant in the URL a handed-over token has nowhere to go.
        let body = vector["payload"].as_str().unwrap().as_bytes().to_vec();
        assert_eq!(post(&node, "POST", "/webhooks/notion", &[], body).await.0, 404);
    }
}

crate::on_both! {
    async fn slack_connections_take_only_the_channels_they_follow(backend) {
        let node = Node::new(backend, true, &[("POBLYSH_SLACK_WEBHOOK_SECRET", SLACK_SECRET)]).await;
        node.register(&std::fs::read_to_string("descriptors/slack.yaml").unwrap());
        // Three tenants connected the same workspace: one follows the sample's
        // channel, one another channel, one every channel.
        let tenants: Vec<TenantId> = (0..3).map(|_| TenantId::from_uuid(Uuid::now_v7())).collect();
        for (t, config) in tenants.iter().zip([json!({"channels": ["C123ABC456"]}), json!({"channels": ["C999"]}), json!({})]) {
            connections::create(&node.services.db, &node.services.keys, *t, NewConnection {
                provider: "slack".into(),
                name: None,
                config,
                credentials: BTreeMap::new(),
                tokens: Some(TokenSet {
                    access_token: SecretString::from("xoxb-test"),
                    refresh_token: None,
                    expires_at: None,
                    metadata: json!({"team_id": "T123ABC456"}).as_object().unwrap().clone(),
                }),
            })
            .await
            .unwrap();
        }
        for case in ["events.event_callback.message_channels", "events.event_callback.reaction_added"] {
            // Slack's docs samples share one `event_id`: the reaction's is made
            // its own, or it would be the message's delivery again.
            let body = String::from_utf8(fixture(&format!("slack/{case}.json")))
                .unwrap()
                .replace("\"Ev123ABC456\"", &format!("\"Ev-{case}\""))
                .into_bytes();
            let (status, ack, _) = post(&node, "POST", "/webhooks/slack", &slack_headers(&body, &now_secs()), body).await;
            assert_eq!(status, 200, "{case}: {ack}");
        }
        let both = vec!["message_received".to_owned(), "reaction_added".to_owned()];
        assert_eq!(kinds(&node, tenants[0]).await, both);
        assert_eq!(kinds(&node, tenants[1]).await, Vec::<String>::new());
        assert_eq!(kinds(&node, tenants[2]).await, both);
    }
}

crate::on_both! {
    async fn handshakes_answer_without_signals(backend) {
        let node = Node::new(
            backend,
            true,
            &[("POBLYSH_SLACK_WEBHOOK_SECRET", SLACK_SECRET), ("POBLYSH_GOOGLE_SYNC_TEST_WEBHOOK_SECRET", "channel-token")],
        )
        .await;
        for id in ["slack", "trello"] {
            node.register(&std::fs::read_to_string(format!("descriptors/{id}.yaml")).unwrap());
        }
        node.register(GOOGLE_LIKE);

        // Slack: url_verification (signed) echoes the challenge as text.
        let body = std::fs::read("tests/webhooks/samples/slack.events.url_verification.json").unwrap();
        let challenge = serde_json::from_slice::<Value>(&body).unwrap()["challenge"].as_str().unwrap().to_owned();
        let (status, answer, headers) = post(&node, "POST", "/webhooks/slack", &slack_headers(&body, &now_secs()), body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, Value::String(challenge));
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
        // …but not unsigned, and not six minutes late.
        let (status, _, _) = post(&node, "POST", "/webhooks/slack", &[], body.clone()).await;
        assert_eq!(status, 401);
        let old = (Utc::now().timestamp() - 360).to_string();
        let (status, problem, _) = post(&node, "POST", "/webhooks/slack", &slack_headers(&body, &old), body).await;
        assert_eq!(status, 401, "{problem}");
        assert!(problem["message"].as_str().unwrap().contains("replay window"), "{problem}");

        // Trello: the HEAD check when the webhook is created.
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let (status, _, _) = post(&node, "HEAD", &format!("/webhooks/trello/{tenant}"), &[], Vec::new()).await;
        assert_eq!(status, 200);
        let (status, _, _) = post(&node, "HEAD", "/webhooks/trello", &[], Vec::new()).await;
        assert_eq!(status, 200);

        // Google-style channel: `X-Goog-Resource-State: sync` answers 200, no signal.
        let google = "/webhooks/google_sync_test";
        let sync_headers = vec![
            ("x-goog-channel-token", "channel-token".to_owned()),
            ("x-goog-resource-state", "sync".to_owned()),
        ];
        let (status, _, _) = post(&node, "POST", &format!("{google}/{tenant}"), &sync_headers, Vec::new()).await;
        assert_eq!(status, 200);
        // The channel token is still checked.
        let (status, _, _) = post(
            &node,
            "POST",
            &format!("{google}/{tenant}"),
            &[("x-goog-resource-state", "sync".to_owned())],
            Vec::new(),
        )
        .await;
        assert_eq!(status, 401);

        assert_eq!(kinds(&node, tenant).await, Vec::<String>::new());
        assert_eq!(deliveries(&node).await, 0);
    }
}

/// A Google watch-channel style descriptor: token in `X-Goog-Channel-Token`,
/// the `sync` message answered as a handshake (all in the descriptor).
const GOOGLE_LIKE: &str = r#"
id: google_sync_test
name: Google-style channel
description: Watch-channel notifications, as Google Drive and Calendar send them.
category: custom
icon: google
kind: generic
version: 1.0.0
auth:
  method: none
ingestion:
  mode: webhook
  eventTypes: [change]
  eventTypeHeader: X-Goog-Resource-State
  deliveryIdHeader: X-Goog-Message-Number
  verification: token
  token:
    header: X-Goog-Channel-Token
  handshake:
    - name: sync
      header: X-Goog-Resource-State
      operator: equals
      value: sync
fieldMapping:
  itemsPath: $
  idPath: $.id
  timestampPath: $.time
  summaryTemplate: "{{kind}} changed"
  signalTypeRules: []
  defaultType: file_changed
healthCheck:
  endpoint: https://www.googleapis.com/discovery/v1/apis
  method: GET
  expectStatus: 200
  timeoutMs: 5000
"#;

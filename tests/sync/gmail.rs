//! The Gmail connector end to end, through the one door (`/connect/gmail`,
//! `/webhooks/gmail`, the scheduler, the executor, `GET /signals`), on an
//! injected clock, against a fake Google (wiremock) whose answers take the
//! shapes of the recorded samples in `fixtures/native/gmail/` and
//! `provider-samples/gmail/` (`users.watch`: the docs example, as strings as
//! the discovery document types them). Push tokens are signed with the test
//! RSA keys in `tests/keys` and served from a mock JWKS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poblysh_connectors::connector::native::google::gmail_connector::SCOPES;
use poblysh_connectors::db::repo::connections;
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::load::Loader;
use poblysh_connectors::domain::{Clock, ConnectionId, ManualClock, TenantId};
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sync::google::{
    self, CLIENT_ID, CLIENT_SECRET, connection, drain, query, ran, signals, t0,
};
use crate::sync::harness::{Backend, Node};
use crate::webhooks::google_push_token::{
    ACCOUNT, AUDIENCE, JWK_A, KEY_A, KEY_B, claims, jwks, sign,
};

const TOPIC: &str = "projects/poblysh-test/topics/gmail";
/// The history id every fake mailbox starts at (the recorded history page's
/// `startHistoryId`).
const FIRST_HISTORY: u64 = 86170;

/// One message of a fake mailbox.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    thread: String,
    labels: Vec<&'static str>,
    from: String,
    to: String,
    subject: String,
    /// The history id its arrival got.
    history: u64,
    at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Mailbox {
    address: String,
    messages: Vec<Message>,
    history: u64,
    /// `history.list` answers 404 (the history is older than Gmail keeps).
    history_gone: bool,
}

/// A fake Gmail: mailboxes by access token.
#[derive(Debug, Clone, Default)]
struct Gmail {
    boxes: Arc<Mutex<BTreeMap<String, Mailbox>>>,
    /// How long the watches it grants last.
    clock: Option<ManualClock>,
}

/// The recorded `messages.get?format=metadata` answer, as the template of every message.
fn recorded_message() -> Value {
    serde_json::from_str(include_str!(
        "../../fixtures/native/gmail/rest.messages.get.metadata.recorded.json"
    ))
    .unwrap()
}

impl Gmail {
    fn mailbox(&self, token: &str, address: &str) {
        self.boxes.lock().unwrap().insert(
            token.to_owned(),
            Mailbox {
                address: address.to_owned(),
                history: FIRST_HISTORY,
                ..Mailbox::default()
            },
        );
    }

    /// A message arrives in the mailbox of `token` (the thread's first when
    /// `thread` is `None`).
    fn arrive(
        &self,
        token: &str,
        id: &str,
        thread: Option<&str>,
        from: &str,
        labels: Vec<&'static str>,
        at: DateTime<Utc>,
    ) {
        let mut boxes = self.boxes.lock().unwrap();
        let b = boxes.get_mut(token).unwrap();
        b.history += 7;
        let to = b.address.clone();
        let history = b.history;
        b.messages.push(Message {
            id: id.to_owned(),
            thread: thread.unwrap_or(id).to_owned(),
            labels,
            from: from.to_owned(),
            to,
            subject: format!("Subject of {id}"),
            history,
            at,
        });
    }

    fn history_gone(&self, token: &str, gone: bool) {
        self.boxes
            .lock()
            .unwrap()
            .get_mut(token)
            .unwrap()
            .history_gone = gone;
    }

    fn message_json(m: &Message) -> Value {
        let mut v = recorded_message();
        v["id"] = json!(m.id);
        v["threadId"] = json!(m.thread);
        v["labelIds"] = json!(m.labels);
        v["historyId"] = json!(m.history.to_string());
        v["internalDate"] = json!(m.at.timestamp_millis().to_string());
        for h in v["payload"]["headers"].as_array_mut().unwrap() {
            let value = match h["name"].as_str().unwrap() {
                "From" => m.from.clone(),
                "To" => m.to.clone(),
                "Subject" => m.subject.clone(),
                _ => continue,
            };
            h["value"] = json!(value);
        }
        v
    }
}

/// Pages of two, the offset as the page token.
fn page<T: Clone>(items: &[T], req: &Request) -> (Vec<T>, Option<String>) {
    let from: usize = query(req, "pageToken").map_or(0, |t| t.parse().unwrap());
    let to = (from + 2).min(items.len());
    let next = (to < items.len()).then(|| to.to_string());
    (items[from.min(to)..to].to_vec(), next)
}

impl Respond for Gmail {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let token = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let boxes = self.boxes.lock().unwrap();
        let Some(b) = boxes.get(&token) else {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}));
        };
        let p = req.url.path().trim_start_matches("/gmail/v1/users/me/");
        match (req.method.as_str(), p) {
            ("GET", "profile") => ResponseTemplate::new(200).set_body_json(json!({
                "emailAddress": b.address, "messagesTotal": b.messages.len(),
                "threadsTotal": b.messages.len(), "historyId": b.history.to_string(),
            })),
            ("POST", "watch") => {
                let now = self.clock.as_ref().map_or_else(t0, |c| c.now());
                ResponseTemplate::new(200).set_body_json(json!({
                    "historyId": b.history.to_string(),
                    "expiration": (now + Duration::days(7)).timestamp_millis().to_string(),
                }))
            }
            ("POST", "stop") => ResponseTemplate::new(204),
            ("GET", "history") if b.history_gone => ResponseTemplate::new(404).set_body_json(json!({
                "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
            })),
            ("GET", "history") => {
                let start: u64 = query(req, "startHistoryId").unwrap().parse().unwrap();
                assert_eq!(query(req, "historyTypes").as_deref(), Some("messageAdded"));
                let added: Vec<&Message> = b.messages.iter().filter(|m| m.history > start).collect();
                let (items, next) = page(&added, req);
                // Shaped as the recorded page: a record per change, with the
                // `messages` it touched and what it added.
                let history: Vec<Value> = items.iter().map(|m| json!({
                    "id": m.history.to_string(),
                    "messages": [{"id": m.id, "threadId": m.thread}],
                    "messagesAdded": [{"message": {"id": m.id, "threadId": m.thread, "labelIds": m.labels}}],
                })).collect();
                let mut body = json!({"history": history, "historyId": b.history.to_string()});
                if history.is_empty() {
                    body.as_object_mut().unwrap().remove("history");
                }
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("GET", "messages") => {
                let after: i64 = query(req, "q").unwrap().strip_prefix("after:").unwrap().parse().unwrap();
                let newest_first: Vec<&Message> = b.messages.iter().rev().filter(|m| m.at.timestamp() > after).collect();
                let (items, next) = page(&newest_first, req);
                let mut body = json!({"resultSizeEstimate": newest_first.len()});
                if !items.is_empty() {
                    body["messages"] = json!(items.iter().map(|m| json!({"id": m.id, "threadId": m.thread})).collect::<Vec<_>>());
                }
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("GET", p) if p.starts_with("messages/") => {
                assert_eq!(query(req, "format").as_deref(), Some("metadata"));
                let id = &p["messages/".len()..];
                match b.messages.iter().find(|m| m.id == id) {
                    Some(m) => ResponseTemplate::new(200).set_body_json(Gmail::message_json(m)),
                    None => ResponseTemplate::new(404).set_body_json(json!({"error": {"code": 404}})),
                }
            }
            _ => ResponseTemplate::new(400).set_body_string(format!("unexpected {} {p}", req.method)),
        }
    }
}

struct Setup {
    node: Node,
    clock: ManualClock,
    server: MockServer,
    gmail: Gmail,
}

async fn setup(backend: Backend) -> Setup {
    let env = [
        ("POBLYSH_GOOGLE_PUSH_AUDIENCE", AUDIENCE),
        ("POBLYSH_GOOGLE_PUSH_SERVICE_ACCOUNT", ACCOUNT),
        ("POBLYSH_GMAIL_PUBSUB_TOPIC", TOPIC),
        // 100 pushes in a minute for one mailbox below.
        ("POBLYSH_WEBHOOK_RATE_LIMIT", "1000"),
    ];
    let google::Google {
        node,
        clock,
        server,
    } = google::start(backend, "gmail", &env).await;
    let gmail = Gmail {
        clock: Some(clock.clone()),
        ..Gmail::default()
    };
    Mock::given(wiremock::matchers::path_regex("^/gmail/v1/users/me/"))
        .respond_with(gmail.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/oauth2/v3/certs"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "cache-control",
                    "public, max-age=19204, must-revalidate, no-transform",
                )
                .set_body_json(jwks(&[JWK_A])),
        )
        .mount(&server)
        .await;
    Setup {
        node,
        clock,
        server,
        gmail,
    }
}

/// Connects `who`'s mailbox for `tenant` through the OAuth flow; returns the
/// connection and the consent URL's query.
async fn connect(
    s: &Setup,
    tenant: TenantId,
    who: &str,
    config: Value,
) -> (ConnectionId, BTreeMap<String, String>) {
    google::connect(&s.node, "gmail", tenant, who, config).await
}

/// A Pub/Sub push body as Google's docs show it, for `mailbox` at `history`.
fn push_body(mailbox: &str, history: u64, message_id: &str) -> Vec<u8> {
    let data = STANDARD.encode(json!({"emailAddress": mailbox, "historyId": history}).to_string());
    json!({
        "message": {"data": data, "messageId": message_id, "publishTime": "2026-12-01T09:00:00.000Z"},
        "subscription": "projects/poblysh-test/subscriptions/gmail-push"
    })
    .to_string()
    .into_bytes()
}

async fn push(node: &Node, authorization: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/webhooks/gmail")
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let (status, _, answer) = node
        .send(req.body(axum::body::Body::from(body)).unwrap())
        .await;
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A valid push token at the node's clock.
fn good_token(s: &Setup) -> String {
    sign(KEY_A, "test-key-a", &claims(s.clock.now()))
}

fn jwks_fetches(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path() == "/oauth2/v3/certs")
        .count()
}

crate::on_both! {
    async fn connecting_gmail_asks_for_offline_access_watches_the_mailbox_and_backfills(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        // Three messages in the last 30 days, one before: the backfill takes three.
        s.gmail.arrive("tok-ann", "19dda3e3a25601ee", None, "Reporter <desk@press.example>", vec!["INBOX"], t0() - Duration::days(2));
        s.gmail.arrive("tok-ann", "19dda5888dc95981", Some("19dda3e3a25601ee"), "ann@example.com", vec!["SENT"], t0() - Duration::days(1));
        s.gmail.arrive("tok-ann", "19dda58453313b1c", None, "Bob <bob@example.org>", vec!["INBOX", "UNREAD"], t0() - Duration::hours(1));
        s.gmail.arrive("tok-ann", "19dd000000000001", None, "old@example.org", vec!["INBOX"], t0() - Duration::days(40));
        // A draft is not mail.
        s.gmail.arrive("tok-ann", "19dd0000000000d1", None, "ann@example.com", vec!["DRAFT"], t0() - Duration::hours(2));
        let tenant = TenantId::from_uuid(Uuid::now_v7());

        let (_, provider) = s.node.public("GET", "/providers/gmail").await;
        assert_eq!((provider["kind"].as_str(), provider["ingestion_mode"].as_str()), (Some("native"), Some("polling_and_webhook")), "{provider}");

        let (id, consent) = connect(&s, tenant, "ann", json!({"pressDomains": ["press.example"], "labelIds": ["INBOX"]})).await;
        for (k, v) in [("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true"),
                       ("code_challenge_method", "S256"), ("response_type", "code"), ("client_id", CLIENT_ID), ("scope", SCOPES[0]),
                       ("redirect_uri", "https://connectors.example.com/connect/gmail/callback")] {
            assert_eq!(consent.get(k).map(String::as_str), Some(v), "{k}: {consent:?}");
        }
        assert!(consent.get("code_challenge").is_some_and(|c| c.len() >= 43));
        // The code was exchanged with the PKCE verifier and the shared Google client.
        let requests = s.server.received_requests().await.unwrap();
        let exchange = requests.iter().find(|r| r.url.path() == "/token").unwrap();
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&exchange.body).into_owned().collect();
        assert_eq!(form["client_id"], CLIENT_ID);
        assert!(form.get("code_verifier").is_some_and(|v| v.len() >= 43), "{form:?}");

        assert_eq!(drain(&s.node).await, ran(&["setup", "full"]));
        let c = connection(&s.node, tenant, id).await;
        assert_eq!(c.metadata["emailAddress"], "ann@example.com");
        assert_eq!(c.metadata["watchHistoryId"], (FIRST_HISTORY + 35).to_string());
        let expires: DateTime<Utc> = c.metadata["watchExpiration"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires, t0() + Duration::days(7));
        assert_eq!(c.renew_at, Some(t0() + Duration::days(1)), "renewed daily");
        let requests = s.server.received_requests().await.unwrap();
        let watch = requests.iter().find(|r| r.url.path().ends_with("/watch")).unwrap();
        let body: Value = serde_json::from_slice(&watch.body).unwrap();
        assert_eq!(body, json!({"topicName": TOPIC, "labelIds": ["INBOX"], "labelFilterBehavior": "include"}));

        let got = signals(&s.node, tenant).await;
        let want: Vec<(String, String)> = [
            ("email_received", "19dda3e3a25601ee"), ("email_received", "19dda58453313b1c"),
            ("email_sent", "19dda5888dc95981"),
            ("thread_started", "19dda3e3a25601ee"), ("thread_started", "19dda58453313b1c"),
        ].iter().map(|(k, i)| ((*k).to_owned(), (*i).to_owned())).collect();
        assert_eq!(got, want);
        let (_, page) = s.node.api("GET", "/signals?limit=100&kind=email_received", Some(tenant), None).await;
        let press = page["signals"].as_array().unwrap().iter().find(|s| s["external_id"] == "19dda3e3a25601ee").unwrap();
        assert_eq!((press["priority"].as_str(), press["tags"].as_array().unwrap().contains(&json!("press"))), (Some("high"), true), "{press}");
        assert_eq!(press["url"], "https://mail.google.com/mail/?authuser=ann%40example.com#all/19dda3e3a25601ee");
        // The checkpoint is the history id taken before the listing.
        let (_, jobs) = s.node.api("GET", "/jobs?limit=10", Some(tenant), None).await;
        let full = jobs["jobs"].as_array().unwrap().iter().find(|j| j["job_type"] == "full").unwrap();
        assert!(full["cursor_after"].as_str().unwrap().contains(&(FIRST_HISTORY + 35).to_string()), "{full}");

        // The connection test asks Gmail for the profile.
        let (_, tested) = s.node.api("POST", &format!("/connections/{id}/test"), Some(tenant), None).await;
        assert_eq!(tested["healthy"], true, "{tested}");
    }
}

crate::on_both! {
    async fn a_verified_push_brings_the_mailbox_history_to_its_tenant_only(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        s.gmail.mailbox("tok-bea", "bea@example.com");
        let (ann, bea) = (TenantId::from_uuid(Uuid::now_v7()), TenantId::from_uuid(Uuid::now_v7()));
        connect(&s, ann, "ann", json!({})).await;
        connect(&s, bea, "bea", json!({})).await;
        drain(&s.node).await;
        assert!(signals(&s.node, ann).await.is_empty());

        // Three messages arrive for Ann (history over two pages); Gmail pushes.
        for (i, id) in ["19dda5cc10eb51bb", "19dda5cc10eb51bc", "19dda5cc10eb51bd"].iter().enumerate() {
            s.gmail.arrive("tok-ann", id, None, "Bob <bob@example.org>", vec!["INBOX", "UNREAD"], t0() - Duration::minutes(3 - i as i64));
        }
        let token = good_token(&s);
        let (status, answer) = push(&s.node, Some(&bearer(&token)), push_body("ann@example.com", FIRST_HISTORY + 21, "2070443601311540")).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
        // A push while that sync is running (its history read may be past)
        // queues another; one while it is only queued would join it.
        {
            use poblysh_connectors::db::entities::sync_job;
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
            let db = s.node.services.db.conn();
            sync_job::Entity::update_many()
                .col_expr(sync_job::Column::State, Expr::value("running"))
                .filter(sync_job::Column::State.eq("queued"))
                .exec(db).await.unwrap();
            let (status, _) = push(&s.node, Some(&bearer(&token)), push_body("ann@example.com", FIRST_HISTORY + 21, "2070443601311541")).await;
            assert_eq!(status, 200);
            let states = |rows: Vec<sync_job::Model>| rows.into_iter().map(|j| j.state).collect::<Vec<_>>();
            let rows = sync_job::Entity::find().filter(sync_job::Column::JobType.eq("incremental")).all(db).await.unwrap();
            let mut got = states(rows);
            got.sort();
            assert_eq!(got, ["queued", "running"]);
            // The "running" one never ran: out of the way, the queued one reads the history.
            sync_job::Entity::delete_many().filter(sync_job::Column::State.eq("running")).exec(db).await.unwrap();
        }
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        let got = signals(&s.node, ann).await;
        assert_eq!(got.iter().filter(|(k, _)| k == "email_received").count(), 3, "{got:?}");
        assert!(signals(&s.node, bea).await.is_empty(), "Bea's tenant sees nothing of Ann's mail");

        // The same push 5 times: duplicates, no job, no second set.
        for _ in 0..5 {
            let (status, answer) = push(&s.node, Some(&bearer(&token)), push_body("ann@example.com", FIRST_HISTORY + 21, "2070443601311540")).await;
            assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
        }
        assert!(drain(&s.node).await.is_empty());
        assert_eq!(signals(&s.node, ann).await, got);

        // 100 pushes (new ids) before the worker runs: one job, one JWKS fetch in all.
        s.gmail.arrive("tok-ann", "19dda5cc10eb51be", None, "carl@example.net", vec!["INBOX"], t0());
        for n in 0..100 {
            let (status, _) = push(&s.node, Some(&bearer(&token)), push_body("ann@example.com", FIRST_HISTORY + 28, &format!("30000000{n}"))).await;
            assert_eq!(status, 200);
        }
        assert_eq!(drain(&s.node).await, ran(&["incremental"]), "coalesced into one sync");
        assert_eq!(signals(&s.node, ann).await.len(), got.len() + 2, "one more message and its thread");
        assert_eq!(jwks_fetches(&s.server.received_requests().await.unwrap()), 1);

        // A push for a mailbox no connection watches is acknowledged and dropped.
        let (status, answer) = push(&s.node, Some(&bearer(&token)), push_body("nobody@example.com", 1, "4000")).await;
        assert_eq!((status, answer["status"].as_str()), (202, Some("dropped")), "{answer}");
    }
}

crate::on_both! {
    async fn a_push_that_google_did_not_sign_for_us_is_refused_and_stores_nothing(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        let ann = TenantId::from_uuid(Uuid::now_v7());
        connect(&s, ann, "ann", json!({})).await;
        drain(&s.node).await;
        s.gmail.arrive("tok-ann", "19dda5cc10eb51bb", None, "bob@example.org", vec!["INBOX"], t0());
        let now = s.clock.now();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims(now);
            f(&mut c);
            sign(KEY_A, "test-key-a", &c)
        };
        let payload = URL_SAFE_NO_PAD.encode(claims(now).to_string());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-a","typ":"JWT"}"#));
        let jwk: Value = serde_json::from_str(JWK_A).unwrap();
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = Some("test-key-a".into());
        let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        let hs = jsonwebtoken::encode(&hs_header, &claims(now), &EncodingKey::from_secret(&modulus)).unwrap();
        let forged: Vec<(&str, Option<String>)> = vec![
            ("missing header", None),
            ("not bearer", Some(format!("Basic {}", STANDARD.encode("a:b")))),
            ("wrong signature", Some(bearer(&sign(KEY_B, "test-key-a", &claims(now))))),
            ("alg none", Some(bearer(&none))),
            ("HS256", Some(bearer(&hs))),
            ("unknown kid", Some(bearer(&sign(KEY_B, "test-key-z", &claims(now))))),
            ("wrong aud", Some(bearer(&with(&|c| c["aud"] = json!("https://elsewhere.example.com/push"))))),
            ("wrong iss", Some(bearer(&with(&|c| c["iss"] = json!("https://evil.example.com"))))),
            ("wrong email", Some(bearer(&with(&|c| c["email"] = json!("someone@evil-project.iam.gserviceaccount.com"))))),
            ("email unverified", Some(bearer(&with(&|c| c["email_verified"] = json!(false))))),
            ("expired", Some(bearer(&with(&|c| { c["iat"] = json!(now.timestamp() - 7200); c["exp"] = json!(now.timestamp() - 3600); })))),
        ];
        for (n, (case, authorization)) in forged.iter().enumerate() {
            let (status, answer) = push(&s.node, authorization.as_deref(), push_body("ann@example.com", FIRST_HISTORY + 7, &format!("5000{n}"))).await;
            assert_eq!(status, 401, "{case}: {answer}");
            assert!(!answer.to_string().contains("eyJ"), "{case}: the token is not echoed: {answer}");
        }
        assert!(drain(&s.node).await.is_empty(), "no sync was asked for");
        assert!(signals(&s.node, ann).await.is_empty());
        // The unknown kid refetched the keys once (the setup's fetch is the first).
        assert_eq!(jwks_fetches(&s.server.received_requests().await.unwrap()), 2);
        // A refused push's message id is not remembered: Google's genuine one goes through.
        let (status, _) = push(&s.node, Some(&bearer(&good_token(&s))), push_body("ann@example.com", FIRST_HISTORY + 7, "50000")).await;
        assert_eq!(status, 200);
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        assert_eq!(signals(&s.node, ann).await.len(), 2);

        // Google's keys unreachable when a new one is needed: 503, so Pub/Sub
        // retries; nothing stored, no sync asked for.
        Mock::given(method("GET")).and(path("/oauth2/v3/certs"))
            .respond_with(ResponseTemplate::new(500)).with_priority(1).mount(&s.server).await;
        s.clock.advance(Duration::minutes(2));
        let rotated = sign(KEY_B, "test-key-new", &claims(s.clock.now()));
        let (status, answer) = push(&s.node, Some(&bearer(&rotated)), push_body("ann@example.com", FIRST_HISTORY + 7, "60000")).await;
        assert_eq!(status, 503, "{answer}");
        assert!(drain(&s.node).await.is_empty());
    }
}

crate::on_both! {
    async fn a_history_gmail_no_longer_keeps_is_a_full_resync_not_a_failure(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        let ann = TenantId::from_uuid(Uuid::now_v7());
        let (id, _) = connect(&s, ann, "ann", json!({"backfillDays": "3"})).await;
        drain(&s.node).await;
        s.gmail.arrive("tok-ann", "19dda5cc10eb51bb", None, "bob@example.org", vec!["INBOX"], t0() - Duration::days(1));
        s.gmail.arrive("tok-ann", "19dda5cc10eb51bc", None, "bob@example.org", vec!["INBOX"], t0() - Duration::days(5));
        s.gmail.history_gone("tok-ann", true);
        let (status, _) = s.node.api("POST", "/sync/gmail", Some(ann), Some(json!({"connection_id": id.to_string()}))).await;
        assert!(status < 300, "{status}");
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        // The last 3 days only, and a fresh history id to go on from.
        assert_eq!(signals(&s.node, ann).await, [("email_received".to_owned(), "19dda5cc10eb51bb".to_owned()), ("thread_started".to_owned(), "19dda5cc10eb51bb".to_owned())]);
        s.gmail.history_gone("tok-ann", false);
        s.gmail.arrive("tok-ann", "19dda5cc10eb51bd", None, "bob@example.org", vec!["INBOX"], t0());
        let (status, _) = s.node.api("POST", "/sync/gmail", Some(ann), Some(json!({"connection_id": id.to_string()}))).await;
        assert!(status < 300, "{status}");
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        assert_eq!(signals(&s.node, ann).await.len(), 4);
        let history: Vec<String> = s.server.received_requests().await.unwrap().iter()
            .filter(|r| r.url.path().ends_with("/history"))
            .filter_map(|r| query(r, "startHistoryId")).collect();
        assert_eq!(history.last().unwrap(), &(FIRST_HISTORY + 14).to_string(), "{history:?}");
    }
}

crate::on_both! {
    async fn the_watch_is_renewed_daily_retried_when_it_fails_and_stopped_on_delete(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        let ann = TenantId::from_uuid(Uuid::now_v7());
        let (id, _) = connect(&s, ann, "ann", json!({})).await;
        drain(&s.node).await;
        let calls = |requests: &[Request], end: &str| requests.iter().filter(|r| r.url.path().ends_with(end)).count();
        let tick = |s: &Setup| {
            let services = Arc::clone(&s.node.services);
            let now = s.clock.now();
            async move { scheduler::tick(&services, now).await.unwrap() }
        };

        // A second before the day is up: nothing; at it: one renewal.
        s.clock.set(t0() + Duration::days(1) - Duration::seconds(1));
        tick(&s).await;
        assert!(drain(&s.node).await.iter().all(|(t, _)| t != "renew"));
        s.clock.set(t0() + Duration::days(1));
        tick(&s).await;
        tick(&s).await;
        let jobs = drain(&s.node).await;
        assert_eq!(jobs.iter().filter(|(t, _)| t == "renew").count(), 1, "{jobs:?}");
        assert_eq!(calls(&s.server.received_requests().await.unwrap(), "/watch"), 2);
        assert_eq!(connection(&s.node, ann, id).await.renew_at, Some(t0() + Duration::days(2)));

        // Gmail fails the next renewal once: retried, and shown on the connection.
        Mock::given(method("POST")).and(path("/gmail/v1/users/me/watch"))
            .respond_with(ResponseTemplate::new(503).set_body_string("backend error"))
            .up_to_n_times(1).with_priority(1).mount(&s.server).await;
        s.clock.set(t0() + Duration::days(2));
        tick(&s).await;
        let jobs = drain(&s.node).await;
        assert!(jobs.contains(&("renew".to_owned(), JobState::Retrying)), "{jobs:?}");
        let c = connection(&s.node, ann, id).await;
        assert_eq!(c.healthy, Some(false));
        assert!(c.last_error.as_deref().unwrap_or_default().contains("503"), "{:?}", c.last_error);
        s.clock.advance(Duration::minutes(5));
        let jobs = drain(&s.node).await;
        assert!(jobs.contains(&("renew".to_owned(), JobState::Succeeded)), "{jobs:?}");
        let c = connection(&s.node, ann, id).await;
        assert_eq!((c.healthy, c.last_error.clone()), (Some(true), None));

        // Deleted: Gmail is told to stop pushing, then the connection goes.
        let (status, _) = s.node.api("DELETE", &format!("/connections/{id}"), Some(ann), None).await;
        assert_eq!(status, 204);
        assert_eq!(drain(&s.node).await, ran(&["teardown"]));
        assert_eq!(calls(&s.server.received_requests().await.unwrap(), "/stop"), 1);
        assert!(connections::row(&s.node.services.db, ann, id).await.unwrap().is_none());
    }
}

crate::on_both! {
    async fn an_expired_token_is_refreshed_with_the_shared_client_and_a_revoked_grant_needs_reauth(backend) {
        let s = setup(backend).await;
        s.gmail.mailbox("tok-ann", "ann@example.com");
        s.gmail.mailbox("tok-revoked", "rex@example.com");
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let (ann, _) = connect(&s, tenant, "ann", json!({})).await;
        let (rex, _) = connect(&s, tenant, "revoked", json!({})).await;
        drain(&s.node).await;
        // An hour on, both access tokens have expired: syncs refresh them first.
        s.clock.advance(Duration::hours(1));
        for id in [ann, rex] {
            let (status, body) = s.node.api("POST", "/sync/gmail", Some(tenant), Some(json!({"connection_id": id.to_string()}))).await;
            assert!(status < 300, "{body}");
        }
        let jobs = drain(&s.node).await;
        assert!(jobs.contains(&("incremental".to_owned(), JobState::Succeeded)), "{jobs:?}");
        assert!(jobs.contains(&("incremental".to_owned(), JobState::Failed)), "{jobs:?}");
        let requests = s.server.received_requests().await.unwrap();
        let refreshes: Vec<BTreeMap<String, String>> = requests.iter().filter(|r| r.url.path() == "/token")
            .map(|r| url::form_urlencoded::parse(&r.body).into_owned().collect())
            .filter(|f: &BTreeMap<String, String>| f["grant_type"] == "refresh_token").collect();
        assert_eq!(refreshes.len(), 2, "{refreshes:?}");
        assert!(refreshes.iter().all(|f| f["client_id"] == CLIENT_ID && f["client_secret"] == CLIENT_SECRET));
        let (_, shown) = s.node.api("GET", &format!("/connections/{ann}"), Some(tenant), None).await;
        assert_eq!(shown["status"], "active", "{shown}");
        let (_, shown) = s.node.api("GET", &format!("/connections/{rex}"), Some(tenant), None).await;
        assert_eq!(shown["status"], "needs_reauth", "{shown}");
        assert!(!shown.to_string().contains(CLIENT_SECRET) && !shown.to_string().contains("refresh-revoked"), "{shown}");
    }
}

#[test]
fn the_catalogue_descriptor_asks_for_the_scopes_the_connector_uses() {
    let compiled = Loader::with_natives(&["gmail"])
        .load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/descriptors/gmail.yaml"
        )))
        .unwrap();
    let poblysh_connectors::descriptor::auth::AuthDescriptor::OAuth2(config) =
        &compiled.descriptor.auth
    else {
        panic!("gmail is OAuth 2.0");
    };
    assert_eq!(config.scopes, SCOPES);
    assert!(config.pkce);
}

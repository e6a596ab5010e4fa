//! A fake Google for the latency bench: the OAuth token endpoint, the JWKS
//! with the test key of `tests/keys`, and one Gmail mailbox (profile, watch,
//! stop, history, messages) whose messages take the recorded
//! `messages.get?format=metadata` shape of `fixtures/native/gmail/`. Pushes
//! are signed with the same test key.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The push subscription's audience and service account the server is given.
pub const AUDIENCE: &str = "https://connectors.example.com/webhooks/gmail";
pub const ACCOUNT: &str = "gmail-push@example-project.iam.gserviceaccount.com";
pub const MAILBOX: &str = "bench@example.com";
const KEY: &str = include_str!("../../tests/keys/test-rsa-a.pem");
const JWK: &str = include_str!("../../tests/keys/test-rsa-a.jwk.json");
const FIRST_HISTORY: u64 = 86170;

/// A message: its id, arrival and history id.
type Message = (String, DateTime<Utc>, u64);

/// The mailbox: its messages in arrival order.
#[derive(Clone, Default)]
pub struct Mailbox(Arc<Mutex<Vec<Message>>>);

impl Mailbox {
    /// A message arrives; returns the mailbox's new history id.
    pub fn arrive(&self, id: &str, at: DateTime<Utc>) -> u64 {
        let mut m = self.0.lock().unwrap();
        let history = FIRST_HISTORY + m.len() as u64 + 1;
        m.push((id.to_owned(), at, history));
        history
    }

    fn history(&self) -> u64 {
        FIRST_HISTORY + self.0.lock().unwrap().len() as u64
    }
}

/// Serves the fake Google; returns its base URL.
pub async fn serve(mailbox: Mailbox) -> String {
    let template: Value = serde_json::from_str(include_str!(
        "../../fixtures/native/gmail/rest.messages.get.metadata.recorded.json"
    ))
    .unwrap();
    let app = axum::Router::new()
        .route(
            "/token",
            post(|| async {
                axum::Json(json!({"access_token": "ya29.bench", "expires_in": 3599,
                    "refresh_token": "1//bench", "token_type": "Bearer"}))
            }),
        )
        .route(
            "/oauth2/v3/certs",
            get(|| async {
                let jwk: Value = serde_json::from_str(JWK).unwrap();
                ([("cache-control", "public, max-age=19204")], axum::Json(json!({"keys": [jwk]})))
            }),
        )
        .route(
            "/gmail/v1/users/me/profile",
            get(|State(m): State<Mailbox>| async move {
                axum::Json(json!({"emailAddress": MAILBOX, "historyId": m.history().to_string()}))
            }),
        )
        .route(
            "/gmail/v1/users/me/watch",
            post(|State(m): State<Mailbox>| async move {
                let expires = Utc::now() + chrono::Duration::days(7);
                axum::Json(json!({"historyId": m.history().to_string(),
                    "expiration": expires.timestamp_millis().to_string()}))
            }),
        )
        .route("/gmail/v1/users/me/stop", post(|| async { "" }))
        .route(
            "/gmail/v1/users/me/history",
            get(
                |State(m): State<Mailbox>, Query(q): Query<Vec<(String, String)>>| async move {
                    let start: u64 = q
                        .iter()
                        .find(|(k, _)| k == "startHistoryId")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let messages = m.0.lock().unwrap().clone();
                    let history: Vec<Value> = messages
                        .iter()
                        .filter(|(_, _, h)| *h > start)
                        .map(|(id, _, h)| json!({"id": h.to_string(),
                            "messages": [{"id": id, "threadId": id}],
                            "messagesAdded": [{"message": {"id": id, "threadId": id, "labelIds": ["INBOX"]}}]}))
                        .collect();
                    axum::Json(json!({"history": history, "historyId": m.history().to_string()}))
                },
            ),
        )
        .route(
            "/gmail/v1/users/me/messages",
            get(|| async { axum::Json(json!({"resultSizeEstimate": 0})) }),
        )
        .route(
            "/gmail/v1/users/me/messages/{id}",
            get(
                move |State(m): State<Mailbox>, Path(id): Path<String>| {
                    let mut message = template.clone();
                    async move {
                        let found = m.0.lock().unwrap().iter().find(|(i, _, _)| *i == id).cloned();
                        let (id, at, history) = found.expect("a message of the mailbox");
                        message["id"] = json!(id);
                        message["threadId"] = json!(id);
                        message["labelIds"] = json!(["INBOX"]);
                        message["historyId"] = json!(history.to_string());
                        message["internalDate"] = json!(at.timestamp_millis().to_string());
                        axum::Json(message)
                    }
                },
            ),
        )
        .with_state(mailbox);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The server's Google settings for the fake at `url`.
pub fn env(url: &str) -> Vec<(String, String)> {
    [
        ("POBLYSH_GOOGLE_CLIENT_ID", "bench-client".to_owned()),
        ("POBLYSH_GOOGLE_CLIENT_SECRET", "bench-secret".to_owned()),
        ("POBLYSH_GOOGLE_AUTHORIZE_URL", format!("{url}/auth")),
        ("POBLYSH_GOOGLE_TOKEN_URL", format!("{url}/token")),
        ("POBLYSH_GOOGLE_GMAIL_URL", url.to_owned()),
        ("POBLYSH_GOOGLE_JWKS_URL", format!("{url}/oauth2/v3/certs")),
        ("POBLYSH_GOOGLE_PUSH_AUDIENCE", AUDIENCE.to_owned()),
        ("POBLYSH_GOOGLE_PUSH_SERVICE_ACCOUNT", ACCOUNT.to_owned()),
        (
            "POBLYSH_GMAIL_PUBSUB_TOPIC",
            "projects/bench/topics/gmail".to_owned(),
        ),
        (
            "POBLYSH_PUBLIC_URL",
            "https://connectors.example.com".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `Authorization` of a push Google would sign now.
pub fn authorization() -> String {
    let now = Utc::now().timestamp();
    let claims = json!({"aud": AUDIENCE, "email": ACCOUNT, "email_verified": true,
        "exp": now + 3600, "iat": now, "iss": "https://accounts.google.com", "sub": "1"});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-a".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(KEY.as_bytes()).unwrap();
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    )
}

/// A Pub/Sub push body for the mailbox at `history`.
pub fn push_body(history: u64, message_id: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD
        .encode(json!({"emailAddress": MAILBOX, "historyId": history}).to_string());
    json!({"message": {"data": data, "messageId": message_id},
        "subscription": "projects/bench/subscriptions/gmail"})
    .to_string()
}

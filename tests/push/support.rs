//! What the push tests share: a subscriber (a real HTTP server on loopback)
//! that verifies every delivery with its own Standard Webhooks verifier
//! (checked against the specification's test vector below), can be down,
//! failing or slow, and records what it took; and Signals made by signed
//! GitHub webhooks (the real `pull_request` sample, one Signal each).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::harness::{Backend, Server, send};

/// The GitHub webhook secret of the test connections.
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";

/// A receiver's verification, written from the specification: the HMAC-SHA256
/// of `id.timestamp.body` under the base64 key after `whsec_`, base64, as
/// one of the space-separated `v1,` signatures.
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|s| s == expected)
}

#[test]
fn the_receiver_verifier_passes_the_specification_vector_and_refuses_tampering() {
    // standard-webhooks/standard-webhooks, spec/standard-webhooks.md and the
    // libraries' shared test vector.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let ts = "1614265330";
    let body = br#"{"test": 2432232314}"#;
    let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(verify(secret, id, ts, body, sig));
    assert!(verify(secret, id, ts, body, &format!("v1,bm90IGl0 {sig}")));
    assert!(!verify(secret, id, ts, br#"{"test": 2432232315}"#, sig));
    assert!(!verify(secret, "msg_other", ts, body, sig));
    assert!(!verify(secret, id, "1614265331", body, sig));
    assert!(!verify("whsec_b3RoZXI=", id, ts, body, sig));
}

/// One delivery the receiver took (answered 2xx).
#[derive(Debug, Clone)]
pub struct Taken {
    /// `webhook-id`.
    pub webhook_id: String,
    /// The Signals' ids, in body order.
    pub ids: Vec<String>,
    /// The Signals' external ids.
    pub external_ids: Vec<String>,
}

/// A delivery as it came: its headers and raw body.
#[derive(Debug, Clone)]
pub struct Raw {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    raw: Vec<Raw>,
    /// Bytes of the body of a 2xx answer.
    answer_bytes: usize,
    /// Requests that followed a redirect to `/elsewhere`.
    redirected: u64,
    secrets: Vec<String>,
    status: u16,
    delay: Duration,
    taken: Vec<Taken>,
    attempts: u64,
    unverified: u64,
    in_flight: u64,
}

/// A subscriber on loopback.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
}

impl Receiver {
    /// Starts one answering 200 at once.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            status: 200,
            ..Inner::default()
        }));
        let state = Arc::clone(&inner);
        let elsewhere = Arc::clone(&inner);
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let state = Arc::clone(&state);
                        async move {
                            let status = take(&state, &headers, &body).await;
                            let size = state.lock().unwrap().answer_bytes;
                            let mut response = axum::response::Response::new(
                                axum::body::Body::from(if status.is_success() {
                                    vec![b'x'; size]
                                } else {
                                    Vec::new()
                                }),
                            );
                            *response.status_mut() = status;
                            if status.is_redirection() {
                                response
                                    .headers_mut()
                                    .insert("location", "/elsewhere".parse().unwrap());
                            }
                            response
                        }
                    },
                ),
            )
            .route(
                "/elsewhere",
                axum::routing::any(move || {
                    let state = Arc::clone(&elsewhere);
                    async move {
                        state.lock().unwrap().redirected += 1;
                        "ok"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { inner, url }
    }

    /// The secrets deliveries must be signed with (one of them).
    pub fn trust(&self, secret: &str) {
        self.inner.lock().unwrap().secrets.push(secret.to_owned());
    }

    /// Trusts only `secret` from now on.
    pub fn trust_only(&self, secret: &str) {
        self.inner.lock().unwrap().secrets = vec![secret.to_owned()];
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        self.inner.lock().unwrap().status = status;
    }

    /// Answers a 2xx with a body of `bytes` from now on.
    pub fn answer_bytes(&self, bytes: usize) {
        self.inner.lock().unwrap().answer_bytes = bytes;
    }

    /// Requests that arrived at the redirect target.
    pub fn redirected(&self) -> u64 {
        self.inner.lock().unwrap().redirected
    }

    /// Answers after `delay` from now on.
    pub fn delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// The deliveries taken so far.
    pub fn taken(&self) -> Vec<Taken> {
        self.inner.lock().unwrap().taken.clone()
    }

    /// Every request as it came.
    pub fn raw(&self) -> Vec<Raw> {
        self.inner.lock().unwrap().raw.clone()
    }

    /// Requests that arrived (taken or not).
    pub fn attempts(&self) -> u64 {
        self.inner.lock().unwrap().attempts
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> u64 {
        self.inner.lock().unwrap().in_flight
    }

    /// Deliveries whose signature did not verify (answered 401).
    pub fn unverified(&self) -> u64 {
        self.inner.lock().unwrap().unverified
    }

    /// The Signals taken, in delivery order (repeats included).
    pub fn signal_ids(&self) -> Vec<String> {
        self.taken().into_iter().flat_map(|t| t.ids).collect()
    }

    /// Waits until `n` distinct Signals were taken (at most `limit`).
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let started = std::time::Instant::now();
        loop {
            let distinct: std::collections::HashSet<String> =
                self.signal_ids().into_iter().collect();
            if distinct.len() >= n {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{} of {n} Signals delivered within {limit:?} ({} attempts)",
                distinct.len(),
                self.attempts()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a delivery is being answered (at most `limit`).
    pub async fn wait_in_flight(&self, limit: Duration) {
        let started = std::time::Instant::now();
        while self.in_flight() == 0 {
            assert!(
                started.elapsed() < limit,
                "no delivery began within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks what was taken: every Signal of `expected` (ids, in this order)
    /// exactly once in order once repeats are dropped, and every repeat in a
    /// delivery with the same `webhook-id` as its first.
    pub fn assert_delivered_once_in_order(&self, expected: &[String]) {
        let mut first_id: std::collections::HashMap<String, String> = Default::default();
        let mut order = Vec::new();
        for t in self.taken() {
            for id in &t.ids {
                match first_id.get(id) {
                    Some(w) => assert_eq!(
                        w, &t.webhook_id,
                        "Signal {id} repeated under another webhook-id"
                    ),
                    None => {
                        first_id.insert(id.clone(), t.webhook_id.clone());
                        order.push(id.clone());
                    }
                }
            }
        }
        assert_eq!(order.len(), expected.len(), "Signals delivered");
        assert_eq!(order, expected, "arrival order");
        assert_eq!(self.unverified(), 0, "every delivery verified");
    }
}

async fn take(
    state: &Mutex<Inner>,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let (delay, status, verified) = {
        let mut s = state.lock().unwrap();
        s.raw.push(Raw {
            headers: [
                ("webhook-id", &id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect(),
            body: body.to_vec(),
        });
        s.attempts += 1;
        s.in_flight += 1;
        let verified = s.secrets.iter().any(|k| verify(k, &id, &ts, body, &sig));
        // The timestamp is now (within the specification's 5-minute tolerance).
        let fresh = ts
            .parse::<i64>()
            .is_ok_and(|t| (t - chrono::Utc::now().timestamp()).abs() <= 300);
        (s.delay, s.status, verified && fresh)
    };
    tokio::time::sleep(delay).await;
    let mut s = state.lock().unwrap();
    s.in_flight -= 1;
    if !verified {
        s.unverified += 1;
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    if (200..300).contains(&status) {
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["type"], "signals.batch");
        assert!(v["data"]["cursor"].is_string(), "{v}");
        let signals = v["data"]["signals"].as_array().unwrap();
        s.taken.push(Taken {
            webhook_id: id,
            ids: signals
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_owned())
                .collect(),
            external_ids: signals
                .iter()
                .map(|x| x["external_id"].as_str().unwrap().to_owned())
                .collect(),
        });
    }
    axum::http::StatusCode::from_u16(status).unwrap()
}

/// Starts `serve --role all` on a fresh database with short retry waits,
/// loopback allowed, and `env`; its log in its directory.
pub async fn start(backend: Backend, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/test.db?mode=rwc", dir.path().display()),
        Backend::Postgres => crate::pg::fresh_database(),
    };
    restart(dir, database_url, env).await
}

/// Starts `serve --role all` in `dir` on `database_url` (as [`start`]).
pub async fn restart(dir: tempfile::TempDir, database_url: String, env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("POBLYSH_WEBHOOK_RATE_LIMIT", "1000000"),
        (
            "POBLYSH_PUSH_RETRY_SCHEDULE",
            "0.2,0.4,0.8,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        ),
    ];
    all.extend_from_slice(env);
    Server::start_logged(dir, database_url, &all, "all").await
}

/// Creates the tenant's GitHub connection (webhook secret `GITHUB_SECRET`).
pub async fn github(server: &Server, tenant: Uuid) -> String {
    let (status, created) = send(server.tenant(tenant, Method::POST, "/connections").json(
        &json!({
            "provider": "github",
            "credentials": {"token": "github_pat_x", "webhookSecret": GITHUB_SECRET},
            "config": {"repos": ["Codertocat/Hello-World"]},
        }),
    ))
    .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn sample() -> Value {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/webhook.pull_request.opened.json"
    ))
    .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The signed `pull_request` delivery numbered `n` (a Signal of its own:
/// external id `n`).
pub fn delivery(server: &Server, tenant: Uuid, n: u64) -> reqwest::RequestBuilder {
    webhook_to(&server.base, tenant, n)
}

/// As [`delivery`], to any node's base URL.
pub fn webhook_to(base: &str, tenant: Uuid, n: u64) -> reqwest::RequestBuilder {
    let mut v = sample();
    v["number"] = json!(n);
    v["pull_request"]["number"] = json!(n);
    v["pull_request"]["id"] = json!(1_000_000 + n);
    // Each a second after the one before: newest first is delivery order
    // (equal times would be ordered by the ids' hash part).
    let at = chrono::DateTime::parse_from_rfc3339("2019-05-15T15:20:33Z").unwrap()
        + chrono::Duration::seconds(n as i64);
    v["pull_request"]["updated_at"] = json!(at.to_rfc3339());
    let body = serde_json::to_vec(&v).unwrap();
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    reqwest::Client::new()
        .request(Method::POST, format!("{base}/webhooks/github/{tenant}"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", Uuid::now_v7().to_string())
        .header("x-hub-signature-256", signature)
        .body(body)
}

/// Sends delivery `n` and checks it was stored as one new Signal.
pub async fn ingest(server: &Server, tenant: Uuid, n: u64) {
    let (status, ack) = send(delivery(server, tenant, n)).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["signals"], 1, "{ack}");
}

/// Subscribes the tenant to `url` with `body` merged in: the subscription.
pub async fn subscribe(server: &Server, tenant: Uuid, url: &str, extra: Value) -> Value {
    let mut body = json!({"url": url});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    let (status, created) = send(
        server
            .tenant(tenant, Method::POST, "/subscriptions")
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}

/// The tenant's Signals after `start` in arrival order (ids), paged
/// through `GET /signals?after=`.
pub async fn arrival_order(server: &Server, tenant: Uuid, start: &str) -> Vec<String> {
    let mut after = start.to_owned();
    let mut ids = Vec::new();
    loop {
        let (status, page) = send(server.tenant(
            tenant,
            Method::GET,
            &format!("/signals?limit=100&after={after}"),
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        let signals = page["signals"].as_array().unwrap();
        ids.extend(signals.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        after = page["next_cursor"].as_str().unwrap().to_owned();
        if signals.is_empty() {
            return ids;
        }
    }
}

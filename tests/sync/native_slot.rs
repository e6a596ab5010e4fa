//! The native slot, proven with a test-only native connector (`fakewatch`, not
//! shipped) that has everything a Google-style connector has and a descriptor
//! cannot say: its own webhook verification (a timestamped HMAC over a
//! per-channel token it registered itself), its own routing key (the channel
//! id, learnt by its setup hook), lifecycle hooks that create, renew and stop a
//! watch channel at a fake provider (wiremock counts them), and its own poll
//! interval. It goes end to end through `POST /connections`,
//! `POST /webhooks/{provider}`, the scheduler, the executor and
//! `GET /signals`, on an injected clock, with no special case anywhere.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Method};
use poblysh_connectors::connector::native::Native;
use poblysh_connectors::connector::{
    Capabilities, Catalogue, ConnectionContext, Connector, ConnectorError, DescriptorConnector,
    Hook, HookOutcome, Hooks, PollSchedule, RoutingTarget, SyncMode, TokenContext, WebhookProfile,
    WebhookReceiver,
};
use poblysh_connectors::db::repo::connections;
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::descriptor::compile::CompiledDescriptor;
use poblysh_connectors::descriptor::load::Loader;
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::domain::{
    Ambient, Checkpoints, ConnectionId, ManualClock, SeededRandom, TenantId, TokenSet,
};
use poblysh_connectors::engine::auth;
use poblysh_connectors::engine::health::{self, HealthResult};
use poblysh_connectors::engine::http::{HttpRequest, RetryPolicy};
use poblysh_connectors::engine::mapping::{self, MapContext, WebhookInput, WebhookMapped};
use poblysh_connectors::engine::poll::{PollOutcome, SignalSink};
use poblysh_connectors::engine::webhook::WebhookRequest;
use poblysh_connectors::engine::webhook::verify::VerifyError;
use poblysh_connectors::sync::scheduler;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::sync::fake::Fake;
use crate::sync::harness::{Backend, Node, drain, get_connection as connection};

const ID: &str = "fakewatch";
/// How often the native polls (its descriptor says an hour).
const INTERVAL: i64 = 420;
/// How long a channel lives at the fake provider.
const CHANNEL_HOURS: i64 = 24;
/// Renewal this long before a channel expires.
const RENEW_AHEAD_HOURS: i64 = 1;

/// The catalogue descriptor: metadata, auth and the field mapping the native
/// reuses. It has no webhook section: every webhook behaviour is the native's.
fn descriptor(base_url: &str) -> String {
    format!(
        r#"
id: {ID}
name: Fake Watch
description: A test-only native connector with watch channels.
category: custom
icon: eye
kind: native
version: 1.0.0
baseUrl: {base_url}
signals: [item_changed]
auth:
  method: pat
  config:
    delivery: bearer
    paramName: ""
    credentialFields: [{{key: token, label: Token, type: password, required: true}}]
ingestion:
  mode: polling
  endpoint: "{{{{baseUrl}}}}/items"
  method: GET
  delta: {{type: cursor, cursorPath: $.cursor, cursorParam: after_seq}}
  rateLimitRpm: 100000
  intervalSeconds: 3600
fieldMapping:
  itemsPath: $.items[*]
  idPath: $.id
  timestampPath: $.updated_at
  summaryTemplate: "{{{{title}}}}"
  signalTypeRules: []
  defaultType: item_changed
healthCheck: {{endpoint: "{{{{baseUrl}}}}/health", method: GET, expectStatus: 200, timeoutMs: 2000}}
"#
    )
}

/// The test-only native connector.
#[derive(Debug)]
struct FakeWatch {
    descriptor: Arc<CompiledDescriptor>,
    /// OAuth token requests, when its descriptor says `oauth2`.
    generic: DescriptorConnector,
    catalogue: Catalogue,
    capabilities: Capabilities,
    receiver: FakeReceiver,
}

#[derive(Debug)]
struct FakeReceiver {
    descriptor: Arc<CompiledDescriptor>,
    profile: WebhookProfile,
}

impl FakeWatch {
    fn new(descriptor: Arc<CompiledDescriptor>) -> Self {
        let generic = DescriptorConnector::new(Arc::clone(&descriptor));
        FakeWatch {
            catalogue: Catalogue::of(&descriptor.descriptor),
            capabilities: Capabilities {
                oauth: generic.capabilities().oauth,
                token_exchange: None,
                polling: Some(PollSchedule {
                    interval: std::time::Duration::from_secs(INTERVAL as u64),
                }),
                hooks: Hooks {
                    setup: true,
                    teardown: true,
                },
            },
            receiver: FakeReceiver {
                descriptor: Arc::clone(&descriptor),
                profile: WebhookProfile {
                    verified: true,
                    secret_field: Some("channel_token".into()),
                    routing: Some(RoutingTarget::MetadataKey("channel_id".into())),
                    json_body: true,
                    change_ping: false,
                    issued_token: None,
                    hands_over_secret: false,
                    connection_filter: None,
                },
            },
            descriptor,
            generic,
        }
    }

    fn base(&self, ctx: &ConnectionContext<'_>) -> String {
        self.descriptor.base_url(ctx.config).unwrap()
    }

    /// Calls the fake provider with the connection's auth (no retries: the
    /// job queue retries).
    async fn call(
        &self,
        ctx: &ConnectionContext<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let url = format!("{}{path}", self.base(ctx)).parse().unwrap();
        let mut request = HttpRequest::new(method, url);
        if let Some(body) = body {
            request.body = Some(body.to_string().into_bytes());
            request.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        auth::apply(&self.descriptor.auth, ctx.credentials, &mut request).map_err(|e| {
            ConnectorError::Other {
                message: e.to_string(),
                retryable: false,
            }
        })?;
        let once = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let response = ctx.http.send(&request, &once).await?;
        Ok(serde_json::from_slice(&response.body).unwrap_or(Value::Null))
    }

    /// Opens a channel; the outcome routes webhooks to it and renews it an hour
    /// before it expires.
    async fn watch(&self, ctx: &ConnectionContext<'_>) -> Result<HookOutcome, ConnectorError> {
        let channel = format!("ch-{}", ctx.ambient.token(6));
        let token = ctx.ambient.token(16);
        let answer = self
            .call(
                ctx,
                Method::POST,
                "/watch",
                Some(json!({"id": channel, "token": token})),
            )
            .await?;
        let expires: DateTime<Utc> = answer["expiration"].as_str().unwrap().parse().unwrap();
        let mut outcome = HookOutcome {
            renew_at: Some(expires - Duration::hours(RENEW_AHEAD_HOURS)),
            ..HookOutcome::default()
        };
        outcome.metadata.insert("channel_id".into(), json!(channel));
        outcome
            .secrets
            .insert("channel_token".into(), Some(SecretString::from(token)));
        Ok(outcome)
    }

    async fn stop(&self, ctx: &ConnectionContext<'_>, channel: &str) -> Result<(), ConnectorError> {
        self.call(ctx, Method::POST, "/stop", Some(json!({"id": channel})))
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Connector for FakeWatch {
    fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn webhooks(&self) -> Option<&dyn WebhookReceiver> {
        Some(&self.receiver)
    }

    async fn refresh_token(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        self.generic.refresh_token(ctx, refresh_token).await
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        _mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let after = checkpoints
            .get("")
            .cloned()
            .flatten()
            .unwrap_or_else(|| "0".into());
        let page = self
            .call(
                ctx,
                Method::GET,
                &format!("/items?after_seq={after}&limit=100"),
                None,
            )
            .await?;
        let map_ctx = MapContext {
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            received_at: ctx.now,
        };
        let mapped = mapping::map_page(&self.descriptor, &page, &map_ctx);
        let signals = mapped.signals.len() as u64;
        sink.write(mapped.signals)
            .await
            .map_err(|e| ConnectorError::Other {
                message: e,
                retryable: true,
            })?;
        Ok(PollOutcome {
            checkpoints: [(String::new(), page["cursor"].as_str().map(str::to_owned))].into(),
            signals,
            pages: 1,
            ..PollOutcome::default()
        })
    }

    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        health::check(ctx.http, &self.descriptor, ctx.credentials, ctx.config).await
    }

    async fn hook(
        &self,
        hook: Hook,
        ctx: &ConnectionContext<'_>,
    ) -> Result<HookOutcome, ConnectorError> {
        let current = ctx.metadata["channel_id"].as_str().map(str::to_owned);
        match hook {
            // A setup on a connection that still holds a channel (enabled
            // again before its teardown ran) replaces it, as a renewal does.
            Hook::Setup if current.is_none() => self.watch(ctx).await,
            Hook::Setup | Hook::Renew => {
                // The new channel first, then the old one stops: no gap.
                let outcome = self.watch(ctx).await?;
                if let Some(old) = current {
                    self.stop(ctx, &old).await?;
                }
                Ok(outcome)
            }
            Hook::Teardown => {
                if let Some(old) = current {
                    self.stop(ctx, &old).await?;
                }
                let mut outcome = HookOutcome::default();
                outcome.metadata.insert("channel_id".into(), Value::Null);
                outcome.secrets.insert("channel_token".into(), None);
                Ok(outcome)
            }
        }
    }
}

/// `X-Fake-Signature: v1=hex(HMAC-SHA256(channel token, "{timestamp}.{body}"))`,
/// `X-Fake-Timestamp` within five minutes of now.
fn signature(token: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl WebhookReceiver for FakeReceiver {
    fn profile(&self) -> &WebhookProfile {
        &self.profile
    }

    async fn verify(
        &self,
        request: &WebhookRequest,
        secret: Option<&SecretString>,
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let secret = secret.ok_or(VerifyError::NoSecret)?;
        let header = |name: &str| {
            request
                .header(name)
                .ok_or_else(|| VerifyError::MissingHeader(name.into()))
        };
        let timestamp: i64 = header("x-fake-timestamp")?
            .parse()
            .map_err(|_| VerifyError::MissingTimestamp("x-fake-timestamp".into()))?;
        if (now.timestamp() - timestamp).abs() > 300 {
            return Err(VerifyError::Stale(300));
        }
        let expected = signature(secret.expose_secret(), timestamp, &request.body);
        let given = header("x-fake-signature")?;
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn routing_value(&self, request: &WebhookRequest) -> Option<String> {
        request.header("x-fake-channel").map(str::to_owned)
    }

    fn delivery_id(&self, request: &WebhookRequest) -> Option<String> {
        request.header("x-fake-delivery").map(str::to_owned)
    }

    async fn map(
        &self,
        delivery: WebhookInput<'_>,
        ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError> {
        Ok(WebhookMapped {
            event: "changed".into(),
            handled: true,
            mapped: mapping::map_page(&self.descriptor, delivery.body, ctx),
        })
    }
}

fn t0() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

/// A node with the test-only native bound to its descriptor, on a manual clock,
/// and the fake provider behind wiremock.
struct Setup {
    node: Node,
    clock: ManualClock,
    server: MockServer,
    fake: Fake,
}

async fn setup(backend: Backend) -> Setup {
    setup_with(backend, None).await
}

/// As [`setup`]; with `oauth`, the descriptor authenticates with OAuth 2.0 at
/// the fake provider's token endpoint.
async fn setup_with(backend: Backend, oauth: Option<()>) -> Setup {
    let server = MockServer::start().await;
    let fake = Fake::default();
    fake.add(1, 0);
    fake.add(2, 1);
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let clock = ManualClock::new(t0());
    let ambient = Ambient {
        clock: Arc::new(clock.clone()),
        random: Arc::new(SeededRandom::new(7)),
    };
    let natives = [ID];
    let mut yaml = descriptor(&server.uri());
    if oauth.is_some() {
        let pat = yaml[yaml.find("auth:").unwrap()..yaml.find("ingestion:").unwrap()].to_owned();
        let uri = server.uri();
        yaml = yaml.replace(&pat, &format!("auth:\n  method: oauth2\n  config:\n    authoriseUrl: \"{uri}/oauth/authorize\"\n    tokenUrl: \"{uri}/oauth/token\"\n    scopes: [watch]\n    credentialFields: []\n"));
    }
    let compiled = Loader::with_natives(&natives)
        .load_str("fakewatch.yaml", &yaml, Format::Yaml)
        .unwrap_or_else(|d| panic!("{d:#?}"));
    let env = [
        ("POBLYSH_FAKEWATCH_CLIENT_ID", "fw-client"),
        ("POBLYSH_FAKEWATCH_CLIENT_SECRET", "fw-secret"),
    ];
    let node = Node::with(backend, &env, |b| {
        b.ambient(ambient)
            .native(Native::new(ID, |input| {
                Arc::new(FakeWatch::new(input.descriptor))
            }))
            .builtins(vec![compiled])
    })
    .await;
    Setup {
        node,
        clock,
        server,
        fake,
    }
}

/// The fake provider's channel API: `POST /watch` answers an expiration
/// `CHANNEL_HOURS` after the node's clock; `POST /stop` answers 204.
async fn mount_channels(s: &Setup) {
    let clock = s.clock.clone();
    Mock::given(method("POST"))
        .and(path("/watch"))
        .respond_with(move |_: &wiremock::Request| {
            use poblysh_connectors::domain::Clock;
            let expires = clock.now() + Duration::hours(CHANNEL_HOURS);
            ResponseTemplate::new(200).set_body_json(json!({"expiration": expires.to_rfc3339()}))
        })
        .with_priority(5)
        .mount(&s.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/stop"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&s.server)
        .await;
}

/// The channel ids the fake provider was asked to open and to stop, in order.
async fn channel_calls(server: &MockServer) -> (Vec<String>, Vec<String>) {
    let mut watched = Vec::new();
    let mut stopped = Vec::new();
    for r in server.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        match r.url.path() {
            "/watch" => watched.push(id),
            "/stop" => stopped.push(id),
            _ => {}
        }
    }
    (watched, stopped)
}

async fn create(node: &Node, tenant: TenantId) -> ConnectionId {
    let (status, body) = node
        .api(
            "POST",
            "/connections",
            Some(tenant),
            Some(json!({"provider": ID, "credentials": {"token": "fw-token"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    ConnectionId::from_uuid(body["id"].as_str().unwrap().parse().unwrap())
}

/// The channel token the setup hook stored (sealed) for the connection.
async fn channel_token(node: &Node, tenant: TenantId, id: ConnectionId) -> String {
    let fields = connections::credentials(&node.services.db, &node.services.keys, tenant, id)
        .await
        .unwrap()
        .unwrap();
    fields["channel_token"].expose_secret().to_owned()
}

async fn post_webhook(
    node: &Node,
    channel: &str,
    token: &str,
    timestamp: i64,
    delivery: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("/webhooks/{ID}"))
        .header("content-type", "application/json")
        .header("x-fake-channel", channel)
        .header("x-fake-timestamp", timestamp.to_string())
        .header("x-fake-delivery", delivery)
        .header("x-fake-signature", signature(token, timestamp, &bytes))
        .body(axum::body::Body::from(bytes))
        .unwrap();
    let (status, _, answer) = node.send(req).await;
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

async fn signal_ids(node: &Node, tenant: TenantId) -> Vec<String> {
    let (status, body) = node
        .api("GET", "/signals?limit=100", Some(tenant), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["external_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

crate::on_both! {
    async fn a_native_connector_runs_end_to_end_through_the_one_door(backend) {
        let s = setup(backend).await;
        mount_channels(&s).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let other = TenantId::from_uuid(Uuid::now_v7());

        // The catalogue shows it like any other provider.
        let (_, provider) = node.public("GET", &format!("/providers/{ID}")).await;
        assert_eq!(provider["kind"], "native", "{provider}");
        assert_eq!(provider["signals"], json!(["item_changed"]));

        // POST /connections: the setup hook opens a channel, then the backfill runs.
        let id = create(node, tenant).await;
        assert_eq!(
            drain(node).await,
            [("setup".to_owned(), JobState::Succeeded), ("full".to_owned(), JobState::Succeeded)]
        );
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!((watched.len(), stopped.len()), (1, 0), "{watched:?} {stopped:?}");
        let c = connection(node, tenant, id).await;
        assert_eq!(c.metadata["channel_id"], json!(watched[0]));
        assert_eq!(c.renew_at, Some(t0() + Duration::hours(CHANNEL_HOURS - RENEW_AHEAD_HOURS)));
        assert_eq!(c.healthy, Some(true));
        assert_eq!(signal_ids(node, tenant).await, ["1", "2"]);
        // The channel token is sealed with the credentials, never shown.
        let token = channel_token(node, tenant, id).await;
        let (_, shown) = node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert!(!shown.to_string().contains(&token), "{shown}");

        // A change pushed on the channel, verified by the native's own check,
        // routed by its own key, mapped by its own code.
        let now = t0().timestamp();
        let change = json!({"items": [{"id": 3, "updated_at": "2026-12-01T08:59:00Z", "title": "Pushed"}]});
        let (status, answer) = post_webhook(node, &watched[0], &token, now, "d-1", &change).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
        assert_eq!(signal_ids(node, tenant).await, ["1", "2", "3"]);
        assert!(signal_ids(node, other).await.is_empty(), "another tenant sees nothing");

        // Forged: a wrong token, a stale timestamp, an unknown channel: 401, nothing stored.
        let forged = json!({"items": [{"id": 4, "updated_at": "2026-12-01T08:59:00Z", "title": "Forged"}]});
        for (channel, key, at) in [
            (watched[0].as_str(), "not-the-token", now),
            (watched[0].as_str(), token.as_str(), now - 600),
            ("ch-unknown", token.as_str(), now),
        ] {
            let (status, answer) = post_webhook(node, channel, key, at, "d-2", &forged).await;
            assert_eq!(status, 401, "{channel} {at}: {answer}");
        }
        assert_eq!(signal_ids(node, tenant).await, ["1", "2", "3"]);

        // The webhook asked for a follow-up sync (the native polls); it runs on
        // the native's code and finds the provider's new item.
        s.fake.add(5, 2);
        assert_eq!(drain(node).await, [("incremental".to_owned(), JobState::Succeeded)]);
        assert_eq!(signal_ids(node, tenant).await, ["1", "2", "3", "5"]);

        // The scheduler follows the native's interval (420 s), not its
        // descriptor's (an hour): one incremental job per 420 s window.
        for step in 1..=4 {
            s.clock.advance(Duration::seconds(INTERVAL));
            let enqueued = scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
            assert_eq!(enqueued, 1, "window {step}");
            assert_eq!(scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap(), 0);
            assert_eq!(drain(node).await, [("incremental".to_owned(), JobState::Succeeded)]);
        }
        // The connection test runs the native's health check.
        Mock::given(method("GET")).and(path("/health")).respond_with(ResponseTemplate::new(200)).mount(&s.server).await;
        let (_, tested) = node.api("POST", &format!("/connections/{id}/test"), Some(tenant), None).await;
        assert_eq!(tested["healthy"], true, "{tested}");
    }
}

crate::on_both! {
    async fn lifecycle_hooks_run_exactly_when_due_on_the_injected_clock(backend) {
        let s = setup(backend).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        mount_channels(&s).await;
        let id = create(node, tenant).await;
        drain(node).await;
        let renew_at = t0() + Duration::hours(CHANNEL_HOURS - RENEW_AHEAD_HOURS);
        let first_channel = channel_calls(&s.server).await.0[0].clone();

        // A second before it is due, nothing is renewed.
        s.clock.set(renew_at - Duration::seconds(1));
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        let ran = drain(node).await;
        assert!(ran.iter().all(|(t, _)| t != "renew"), "{ran:?}");
        assert_eq!(channel_calls(&s.server).await.0.len(), 1);

        // When due, once, however often the scheduler ticks: the new channel
        // is opened before the old one stops.
        s.clock.set(renew_at);
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        let ran = drain(node).await;
        assert_eq!(ran.iter().filter(|(t, _)| t == "renew").count(), 1, "{ran:?}");
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!(watched.len(), 2);
        assert_eq!(stopped, std::slice::from_ref(&first_channel));
        let order: Vec<String> = s.server.received_requests().await.unwrap().iter()
            .map(|r| r.url.path().to_owned()).filter(|p| p != "/items").collect();
        assert_eq!(order, ["/watch", "/watch", "/stop"]);
        let c = connection(node, tenant, id).await;
        assert_eq!(c.metadata["channel_id"], json!(watched[1]));
        let next_renewal = renew_at + Duration::hours(CHANNEL_HOURS - RENEW_AHEAD_HOURS);
        assert_eq!(c.renew_at, Some(next_renewal));

        // A renewal the provider fails is recorded on the connection and retried.
        Mock::given(method("POST")).and(path("/watch"))
            .respond_with(ResponseTemplate::new(503).set_body_string("backend unavailable"))
            .up_to_n_times(1).with_priority(1).mount(&s.server).await;
        s.clock.set(next_renewal);
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        let ran = drain(node).await;
        assert!(ran.contains(&("renew".to_owned(), JobState::Retrying)), "{ran:?}");
        let c = connection(node, tenant, id).await;
        assert_eq!(c.healthy, Some(false));
        assert!(c.last_error.as_deref().unwrap_or_default().contains("503"), "{:?}", c.last_error);
        assert_eq!(c.renew_at, Some(next_renewal), "a failed renewal changes nothing");
        // Nothing runs before the backoff has passed on the clock...
        assert!(drain(node).await.is_empty());
        // ...then the retry succeeds and the connection is healthy again.
        s.clock.advance(Duration::minutes(1));
        assert_eq!(drain(node).await, [("renew".to_owned(), JobState::Succeeded)]);
        let c = connection(node, tenant, id).await;
        assert_eq!((c.healthy, c.last_error.clone()), (Some(true), None));
        assert_eq!(
            c.renew_at,
            Some(next_renewal + Duration::minutes(1) + Duration::hours(CHANNEL_HOURS - RENEW_AHEAD_HOURS))
        );
        // The failed try (watched[2]) stopped nothing; the retry opened
        // watched[3] and only then stopped the channel it replaced.
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!(watched.len(), 4);
        assert_eq!(stopped, [first_channel.clone(), watched[1].clone()]);
        let live = watched[3].clone();
        assert_eq!(c.metadata["channel_id"], json!(live));

        // Disabled: the channel stops; enabled again: a new one opens.
        let (status, _) = node.api("PATCH", &format!("/connections/{id}"), Some(tenant), Some(json!({"enabled": false}))).await;
        assert_eq!(status, 200);
        assert_eq!(drain(node).await, [("teardown".to_owned(), JobState::Succeeded)]);
        let c = connection(node, tenant, id).await;
        assert_eq!((c.renew_at, c.metadata.get("channel_id")), (None, None));
        let (status, _) = node.api("PATCH", &format!("/connections/{id}"), Some(tenant), Some(json!({"enabled": true}))).await;
        assert_eq!(status, 200);
        assert_eq!(drain(node).await, [("setup".to_owned(), JobState::Succeeded)]);
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!(stopped.last(), Some(&live));
        assert_eq!((watched.len(), stopped.len()), (5, 3));

        // Deleted: gone for the tenant at once; the channel stops; then the row goes.
        let (status, _) = node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 204);
        let (status, _) = node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 404);
        let (_, list) = node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"], json!([]));
        assert_eq!(drain(node).await, [("teardown".to_owned(), JobState::Succeeded)]);
        let (_, stopped) = channel_calls(&s.server).await;
        assert_eq!(stopped.last(), Some(&watched[4]));
        assert_eq!(stopped.len(), 4);
        assert!(connections::row(&node.services.db, tenant, id).await.unwrap().is_none());
    }
}

crate::on_both! {
    async fn a_kind_native_descriptor_needs_its_native(backend) {
        // Registered over the API without a native connector of its id: 422
        // with the position of `kind`; with one: bound to it.
        let s = setup(backend).await;
        let node = &s.node;
        let yaml = descriptor(&s.server.uri()).replace("id: fakewatch", "id: nowatch");
        let req = http::Request::builder().method("PUT").uri("/providers/nowatch")
            .header("authorization", format!("Bearer {}", crate::sync::harness::TOKEN))
            .header("content-type", "application/yaml")
            .body(axum::body::Body::from(yaml)).unwrap();
        let (status, _, body) = node.send(req).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 422, "{body}");
        let d = &body["details"]["diagnostics"][0];
        assert_eq!((d["path"].as_str(), d["line"].as_u64()), (Some("kind"), Some(7)), "{body}");
        assert!(d["message"].as_str().unwrap().contains("native connector `nowatch`"), "{body}");
    }
}

crate::on_both! {
    async fn hook_jobs_overtaken_by_the_connection_state_do_nothing(backend) {
        let s = setup(backend).await;
        mount_channels(&s).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let patch = |enabled: bool| json!({"enabled": enabled});
        let path = |id: ConnectionId| format!("/connections/{id}");

        // Created (setup queued), disabled (teardown queued), enabled again (the
        // queued setup stands): the setup opens a channel, the teardown, now
        // stale, leaves it open.
        let id = create(node, tenant).await;
        for enabled in [false, true] {
            let (status, _) = node.api("PATCH", &path(id), Some(tenant), Some(patch(enabled))).await;
            assert_eq!(status, 200);
        }
        let ran = drain(node).await;
        assert!(ran.contains(&("setup".to_owned(), JobState::Succeeded)), "{ran:?}");
        assert!(ran.contains(&("teardown".to_owned(), JobState::Succeeded)), "{ran:?}");
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!((watched.len(), stopped.len()), (1, 0), "{watched:?} {stopped:?}");
        let c = connection(node, tenant, id).await;
        assert_eq!(c.metadata["channel_id"], json!(watched[0]));
        assert!(c.renew_at.is_some());

        // Disabled, enabled, disabled: the teardown stops the channel, the
        // stale setup opens nothing.
        for enabled in [false, true, false] {
            node.api("PATCH", &path(id), Some(tenant), Some(patch(enabled))).await;
        }
        drain(node).await;
        let (watched, stopped) = channel_calls(&s.server).await;
        assert_eq!((watched.len(), stopped.as_slice()), (1, std::slice::from_ref(&watched[0])));
        let c = connection(node, tenant, id).await;
        assert_eq!((c.enabled, c.renew_at, c.metadata.get("channel_id")), (false, None, None));
    }
}

crate::on_both! {
    async fn a_deletion_whose_teardown_fails_for_good_still_removes_the_connection(backend) {
        let s = setup(backend).await;
        Mock::given(method("POST")).and(path("/stop"))
            .respond_with(ResponseTemplate::new(404).set_body_string("no such channel"))
            .with_priority(1).mount(&s.server).await;
        mount_channels(&s).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = create(node, tenant).await;
        drain(node).await;
        let (status, _) = node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 204);
        // A second delete finds nothing: the connection is gone for its tenant.
        let (status, _) = node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 404);
        assert_eq!(drain(node).await, [("teardown".to_owned(), JobState::Failed)]);
        assert!(connections::row(&node.services.db, tenant, id).await.unwrap().is_none());
    }
}

crate::on_both! {
    async fn the_scheduler_sweeps_a_deletion_whose_teardown_ended(backend) {
        // A node that stopped between a teardown's end and the removal leaves a
        // `deleting` row with no teardown pending: the next tick removes it.
        let s = setup(backend).await;
        mount_channels(&s).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = create(node, tenant).await;
        drain(node).await;
        node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        // The teardown is pending: the sweep leaves the row alone.
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        assert!(connections::row(&node.services.db, tenant, id).await.unwrap().is_some());
        // The teardown "ended" without removing the row.
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        use poblysh_connectors::db::entities::sync_job;
        sync_job::Entity::delete_many()
            .filter(sync_job::Column::ConnectionId.eq(*id.as_uuid()))
            .exec(node.services.db.conn()).await.unwrap();
        scheduler::tick(&node.services, node.services.ambient.now()).await.unwrap();
        assert!(connections::row(&node.services.db, tenant, id).await.unwrap().is_none());
    }
}

crate::on_both! {
    async fn a_deleted_connection_that_needs_reauthorizing_is_still_removed(backend) {
        // The teardown cannot get a token (the refresh token is refused): the
        // connection stays `deleting`, not `needs_reauth`, and is removed.
        let s = setup_with(backend, Some(())).await;
        mount_channels(&s).await;
        Mock::given(method("POST")).and(path("/oauth/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
            .mount(&s.server).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let id = connections::create(
            &node.services.db,
            &node.services.keys,
            tenant,
            connections::NewConnection {
                provider: ID.into(),
                name: None,
                config: json!({}),
                credentials: Default::default(),
                tokens: Some(TokenSet {
                    access_token: SecretString::from("expired"),
                    refresh_token: Some(SecretString::from("revoked")),
                    expires_at: Some(t0() - Duration::hours(1)),
                    metadata: Default::default(),
                }),
            },
        )
        .await
        .unwrap()
        .id;
        let (status, _) = node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 204);
        let ran = drain(node).await;
        assert_eq!(ran, [("teardown".to_owned(), JobState::Failed)]);
        assert!(connections::row(&node.services.db, tenant, id).await.unwrap().is_none());
        let (_, list) = node.api("GET", "/connections", Some(tenant), None).await;
        assert_eq!(list["connections"], json!([]));
    }
}

/// A provider that takes 25 s (on the node's clock) to answer a page.
struct Slow {
    fake: Fake,
    clock: ManualClock,
}

impl wiremock::Respond for Slow {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        self.clock.advance(Duration::seconds(25));
        self.fake.respond(req)
    }
}

crate::on_both! {
    async fn a_job_finishes_when_its_run_ends(backend) {
        let s = setup(backend).await;
        mount_channels(&s).await;
        Mock::given(method("GET")).and(path("/items"))
            .respond_with(Slow { fake: s.fake.clone(), clock: s.clock.clone() })
            .with_priority(1)
            .mount(&s.server).await;
        let node = &s.node;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        create(node, tenant).await;
        drain(node).await;
        let (_, jobs) = node.api("GET", "/jobs?state=succeeded", Some(tenant), None).await;
        let full = jobs["jobs"].as_array().unwrap().iter().find(|j| j["job_type"] == "full").unwrap();
        let at = |k: &str| full[k].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
        assert_eq!(at("finished_at") - at("started_at"), Duration::seconds(25), "{full}");
    }
}

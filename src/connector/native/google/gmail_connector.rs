//! The Gmail connector (`gmail`): Google OAuth; on setup `users.getProfile`
//! (the mailbox, which pushes are routed by) and `users.watch` (renewed daily,
//! well before its 7-day expiry; `users.stop` on teardown); Pub/Sub pushes
//! verified by their Google-signed OIDC token and turned into one coalesced
//! incremental sync per mailbox; the sync reads `users.history.list` from the
//! stored `historyId` and `users.messages.get` (metadata) for the new
//! messages, a few at a time; a history too old (404), or no history id yet,
//! is a full resync of the last `backfillDays` through `users.messages.list`.
//! The scheduled poll runs even when no push arrives, so a lost push loses
//! nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::api::{self, Api};
use super::app::{self, GoogleApp};
use super::gmail::{self, GmailMapping, GmailMessage};
use super::oidc::{GoogleKeys, PushPolicy, PushVerifier};
use super::paging::{Pager, Turn};
use super::values::{backfill_days, lenient, list, number, path_segment, text};
use crate::config::GoogleConfig;
use crate::connector::native::{Native, NativeInput};
use crate::connector::{
    AuthorizeRequest, Capabilities, Catalogue, ConnectionContext, Connector, ConnectorError, Hook,
    HookOutcome, Hooks, PollSchedule, RoutingTarget, SyncMode, TokenContext, WebhookProfile,
    WebhookReceiver,
};
use crate::domain::{Checkpoints, TokenSet};
use crate::engine::health::HealthResult;
use crate::engine::mapping::{MapContext, Mapped, WebhookInput, WebhookMapped};
use crate::engine::poll::{PollOutcome, SignalSink};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::verify::VerifyError;

/// The least scope that serves the sync: `gmail.metadata` would do for the
/// history and the headers, but it refuses the `q` search the backfill window
/// needs (`after:`), so the read-only scope; messages are still fetched as
/// metadata only.
pub const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/gmail.readonly"];
/// Metadata key holding the mailbox (pushes are routed by it).
pub const MAILBOX: &str = "emailAddress";
/// Metadata key holding the mailbox's history id when the watch was made.
pub const WATCH_HISTORY: &str = "watchHistoryId";
/// Metadata key holding when the current watch expires.
pub const WATCH_EXPIRES: &str = "watchExpiration";
/// How often the poll fallback runs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// A watch is renewed this often (Google's advice: daily)...
pub const RENEW_EVERY: chrono::TimeDelta = chrono::TimeDelta::days(1);
/// ...and at the latest this long before it expires.
pub const RENEW_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(2);
/// Messages fetched at once.
pub const FETCH_CONCURRENCY: usize = 8;
/// Page size of `history.list` and `messages.list` (Gmail's maximum is 500).
const PAGE_SIZE: &str = "500";
/// The headers a message is fetched with.
const HEADERS: [&str; 6] = ["From", "To", "Cc", "Subject", "Date", "Message-Id"];
/// The API's name in errors.
const API: &str = "Gmail";
/// The catalogue's name for what the connector receives.
const PUSH_EVENT: &str = "gmail.push";

/// The native slot's entry.
pub fn native() -> Native {
    Native::new(gmail::PROVIDER, |input| Arc::new(Gmail::new(input)))
}

/// The connector.
#[derive(Debug)]
pub struct Gmail {
    catalogue: Catalogue,
    capabilities: Capabilities,
    app: GoogleApp,
    google: GoogleConfig,
    receiver: PushReceiver,
}

/// Its push half.
#[derive(Debug)]
struct PushReceiver {
    profile: WebhookProfile,
    /// `None` when the push audience or service account is not configured:
    /// every push is refused.
    verifier: Option<PushVerifier>,
}

impl Gmail {
    /// The connector, bound to its catalogue descriptor.
    pub fn new(input: NativeInput) -> Self {
        let google = input.config.google.clone();
        let verifier = match (&google.push_audience, &google.push_service_account) {
            (Some(audience), Some(account)) => Url::parse(&google.jwks_url).ok().map(|url| {
                PushVerifier::new(
                    GoogleKeys::new(url, input.http.clone()),
                    PushPolicy {
                        audience: audience.clone(),
                        service_account: account.clone(),
                    },
                )
            }),
            _ => None,
        };
        let mut catalogue = Catalogue::of(&input.descriptor.descriptor);
        catalogue.ingestion_mode = "polling_and_webhook";
        Gmail {
            catalogue,
            capabilities: Capabilities {
                oauth: Some(app::OAUTH),
                token_exchange: None,
                polling: Some(PollSchedule {
                    interval: POLL_INTERVAL,
                }),
                hooks: Hooks {
                    setup: true,
                    teardown: true,
                },
            },
            app: GoogleApp::new(&SCOPES, &google),
            receiver: PushReceiver {
                profile: WebhookProfile {
                    verified: true,
                    secret_field: None,
                    routing: Some(RoutingTarget::MetadataKey(MAILBOX.into())),
                    json_body: true,
                    change_ping: true,
                    issued_token: None,
                    hands_over_secret: false,
                    connection_filter: None,
                },
                verifier,
            },
            google,
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        let mut url = Url::parse(&format!(
            "{}/gmail/v1/users/me/{path}",
            self.google.gmail_url
        ))
        .map_err(|e| ConnectorError::Url(format!("Gmail URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn profile(&self, api: &Api<'_>) -> Result<Profile, ConnectorError> {
        api.get(self.url("profile", &[])?).await
    }

    /// `users.watch`; the outcome routes pushes to the mailbox and renews the
    /// watch daily, or two days before it expires if that is sooner.
    async fn watch(&self, ctx: &ConnectionContext<'_>) -> Result<HookOutcome, ConnectorError> {
        let api = Api::new(ctx, API)?;
        let profile = self.profile(&api).await?;
        let topic = text(ctx.config, "topic")
            .or_else(|| self.google.gmail_topic.clone())
            .ok_or_else(|| ConnectorError::Other {
                message: "no Pub/Sub topic for Gmail push: set POBLYSH_GMAIL_PUBSUB_TOPIC \
                          (projects/<project>/topics/<topic>) or the connection's `topic`"
                    .into(),
                retryable: false,
            })?;
        let mut body = json!({ "topicName": topic });
        let labels = list(ctx.config, "labelIds");
        if !labels.is_empty() {
            body["labelIds"] = json!(labels);
            body["labelFilterBehavior"] = json!("include");
        }
        let watch: Watch = api.post(self.url("watch", &[])?, &body).await?;
        let expires = number(&watch.expiration)
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ConnectorError::Other {
                message: "Gmail: users.watch answered no expiration".into(),
                retryable: true,
            })?;
        let mut metadata = Map::new();
        metadata.insert(
            MAILBOX.into(),
            json!(profile.email_address.trim().to_ascii_lowercase()),
        );
        metadata.insert(WATCH_EXPIRES.into(), json!(expires.to_rfc3339()));
        if let Some(h) = number(&watch.history_id) {
            metadata.insert(WATCH_HISTORY.into(), json!(h.to_string()));
        }
        Ok(HookOutcome {
            metadata,
            secrets: Default::default(),
            renew_at: Some((ctx.now + RENEW_EVERY).min(expires - RENEW_AHEAD)),
        })
    }

    /// One `messages.get` per id, [`FETCH_CONCURRENCY`] at a time, in order;
    /// a message deleted meanwhile (404) is left out.
    async fn messages(
        &self,
        api: &Api<'_>,
        ids: Vec<String>,
    ) -> Result<Vec<GmailMessage>, ConnectorError> {
        let mut query: Vec<(&str, &str)> = vec![("format", "metadata")];
        query.extend(HEADERS.iter().map(|h| ("metadataHeaders", *h)));
        let urls = ids
            .iter()
            .map(|id| self.url(&format!("messages/{}", path_segment(id)), &query))
            .collect::<Result<Vec<_>, _>>()?;
        let fetched: Vec<Result<Value, ConnectorError>> = futures_util::stream::iter(urls)
            .map(|url| api.get::<Value>(url))
            .buffered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut messages = Vec::with_capacity(fetched.len());
        for m in fetched {
            match m.map(serde_json::from_value::<GmailMessage>) {
                Ok(Ok(m)) => messages.push(m),
                // One message Gmail answers oddly must not stall the mailbox.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Gmail message of an unexpected shape skipped")
                }
                Err(e) if api::is_status(&e, 404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(messages)
    }

    /// Maps and writes one page's messages.
    async fn write(
        &self,
        ctx: &ConnectionContext<'_>,
        mapping: &GmailMapping,
        messages: &[GmailMessage],
        sink: &mut dyn SignalSink,
        pager: &mut Pager,
        outcome: &mut PollOutcome,
    ) -> Result<(), ConnectorError> {
        let map_ctx = MapContext {
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            received_at: ctx.now,
        };
        let signals: Vec<_> = messages
            .iter()
            .flat_map(|m| gmail::message_signals(m, mapping, &map_ctx))
            .collect();
        pager.write(sink, outcome, signals).await
    }

    /// Everything since `start` through `history.list`; `Err` 404 when Gmail
    /// no longer has that history. A read stopped at the page bound ends at
    /// its last record, for the next run to go on from.
    async fn history(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        mapping: &GmailMapping,
        start: &str,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let mut outcome = PollOutcome::default();
        let mut pager = Pager::new(API);
        let mut seen = HashSet::new();
        let mut page_token: Option<String> = None;
        let mut latest = start.to_owned();
        loop {
            let mut query = vec![
                ("startHistoryId", start),
                ("historyTypes", "messageAdded"),
                ("maxResults", PAGE_SIZE),
            ];
            if let Some(t) = &page_token {
                query.push(("pageToken", t));
            }
            let page: HistoryPage = api.get(self.url("history", &query)?).await?;
            let ids: Vec<String> = page
                .history
                .iter()
                .flat_map(|h| &h.messages_added)
                .map(|added| added.message.id.clone())
                .filter(|id| seen.insert(id.clone()))
                .collect();
            let messages = self.messages(api, ids).await?;
            self.write(ctx, mapping, &messages, sink, &mut pager, &mut outcome)
                .await?;
            let last_record = page.history.last().and_then(|h| number(&h.id));
            let Some(next) = page.next_page_token.filter(|t| !t.is_empty()) else {
                if let Some(h) = page.history_id.as_ref().and_then(number) {
                    latest = h.to_string();
                }
                break;
            };
            if let Some(r) = last_record {
                latest = r.to_string();
            }
            match pager.next(sink, next).await? {
                Turn::Next(next) => page_token = Some(next),
                Turn::Bound(_) => {
                    outcome.truncated = true;
                    break;
                }
            }
        }
        outcome.checkpoints = checkpoint(latest);
        Ok(outcome)
    }

    /// The last `backfillDays` through `messages.list`, and the history id
    /// taken before it (so nothing that arrives meanwhile is missed: the next
    /// sync reads it from the history).
    async fn resync(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        mapping: &mut GmailMapping,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let profile = self.profile(api).await?;
        if mapping.account.is_empty() {
            mapping.account = profile.email_address.trim().to_ascii_lowercase();
        }
        let start = number(&profile.history_id).ok_or_else(|| ConnectorError::Other {
            message: "Gmail: users.getProfile answered no historyId".into(),
            retryable: true,
        })?;
        let days = backfill_days(ctx.config)?;
        let since = ctx.now - chrono::TimeDelta::days(i64::from(days));
        let search = format!("after:{}", since.timestamp());
        let mut outcome = PollOutcome::default();
        let mut pager = Pager::new(API);
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![("q", search.as_str()), ("maxResults", PAGE_SIZE)];
            if let Some(t) = &page_token {
                query.push(("pageToken", t));
            }
            let page: MessagePage = api.get(self.url("messages", &query)?).await?;
            let ids = page.messages.into_iter().map(|m| m.id).collect();
            let messages = self.messages(api, ids).await?;
            self.write(ctx, mapping, &messages, sink, &mut pager, &mut outcome)
                .await?;
            // Newest first: a backfill stopped at the page bound leaves out
            // only the oldest mail of the window.
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => match pager.next(sink, next).await? {
                    Turn::Next(next) => page_token = Some(next),
                    Turn::Bound(_) => break,
                },
                None => break,
            }
        }
        outcome.checkpoints = checkpoint(start.to_string());
        Ok(outcome)
    }
}

fn checkpoint(history_id: String) -> Checkpoints {
    [(String::new(), Some(history_id))].into()
}

/// The connection's mapping settings.
fn mapping(ctx: &ConnectionContext<'_>) -> GmailMapping {
    GmailMapping {
        account: ctx
            .metadata
            .get(MAILBOX)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        press_domains: list(ctx.config, "pressDomains")
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    email_address: String,
    #[serde(default)]
    history_id: Value,
}

#[derive(Debug, Deserialize)]
struct Watch {
    #[serde(default, rename = "historyId")]
    history_id: Value,
    #[serde(default)]
    expiration: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage {
    #[serde(default, deserialize_with = "lenient")]
    history: Vec<HistoryRecord>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    history_id: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRecord {
    #[serde(default)]
    id: Value,
    #[serde(default, deserialize_with = "lenient")]
    messages_added: Vec<Added>,
}

#[derive(Debug, Deserialize)]
struct Added {
    message: MessageRef,
}

#[derive(Debug, Deserialize)]
struct MessageRef {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessagePage {
    #[serde(default, deserialize_with = "lenient")]
    messages: Vec<MessageRef>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[async_trait]
impl Connector for Gmail {
    fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn webhooks(&self) -> Option<&dyn WebhookReceiver> {
        Some(&self.receiver)
    }

    async fn authorize(&self, request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError> {
        self.app.authorize(request)
    }

    async fn exchange_token(
        &self,
        ctx: &TokenContext<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        self.app
            .exchange(ctx, code, redirect_uri, code_verifier)
            .await
    }

    async fn refresh_token(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        self.app.refresh(ctx, refresh_token).await
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let api = Api::new(ctx, API)?;
        let mut mapping = mapping(ctx);
        let start = checkpoints.get("").cloned().flatten();
        if let (SyncMode::Incremental, Some(start)) = (mode, start) {
            if mapping.account.is_empty() {
                mapping.account = self
                    .profile(&api)
                    .await?
                    .email_address
                    .trim()
                    .to_ascii_lowercase();
            }
            match self.history(ctx, &api, &mapping, &start, sink).await {
                // Gmail keeps about a week of history: older is a full resync.
                Err(e) if api::is_status(&e, 404) => {
                    tracing::info!(connection = %ctx.connection_id, "Gmail history {start} is gone; resyncing");
                }
                other => return other,
            }
        }
        self.resync(ctx, &api, &mut mapping, sink).await
    }

    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        let started = ctx.http.ambient().now();
        let result = match Api::new(ctx, API) {
            Ok(api) => self.profile(&api).await.map(|_| ()),
            Err(e) => Err(e),
        };
        api::health(started, ctx.http.ambient().now(), result)
    }

    async fn hook(
        &self,
        hook: Hook,
        ctx: &ConnectionContext<'_>,
    ) -> Result<HookOutcome, ConnectorError> {
        match hook {
            // Watching again replaces the mailbox's watch: setup and renewal
            // are the same call.
            Hook::Setup | Hook::Renew => self.watch(ctx).await,
            Hook::Teardown => {
                let api = Api::new(ctx, API)?;
                api.post_empty(self.url("stop", &[])?, &json!({})).await?;
                let mut outcome = HookOutcome::default();
                outcome.metadata.insert(MAILBOX.into(), Value::Null);
                outcome.metadata.insert(WATCH_EXPIRES.into(), Value::Null);
                outcome.metadata.insert(WATCH_HISTORY.into(), Value::Null);
                Ok(outcome)
            }
        }
    }
}

#[async_trait]
impl WebhookReceiver for PushReceiver {
    fn profile(&self) -> &WebhookProfile {
        &self.profile
    }

    async fn verify(
        &self,
        request: &WebhookRequest,
        _secret: Option<&SecretString>,
        _now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let verifier = self.verifier.as_ref().ok_or_else(|| {
            VerifyError::Bearer(
                "Gmail push is not configured: set POBLYSH_GOOGLE_PUSH_AUDIENCE and \
                 POBLYSH_GOOGLE_PUSH_SERVICE_ACCOUNT"
                    .into(),
            )
        })?;
        match verifier.verify(request.header("authorization")).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_unavailable() => Err(VerifyError::Unavailable(e.to_string())),
            Err(e) => Err(VerifyError::Bearer(e.to_string())),
        }
    }

    fn routing_value(&self, request: &WebhookRequest) -> Option<String> {
        gmail::parse_push(&request.body)
            .ok()
            .map(|p| p.email_address)
    }

    fn delivery_id(&self, request: &WebhookRequest) -> Option<String> {
        gmail::parse_push(&request.body).ok().map(|p| p.message_id)
    }

    async fn map(
        &self,
        _delivery: WebhookInput<'_>,
        _ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError> {
        // A push carries no message: the sync it asks for fetches them.
        Ok(WebhookMapped {
            event: PUSH_EVENT.into(),
            handled: true,
            mapped: Mapped::default(),
        })
    }
}

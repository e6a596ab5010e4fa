//! The webhook gateway: a request for `/webhooks/{provider}[/{tenant_id}]`
//! becomes stored Signals. In order: the connector's webhook receiver,
//! handshakes that need no verification (Trello's `HEAD`), the candidate
//! connections, verification of the raw request (fail closed), handshakes,
//! routing, the per-connection rate limit, the delivery id, mapping, and the
//! group-committed write (signals, delivery id, follow-up sync). Everything
//! provider-specific is asked of the connector (`WebhookReceiver`); the
//! gateway keeps the order, the secrets, the limits and the storage.

pub mod limiter;
pub mod targets;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::connector::{Connector, ConnectorError, RoutingTarget, WebhookReceiver};
use crate::db::StoreError;
use crate::db::repo::connections::{self, WebhookTarget};
use crate::descriptor::webhook::{PENDING_SECRET_FIELD, with_pending_secret};
use crate::domain::TenantId;
use crate::engine::mapping::{MapContext, WebhookInput, WebhookMapError};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::handshake::HandshakeReply;
use crate::engine::webhook::verify::VerifyError;
use crate::registry::Entry;
use crate::services::Services;
use limiter::Limiter;
use targets::Targets;
use writer::{Delivery, FollowUp, Part, Stored, Writer};

/// Settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Requests per minute per connection (0: no limit).
    pub rate_limit_per_minute: u32,
    /// How long a tenant's connection list is reused between requests.
    pub targets_ttl: Duration,
}

impl GatewaySettings {
    /// The settings from the service configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        GatewaySettings {
            rate_limit_per_minute: config.webhook_rate_limit,
            targets_ttl: Duration::from_secs(1),
        }
    }
}

/// How a delivery was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A handshake, answered as the descriptor says.
    Handshake(HandshakeReply),
    /// Verified and stored (or recognised as a duplicate).
    Accepted {
        /// The event type.
        event: String,
        /// Whether the connector handles this event type.
        handled: bool,
        /// Signals produced.
        signals: usize,
        /// The delivery id was seen before; nothing was stored.
        duplicate: bool,
    },
    /// No connection to deliver to: acknowledged and dropped.
    Dropped {
        /// Why.
        reason: &'static str,
    },
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No such provider, or it takes no webhooks.
    #[error("{0}")]
    NotFound(String),
    /// A method the provider's webhooks do not use.
    #[error("{0} is not accepted here; webhooks are POSTed")]
    MethodNotAllowed(String),
    /// Verification failed.
    #[error("webhook not verified: {0}")]
    Rejected(VerifyError),
    /// Verification cannot be done now; the provider should retry.
    #[error("webhook not verified now: {0}; retry later")]
    VerifierUnavailable(String),
    /// The body is not what the descriptor reads (not JSON, no event type).
    #[error("{0}")]
    BadBody(String),
    /// Over the connection's rate limit.
    #[error("too many webhook requests for this connection; retry in {0} s")]
    RateLimited(u64),
    /// Storage failed; the provider should retry.
    #[error("the webhook could not be stored; retry later")]
    Unavailable,
    /// Anything else (logged; answered generically).
    #[error("{0}")]
    Internal(String),
}

impl From<VerifyError> for GatewayError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Unavailable(reason) => GatewayError::VerifierUnavailable(reason),
            e => GatewayError::Rejected(e),
        }
    }
}

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "webhook storage error");
        GatewayError::Unavailable
    }
}

/// The gateway of one node.
#[derive(Debug)]
pub struct Gateway {
    services: Arc<Services>,
    limiter: Limiter,
    /// Secrets handed over in unsigned handshakes, per connection.
    handovers: Limiter,
    targets: Targets,
    writer: Writer,
}

/// A limiter's wait as the whole seconds of a `Retry-After` (rounded up, at least 1).
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Handed-over secrets a connection takes per minute (a provider sends one
/// when a subscription is made or its token is resent).
const HANDOVERS_PER_MINUTE: u32 = 3;

fn count(provider: &str, outcome: &'static str) {
    metrics::counter!("webhook_requests_total", "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
}

impl Gateway {
    /// A gateway over `services`; starts its writer task.
    pub fn new(services: Arc<Services>, settings: GatewaySettings) -> Self {
        Gateway {
            limiter: Limiter::new(settings.rate_limit_per_minute),
            handovers: Limiter::new(HANDOVERS_PER_MINUTE),
            targets: Targets::new(settings.targets_ttl),
            writer: Writer::spawn(services.db.clone()),
            services,
        }
    }

    /// Drops this node's cached webhook targets of `provider` for `tenant` (and
    /// the tenant-less list), so a changed secret counts at once here; other
    /// nodes see it when their cache expires (`targets_ttl`).
    pub fn forget_targets(&self, provider: &str, tenant: TenantId) {
        self.targets.forget(provider, tenant);
    }

    /// Handles one delivery to `provider` (and `tenant`, when the URL names one).
    pub async fn handle(
        &self,
        provider: &str,
        tenant: Option<TenantId>,
        request: WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<Reply, GatewayError> {
        let entry = self.services.registry.get(provider);
        let result = match &entry {
            Some(entry) => self.process(entry, tenant, request, now).await,
            None => Err(GatewayError::NotFound(format!("no provider `{provider}`"))),
        };
        let outcome = match &result {
            Ok(Reply::Handshake(_)) => "handshake",
            Ok(Reply::Accepted {
                duplicate: true, ..
            }) => "duplicate",
            Ok(Reply::Accepted { handled: false, .. }) => "ignored",
            Ok(Reply::Accepted { .. }) => "accepted",
            Ok(Reply::Dropped { .. }) => "dropped",
            Err(GatewayError::NotFound(_)) => "not_found",
            Err(GatewayError::MethodNotAllowed(_)) => "method_not_allowed",
            Err(GatewayError::Rejected(_)) => "rejected",
            Err(GatewayError::BadBody(_)) => "bad_body",
            Err(GatewayError::RateLimited(_)) => "rate_limited",
            Err(GatewayError::VerifierUnavailable(_)) => "verifier_unavailable",
            Err(GatewayError::Unavailable | GatewayError::Internal(_)) => "error",
        };
        // Only known providers become label values: a path segment is not.
        let label = if entry.is_some() { provider } else { "unknown" };
        count(label, outcome);
        let failed = match &result {
            Err(GatewayError::Rejected(e)) => Some(e.reason()),
            Err(GatewayError::VerifierUnavailable(_)) => Some("unavailable"),
            _ => None,
        };
        if let Some(reason) = failed {
            metrics::counter!("webhook_verification_failures_total", "provider" => label.to_owned(), "reason" => reason)
                .increment(1);
        }
        match &result {
            Err(GatewayError::Rejected(e)) => {
                tracing::warn!(provider, tenant = ?tenant, error = %e, "webhook rejected");
            }
            Ok(Reply::Dropped { reason }) => {
                tracing::info!(provider, tenant = ?tenant, reason, "webhook dropped");
            }
            _ => {}
        }
        result
    }

    async fn process(
        &self,
        entry: &Entry,
        tenant: Option<TenantId>,
        mut request: WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<Reply, GatewayError> {
        let connector = entry.connector.as_ref();
        let provider = connector.id();
        let Some(receiver) = connector.webhooks() else {
            return Err(GatewayError::NotFound(format!(
                "provider `{provider}` does not receive webhooks"
            )));
        };
        let profile = receiver.profile();
        receiver.prepare(&mut request);
        if let Some(reply) = receiver.handshake(&request, false) {
            if let Some(captured) = &reply.captured {
                self.keep_pending(provider, tenant, profile, captured)
                    .await?;
            }
            return Ok(Reply::Handshake(reply));
        }
        if request.method != http::Method::POST {
            return Err(GatewayError::MethodNotAllowed(request.method.to_string()));
        }
        // Routing a tenant-less delivery trusts what it says: only verified ones.
        if tenant.is_none() && (profile.routing.is_none() || !profile.verified) {
            return Err(GatewayError::NotFound(format!(
                "provider `{provider}` routes no tenant-less webhooks; use /webhooks/{provider}/{{tenant_id}}"
            )));
        }
        let candidates = self
            .targets
            .get(
                &self.services,
                provider,
                tenant,
                profile.secret_field.as_deref(),
            )
            .await?;
        // Issued tokens are per connection: no app-level secret stands in.
        let app_secret = self
            .services
            .config
            .provider_secret(provider, "WEBHOOK_SECRET")
            .filter(|_| profile.issued_token.is_none())
            .map(|s| SecretString::from(s.to_owned()));
        let verified = self
            .verify(
                receiver,
                tenant.is_some(),
                &candidates,
                app_secret.as_ref(),
                &request,
                now,
            )
            .await?;
        // Handshakes may carry no body at all (Google's `sync`).
        if let Some(reply) = receiver.handshake(&request, true) {
            return Ok(Reply::Handshake(reply));
        }
        if profile.json_body && request.json().is_none() {
            return Err(GatewayError::BadBody("the body is not JSON".into()));
        }
        // Without the tenant in the URL, `verify` has routed already.
        let routed = match tenant {
            Some(_) => route(receiver, &request, verified, true),
            None => verified,
        };
        // A connection that follows only some channels takes only theirs.
        let routed: Vec<_> = match &profile.connection_filter {
            None => routed,
            Some(field) => {
                let values = receiver.filter_values(&request);
                routed
                    .into_iter()
                    .filter(|t| takes(t.connection.config.get(field), &values))
                    .collect()
            }
        };
        if routed.is_empty() {
            return Ok(Reply::Dropped {
                reason: "no connection matches",
            });
        }
        // Over its limit, a connection misses this delivery; the others get it.
        let mut wait = None;
        let routed: Vec<_> = routed
            .into_iter()
            .filter(|t| match self.limiter.check(t.connection.id) {
                Ok(()) => true,
                Err(w) => {
                    wait = Some(wait.map_or(w, |old: std::time::Duration| old.min(w)));
                    false
                }
            })
            .collect();
        if routed.is_empty() {
            let wait = wait.unwrap_or_default();
            return Err(GatewayError::RateLimited(retry_after_secs(wait)));
        }
        self.deliver(connector, receiver, routed, request, now)
            .await
    }

    /// Keeps a secret a handshake handed over as the pending webhook secret of
    /// the tenant's connections to `provider`, for the operator to confirm. It
    /// verifies nothing until then, so an unsigned handshake cannot make a
    /// secret of its choosing count.
    async fn keep_pending(
        &self,
        provider: &str,
        tenant: Option<TenantId>,
        profile: &crate::connector::WebhookProfile,
        captured: &crate::engine::webhook::handshake::Captured,
    ) -> Result<(), GatewayError> {
        let Some(tenant) = tenant else {
            return Err(GatewayError::NotFound(format!(
                "provider `{provider}` hands over its secret on the tenant URL only: use /webhooks/{provider}/{{tenant_id}}"
            )));
        };
        let targets = self
            .targets
            .get(
                &self.services,
                provider,
                Some(tenant),
                profile.secret_field.as_deref(),
            )
            .await?;
        if targets.is_empty() {
            return Err(GatewayError::NotFound(format!(
                "tenant has no enabled `{provider}` connection to keep the secret for"
            )));
        }
        for t in targets.iter() {
            // Unsigned: each one costs a sealed write, and a few may push the
            // real one out, so they have a tight limit of their own (not the
            // deliveries' budget, which they must not use up).
            if let Err(wait) = self.handovers.check(t.connection.id) {
                return Err(GatewayError::RateLimited(retry_after_secs(wait)));
            }
            let secret = captured.0.expose_secret();
            connections::update_credentials(
                &self.services.db,
                &self.services.keys,
                tenant,
                t.connection.id,
                |fields| {
                    let stored = fields.get(PENDING_SECRET_FIELD).map(|s| s.expose_secret());
                    let list = with_pending_secret(stored, secret);
                    fields.insert(PENDING_SECRET_FIELD.into(), SecretString::from(list));
                },
            )
            .await?;
        }
        tracing::info!(provider, tenant = %tenant, connections = targets.len(), "webhook secret handed over; pending the operator's confirmation");
        Ok(())
    }

    /// The connections the delivery verifies for. With the tenant in the URL,
    /// the raw body is verified before anything is parsed (routing comes
    /// after); without it, the app-level secret is checked first, then the
    /// delivery is routed and connections with a secret of their own are
    /// verified with it: the result is already routed.
    async fn verify<'a>(
        &self,
        receiver: &dyn WebhookReceiver,
        tenant_in_url: bool,
        candidates: &'a [WebhookTarget],
        app_secret: Option<&SecretString>,
        request: &WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<&'a WebhookTarget>, GatewayError> {
        let profile = receiver.profile();
        if !profile.verified {
            return Ok(if tenant_in_url {
                candidates.iter().collect()
            } else {
                route(receiver, request, candidates.iter().collect(), false)
            });
        }
        if candidates.is_empty() || !tenant_in_url {
            // The app's secret first (a handshake, or a delivery for no
            // connection, must still be authentic); then, after routing,
            // connections with a secret of their own verify with it.
            let app_result = receiver.verify(request, app_secret, now).await;
            let mut last_error = app_result.clone().err();
            let routed = if tenant_in_url {
                Vec::new()
            } else {
                route(receiver, request, candidates.iter().collect(), false)
            };
            // The app's secret vouches only for routing values the provider
            // set (metadata from the OAuth exchange); a config value is the
            // tenant's own claim, so a connection routed by one must prove
            // itself with its own secret.
            let app_vouches = matches!(profile.routing, Some(RoutingTarget::MetadataKey(_)));
            let mut targets = Vec::new();
            for t in routed {
                let result = match t.secret.as_ref() {
                    Some(_) => verify_own(receiver, request, t, now).await,
                    None if app_vouches => app_result.clone(),
                    None => Err(VerifyError::NoSecret),
                };
                match result {
                    Ok(()) => targets.push(t),
                    Err(e) => last_error = Some(e),
                }
            }
            return match (app_result, targets.is_empty(), last_error) {
                (Ok(()), _, _) | (_, false, _) => Ok(targets),
                (Err(_), true, Some(e)) => Err(e.into()),
                (Err(e), true, None) => Err(e.into()),
            };
        }
        let mut targets = Vec::new();
        let mut last_error = None;
        let mut app_result = None;
        for t in candidates {
            let result = match t.secret.as_ref() {
                Some(_) => verify_own(receiver, request, t, now).await,
                None => match &app_result {
                    Some(r) => Clone::clone(r),
                    None => app_result
                        .insert(receiver.verify(request, app_secret, now).await)
                        .clone(),
                },
            };
            match result {
                Ok(()) => targets.push(t),
                Err(e) => last_error = Some(e),
            }
        }
        match (targets.is_empty(), last_error) {
            (true, Some(e)) => Err(e.into()),
            _ => Ok(targets),
        }
    }

    async fn deliver(
        &self,
        connector: &dyn Connector,
        receiver: &dyn WebhookReceiver,
        routed: Vec<&WebhookTarget>,
        request: WebhookRequest,
        now: DateTime<Utc>,
    ) -> Result<Reply, GatewayError> {
        let provider = connector.id().to_owned();
        let delivery_id = receiver
            .delivery_id(&request)
            .map(|id| id.replace('\0', ""));
        let headers = request.headers.clone();
        let body = match (request.into_json(), receiver.profile().json_body) {
            (Some(body), _) => body,
            (None, false) => serde_json::Value::Null,
            (None, true) => return Err(GatewayError::BadBody("the body is not JSON".into())),
        };
        let follow_up = match (
            connector.capabilities().polling.is_some(),
            receiver.profile().change_ping,
        ) {
            (false, _) => FollowUp::None,
            (true, false) => FollowUp::Backstop,
            (true, true) => FollowUp::Now,
        };
        let mut parts = Vec::with_capacity(routed.len());
        let mut event = String::new();
        let mut handled = false;
        for target in &routed {
            let ctx = MapContext {
                tenant_id: target.connection.tenant_id,
                connection_id: target.connection.id,
                received_at: now,
            };
            let input = WebhookInput {
                body: &body,
                headers: &headers,
                event: None,
            };
            let mapped = receiver.map(input, &ctx).await.map_err(|e| match e {
                ConnectorError::Webhook(WebhookMapError::MissingEventType(at)) => {
                    GatewayError::BadBody(format!("no event type: expected {at}"))
                }
                other => GatewayError::Internal(other.to_string()),
            })?;
            event = mapped.event;
            handled = mapped.handled;
            for skipped in &mapped.mapped.skipped {
                tracing::debug!(provider, event, index = skipped.index, reason = %skipped.reason, "webhook item skipped");
            }
            parts.push(Part {
                tenant: target.connection.tenant_id,
                connection: target.connection.id,
                signals: mapped.mapped.signals,
                follow_up: if handled { follow_up } else { FollowUp::None },
            });
        }
        let stored = self
            .writer
            .store(Delivery {
                provider: provider.clone(),
                delivery_id,
                outcome: if handled { "accepted" } else { "ignored" },
                parts,
                received_at: now,
            })
            .await
            .map_err(|_| GatewayError::Unavailable)?;
        let (signals, duplicate) = match stored {
            Stored::New { signals } => (signals, false),
            Stored::Duplicate => (0, true),
        };
        if signals > 0 {
            metrics::counter!("signals_ingested_total", "provider" => provider, "source" => "webhook")
                .increment(signals as u64);
        }
        Ok(Reply::Accepted {
            event,
            handled,
            signals,
            duplicate,
        })
    }
}

/// Narrows `targets` by the delivery's routing value: the connections whose
/// config field or metadata holds it. With the tenant in the URL
/// (`tenant_in_url`), a connector without routing, or a request without a
/// routing value, goes to the tenant's first (oldest) connection; without the
/// tenant, a request that cannot be routed reaches no one.
/// Verifies a delivery with a connection's own secret, or, within its grace
/// window, the secret that one replaced.
async fn verify_own(
    receiver: &dyn WebhookReceiver,
    request: &WebhookRequest,
    target: &WebhookTarget,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let current = receiver.verify(request, target.secret.as_ref(), now).await;
    match (&current, target.previous.as_ref()) {
        (Err(e), Some(previous)) if !matches!(e, VerifyError::Unavailable(_)) => {
            match receiver.verify(request, Some(previous), now).await {
                Ok(()) => {
                    metrics::counter!("webhook_previous_secret_used_total", "provider" => target.connection.provider.clone())
                        .increment(1);
                    Ok(())
                }
                Err(_) => current,
            }
        }
        _ => current,
    }
}

fn route<'a>(
    receiver: &dyn WebhookReceiver,
    request: &WebhookRequest,
    targets: Vec<&'a WebhookTarget>,
    tenant_in_url: bool,
) -> Vec<&'a WebhookTarget> {
    let value = receiver
        .profile()
        .routing
        .as_ref()
        .and_then(|target| Some((target, receiver.routing_value(request)?)));
    let Some((routing, value)) = value else {
        return if tenant_in_url {
            targets.into_iter().take(1).collect()
        } else {
            Vec::new()
        };
    };
    targets
        .into_iter()
        .filter(|t| {
            let found = match routing {
                RoutingTarget::ConfigField(f) => t.connection.config.get(f),
                RoutingTarget::MetadataKey(k) => t.connection.metadata.get(k),
            };
            matches_value(found, &value)
        })
        .collect()
}

/// Whether a connection with `list` (its filter config field) takes a delivery
/// with `values`: every delivery when the list is unset or empty.
fn takes(list: Option<&serde_json::Value>, values: &[String]) -> bool {
    match list {
        Some(serde_json::Value::Array(items)) if !items.is_empty() => {
            values.iter().any(|v| matches_value(list, v))
        }
        _ => true,
    }
}

/// Whether a config or metadata value is the routing value (or, for a list,
/// holds it). Case-insensitive: providers differ in case (`Octo-Org/Hello`).
fn matches_value(found: Option<&serde_json::Value>, value: &str) -> bool {
    use serde_json::Value;
    let one = |v: &Value| match v {
        Value::String(s) => s.eq_ignore_ascii_case(value),
        Value::Number(n) => n.to_string() == value,
        _ => false,
    };
    match found {
        Some(Value::Array(items)) => items.iter().any(one),
        Some(v) => one(v),
        None => false,
    }
}

//! `WebhookReceiver`: everything the gateway asks of a connector that takes
//! webhooks: how deliveries are verified and routed (a `WebhookProfile`),
//! handshakes, verification of the raw request, the routing value and delivery
//! id of a request, and mapping. The descriptor connector answers from its
//! compiled webhook section; a native one brings its own (an OIDC JWT check, a
//! channel token).

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::ConnectorError;
use crate::engine::mapping::{MapContext, WebhookInput, WebhookMapped};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::handshake::HandshakeReply;
use crate::engine::webhook::verify::VerifyError;

pub use crate::descriptor::compile::RoutingTarget;

/// How a connector's deliveries are verified and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookProfile {
    /// Whether deliveries are verified at all (a descriptor's `verification:
    /// none` is not: it may not route tenant-less deliveries).
    pub verified: bool,
    /// The credential field holding a connection's own webhook secret, when
    /// connections may have one (it wins over the app-level secret).
    pub secret_field: Option<String>,
    /// What the routing value of a delivery is matched against; `None`: a
    /// delivery must name its tenant in the URL.
    pub routing: Option<RoutingTarget>,
    /// Whether a delivery's body must be JSON (a change ping may have none).
    pub json_body: bool,
    /// Whether a delivery only says that something changed (Gmail's Pub/Sub
    /// push, a Drive or Calendar channel ping): each handled one asks for an
    /// incremental sync at once (coalesced with one already queued), instead
    /// of the once-a-minute backstop after deliveries that carry their Signals.
    pub change_ping: bool,
    /// Set when each connection has a token of its own that the service issues
    /// (`POST /connections/{id}/webhook-token`), stored in `secret_field`: the
    /// app-level secret then never verifies.
    pub issued_token: Option<IssuedToken>,
    /// The `list` config field a connection's deliveries are filtered by
    /// (`WebhookReceiver::filter_values` must be in it, when it is set).
    pub connection_filter: Option<String>,
    /// Whether the provider hands the connection's secret over in a handshake
    /// (kept pending until the operator confirms it into `secret_field`).
    pub hands_over_secret: bool,
}

/// Where the sender puts an issued webhook token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The header carrying it (with `prefix` before the token).
    pub header: Option<String>,
    /// Or the query parameter.
    pub query_param: Option<String>,
    /// Text before the token in the header.
    pub prefix: Option<String>,
}

/// A connector's webhook half.
#[async_trait::async_trait]
pub trait WebhookReceiver: Send + Sync + std::fmt::Debug {
    /// How deliveries are verified and routed.
    fn profile(&self) -> &WebhookProfile;

    /// Prepares a request before anything reads it (e.g. which parts of the
    /// body to parse).
    fn prepare(&self, _request: &mut WebhookRequest) {}

    /// The answer to a handshake, if `request` is one. Asked before
    /// verification (`verified` false: only handshakes that need no proof) and
    /// after it.
    fn handshake(&self, _request: &WebhookRequest, _verified: bool) -> Option<HandshakeReply> {
        None
    }

    /// Verifies the raw request with `secret` (the connection's own, or the
    /// app's; `None` when neither is configured). Fails closed.
    async fn verify(
        &self,
        request: &WebhookRequest,
        secret: Option<&SecretString>,
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError>;

    /// The value a delivery is routed by (matched against `profile().routing`).
    fn routing_value(&self, _request: &WebhookRequest) -> Option<String> {
        None
    }

    /// The values a connection's `connection_filter` list must hold one of.
    fn filter_values(&self, _request: &WebhookRequest) -> Vec<String> {
        Vec::new()
    }

    /// The provider's id of the delivery, for dedupe.
    fn delivery_id(&self, _request: &WebhookRequest) -> Option<String> {
        None
    }

    /// Maps a verified delivery to Signals for one connection (`ctx`).
    async fn map(
        &self,
        delivery: WebhookInput<'_>,
        ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError>;
}

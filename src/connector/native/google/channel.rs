//! Google watch channels, as Drive (`changes.watch`) and Calendar
//! (`events.watch`) use them: opening a channel per watched resource with a
//! new UUID and its own token, renewing them before they expire (the new
//! channels first, then the old ones stopped: no gap), stopping them, and the
//! pings they bring (`X-Goog-Channel-ID`, `X-Goog-Channel-Token`,
//! `X-Goog-Resource-State`, `X-Goog-Message-Number`): routed by channel id,
//! verified in constant time, `sync` answered 200 with nothing else, every
//! other state one coalesced incremental sync.
//!
//! A channel's token is `base64url(HMAC-SHA256(secret, channel id))` with
//! one random secret per connection, stored sealed with its credentials
//! (`channelSecret`): every channel has its own unguessable token, and a
//! connection's old and new channels both verify while a renewal overlaps.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use url::Url;

use super::api::{self, Api};
use crate::connector::{
    ConnectionContext, ConnectorError, HookOutcome, RoutingTarget, WebhookProfile,
};
use crate::domain::Ambient;
use crate::engine::mapping::{Mapped, WebhookMapped};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::handshake::HandshakeReply;
use crate::engine::webhook::verify::VerifyError;

/// The credential field holding the connection's channel secret.
pub const SECRET_FIELD: &str = "channelSecret";
/// Metadata: the ids of the live channels (pings are routed by them).
pub const CHANNELS: &str = "channels";
/// Metadata: the live channels, as [`Watch`]es.
pub const WATCHES: &str = "watches";
/// How long a channel is asked to live (Google may grant less).
pub const REQUESTED_TTL: TimeDelta = TimeDelta::days(7);
/// Bytes of randomness in a channel secret.
const SECRET_BYTES: usize = 32;

/// One open channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    /// The channel id (a UUID).
    pub id: String,
    /// Google's id of the watched resource (needed to stop the channel).
    pub resource_id: String,
    /// What it watches (`changes`, or a calendar id).
    pub resource: String,
    /// When Google stops it.
    pub expiration: DateTime<Utc>,
}

/// The token of channel `id` under `secret`.
pub fn channel_token(secret: &str, id: &str) -> String {
    use base64::Engine;
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A new channel id: a random (v4) UUID from the node's randomness.
pub fn channel_id(ambient: &Ambient) -> String {
    let mut bytes = [0u8; 16];
    ambient.random.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The webhook profile of a channel connector.
pub fn profile() -> WebhookProfile {
    WebhookProfile {
        verified: true,
        secret_field: Some(SECRET_FIELD.into()),
        routing: Some(RoutingTarget::MetadataKey(CHANNELS.into())),
        json_body: false,
        change_ping: true,
        issued_token: None,
        hands_over_secret: false,
        connection_filter: None,
    }
}

/// Verifies a ping's token against the connection's secret, in constant time.
pub fn verify(request: &WebhookRequest, secret: Option<&SecretString>) -> Result<(), VerifyError> {
    let secret = secret.ok_or(VerifyError::NoSecret)?;
    let id = request
        .header("x-goog-channel-id")
        .ok_or_else(|| VerifyError::MissingHeader("X-Goog-Channel-ID".into()))?;
    let given = request
        .header("x-goog-channel-token")
        .ok_or_else(|| VerifyError::MissingHeader("X-Goog-Channel-Token".into()))?;
    let expected = channel_token(secret.expose_secret(), id);
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::TokenMismatch)
    }
}

/// `sync` (sent once when a channel opens) is answered 200 and does nothing;
/// only after verification.
pub fn handshake(request: &WebhookRequest, verified: bool) -> Option<HandshakeReply> {
    let state = request.header("x-goog-resource-state")?;
    (verified && state.eq_ignore_ascii_case("sync")).then(|| HandshakeReply {
        name: Some("sync".into()),
        status: 200,
        body: None,
        captured: None,
    })
}

/// The channel id a ping is routed by.
pub fn routing_value(request: &WebhookRequest) -> Option<String> {
    request.header("x-goog-channel-id").map(str::to_owned)
}

/// A ping's id: its channel and message number (Google numbers each channel's pings).
pub fn delivery_id(request: &WebhookRequest) -> Option<String> {
    let number = request.header("x-goog-message-number")?;
    Some(format!("{}:{number}", routing_value(request)?))
}

/// A ping carries no change: it asks for the sync (`event` names it).
pub fn mapped(event: &str) -> WebhookMapped {
    WebhookMapped {
        event: event.into(),
        handled: true,
        mapped: Mapped::default(),
    }
}

/// The channels a connection has open, from its metadata.
pub fn watches(metadata: &Value) -> Vec<Watch> {
    metadata
        .get(WATCHES)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// The connection's channel secret, or a new one (then also in `outcome`).
pub fn secret(ctx: &ConnectionContext<'_>, outcome: &mut HookOutcome) -> String {
    match ctx.credentials.fields.get(SECRET_FIELD) {
        Some(s) if !s.expose_secret().is_empty() => s.expose_secret().to_owned(),
        _ => {
            let s = ctx.ambient.token(SECRET_BYTES);
            outcome
                .secrets
                .insert(SECRET_FIELD.into(), Some(SecretString::from(s.clone())));
            s
        }
    }
}

/// Where Google sends a connector's pings: `{POBLYSH_PUBLIC_URL}/webhooks/{provider}`.
pub fn address(public_url: Option<&str>, provider: &str) -> Result<String, ConnectorError> {
    let base = public_url.ok_or_else(|| ConnectorError::Other {
        message: format!(
            "{provider} push needs the service's public https URL: set POBLYSH_PUBLIC_URL"
        ),
        retryable: false,
    })?;
    Ok(format!(
        "{}/webhooks/{provider}",
        base.trim_end_matches('/')
    ))
}

/// The body of a `*.watch` request for channel `id`.
pub fn watch_body(id: &str, token: &str, address: &str, now: DateTime<Utc>) -> Value {
    json!({
        "id": id,
        "type": "web_hook",
        "address": address,
        "token": token,
        "expiration": (now + REQUESTED_TTL).timestamp_millis().to_string(),
    })
}

/// Google's answer to a `*.watch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Opened {
    /// The watched resource's id.
    pub resource_id: String,
    /// Epoch milliseconds, as a string (or, in docs, a number).
    #[serde(default)]
    pub expiration: Value,
}

impl Opened {
    /// The channel it opened.
    pub fn watch(self, id: String, resource: &str, now: DateTime<Utc>) -> Watch {
        let expiration = match &self.expiration {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .and_then(DateTime::from_timestamp_millis)
        // Google's default when it says nothing: an hour.
        .unwrap_or(now + TimeDelta::hours(1));
        Watch {
            id,
            resource_id: self.resource_id,
            resource: resource.to_owned(),
            expiration,
        }
    }
}

/// Stops one channel at `stop_url` (`channels.stop`); a channel Google no
/// longer knows (404) is stopped already.
pub async fn stop(api: &Api<'_>, stop_url: Url, watch: &Watch) -> Result<(), ConnectorError> {
    let body = json!({"id": watch.id, "resourceId": watch.resource_id});
    match api.post_empty(stop_url, &body).await {
        Err(e) if api::is_status(&e, 404) => Ok(()),
        other => other,
    }
}

/// The outcome of opening `opened` (and stopping what they replace): their ids
/// route pings, and the renewal is due when a quarter of the shortest-lived
/// one's life is left.
pub fn opened_outcome(
    mut outcome: HookOutcome,
    opened: &[Watch],
    now: DateTime<Utc>,
) -> HookOutcome {
    let ids: Vec<&str> = opened.iter().map(|w| w.id.as_str()).collect();
    outcome.metadata.insert(CHANNELS.into(), json!(ids));
    outcome.metadata.insert(WATCHES.into(), json!(opened));
    outcome.renew_at = opened
        .iter()
        .map(|w| w.expiration)
        .min()
        .map(|first| now + (first - now) * 3 / 4);
    outcome
}

/// The outcome of a teardown: no channel, no secret.
pub fn closed_outcome() -> HookOutcome {
    let mut metadata = Map::new();
    metadata.insert(CHANNELS.into(), Value::Null);
    metadata.insert(WATCHES.into(), Value::Null);
    let mut outcome = HookOutcome {
        metadata,
        ..HookOutcome::default()
    };
    outcome.secrets.insert(SECRET_FIELD.into(), None);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_has_its_own_token_and_only_the_secret_makes_it() {
        let a = channel_token("secret", "4ba78bf0-6a47-11e2-bcfd-0800200c9a66");
        assert_eq!(
            a,
            channel_token("secret", "4ba78bf0-6a47-11e2-bcfd-0800200c9a66")
        );
        assert_ne!(
            a,
            channel_token("secret", "4ba78bf0-6a47-11e2-bcfd-0800200c9a67")
        );
        assert_ne!(
            a,
            channel_token("other", "4ba78bf0-6a47-11e2-bcfd-0800200c9a66")
        );
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn the_renewal_is_due_with_a_quarter_of_the_shortest_life_left() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let watch = |days: i64| Watch {
            id: format!("c{days}"),
            resource_id: "r".into(),
            resource: "primary".into(),
            expiration: now + TimeDelta::days(days),
        };
        let outcome = opened_outcome(HookOutcome::default(), &[watch(8), watch(4)], now);
        assert_eq!(outcome.renew_at, Some(now + TimeDelta::days(3)));
        assert_eq!(outcome.metadata[CHANNELS], json!(["c8", "c4"]));
    }
}

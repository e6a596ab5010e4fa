//! Webhook descriptors: event typing, verification (signature or shared token),
//! handshakes, delivery ids, routing and per-event field-mapping overrides.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::SignatureConfig;
use super::mapping::{FieldMappingDescriptor, Operator};

/// Webhook ingestion (`mode: webhook`, or `ingestion.webhook` in `polling_and_webhook`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Event types this connector handles; other events are acknowledged and dropped.
    pub event_types: Vec<String>,
    /// JSONPath to the event type in the payload (e.g. Slack `$.event.type`). One of
    /// `eventTypePath` and `eventTypeHeader` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type_path: Option<String>,
    /// Extension: header carrying the event type (e.g. `X-GitHub-Event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type_header: Option<String>,
    /// How deliveries are authenticated. `signature` needs a signature block
    /// (`signature` here, or `auth.method: webhook_secret`); `token` needs `token`.
    pub verification: Verification,
    /// Extension: signature verification (HMAC or JWT) for this webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureConfig>,
    /// Extension: shared-token verification (`verification: token`). Without it the token
    /// is expected as `Authorization: Bearer <secret>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenVerification>,
    /// Extension: header with a unique delivery id, for dedupe (e.g. `X-GitHub-Delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id_header: Option<String>,
    /// Extension: JSONPath to a unique delivery id in the payload (e.g. Slack `$.event_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id_path: Option<String>,
    /// Extension: requests answered directly, without producing Signals (Slack
    /// `url_verification`, Google `sync` messages, Trello's `HEAD` check). First match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handshake: Vec<HandshakeRule>,
    /// Extension: how `POST /webhooks/{provider}` (no tenant in the path) finds the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingDescriptor>,
    /// Extension: a connection whose `list` config field is set takes only the
    /// deliveries with a value at `path` in that list (Slack: the channels to
    /// follow); with the field empty it takes every delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_filter: Option<ConnectionFilter>,
    /// Extension: field mapping for webhook payloads, replacing the top-level `fieldMapping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_mapping: Option<FieldMappingDescriptor>,
    /// Extension: field mapping per event type, taking precedence over `fieldMapping`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_mappings: BTreeMap<String, FieldMappingDescriptor>,
}

/// How webhook deliveries are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// A signature over the request (HMAC or JWT), per the signature block.
    Signature,
    /// A shared token in a header or query parameter, per `token`.
    Token,
    /// No verification. Deliveries are accepted from anyone; use only for trusted networks.
    None,
}

/// Shared-token verification: the request carries a secret the connection knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenVerification {
    /// Header carrying the token (e.g. `X-Goog-Channel-Token`). Exactly one of `header` and
    /// `queryParam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Query parameter carrying the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_param: Option<String>,
    /// Text before the token in the header (e.g. `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Credential field holding the expected token (default: the app-level
    /// `POBLYSH_<PROVIDER>_WEBHOOK_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_field: Option<String>,
    /// Extension: every connection has a token of its own, issued (and
    /// rotated) by the service with `POST /connections/{id}/webhook-token`;
    /// the app-level secret never verifies, and a connection without an issued
    /// token accepts nothing. Takes no `secretField`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_connection: bool,
}

/// The credential key under which captured secrets (`captureSecret`) wait
/// for the operator to confirm one: a JSON list, newest first.
pub const PENDING_SECRET_FIELD: &str = "pendingWebhookSecret";

/// How many handed-over secrets a connection keeps waiting: anyone who knows
/// the tenant URL can hand one over, so the real one is not pushed out by a
/// few forged ones, and only the one the provider accepted gets confirmed.
pub const MAX_PENDING_SECRETS: usize = 5;

/// The pending secrets stored under [`PENDING_SECRET_FIELD`], newest first.
pub fn pending_secrets(stored: Option<&str>) -> Vec<String> {
    match stored {
        None => Vec::new(),
        Some(s) => serde_json::from_str::<Vec<String>>(s).unwrap_or_else(|_| vec![s.to_owned()]),
    }
}

/// `stored` with `secret` added first (once), at most [`MAX_PENDING_SECRETS`].
pub fn with_pending_secret(stored: Option<&str>, secret: &str) -> String {
    let mut list = pending_secrets(stored);
    list.retain(|s| s != secret);
    list.insert(0, secret.to_owned());
    list.truncate(MAX_PENDING_SECRETS);
    serde_json::to_string(&list).unwrap_or_default()
}

/// The credential key under which an issued (`perConnection`) webhook token is
/// stored; a descriptor that issues them may not declare it.
pub const ISSUED_TOKEN_FIELD: &str = "webhookToken";

/// A request answered directly. All conditions given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandshakeRule {
    /// Label for logs and metrics (e.g. `url_verification`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP method to match (e.g. `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header whose value is tested (instead of `when`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// JSONPath into the body whose value is tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Test applied to the header or `when` value (default `exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// Value for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::mapping::condition_value_schema")]
    pub value: Option<serde_json::Value>,
    /// Status to answer with (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 200, max = 299))]
    pub status: Option<u16>,
    /// JSONPath to a body value echoed back as `text/plain` (Slack: `$.challenge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_path: Option<String>,
    /// Answer before signature verification. Only allowed for `HEAD`/`GET` handshakes,
    /// which carry no payload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verification: bool,
    /// Extension: JSONPath to a secret the provider sends once, unsigned, for the
    /// operator to confirm (Notion's `verification_token`, which then signs every
    /// delivery). It is kept sealed as the *pending* webhook secret of the
    /// tenant's connections to this provider and verifies nothing until the
    /// operator confirms it (`POST /connections/{id}/webhook-secret`); the rule is
    /// answered before verification. Needs a tenant URL and a `secretField`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_secret: Option<String>,
}

/// Which deliveries a connection takes, by one of its `list` config fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionFilter {
    /// JSONPath to the delivery's value(s) (`$.event..channel`): any one in the list passes.
    pub path: String,
    /// The `list` config field holding the values a connection takes.
    pub config_field: String,
}

/// How a tenant-less webhook is routed to a connection: a value from the request is
/// matched against a connection's config field or metadata key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingDescriptor {
    /// JSONPath to the routing value in the payload (e.g. Slack `$.team_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Header carrying the routing value (instead of `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Config field the value must equal (or, for a `list` field, be one of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_field: Option<String>,
    /// Connection metadata key the value must equal (e.g. `installation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_secrets_are_a_short_list_newest_first() {
        let mut stored: Option<String> = None;
        for n in 0..7 {
            stored = Some(with_pending_secret(stored.as_deref(), &format!("s{n}")));
        }
        assert_eq!(
            pending_secrets(stored.as_deref()),
            ["s6", "s5", "s4", "s3", "s2"]
        );
        // Handed over again: moved to the front, not kept twice.
        let again = with_pending_secret(stored.as_deref(), "s3");
        assert_eq!(
            pending_secrets(Some(&again)),
            ["s3", "s6", "s5", "s4", "s2"]
        );
        // A value stored as plain text is one pending secret, not lost.
        assert_eq!(pending_secrets(Some("secret_plain")), ["secret_plain"]);
        assert!(pending_secrets(None).is_empty());
    }
}

//! Webhook deliveries before mapping: the request as received (raw body kept
//! for verification, JSON parsed at most once and only when needed), signature
//! and token verification, handshakes, and the values a descriptor reads from a
//! request (delivery id, routing value).

pub mod handshake;
pub mod verify;

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::descriptor::compile::ValueSource;

/// A webhook request as received.
#[derive(Debug)]
pub struct WebhookRequest {
    /// The method.
    pub method: Method,
    /// The headers.
    pub headers: HeaderMap,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The raw body: what is verified, byte for byte.
    pub body: Bytes,
    /// The URL the webhook was registered with (Trello signs it).
    pub callback_url: String,
    json: OnceLock<Option<Value>>,
}

impl WebhookRequest {
    /// A request.
    pub fn new(
        method: Method,
        headers: HeaderMap,
        query: Option<String>,
        body: Bytes,
        callback_url: String,
    ) -> Self {
        WebhookRequest {
            method,
            headers,
            query,
            body,
            callback_url,
            json: OnceLock::new(),
        }
    }

    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON (once); `None` when it is not JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.body).ok())
            .as_ref()
    }

    /// Takes the parsed body out (parsing it if nothing has yet).
    pub fn into_json(self) -> Option<Value> {
        match self.json.into_inner() {
            Some(parsed) => parsed,
            None => serde_json::from_slice(&self.body).ok(),
        }
    }

    /// A value from a header or from the body, as text (numbers and booleans
    /// as written).
    pub fn value(&self, source: &ValueSource) -> Option<String> {
        match source {
            ValueSource::Header(name) => self
                .header(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            ValueSource::Path(path) => self
                .json()
                .and_then(|body| path.first(body))
                .and_then(crate::engine::mapping::scalar_string),
        }
    }
}

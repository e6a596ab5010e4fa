//! Webhook deliveries before mapping: the request as received (raw body kept
//! for verification, JSON parsed at most once and only when needed), signature
//! and token verification, handshakes, and the values a descriptor reads from a
//! request (delivery id, routing value).

pub mod handshake;
pub mod verify;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::descriptor::compile::{Projection, ValueSource};

/// A webhook request as received. Its `Debug` shows header names only: values
/// carry signatures and tokens.
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
    /// What of the body is parsed (the descriptor's projection); all of it when unset.
    projection: Option<Arc<Projection>>,
    json: OnceLock<Option<Value>>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("query", &self.query.as_ref().map(|_| "<redacted>"))
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
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
            projection: None,
            json: OnceLock::new(),
        }
    }

    /// Parses only what `projection` names (set before the body is first read).
    pub fn set_projection(&mut self, projection: Arc<Projection>) {
        self.projection = Some(projection);
    }

    fn parse(&self) -> Option<Value> {
        match &self.projection {
            Some(p) if !p.is_all() => p.parse(&self.body).ok(),
            _ => serde_json::from_slice(&self.body).ok(),
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

    /// The body parsed as JSON (once; only the projected parts when a projection
    /// is set); `None` when it is not JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| self.parse()).as_ref()
    }

    /// Takes the parsed body out (parsing it if nothing has yet).
    pub fn into_json(self) -> Option<Value> {
        if self.json.get().is_some() {
            return self.json.into_inner().flatten();
        }
        self.parse()
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

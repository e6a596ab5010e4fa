//! Handshakes: requests a provider sends to check the endpoint (Slack
//! `url_verification`, Trello's `HEAD`, Google `sync` messages), answered as the
//! descriptor says and never turned into Signals.

use super::WebhookRequest;
use crate::descriptor::compile::{CompiledHandshake, CompiledWebhook};
use crate::engine::condition::header_holds;
use crate::engine::mapping::scalar_string;

/// How to answer a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    /// The rule's label.
    pub name: Option<String>,
    /// The status.
    pub status: u16,
    /// A `text/plain` body (the echoed value), if any.
    pub body: Option<String>,
    /// A secret the provider sent for the operator to confirm (kept pending).
    pub captured: Option<Captured>,
}

/// A captured secret: redacted in `Debug`, compared in constant time.
#[derive(Clone)]
pub struct Captured(pub secrecy::SecretString);

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Captured([redacted])")
    }
}

impl PartialEq for Captured {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        use subtle::ConstantTimeEq;
        bool::from(
            self.0
                .expose_secret()
                .as_bytes()
                .ct_eq(other.0.expose_secret().as_bytes()),
        )
    }
}

impl Eq for Captured {}

/// The longest secret a handshake may hand over.
pub const MAX_CAPTURED: usize = 512;

/// The first handshake rule the request matches. Before verification
/// (`verified: false`) only rules that may skip it are tried.
pub fn answer(
    webhook: &CompiledWebhook,
    request: &WebhookRequest,
    verified: bool,
) -> Option<HandshakeReply> {
    webhook
        .handshakes
        .iter()
        .filter(|h| verified || h.skip_verification)
        .find(|h| matches(h, request))
        .map(|h| HandshakeReply {
            name: h.name.clone(),
            status: h.status,
            body: h.echo.as_ref().map(|path| {
                request
                    .json()
                    .and_then(|body| path.first(body))
                    .and_then(scalar_string)
                    .unwrap_or_default()
            }),
            captured: h.capture.as_ref().and_then(|path| {
                request
                    .json()
                    .and_then(|body| path.first(body))
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty() && s.len() <= MAX_CAPTURED && !s.contains('\0'))
                    .map(|s| Captured(secrecy::SecretString::from(s.to_owned())))
            }),
        })
}

fn matches(rule: &CompiledHandshake, request: &WebhookRequest) -> bool {
    if let Some(method) = &rule.method
        && request.method.as_str() != method
    {
        return false;
    }
    if let Some((name, test)) = &rule.header
        && !header_holds(test, request.header(name))
    {
        return false;
    }
    if let Some(condition) = &rule.condition {
        return request.json().is_some_and(|body| condition.holds(body));
    }
    true
}

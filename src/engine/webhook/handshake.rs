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
}

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

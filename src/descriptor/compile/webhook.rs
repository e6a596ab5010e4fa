//! Compiles the webhook half: event typing, verification (signature block or
//! shared token), handshakes, delivery ids, routing and field-mapping overrides.

use std::collections::BTreeMap;
use std::sync::Arc;

use handlebars::Template;
use handlebars::template::{Parameter, TemplateElement};

use super::auth::CompiledAuth;
use super::context::{Ctx, is_header_name};
use super::mapping::{self, CompiledCondition, CompiledMapping, Test};
use super::path::CompiledPath;
use super::projection::Projection;
use crate::descriptor::auth::{AuthDescriptor, SignatureAlgorithm, SignatureConfig};
use crate::descriptor::diagnostic::{Code, Pointer};
use crate::descriptor::webhook::{
    HandshakeRule, ISSUED_TOKEN_FIELD, RoutingDescriptor, TokenVerification, Verification,
    WebhookSpec,
};

/// Default replay window when a signed timestamp is configured.
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;

/// The compiled webhook half.
#[derive(Debug, Clone)]
pub struct CompiledWebhook {
    /// Event types handled.
    pub event_types: Vec<String>,
    /// Where the event type is.
    pub event_type: EventTypeSource,
    /// How deliveries are verified.
    pub verification: CompiledVerification,
    /// Where the delivery id is.
    pub delivery_id: Option<ValueSource>,
    /// Handshakes, in order.
    pub handshakes: Vec<CompiledHandshake>,
    /// Routing for tenant-less deliveries.
    pub routing: Option<CompiledRouting>,
    /// Which deliveries a connection takes: where the value is, and the
    /// `list` config field it must be in (when set).
    pub connection_filter: Option<(CompiledPath, String)>,
    /// Field-mapping override for all events.
    pub mapping: Option<CompiledMapping>,
    /// Field mappings per event type.
    pub event_mappings: BTreeMap<String, CompiledMapping>,
    /// What of a delivery's body the descriptor reads.
    pub projection: Arc<Projection>,
}

/// Everything the webhook half reads from a body: request-level paths, and each
/// mapping a delivery may use (`top` is the top-level one, the fallback).
pub(super) fn projection(w: &CompiledWebhook, top: Option<&CompiledMapping>) -> Projection {
    let mut p = Projection::default();
    let sources = [
        match &w.event_type {
            EventTypeSource::Path(path) => Some(path),
            EventTypeSource::Header(_) => None,
        },
        w.delivery_id.as_ref().and_then(ValueSource::path),
        w.routing.as_ref().and_then(|r| r.source.path()),
        w.connection_filter.as_ref().map(|(path, _)| path),
        match &w.verification {
            CompiledVerification::Signature(s) => s.timestamp.as_ref().and_then(ValueSource::path),
            _ => None,
        },
    ];
    for path in sources.into_iter().flatten() {
        p.add_path(path);
    }
    for h in &w.handshakes {
        if let Some(c) = &h.condition {
            p.add_path(&c.path);
        }
        for path in [&h.echo, &h.capture].into_iter().flatten() {
            p.add_path(path);
        }
    }
    let uses_fallback = w.event_mappings.len() < w.event_types.len();
    let fallback = w.mapping.as_ref().or(top).filter(|_| uses_fallback);
    for m in w.event_mappings.values().chain(fallback) {
        p.add_mapping(m);
    }
    p
}

impl ValueSource {
    /// The body path, when the value is read from the body.
    pub fn path(&self) -> Option<&CompiledPath> {
        match self {
            ValueSource::Path(p) => Some(p),
            ValueSource::Header(_) => None,
        }
    }
}

/// Where the event type of a delivery is read.
#[derive(Debug, Clone)]
pub enum EventTypeSource {
    /// A header.
    Header(String),
    /// A JSONPath into the body.
    Path(CompiledPath),
}

/// A value read from a header or from the body.
#[derive(Debug, Clone)]
pub enum ValueSource {
    /// A header.
    Header(String),
    /// A JSONPath into the body.
    Path(CompiledPath),
}

/// How deliveries are verified.
#[derive(Debug, Clone)]
pub enum CompiledVerification {
    /// A signature.
    Signature(Box<CompiledSignature>),
    /// A shared token.
    Token(TokenVerification),
    /// Nothing.
    None,
}

/// A compiled signature block.
#[derive(Debug, Clone)]
pub struct CompiledSignature {
    /// The block as written.
    pub config: SignatureConfig,
    /// What is signed, in order.
    pub signed_payload: Vec<PayloadPart>,
    /// Where the signed timestamp is.
    pub timestamp: Option<ValueSource>,
    /// Replay window, when a timestamp is signed.
    pub tolerance_seconds: Option<u32>,
}

/// A part of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadPart {
    /// Fixed text.
    Literal(String),
    /// The raw body bytes.
    Body,
    /// The signed timestamp.
    Timestamp,
    /// The URL the webhook was registered with.
    CallbackUrl,
    /// A header value (name lower-cased).
    Header(String),
}

/// A compiled handshake rule.
#[derive(Debug, Clone)]
pub struct CompiledHandshake {
    /// Label.
    pub name: Option<String>,
    /// Method to match.
    pub method: Option<String>,
    /// Header tested.
    pub header: Option<(String, Test)>,
    /// Body value tested.
    pub condition: Option<CompiledCondition>,
    /// Status answered.
    pub status: u16,
    /// Body value echoed.
    pub echo: Option<CompiledPath>,
    /// Answered before verification.
    pub skip_verification: bool,
    /// The secret kept pending for the operator to confirm.
    pub capture: Option<CompiledPath>,
}

/// Compiled routing.
#[derive(Debug, Clone)]
pub struct CompiledRouting {
    /// Where the routing value is.
    pub source: ValueSource,
    /// What it is matched against.
    pub target: RoutingTarget,
}

/// What a routing value is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingTarget {
    /// A config field.
    ConfigField(String),
    /// A metadata key.
    MetadataKey(String),
}

/// Compiles the webhook half; `auth` is the compiled auth (its `webhook_secret`
/// signature block serves `verification: signature`).
pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    w: &WebhookSpec,
    at: &Pointer,
    auth: Option<&CompiledAuth>,
) -> Option<CompiledWebhook> {
    let mut ok = true;
    if w.event_types.is_empty() {
        ctx.error(
            at.key("eventTypes"),
            Code::Invalid,
            "list at least one event type",
        );
        ok = false;
    }
    let event_type = match (&w.event_type_header, &w.event_type_path) {
        (Some(h), None) => header(ctx, &at.key("eventTypeHeader"), h).map(EventTypeSource::Header),
        (None, Some(p)) => ctx
            .singular_path(&at.key("eventTypePath"), p)
            .map(EventTypeSource::Path),
        (None, None) => {
            ctx.error(
                at.key("eventTypePath"),
                Code::Invalid,
                "set `eventTypePath` (a JSONPath into the payload) or `eventTypeHeader`",
            );
            None
        }
        (Some(_), Some(_)) => {
            ctx.error(
                at.key("eventTypeHeader"),
                Code::Invalid,
                "set either `eventTypePath` or `eventTypeHeader`, not both",
            );
            None
        }
    };
    let verification = verification(ctx, w, at, auth);
    let delivery_id = match (&w.delivery_id_header, &w.delivery_id_path) {
        (None, None) => Some(None),
        (Some(h), None) => {
            header(ctx, &at.key("deliveryIdHeader"), h).map(|h| Some(ValueSource::Header(h)))
        }
        (None, Some(p)) => ctx
            .singular_path(&at.key("deliveryIdPath"), p)
            .map(|p| Some(ValueSource::Path(p))),
        (Some(_), Some(_)) => {
            ctx.error(
                at.key("deliveryIdHeader"),
                Code::Invalid,
                "set either `deliveryIdHeader` or `deliveryIdPath`, not both",
            );
            None
        }
    };
    let mut handshakes = Vec::new();
    for (i, rule) in w.handshake.iter().enumerate() {
        match handshake(ctx, rule, &at.key("handshake").index(i)) {
            Some(h) => handshakes.push(h),
            None => ok = false,
        }
    }
    // A captured secret is confirmed into the connection's own secret field.
    let confirms_into = match &verification {
        Some(CompiledVerification::Signature(sig)) => sig.config.secret_field.is_some(),
        Some(CompiledVerification::Token(t)) => t.secret_field.is_some() && !t.per_connection,
        _ => false,
    };
    for (i, rule) in w.handshake.iter().enumerate() {
        if rule.capture_secret.is_some() && (!confirms_into || w.routing.is_some()) {
            ctx.error(
                at.key("handshake").index(i).key("captureSecret"),
                Code::Invalid,
                "a captured secret needs a `secretField` to be confirmed into, and deliveries on the tenant URL (no `routing`)",
            );
            ok = false;
        }
    }
    let routing = match &w.routing {
        None => Some(None),
        // Unverified deliveries routed to any tenant by a value in them: anyone
        // could write into anyone's Signals.
        Some(_) if w.verification == Verification::None => {
            ctx.error(
                at.key("routing"),
                Code::Invalid,
                "`routing` needs verified deliveries (`verification: signature` or `token`), or anyone could post into any tenant",
            );
            None
        }
        Some(r) => routing(ctx, r, &at.key("routing")).map(Some),
    };
    let mapping = match &w.field_mapping {
        None => Some(None),
        Some(m) => mapping::compile(ctx, m, &at.key("fieldMapping")).map(Some),
    };
    let mut event_mappings = BTreeMap::new();
    for (event, m) in &w.event_mappings {
        let m_at = at.key("eventMappings").key(event);
        if !w.event_types.contains(event) {
            ctx.error(
                m_at.clone(),
                Code::Invalid,
                format!("event `{event}` is not in `eventTypes`"),
            );
            ok = false;
        }
        match mapping::compile(ctx, m, &m_at) {
            Some(c) => {
                event_mappings.insert(event.clone(), c);
            }
            None => ok = false,
        }
    }
    let connection_filter = match &w.connection_filter {
        None => Some(None),
        Some(f) => {
            let at = at.key("connectionFilter");
            let path = ctx.path(&at.key("path"), &f.path);
            let declared = ctx.require_config(at.key("configField"), &f.config_field);
            let list = declared
                && ctx.config_field(&f.config_field)
                    == Some(crate::descriptor::model::FieldType::List);
            if declared && !list {
                ctx.error(
                    at.key("configField"),
                    Code::Invalid,
                    format!("`{}` must be a `list` config field", f.config_field),
                );
            }
            match (path, list) {
                (Some(p), true) => Some(Some((p, f.config_field.clone()))),
                _ => None,
            }
        }
    };
    let compiled = CompiledWebhook {
        event_types: w.event_types.clone(),
        event_type: event_type?,
        verification: verification?,
        delivery_id: delivery_id?,
        handshakes,
        routing: routing?,
        connection_filter: connection_filter?,
        mapping: mapping?,
        event_mappings,
        projection: Arc::new(Projection::all()),
    };
    ok.then_some(compiled)
}

fn header(ctx: &mut Ctx<'_>, at: &Pointer, name: &str) -> Option<String> {
    if is_header_name(name) {
        Some(name.to_owned())
    } else {
        ctx.error(
            at.clone(),
            Code::Invalid,
            format!("`{name}` is not a valid HTTP header name"),
        );
        None
    }
}

fn verification(
    ctx: &mut Ctx<'_>,
    w: &WebhookSpec,
    at: &Pointer,
    auth: Option<&CompiledAuth>,
) -> Option<CompiledVerification> {
    let from_auth = matches!(ctx.descriptor.auth, AuthDescriptor::WebhookSecret(_));
    match w.verification {
        Verification::Signature => {
            if w.token.is_some() {
                ctx.error(
                    at.key("token"),
                    Code::Invalid,
                    "`token` is only used with `verification: token`",
                );
                return None;
            }
            match (&w.signature, from_auth) {
                (Some(sig), false) => signature(ctx, sig, &at.key("signature"))
                    .map(|s| CompiledVerification::Signature(Box::new(s))),
                // Compiled (and its problems reported) with `auth`.
                (None, true) => match auth {
                    Some(CompiledAuth::WebhookSecret(s)) => {
                        Some(CompiledVerification::Signature(s.clone()))
                    }
                    _ => None,
                },
                (Some(_), true) => {
                    ctx.error(
                        at.key("signature"),
                        Code::Invalid,
                        "the signature is declared twice: here and in `auth` (`webhook_secret`); keep one",
                    );
                    None
                }
                (None, false) => {
                    ctx.error(
                        at.key("signature"),
                        Code::Invalid,
                        "`verification: signature` needs a `signature` block here, or `auth.method: webhook_secret`",
                    );
                    None
                }
            }
        }
        Verification::Token => {
            if w.signature.is_some() {
                ctx.error(
                    at.key("signature"),
                    Code::Invalid,
                    "`signature` is only used with `verification: signature`",
                );
                return None;
            }
            // Without a `token` block, a bearer token in `Authorization` is expected.
            let token = w.token.clone().unwrap_or_else(|| TokenVerification {
                header: Some("Authorization".into()),
                query_param: None,
                prefix: Some("Bearer ".into()),
                secret_field: None,
                per_connection: false,
            });
            let token_at = at.key("token");
            match (&token.header, &token.query_param) {
                (Some(h), None) => {
                    header(ctx, &token_at.key("header"), h)?;
                }
                (None, Some(q)) if !q.is_empty() => {}
                (None, Some(_)) => {
                    ctx.error(
                        token_at.key("queryParam"),
                        Code::Invalid,
                        "must not be empty",
                    );
                    return None;
                }
                _ => {
                    ctx.error(
                        token_at.clone(),
                        Code::Invalid,
                        "set exactly one of `header` and `queryParam`",
                    );
                    return None;
                }
            }
            let mut token = token;
            if token.per_connection {
                if token.secret_field.is_some() {
                    ctx.error(
                        token_at.key("secretField"),
                        Code::Invalid,
                        "a `perConnection` token is issued by the service, not read from a credential field",
                    );
                    return None;
                }
                if ctx.has_credential(ISSUED_TOKEN_FIELD) {
                    ctx.error(
                        token_at.key("perConnection"),
                        Code::Invalid,
                        format!(
                            "issued tokens are stored as `{ISSUED_TOKEN_FIELD}`: rename the credential field of that name"
                        ),
                    );
                    return None;
                }
                token.secret_field = Some(ISSUED_TOKEN_FIELD.into());
            } else if let Some(field) = &token.secret_field
                && !ctx.require_credential(token_at.key("secretField"), field)
            {
                return None;
            }
            Some(CompiledVerification::Token(token))
        }
        Verification::None => {
            for (key, present) in [
                ("signature", w.signature.is_some()),
                ("token", w.token.is_some()),
            ] {
                if present {
                    ctx.error(
                        at.key(key),
                        Code::Invalid,
                        format!("`{key}` is given but `verification` is `none`: deliveries would not be verified"),
                    );
                    return None;
                }
            }
            Some(CompiledVerification::None)
        }
    }
}

/// Compiles a signature block found at `at` (the block's own pointer).
pub(super) fn signature(
    ctx: &mut Ctx<'_>,
    s: &SignatureConfig,
    at: &Pointer,
) -> Option<CompiledSignature> {
    let mut ok = header(ctx, &at.key("signatureHeader"), &s.signature_header).is_some();
    if s.algorithm == SignatureAlgorithm::JwtHs256 {
        for (key, present) in [
            ("encoding", s.encoding.is_some()),
            ("separator", s.separator.is_some()),
            ("signedPayload", s.signed_payload.is_some()),
        ] {
            if present {
                ctx.error(
                    at.key(key),
                    Code::Invalid,
                    format!("`{key}` does not apply to `jwt-hs256`"),
                );
                ok = false;
            }
        }
    }
    if s.separator.as_deref() == Some("") {
        ctx.error(at.key("separator"), Code::Invalid, "must not be empty");
        ok = false;
    }
    let timestamp = match (&s.timestamp_header, &s.timestamp_path) {
        (None, None) => None,
        (Some(h), None) => header(ctx, &at.key("timestampHeader"), h).map(ValueSource::Header),
        (None, Some(p)) => ctx
            .singular_path(&at.key("timestampPath"), p)
            .map(ValueSource::Path),
        (Some(_), Some(_)) => {
            ctx.error(
                at.key("timestampHeader"),
                Code::Invalid,
                "set either `timestampHeader` or `timestampPath`, not both",
            );
            ok = false;
            None
        }
    };
    let has_timestamp = s.timestamp_header.is_some() || s.timestamp_path.is_some();
    for (key, present) in [
        ("toleranceSeconds", s.tolerance_seconds.is_some()),
        ("timestampFormat", s.timestamp_format.is_some()),
    ] {
        if present && !has_timestamp {
            ctx.error(
                at.key(key),
                Code::Invalid,
                format!("`{key}` needs `timestampHeader` or `timestampPath`"),
            );
            ok = false;
        }
    }
    if let Some(field) = &s.secret_field {
        ok &= ctx.require_credential(at.key("secretField"), field);
    }
    let signed_payload = match &s.signed_payload {
        None => vec![PayloadPart::Body],
        Some(source) => match signed_payload(source) {
            Ok(parts) => {
                if parts.contains(&PayloadPart::Timestamp) && !has_timestamp {
                    ctx.error(
                        at.key("signedPayload"),
                        Code::Template,
                        "`{{timestamp}}` needs `timestampHeader` or `timestampPath`",
                    );
                    ok = false;
                }
                if !parts.contains(&PayloadPart::Body) {
                    ctx.error(
                        at.key("signedPayload"),
                        Code::Template,
                        "the signed payload must include `{{body}}`, or the body would not be authenticated",
                    );
                    ok = false;
                }
                parts
            }
            Err(message) => {
                ctx.error(at.key("signedPayload"), Code::Template, message);
                return None;
            }
        },
    };
    let compiled = CompiledSignature {
        config: s.clone(),
        signed_payload,
        tolerance_seconds: has_timestamp
            .then(|| s.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS)),
        timestamp,
    };
    (ok && (compiled.timestamp.is_some() || !has_timestamp)).then_some(compiled)
}

/// Parses a signed-payload template: literal text and `{{body}}`, `{{timestamp}}`,
/// `{{callbackUrl}}`, `{{header.<name>}}`, nothing else (the bytes must be exact).
fn signed_payload(source: &str) -> Result<Vec<PayloadPart>, String> {
    let template =
        Template::compile(source).map_err(|e| super::template::describe_syntax_error(&e).0)?;
    let mut parts = Vec::new();
    for element in &template.elements {
        match element {
            TemplateElement::RawString(s) => parts.push(PayloadPart::Literal(s.clone())),
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht)
                if ht.params.is_empty() && ht.hash.is_empty() =>
            {
                let raw = match &ht.name {
                    Parameter::Path(handlebars::Path::Relative((_, raw))) => raw.as_str(),
                    _ => "",
                };
                parts.push(match raw {
                    "body" => PayloadPart::Body,
                    "timestamp" => PayloadPart::Timestamp,
                    "callbackUrl" => PayloadPart::CallbackUrl,
                    _ => match raw.strip_prefix("header.") {
                        Some(name) if is_header_name(name) => PayloadPart::Header(name.to_ascii_lowercase()),
                        _ => {
                            return Err(format!(
                                "unknown signed-payload variable `{{{{{raw}}}}}` (available: `{{{{body}}}}`, `{{{{timestamp}}}}`, `{{{{callbackUrl}}}}`, `{{{{header.<name>}}}}`)"
                            ));
                        }
                    },
                });
            }
            _ => {
                return Err(
                    "a signed payload takes only text and `{{variable}}`s, no helpers or blocks"
                        .into(),
                );
            }
        }
    }
    Ok(parts)
}

fn handshake(ctx: &mut Ctx<'_>, rule: &HandshakeRule, at: &Pointer) -> Option<CompiledHandshake> {
    let mut ok = true;
    let method = rule.method.as_ref().map(|m| m.to_ascii_uppercase());
    if let Some(m) = &method
        && !["GET", "HEAD", "POST", "PUT", "OPTIONS"].contains(&m.as_str())
    {
        ctx.error(
            at.key("method"),
            Code::Invalid,
            format!("`{m}` is not a method webhooks use (GET, HEAD, POST, PUT, OPTIONS)"),
        );
        ok = false;
    }
    if rule.skip_verification && !matches!(method.as_deref(), Some("GET" | "HEAD")) {
        ctx.error(
            at.key("skipVerification"),
            Code::Invalid,
            "only `HEAD` or `GET` handshakes may skip verification (they carry no payload)",
        );
        ok = false;
    }
    let op = rule
        .operator
        .unwrap_or(crate::descriptor::mapping::Operator::Exists);
    let (header_test, condition) = match (&rule.header, &rule.when) {
        (Some(_), Some(_)) => {
            ctx.error(
                at.key("header"),
                Code::Invalid,
                "test either a `header` or a body path (`when`), not both",
            );
            return None;
        }
        (Some(h), None) => {
            let name = header(ctx, &at.key("header"), h);
            let test = mapping::test(ctx, at, op, rule.value.as_ref());
            (Some((name?.to_ascii_lowercase(), test?)), None)
        }
        (None, Some(when)) => (
            None,
            Some(mapping::condition(ctx, at, when, op, rule.value.as_ref())?),
        ),
        (None, None) => {
            if rule.operator.is_some() || rule.value.is_some() {
                ctx.error(
                    at.key("when"),
                    Code::Invalid,
                    "`operator`/`value` need a `header` or `when` to test",
                );
                return None;
            }
            if method.is_none() {
                ctx.error(
                    at.clone(),
                    Code::Invalid,
                    "a handshake needs a `method`, a `header` or a `when` to match",
                );
                return None;
            }
            (None, None)
        }
    };
    let echo = match &rule.echo_path {
        Some(p) => Some(ctx.singular_path(&at.key("echoPath"), p)?),
        None => None,
    };
    let capture = match &rule.capture_secret {
        Some(p) => Some(ctx.singular_path(&at.key("captureSecret"), p)?),
        None => None,
    };
    if capture.is_some() && echo.is_some() {
        ctx.error(
            at.key("echoPath"),
            Code::Invalid,
            "a captured secret is never echoed back",
        );
        ok = false;
    }
    ok.then(|| CompiledHandshake {
        name: rule.name.clone(),
        method,
        header: header_test,
        condition,
        status: rule.status.unwrap_or(200),
        echo,
        skip_verification: rule.skip_verification || capture.is_some(),
        capture,
    })
}

fn routing(ctx: &mut Ctx<'_>, r: &RoutingDescriptor, at: &Pointer) -> Option<CompiledRouting> {
    let source = match (&r.path, &r.header) {
        (Some(p), None) => ValueSource::Path(ctx.singular_path(&at.key("path"), p)?),
        (None, Some(h)) => ValueSource::Header(header(ctx, &at.key("header"), h)?),
        _ => {
            ctx.error(
                at.clone(),
                Code::Invalid,
                "set exactly one of `path` and `header`",
            );
            return None;
        }
    };
    let target = match (&r.config_field, &r.metadata_key) {
        (Some(f), None) => {
            if !ctx.require_config(at.key("configField"), f) {
                return None;
            }
            RoutingTarget::ConfigField(f.clone())
        }
        (None, Some(k)) if !k.is_empty() => RoutingTarget::MetadataKey(k.clone()),
        _ => {
            ctx.error(
                at.clone(),
                Code::Invalid,
                "set exactly one of `configField` and `metadataKey`",
            );
            return None;
        }
    };
    Some(CompiledRouting { source, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_payload_parts() {
        assert_eq!(
            signed_payload("v0:{{header.X-Slack-Request-Timestamp}}:{{body}}").unwrap(),
            vec![
                PayloadPart::Literal("v0:".into()),
                PayloadPart::Header("x-slack-request-timestamp".into()),
                PayloadPart::Literal(":".into()),
                PayloadPart::Body,
            ]
        );
        assert_eq!(
            signed_payload("{{body}}{{callbackUrl}}").unwrap(),
            vec![PayloadPart::Body, PayloadPart::CallbackUrl]
        );
        assert!(
            signed_payload("{{secret}}")
                .unwrap_err()
                .contains("unknown signed-payload variable")
        );
        assert!(signed_payload("{{#if body}}x{{/if}}").is_err());
    }
}

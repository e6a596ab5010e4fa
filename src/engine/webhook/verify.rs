//! Verifies a webhook delivery exactly as its descriptor declares: an HMAC
//! (SHA-256 or SHA-1, hex or base64, prefixes, several signatures in one
//! header, a signed-payload template over headers, timestamp, callback URL and
//! the raw body), an HS256 JWT, or a shared token; then the replay window.
//! The raw body bytes are what is verified, never re-serialized JSON; every
//! comparison is constant-time; anything missing is a failure, never a skip.
//! Errors name headers and rules, never a secret or an expected value.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::WebhookRequest;
use crate::descriptor::auth::{
    SecretEncoding, SignatureAlgorithm, SignatureEncoding, TimestampFormat,
};
use crate::descriptor::compile::{
    CompiledSignature, CompiledVerification, PayloadPart, ValueSource,
};
use crate::descriptor::webhook::TokenVerification;

/// Clock leeway for a JWT's `exp`/`nbf`/`iat`.
const JWT_LEEWAY_SECONDS: i64 = 60;

/// Why a delivery is not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No secret to verify with: neither the connection nor the app has one.
    #[error("no webhook secret is configured for this connection")]
    NoSecret,
    /// The configured secret cannot be decoded as the descriptor says.
    #[error("the configured webhook secret is not valid {0}")]
    BadSecret(&'static str),
    /// A header the verification needs is absent.
    #[error("the `{0}` header is missing")]
    MissingHeader(String),
    /// The token query parameter is absent.
    #[error("the `{0}` query parameter is missing")]
    MissingQueryParam(String),
    /// The signature header holds nothing in the expected format.
    #[error("the `{0}` header holds no well-formed signature")]
    Malformed(String),
    /// No signature matches.
    #[error("the signature does not match")]
    Mismatch,
    /// The shared token does not match.
    #[error("the token does not match")]
    TokenMismatch,
    /// The signed timestamp is absent or not a number.
    #[error("no valid signed timestamp ({0})")]
    MissingTimestamp(String),
    /// The signed timestamp is outside the replay window.
    #[error("the signed timestamp is outside the {0} s replay window")]
    Stale(u32),
    /// The JWT is malformed, not HS256, badly signed or expired.
    #[error("invalid JWT: {0}")]
    Jwt(&'static str),
    /// A bearer token (a provider-signed OIDC token) is refused.
    #[error("{0}")]
    Bearer(String),
    /// Nothing can be verified now (the keys to verify with cannot be
    /// fetched): the sender should retry (503), nothing is stored.
    #[error("{0}")]
    Unavailable(String),
}

impl VerifyError {
    /// Every reason word, for metrics registered at zero.
    pub const REASONS: [&'static str; 12] = [
        "no_secret",
        "bad_secret",
        "missing_header",
        "missing_query_param",
        "malformed",
        "mismatch",
        "token_mismatch",
        "missing_timestamp",
        "stale",
        "jwt",
        "bearer",
        "unavailable",
    ];

    /// The reason as one word (a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::NoSecret => "no_secret",
            VerifyError::BadSecret(_) => "bad_secret",
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::MissingQueryParam(_) => "missing_query_param",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Mismatch => "mismatch",
            VerifyError::TokenMismatch => "token_mismatch",
            VerifyError::MissingTimestamp(_) => "missing_timestamp",
            VerifyError::Stale(_) => "stale",
            VerifyError::Jwt(_) => "jwt",
            VerifyError::Bearer(_) => "bearer",
            VerifyError::Unavailable(_) => "unavailable",
        }
    }
}

/// Verifies `request` per `verification`, with `secret` (the connection's, or
/// the app's). `now` is the clock for replay windows and JWT expiry.
pub fn verify(
    verification: &CompiledVerification,
    secret: Option<&SecretString>,
    request: &WebhookRequest,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    match verification {
        CompiledVerification::None => Ok(()),
        CompiledVerification::Token(token) => {
            verify_token(token, secret.ok_or(VerifyError::NoSecret)?, request)
        }
        CompiledVerification::Signature(sig) => {
            let secret = secret.ok_or(VerifyError::NoSecret)?;
            match sig.config.algorithm {
                SignatureAlgorithm::JwtHs256 => verify_jwt(sig, secret, request, now),
                SignatureAlgorithm::HmacSha256 => {
                    verify_hmac::<Hmac<Sha256>>(sig, secret, request)?;
                    check_timestamp(sig, request, now)
                }
                SignatureAlgorithm::HmacSha1 => {
                    verify_hmac::<Hmac<sha1::Sha1>>(sig, secret, request)?;
                    check_timestamp(sig, request, now)
                }
            }
        }
    }
}

/// The HMAC key: the secret's bytes, after its prefix, decoded as configured.
fn key(sig: &CompiledSignature, secret: &SecretString) -> Result<Zeroizing<Vec<u8>>, VerifyError> {
    let text = secret.expose_secret();
    let text = match &sig.config.secret_prefix {
        Some(prefix) => text.strip_prefix(prefix.as_str()).unwrap_or(text),
        None => text,
    };
    match sig.config.secret_encoding.unwrap_or_default() {
        SecretEncoding::Utf8 => Ok(Zeroizing::new(text.as_bytes().to_vec())),
        SecretEncoding::Base64 => STANDARD
            .decode(text.trim())
            .map(Zeroizing::new)
            .map_err(|_| VerifyError::BadSecret("base64")),
    }
}

fn required_header<'a>(request: &'a WebhookRequest, name: &str) -> Result<&'a str, VerifyError> {
    request
        .header(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// The signed timestamp as written (header or body value).
fn timestamp_text(
    sig: &CompiledSignature,
    request: &WebhookRequest,
) -> Result<String, VerifyError> {
    let source = sig
        .timestamp
        .as_ref()
        .ok_or_else(|| VerifyError::MissingTimestamp("none is configured".into()))?;
    request.value(source).ok_or_else(|| {
        VerifyError::MissingTimestamp(match source {
            ValueSource::Header(h) => format!("header `{h}`"),
            ValueSource::Path(p) => format!("`{}` in the body", p.source()),
        })
    })
}

fn verify_hmac<M: Mac + KeyInit>(
    sig: &CompiledSignature,
    secret: &SecretString,
    request: &WebhookRequest,
) -> Result<(), VerifyError> {
    let header_name = &sig.config.signature_header;
    let presented = required_header(request, header_name)?;
    let key = key(sig, secret)?;
    let mut mac =
        <M as KeyInit>::new_from_slice(&key).map_err(|_| VerifyError::BadSecret("key"))?;
    for part in &sig.signed_payload {
        match part {
            PayloadPart::Body => mac.update(&request.body),
            PayloadPart::Literal(text) => mac.update(text.as_bytes()),
            PayloadPart::Header(name) => mac.update(required_header(request, name)?.as_bytes()),
            PayloadPart::Timestamp => mac.update(timestamp_text(sig, request)?.as_bytes()),
            PayloadPart::CallbackUrl => mac.update(request.callback_url.as_bytes()),
        }
    }
    let expected = mac.finalize().into_bytes();
    let encoding = sig.config.encoding.unwrap_or_default();
    let candidates: Vec<&str> = match &sig.config.separator {
        Some(sep) => presented.split(sep.as_str()).collect(),
        None => vec![presented],
    };
    let mut well_formed = false;
    let mut matched = subtle::Choice::from(0);
    for candidate in candidates {
        let candidate = candidate.trim();
        let candidate = match &sig.config.prefix {
            Some(prefix) => match candidate.strip_prefix(prefix.as_str()) {
                Some(rest) => rest,
                // Another scheme's signature (`v1a,…` next to `v1,…`).
                None => continue,
            },
            None => candidate,
        };
        let Some(decoded) = decode_signature(candidate, encoding) else {
            continue;
        };
        if decoded.len() != expected.len() {
            continue;
        }
        well_formed = true;
        matched |= decoded.ct_eq(&expected);
    }
    if bool::from(matched) {
        Ok(())
    } else if well_formed {
        Err(VerifyError::Mismatch)
    } else {
        Err(VerifyError::Malformed(header_name.clone()))
    }
}

fn decode_signature(text: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => hex::decode(text).ok(),
        SignatureEncoding::Base64 => STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .ok(),
    }
}

/// The replay window, when the descriptor signs a timestamp.
fn check_timestamp(
    sig: &CompiledSignature,
    request: &WebhookRequest,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let Some(tolerance) = sig.tolerance_seconds else {
        return Ok(());
    };
    let text = timestamp_text(sig, request)?;
    let format = sig.config.timestamp_format.unwrap_or_default();
    let millis = parse_timestamp_ms(&text, format)
        .ok_or_else(|| VerifyError::MissingTimestamp(format!("`{text}` is not a unix time")))?;
    let age_ms = now.timestamp_millis().abs_diff(millis);
    if age_ms > u64::from(tolerance) * 1000 {
        return Err(VerifyError::Stale(tolerance));
    }
    Ok(())
}

fn parse_timestamp_ms(text: &str, format: TimestampFormat) -> Option<i64> {
    let text = text.trim();
    let number: f64 = match text.parse::<i64>() {
        Ok(n) => n as f64,
        Err(_) => text.parse().ok().filter(|f: &f64| f.is_finite())?,
    };
    let ms = match format {
        TimestampFormat::Unix => number * 1000.0,
        TimestampFormat::UnixMs => number,
    };
    (ms.abs() < 1e15).then_some(ms as i64)
}

/// Shared-token verification: the request carries the secret itself.
fn verify_token(
    token: &TokenVerification,
    secret: &SecretString,
    request: &WebhookRequest,
) -> Result<(), VerifyError> {
    let presented: std::borrow::Cow<'_, str> = match (&token.header, &token.query_param) {
        (Some(h), _) => required_header(request, h)?.into(),
        (None, Some(q)) => request
            .query_param(q)
            .ok_or_else(|| VerifyError::MissingQueryParam(q.clone()))?,
        (None, None) => return Err(VerifyError::TokenMismatch),
    };
    let presented = match &token.prefix {
        Some(prefix) => presented
            .strip_prefix(prefix.as_str())
            .ok_or(VerifyError::TokenMismatch)?,
        None => &presented,
    };
    // Digests first, so the comparison takes the same time whatever the lengths.
    let a = Sha256::digest(presented.trim().as_bytes());
    let b = Sha256::digest(secret.expose_secret().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(VerifyError::TokenMismatch)
    }
}

/// An HS256 JWT (Jira/Atlassian Connect): `alg` must be HS256 (never `none`),
/// the signature must match, and `exp` must be present and not past.
fn verify_jwt(
    sig: &CompiledSignature,
    secret: &SecretString,
    request: &WebhookRequest,
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let presented = required_header(request, &sig.config.signature_header)?.trim();
    let token = match &sig.config.prefix {
        Some(prefix) => presented
            .strip_prefix(prefix.as_str())
            .ok_or(VerifyError::Jwt(
                "the header does not carry the expected prefix",
            ))?,
        None => presented,
    };
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Jwt("not three dot-separated parts"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header: Value = decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VerifyError::Jwt("the header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(VerifyError::Jwt("the algorithm is not HS256"));
    }
    let signature =
        decode(signature).map_err(|_| VerifyError::Jwt("the signature is not base64url"))?;
    let key = key(sig, secret)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map_err(|_| VerifyError::BadSecret("key"))?;
    // What is signed: `header.claims`, as sent.
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    mac.update(signed.as_bytes());
    let expected = mac.finalize().into_bytes();
    if signature.len() != expected.len() || !bool::from(signature.ct_eq(&expected)) {
        return Err(VerifyError::Mismatch);
    }
    let claims: Value = decode(claims)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VerifyError::Jwt("the claims are not base64url JSON"))?;
    let now = now.timestamp();
    let claim = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = claim("exp").ok_or(VerifyError::Jwt("no `exp` claim"))?;
    if now > exp.saturating_add(JWT_LEEWAY_SECONDS) {
        return Err(VerifyError::Jwt("expired"));
    }
    if claim("nbf").is_some_and(|nbf| now.saturating_add(JWT_LEEWAY_SECONDS) < nbf) {
        return Err(VerifyError::Jwt("not valid yet"));
    }
    if claim("iat").is_some_and(|iat| now.saturating_add(JWT_LEEWAY_SECONDS) < iat) {
        return Err(VerifyError::Jwt("issued in the future"));
    }
    Ok(())
}

//! Every vector of `fixtures/signature-vectors.json` (copied from
//! `../shared/provider-samples/`) verifies through the descriptor configuration
//! of its provider, and flipping one byte of the body, the secret, the
//! signature or the timestamp makes it fail.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use poblysh_connectors::descriptor::compile::{CompiledDescriptor, CompiledVerification};
use poblysh_connectors::descriptor::load::{load_file, load_str};
use poblysh_connectors::descriptor::source::Format;
use poblysh_connectors::engine::webhook::WebhookRequest;
use poblysh_connectors::engine::webhook::verify::{VerifyError, verify};
use secrecy::SecretString;
use serde_json::Value;

/// Standard Webhooks has no provider of its own here: a descriptor written the
/// way a connector for a Standard-Webhooks sender (Svix, Resend, …) would be.
const STANDARD_WEBHOOKS: &str = r#"
id: standard_webhooks_sender
name: Standard Webhooks sender
description: Any sender following the Standard Webhooks spec.
category: custom
icon: webhook
kind: generic
version: 1.0.0
auth:
  method: webhook_secret
  config:
    signatureHeader: webhook-signature
    algorithm: hmac-sha256
    encoding: base64
    prefix: "v1,"
    separator: " "
    signedPayload: "{{header.webhook-id}}.{{header.webhook-timestamp}}.{{body}}"
    timestampHeader: webhook-timestamp
    toleranceSeconds: 300
    secretPrefix: whsec_
    secretEncoding: base64
    secretField: signingSecret
    credentialFields:
      - key: signingSecret
        label: Signing secret
        type: password
        required: true
ingestion:
  mode: webhook
  eventTypes: [test]
  eventTypePath: $.type
  verification: signature
fieldMapping:
  itemsPath: $
  idPath: $.id
  timestampPath: $.timestamp
  summaryTemplate: "{{type}}"
  signalTypeRules: []
  defaultType: event_received
healthCheck:
  endpoint: https://example.com/health
  method: GET
  expectStatus: 200
  timeoutMs: 5000
"#;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string("fixtures/signature-vectors.json").unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn descriptor(provider: &str) -> CompiledDescriptor {
    if provider == "standard-webhooks" {
        return load_str("standard-webhooks", STANDARD_WEBHOOKS, Format::Yaml)
            .unwrap_or_else(|d| panic!("{d:#?}"));
    }
    load_file(std::path::Path::new(&format!(
        "descriptors/{provider}.yaml"
    )))
    .unwrap_or_else(|d| panic!("{d:#?}"))
}

fn verification(d: &CompiledDescriptor) -> &CompiledVerification {
    &d.webhook.as_ref().expect("webhook section").verification
}

struct Case {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    secret: String,
    now: DateTime<Utc>,
}

impl Case {
    fn from_vector(v: &Value) -> Case {
        let body = match v.get("payload_file").and_then(Value::as_str) {
            // "pagerduty/….json (exact bytes, …)": the fixture copy of the sample.
            Some(file) => {
                let path = file.split_whitespace().next().unwrap();
                std::fs::read(format!("fixtures/{path}")).unwrap()
            }
            None => v["payload"].as_str().unwrap().as_bytes().to_vec(),
        };
        let headers = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        // Vectors with a signed timestamp are checked at that time.
        let now = v
            .get("timestamp")
            .and_then(Value::as_str)
            .map_or_else(Utc::now, |t| {
                Utc.timestamp_opt(t.parse().unwrap(), 0).unwrap()
            });
        Case {
            body,
            headers,
            secret: v["secret"].as_str().unwrap().to_owned(),
            now,
        }
    }

    fn verify(&self, verification: &CompiledVerification) -> Result<(), VerifyError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let request = WebhookRequest::new(
            Method::POST,
            headers,
            None,
            Bytes::from(self.body.clone()),
            "https://connectors.example.com/webhooks/x".into(),
        );
        let secret = SecretString::from(self.secret.clone());
        verify(verification, Some(&secret), &request, self.now)
    }
}

/// Flips one character to another of the same alphabet (hex stays hex,
/// base64 stays base64), so the value stays well-formed but wrong.
fn flip_char(s: &str, at: usize) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    chars[at] = match chars[at] {
        '0' => '1',
        'a' => 'b',
        'A' => 'B',
        'z' => 'y',
        'Z' => 'Y',
        '9' => '8',
        c if c.is_ascii_digit() => '0',
        c if c.is_ascii_lowercase() => 'a',
        c if c.is_ascii_uppercase() => 'A',
        '+' => '/',
        _ => 'x',
    };
    chars.into_iter().collect()
}

#[test]
fn every_vector_verifies_through_its_descriptor_and_fails_when_anything_changes() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 5, "the sample collection has five vectors");
    for v in &vectors {
        let provider = v["provider"].as_str().unwrap();
        let d = descriptor(provider);
        let verification = verification(&d);
        let case = Case::from_vector(v);
        case.verify(verification)
            .unwrap_or_else(|e| panic!("{provider}: the documented vector fails: {e}"));

        // One byte of the body.
        let mut changed = Case {
            body: case.body.clone(),
            ..Case::from_vector(v)
        };
        let mid = changed.body.len() / 2;
        changed.body[mid] ^= 0x01;
        assert_eq!(
            changed.verify(verification),
            Err(VerifyError::Mismatch),
            "{provider}: body"
        );

        // One byte of the secret.
        let mut changed = Case::from_vector(v);
        let last = changed.secret.len() - 1;
        changed.secret = flip_char(&changed.secret, last);
        assert!(changed.verify(verification).is_err(), "{provider}: secret");

        // One character of the signature (in its encoding, after any prefix).
        let signature_header = match verification {
            CompiledVerification::Signature(s) => s.config.signature_header.to_ascii_lowercase(),
            other => panic!("{provider}: expected a signature, got {other:?}"),
        };
        let mut changed = Case::from_vector(v);
        let header = changed
            .headers
            .iter_mut()
            .find(|(k, _)| k.to_ascii_lowercase() == signature_header)
            .unwrap();
        let at = header.1.len() - 3;
        header.1 = flip_char(&header.1, at);
        assert_eq!(
            changed.verify(verification),
            Err(VerifyError::Mismatch),
            "{provider}: signature"
        );

        // The signed timestamp, where there is one: a different value no longer
        // matches the signature.
        let mut changed = Case::from_vector(v);
        if let Some(ts) = changed
            .headers
            .iter_mut()
            .find(|(k, _)| k.to_ascii_lowercase().contains("timestamp"))
        {
            let original: i64 = ts.1.parse().unwrap();
            ts.1 = (original + 1).to_string();
            assert_eq!(
                changed.verify(verification),
                Err(VerifyError::Mismatch),
                "{provider}: timestamp"
            );
        }

        // A missing signature header fails; it is never skipped.
        let mut changed = Case::from_vector(v);
        changed
            .headers
            .retain(|(k, _)| k.to_ascii_lowercase() != signature_header);
        assert!(
            matches!(
                changed.verify(verification),
                Err(VerifyError::MissingHeader(_))
            ),
            "{provider}: missing header"
        );
    }
}

#[test]
fn pagerduty_negative_case_and_rotated_secrets() {
    let d = descriptor("pagerduty");
    let v = vectors()
        .into_iter()
        .find(|v| v["provider"] == "pagerduty")
        .unwrap();
    let mut case = Case::from_vector(&v);
    let good = case.headers[0].1.clone();
    let bad = v["negative_case"]["headers"]["X-PagerDuty-Signature"]
        .as_str()
        .unwrap()
        .to_owned();
    case.headers[0].1 = bad.clone();
    assert_eq!(case.verify(verification(&d)), Err(VerifyError::Mismatch));
    // During a secret rotation PagerDuty sends both signatures: any valid one passes.
    case.headers[0].1 = format!("{bad},{good}");
    case.verify(verification(&d)).unwrap();
    case.headers[0].1 = format!("{good}, {bad}");
    case.verify(verification(&d)).unwrap();
}

#[test]
fn standard_webhooks_decoys_and_replay_window() {
    let d = descriptor("standard-webhooks");
    let v = vectors()
        .into_iter()
        .find(|v| v["provider"] == "standard-webhooks")
        .unwrap();
    let mut case = Case::from_vector(&v);
    let sig = case
        .headers
        .iter()
        .find(|(k, _)| k == "webhook-signature")
        .unwrap()
        .1
        .clone();
    // The reference libraries' decoy next to the real one, and another scheme.
    let decoy = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    for h in case
        .headers
        .iter_mut()
        .filter(|(k, _)| k == "webhook-signature")
    {
        h.1 = format!("{decoy} v1a,abc {sig}");
    }
    case.verify(verification(&d)).unwrap();
    for h in case
        .headers
        .iter_mut()
        .filter(|(k, _)| k == "webhook-signature")
    {
        h.1 = decoy.into();
    }
    assert_eq!(case.verify(verification(&d)), Err(VerifyError::Mismatch));
    // Correctly signed, but six minutes late.
    let mut late = Case::from_vector(&v);
    late.now += chrono::Duration::minutes(6);
    assert_eq!(late.verify(verification(&d)), Err(VerifyError::Stale(300)));
}

#[test]
fn slack_rejects_a_request_six_minutes_old() {
    let d = descriptor("slack");
    let v = vectors()
        .into_iter()
        .find(|v| v["provider"] == "slack")
        .unwrap();
    let mut case = Case::from_vector(&v);
    case.now += chrono::Duration::minutes(6);
    assert_eq!(case.verify(verification(&d)), Err(VerifyError::Stale(300)));
    case.now -= chrono::Duration::minutes(12);
    assert_eq!(case.verify(verification(&d)), Err(VerifyError::Stale(300)));
}

fn request(headers: &[(&str, String)], body: &[u8]) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    WebhookRequest::new(
        Method::POST,
        map,
        None,
        Bytes::copy_from_slice(body),
        "https://connectors.example.com/webhooks/jira".into(),
    )
}

fn jwt(header: &str, claims: &Value, secret: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(hmac::Mac::finalize(mac).into_bytes())
    )
}

/// Jira's `Authorization: JWT …`: HS256 only (never `none`), signed with the
/// shared secret, with an `exp` that has not passed.
#[test]
fn jira_jwt_rules() {
    let d = descriptor("jira");
    let v = verification(&d);
    let secret = SecretString::from("jira-shared-secret");
    let now = Utc::now();
    let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
    let claims = |exp: i64| serde_json::json!({"iss": "client", "iat": exp - 180, "exp": exp});
    let check = |token: String| {
        verify(
            v,
            Some(&secret),
            &request(&[("Authorization", format!("JWT {token}"))], b"{}"),
            now,
        )
    };
    let fresh = now.timestamp() + 120;
    check(jwt(hs256, &claims(fresh), "jira-shared-secret")).unwrap();
    assert_eq!(
        check(jwt(hs256, &claims(fresh), "another secret")),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(jwt(
            hs256,
            &claims(now.timestamp() - 600),
            "jira-shared-secret"
        )),
        Err(VerifyError::Jwt("expired"))
    );
    assert_eq!(
        check(jwt(
            hs256,
            &serde_json::json!({"iss": "client"}),
            "jira-shared-secret"
        )),
        Err(VerifyError::Jwt("no `exp` claim"))
    );
    // `alg: none` with an empty signature is refused before anything else.
    let none = jwt(r#"{"alg":"none"}"#, &claims(fresh), "x");
    let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
    assert_eq!(
        check(unsigned),
        Err(VerifyError::Jwt("the algorithm is not HS256"))
    );
    assert_eq!(
        check("not-a-jwt".into()),
        Err(VerifyError::Jwt("not three dot-separated parts"))
    );
    // The `JWT ` prefix is part of the scheme; a bearer token is not accepted.
    let token = jwt(hs256, &claims(fresh), "jira-shared-secret");
    let bearer = verify(
        v,
        Some(&secret),
        &request(&[("Authorization", format!("Bearer {token}"))], b"{}"),
        now,
    );
    assert!(matches!(bearer, Err(VerifyError::Jwt(_))), "{bearer:?}");
}

/// Linear signs the body and puts the timestamp inside it (ms, 60 s window);
/// Sentry sends it in `Sentry-Hook-Timestamp` (s, 300 s window).
#[test]
fn timestamps_from_the_body_and_from_a_header() {
    let linear = descriptor("linear");
    let secret = SecretString::from("s3cret");
    let now = Utc::now();
    let sign = |body: &str| crate::webhooks::support::hmac_sha256_hex("s3cret", &[body.as_bytes()]);
    let body = |ms: i64| format!(r#"{{"type":"Issue","action":"create","webhookTimestamp":{ms}}}"#);
    let check = |body: String| {
        let headers = [("Linear-Signature", sign(&body))];
        verify(
            verification(&linear),
            Some(&secret),
            &request(&headers, body.as_bytes()),
            now,
        )
    };
    check(body(now.timestamp_millis() - 30_000)).unwrap();
    assert_eq!(
        check(body(now.timestamp_millis() - 61_000)),
        Err(VerifyError::Stale(60))
    );
    assert!(matches!(
        check(r#"{"type":"Issue"}"#.into()),
        Err(VerifyError::MissingTimestamp(_))
    ));

    let sentry = descriptor("sentry");
    let body = br#"{"action":"created"}"#;
    let signature = crate::webhooks::support::hmac_sha256_hex("s3cret", &[body]);
    let at = |t: i64| {
        let headers = [
            ("Sentry-Hook-Signature", signature.clone()),
            ("Sentry-Hook-Timestamp", t.to_string()),
        ];
        verify(
            verification(&sentry),
            Some(&secret),
            &request(&headers, body),
            now,
        )
    };
    at(now.timestamp() - 10).unwrap();
    assert_eq!(at(now.timestamp() - 301), Err(VerifyError::Stale(300)));
    let missing = verify(
        verification(&sentry),
        Some(&secret),
        &request(&[("Sentry-Hook-Signature", signature.clone())], body),
        now,
    );
    assert!(
        matches!(missing, Err(VerifyError::MissingTimestamp(_))),
        "{missing:?}"
    );
}

/// Zoho Cliq's shared token: compared in constant time, fail closed.
#[test]
fn shared_tokens() {
    let cliq = descriptor("zoho_cliq");
    let secret = SecretString::from("cliq-token");
    let check = |headers: &[(&str, String)]| {
        verify(
            verification(&cliq),
            Some(&secret),
            &request(headers, b"{}"),
            Utc::now(),
        )
    };
    check(&[("X-Poblysh-Token", "cliq-token".into())]).unwrap();
    assert_eq!(
        check(&[("X-Poblysh-Token", "cliq-tokeN".into())]),
        Err(VerifyError::TokenMismatch)
    );
    assert_eq!(
        check(&[("X-Poblysh-Token", "cliq-token-longer".into())]),
        Err(VerifyError::TokenMismatch)
    );
    assert!(matches!(check(&[]), Err(VerifyError::MissingHeader(_))));
    // No secret configured anywhere: refused, never waved through.
    assert_eq!(
        verify(
            verification(&cliq),
            None,
            &request(&[("X-Poblysh-Token", "x".into())], b"{}"),
            Utc::now()
        ),
        Err(VerifyError::NoSecret)
    );
}

//! The Google push-token verifier (`connector::native::google::oidc`) against
//! a mock JWKS: tokens signed with the test RSA keys in `tests/keys` (claims
//! shaped as Google's docs example,
//! `provider-samples/gmail/pubsub_push.oidc_jwt_claims.docs_example.json`),
//! every way a token can be wrong, the cache and the refetch rules, on a
//! manual clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poblysh_connectors::connector::native::google::oidc::{
    GoogleKeys, PushAuthError, PushPolicy, PushVerifier, REFETCH_AFTER, RETRY_FAILED_AFTER,
};
use poblysh_connectors::domain::{Ambient, ManualClock, SeededRandom};
use poblysh_connectors::engine::http::{HttpClient, NetworkPolicy, install_crypto_provider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const KEY_A: &str = include_str!("../keys/test-rsa-a.pem");
pub(crate) const KEY_B: &str = include_str!("../keys/test-rsa-b.pem");
pub(crate) const JWK_A: &str = include_str!("../keys/test-rsa-a.jwk.json");
pub(crate) const JWK_B: &str = include_str!("../keys/test-rsa-b.jwk.json");
pub(crate) const AUDIENCE: &str = "https://connectors.example.com/webhooks/gmail";
pub(crate) const ACCOUNT: &str = "gmail-push@example-project.iam.gserviceaccount.com";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

/// The docs example's claims, for our audience and account, issued at `now`.
pub(crate) fn claims(now: DateTime<Utc>) -> Value {
    json!({
        "aud": AUDIENCE,
        "azp": "113774264463038321964",
        "email": ACCOUNT,
        "sub": "113774264463038321964",
        "email_verified": true,
        "exp": now.timestamp() + 3600,
        "iat": now.timestamp(),
        "iss": "https://accounts.google.com"
    })
}

pub(crate) fn sign(pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key");
    jsonwebtoken::encode(&header, claims, &key).expect("signs")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub(crate) fn jwks(keys: &[&str]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(k).unwrap())
        .collect();
    json!({ "keys": keys })
}

struct Setup {
    server: MockServer,
    clock: ManualClock,
    verifier: PushVerifier,
}

/// A verifier whose JWKS (`keys`, served with `cache_control`) is mocked.
async fn setup(keys: &[&str], cache_control: &str) -> Setup {
    install_crypto_provider();
    let server = MockServer::start().await;
    serve_keys(&server, keys, cache_control).await;
    let clock = ManualClock::new(t0());
    let ambient = Ambient {
        clock: Arc::new(clock.clone()),
        random: Arc::new(SeededRandom::new(7)),
    };
    let http = HttpClient::new(NetworkPolicy {
        allow_private: true,
    })
    .with_ambient(ambient);
    let url = format!("{}/oauth2/v3/certs", server.uri()).parse().unwrap();
    let verifier = PushVerifier::new(
        GoogleKeys::new(url, http),
        PushPolicy {
            audience: AUDIENCE.into(),
            service_account: ACCOUNT.into(),
        },
    );
    Setup {
        server,
        clock,
        verifier,
    }
}

async fn serve_keys(server: &MockServer, keys: &[&str], cache_control: &str) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/oauth2/v3/certs"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", cache_control)
                .set_body_json(jwks(keys)),
        )
        .mount(server)
        .await;
}

pub(crate) const GOOGLE_CACHE: &str = "public, max-age=19204, must-revalidate, no-transform";

#[tokio::test]
async fn a_token_google_would_sign_verifies_and_the_keys_are_fetched_once_for_100_pushes() {
    let s = setup(&[JWK_A, JWK_B], GOOGLE_CACHE).await;
    let token = sign(KEY_A, "test-key-a", &claims(t0()));
    for _ in 0..100 {
        let got = s.verifier.verify(Some(&bearer(&token))).await.unwrap();
        assert_eq!(got.email, ACCOUNT);
        assert_eq!(got.aud, AUDIENCE);
    }
    // The other key verifies too, from the same fetch.
    let other = sign(KEY_B, "test-key-b", &claims(t0()));
    s.verifier.verify(Some(&bearer(&other))).await.unwrap();
    assert_eq!(s.verifier.keys().fetches(), 1);
    assert_eq!(s.server.received_requests().await.unwrap().len(), 1);
    // `accounts.google.com` without the scheme is Google's too.
    let mut bare = claims(t0());
    bare["iss"] = json!("accounts.google.com");
    let bare = sign(KEY_A, "test-key-a", &bare);
    s.verifier.verify(Some(&bearer(&bare))).await.unwrap();
}

#[tokio::test]
async fn every_kind_of_wrong_token_is_refused() {
    let s = setup(&[JWK_A], GOOGLE_CACHE).await;
    let now = t0();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(now);
        change(&mut c);
        sign(KEY_A, "test-key-a", &c)
    };
    let cases: Vec<(&str, Option<String>, PushAuthError)> = vec![
        ("no header", None, PushAuthError::Missing),
        (
            "not bearer",
            Some("Basic dXNlcjpwYXNz".into()),
            PushAuthError::Missing,
        ),
        (
            "not a JWT",
            Some(bearer("not.a.jwt")),
            PushAuthError::Malformed,
        ),
        (
            "signed by another key under key a's kid",
            Some(bearer(&sign(KEY_B, "test-key-a", &claims(now)))),
            PushAuthError::Signature,
        ),
        (
            "wrong aud",
            Some(bearer(&with(&|c| c["aud"] = json!("https://example.com")))),
            PushAuthError::Claim("aud"),
        ),
        (
            "wrong iss",
            Some(bearer(&with(&|c| {
                c["iss"] = json!("https://evil.example.com")
            }))),
            PushAuthError::Claim("iss"),
        ),
        (
            "wrong email",
            Some(bearer(&with(&|c| {
                c["email"] = json!("someone@example.com")
            }))),
            PushAuthError::Claim("email"),
        ),
        (
            "email not verified",
            Some(bearer(&with(&|c| c["email_verified"] = json!(false)))),
            PushAuthError::Claim("email_verified"),
        ),
        (
            "email_verified missing",
            Some(bearer(&with(&|c| {
                c.as_object_mut().unwrap().remove("email_verified");
            }))),
            PushAuthError::Malformed,
        ),
        (
            "expired beyond the skew",
            Some(bearer(&with(&|c| c["exp"] = json!(now.timestamp() - 61)))),
            PushAuthError::Time,
        ),
        (
            "issued in the future beyond the skew",
            Some(bearer(&with(&|c| c["iat"] = json!(now.timestamp() + 61)))),
            PushAuthError::Time,
        ),
    ];
    for (case, header, expected) in cases {
        let got = s.verifier.verify(header.as_deref()).await;
        assert_eq!(got, Err(expected), "{case}");
    }
    // Within the skew both ways: accepted.
    let edge = with(&|c| {
        c["exp"] = json!(now.timestamp() - 59);
        c["iat"] = json!(now.timestamp() + 59);
    });
    s.verifier.verify(Some(&bearer(&edge))).await.unwrap();
}

/// `alg: none` and HS256 keyed with the RSA key's public modulus (the
/// algorithm-confusion attack) are refused before any key is used.
#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = setup(&[JWK_A], GOOGLE_CACHE).await;
    let payload = URL_SAFE_NO_PAD.encode(claims(t0()).to_string());
    let none = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-a","typ":"JWT"}"#)
    );
    let got = s.verifier.verify(Some(&bearer(&none))).await;
    assert!(
        matches!(
            got,
            Err(PushAuthError::Malformed | PushAuthError::Algorithm)
        ),
        "{got:?}"
    );
    let jwk: Value = serde_json::from_str(JWK_A).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-key-a".into());
    let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let hs =
        jsonwebtoken::encode(&header, &claims(t0()), &EncodingKey::from_secret(&modulus)).unwrap();
    assert_eq!(
        s.verifier.verify(Some(&bearer(&hs))).await,
        Err(PushAuthError::Algorithm)
    );
    assert_eq!(s.verifier.keys().fetches(), 0, "no key fetched for them");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_and_then_not_again_for_a_minute() {
    let s = setup(&[JWK_A], GOOGLE_CACHE).await;
    let good = sign(KEY_A, "test-key-a", &claims(t0()));
    s.verifier.verify(Some(&bearer(&good))).await.unwrap();
    assert_eq!(s.verifier.keys().fetches(), 1);

    let unknown = sign(KEY_B, "made-up-kid", &claims(t0()));
    for _ in 0..20 {
        assert_eq!(
            s.verifier.verify(Some(&bearer(&unknown))).await,
            Err(PushAuthError::UnknownKey)
        );
    }
    assert_eq!(
        s.verifier.keys().fetches(),
        2,
        "one refetch for twenty pushes"
    );
    // Known keys keep verifying meanwhile, from the cache.
    s.verifier.verify(Some(&bearer(&good))).await.unwrap();
    assert_eq!(s.verifier.keys().fetches(), 2);

    // Google rotates: key b appears. Within the minute it is not fetched...
    serve_keys(&s.server, &[JWK_A, JWK_B], GOOGLE_CACHE).await;
    let rotated = sign(KEY_B, "test-key-b", &claims(t0()));
    assert_eq!(
        s.verifier.verify(Some(&bearer(&rotated))).await,
        Err(PushAuthError::UnknownKey)
    );
    assert_eq!(s.verifier.keys().fetches(), 2);
    // ...after it, one refetch finds it.
    s.clock
        .advance(chrono::Duration::from_std(REFETCH_AFTER).unwrap());
    s.verifier.verify(Some(&bearer(&rotated))).await.unwrap();
    assert_eq!(s.verifier.keys().fetches(), 3);
}

#[tokio::test]
async fn keys_are_refetched_when_their_max_age_passes_and_kept_when_google_is_down() {
    let s = setup(&[JWK_A], "public, max-age=300").await;
    let token = |now| sign(KEY_A, "test-key-a", &claims(now));
    s.verifier
        .verify(Some(&bearer(&token(t0()))))
        .await
        .unwrap();
    s.clock.advance(chrono::Duration::seconds(299));
    s.verifier
        .verify(Some(&bearer(&token(s.clock_now()))))
        .await
        .unwrap();
    assert_eq!(s.verifier.keys().fetches(), 1, "fresh for max-age");
    s.clock.advance(chrono::Duration::seconds(2));
    s.verifier
        .verify(Some(&bearer(&token(s.clock_now()))))
        .await
        .unwrap();
    assert_eq!(s.verifier.keys().fetches(), 2, "stale after max-age");

    // The endpoint fails: a known key still verifies (stale), an unknown one
    // is refused as unavailable, so the sender retries.
    s.server.reset().await;
    Mock::given(method("GET"))
        .and(path("/oauth2/v3/certs"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&s.server)
        .await;
    s.clock.advance(chrono::Duration::seconds(301));
    s.verifier
        .verify(Some(&bearer(&token(s.clock_now()))))
        .await
        .unwrap();
    assert_eq!(s.verifier.keys().fetches(), 3, "the failed refresh");
    let other = sign(KEY_B, "test-key-b", &claims(s.clock_now()));
    let got = s.verifier.verify(Some(&bearer(&other))).await.unwrap_err();
    assert!(got.is_unavailable(), "{got:?}");
    // No push waits for another fetch until the failure is a few seconds old.
    for _ in 0..10 {
        s.verifier
            .verify(Some(&bearer(&token(s.clock_now()))))
            .await
            .unwrap();
        assert!(
            s.verifier
                .verify(Some(&bearer(&other)))
                .await
                .unwrap_err()
                .is_unavailable()
        );
    }
    assert_eq!(
        s.verifier.keys().fetches(),
        3,
        "no fetch during the back-off"
    );
    s.clock
        .advance(chrono::Duration::from_std(RETRY_FAILED_AFTER).unwrap());
    s.verifier
        .verify(Some(&bearer(&token(s.clock_now()))))
        .await
        .unwrap();
    assert_eq!(s.verifier.keys().fetches(), 4, "tried again after it");
}

#[tokio::test]
async fn with_google_unreachable_from_the_start_every_token_is_refused() {
    let s = setup(&[JWK_A], GOOGLE_CACHE).await;
    s.server.reset().await;
    Mock::given(method("GET"))
        .and(path("/oauth2/v3/certs"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not a key set</html>"))
        .mount(&s.server)
        .await;
    let token = sign(KEY_A, "test-key-a", &claims(t0()));
    let got = s.verifier.verify(Some(&bearer(&token))).await.unwrap_err();
    assert!(got.is_unavailable(), "{got:?}");
    // The error names no token material.
    assert!(!got.to_string().contains(&token[..20]));
}

impl Setup {
    fn clock_now(&self) -> DateTime<Utc> {
        use poblysh_connectors::domain::Clock;
        self.clock.now()
    }
}

//! Standard Webhooks signing, as a push delivery is signed and as a receiver
//! verifies it: `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! headers, the signature `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! several space-separated while a secret is rotated. Secrets are
//! `whsec_<base64>` (32 random bytes when the service makes one). Checked
//! against the specification's published test vector.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use subtle::ConstantTimeEq;

use crate::domain::Ambient;

/// The prefix of a signing secret.
pub const PREFIX: &str = "whsec_";
/// Random bytes in a secret the service makes.
pub const SECRET_BYTES: usize = 32;
/// How far a delivery's timestamp may be from the receiver's clock.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A signing key (the decoded secret).
pub struct SigningKey(SecretBox<Vec<u8>>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a secret or a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The secret is not `whsec_` and base64, or decodes to nothing.
    #[error("the signing secret is not `whsec_` followed by base64")]
    BadSecret,
    /// A header is missing or not text.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// The timestamp is not whole seconds.
    #[error("the `webhook-timestamp` header is not whole seconds")]
    BadTimestamp,
    /// The timestamp is outside the tolerance.
    #[error("the timestamp is more than {TOLERANCE_SECONDS} s from now")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches")]
    Mismatch,
}

impl SigningKey {
    /// The key of a `whsec_…` secret.
    pub fn parse(secret: &str) -> Result<SigningKey, SigningError> {
        let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
        let key = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SigningError::BadSecret)?;
        if key.is_empty() {
            return Err(SigningError::BadSecret);
        }
        Ok(SigningKey(SecretBox::new(Box::new(key))))
    }

    /// A new random secret (`whsec_` + base64 of 32 bytes), from `ambient`'s randomness.
    pub fn generate(ambient: &Ambient) -> SecretString {
        let mut bytes = [0u8; SECRET_BYTES];
        ambient.random.fill(&mut bytes);
        SecretString::from(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header for `keys` (the current one first, then
/// those still in their rotation window): one signature each, space-separated.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| k.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a delivery as a receiver does: its `id`, `timestamp` and
/// `signature` header values, the raw `body`, at `now` (Unix seconds); any
/// `v1` signature made with `key` passes (compared in constant time).
pub fn verify(
    key: &SigningKey,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SigningError> {
    let id = id.ok_or(SigningError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(SigningError::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(SigningError::MissingHeader("webhook-signature"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SigningError::BadTimestamp)?;
    if (now - at).abs() > TOLERANCE_SECONDS {
        return Err(SigningError::Stale);
    }
    let expected = key.sign(id, at, body);
    let expected = expected.as_bytes();
    let found = signature
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .fold(false, |found, s| {
            found | bool::from(s.as_bytes().ct_eq(expected))
        });
    found.then_some(()).ok_or(SigningError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's test vector
    /// (standard-webhooks/standard-webhooks, the spec and every reference library).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_s_test_vector() {
        let key = SigningKey::parse(SECRET).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        // The reference Rust library's own vector too.
        let key = SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            key.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_receiver_accepts_the_vector_and_refuses_tampering() {
        let key = SigningKey::parse(SECRET).unwrap();
        let check = |id, ts, sig, body: &[u8], now| verify(&key, id, ts, sig, body, now);
        let ts = TIMESTAMP.to_string();
        assert_eq!(
            check(Some(ID), Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP),
            Ok(())
        );
        // Among other signatures (a rotation), in any place.
        let several = format!("v1,bm90IHRoZSBvbmU= {SIGNATURE} v2,whatever");
        assert_eq!(
            check(Some(ID), Some(&ts), Some(&several), BODY, TIMESTAMP + 10),
            Ok(())
        );
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            check(Some(ID), Some(&ts), Some(SIGNATURE), tampered, TIMESTAMP),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            check(
                Some("msg_other"),
                Some(&ts),
                Some(SIGNATURE),
                BODY,
                TIMESTAMP
            ),
            Err(SigningError::Mismatch)
        );
        let later = (TIMESTAMP + 1).to_string();
        assert_eq!(
            check(Some(ID), Some(&later), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SigningError::Mismatch)
        );
        assert_eq!(
            check(Some(ID), Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP + 301),
            Err(SigningError::Stale)
        );
        assert_eq!(
            check(Some(ID), Some("soon"), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SigningError::BadTimestamp)
        );
        assert_eq!(
            check(None, Some(&ts), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SigningError::MissingHeader("webhook-id"))
        );
        let other = SigningKey::parse("whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=").unwrap();
        assert_eq!(
            verify(
                &other,
                Some(ID),
                Some(&ts),
                Some(SIGNATURE),
                BODY,
                TIMESTAMP
            ),
            Err(SigningError::Mismatch)
        );
    }

    #[test]
    fn a_rotation_signs_with_every_key_and_either_verifies() {
        let old = SigningKey::parse(SECRET).unwrap();
        let new_secret = SigningKey::generate(&Ambient::system());
        assert!(new_secret.expose_secret().starts_with(PREFIX));
        let new = SigningKey::parse(new_secret.expose_secret()).unwrap();
        let header = signature_header(
            &[
                SigningKey::parse(new_secret.expose_secret()).unwrap(),
                SigningKey::parse(SECRET).unwrap(),
            ],
            ID,
            TIMESTAMP,
            BODY,
        );
        assert_eq!(header.split(' ').count(), 2);
        let ts = TIMESTAMP.to_string();
        for key in [&old, &new] {
            assert_eq!(
                verify(key, Some(ID), Some(&ts), Some(&header), BODY, TIMESTAMP),
                Ok(())
            );
        }
        assert_eq!(
            SigningKey::parse("whsec_not base64!").map(|_| ()),
            Err(SigningError::BadSecret)
        );
        assert_eq!(
            SigningKey::parse("whsec_").map(|_| ()),
            Err(SigningError::BadSecret)
        );
        assert_eq!(format!("{old:?}"), "SigningKey(<redacted>)");
    }
}

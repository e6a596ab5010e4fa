//! Verifies the OIDC token Google signs for a Cloud Pub/Sub push request
//! (`Authorization: Bearer <JWT>`), fail closed: RS256 only, the key by `kid`
//! from Google's JWKS (cached as its `Cache-Control` says, refetched at most
//! once a minute for an unknown `kid`, one fetch at a time, never waited for
//! by a push whose key is cached and fresh), `iss` Google's,
//! `aud` the configured audience, `email` the configured push service account
//! with `email_verified: true`, and `exp`/`iat` within a small skew of the
//! node's clock. Anything else is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use url::Url;

use crate::engine::http::{HttpClient, HttpRequest};

/// Google's JWKS for the tokens it signs (Pub/Sub push included).
pub const DEFAULT_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google's tokens name.
pub const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Clock skew allowed on `exp` and `iat`, in seconds.
pub const SKEW_SECONDS: i64 = 60;
/// Longest `Authorization` value looked at (Google's tokens are ~1 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest JWKS response read (Google's is ~1.5 KB).
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Keys kept from one JWKS at most.
const MAX_KEYS: usize = 32;
/// How long keys stay fresh without a `max-age`, and the bounds put on one.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` refetches the JWKS at most this often (a token with a
/// made-up `kid` must not make the node fetch on every request).
pub const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// After a failed JWKS fetch, none is tried for this long (an outage must
/// not make every push wait for a fetch).
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(5);
/// Time allowed for one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may push: the subscription's configured audience and service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPolicy {
    /// The `aud` the push subscription was configured with.
    pub audience: String,
    /// The service account the subscription pushes as (`email`).
    pub service_account: String,
}

/// The claims of a verified push token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The pushing service account.
    pub email: String,
    /// Whether Google verified `email`.
    pub email_verified: bool,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Subject (the service account's id).
    #[serde(default)]
    pub sub: String,
}

/// Why a push token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushAuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT, or claims of the wrong shape.
    #[error("the bearer token is malformed")]
    Malformed,
    /// Signed with anything but RS256 (`none` and HS256 included).
    #[error("the bearer token is not signed with RS256")]
    Algorithm,
    /// Its `kid` is not among Google's keys, even after a refetch.
    #[error("the bearer token's key is not one of Google's")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the bearer token's signature does not verify")]
    Signature,
    /// A claim is not the expected one.
    #[error("the bearer token's `{0}` claim is not the expected one")]
    Claim(&'static str),
    /// Expired, or issued in the future.
    #[error("the bearer token is expired or not yet valid")]
    Time,
    /// Google's keys could not be fetched (the push should be retried).
    #[error("Google's signing keys cannot be fetched: {0}")]
    Keys(String),
}

impl PushAuthError {
    /// Whether the failure is ours, not the token's (answer so the sender retries).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PushAuthError::Keys(_))
    }
}

/// Google's signing keys, fetched when needed and cached.
#[derive(Debug)]
pub struct GoogleKeys {
    url: Url,
    http: HttpClient,
    cache: std::sync::RwLock<Cache>,
    /// Held while a fetch is decided and made: one at a time. A push whose
    /// key is cached and fresh never waits for it.
    fetching: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// Keys by `kid`.
type Keys = HashMap<String, Arc<DecodingKey>>;

#[derive(Default)]
struct Cache {
    keys: Keys,
    fresh_until: Option<DateTime<Utc>>,
    /// When an unknown `kid` last made it refetch.
    refetched_at: Option<DateTime<Utc>>,
    /// When the last fetch failed (cleared by one that succeeds).
    failed_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("fresh_until", &self.fresh_until)
            .finish()
    }
}

impl GoogleKeys {
    /// Keys from the JWKS at `url`, fetched with `http` (its clock and network policy).
    pub fn new(url: Url, http: HttpClient) -> Self {
        GoogleKeys {
            url,
            http,
            cache: std::sync::RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key `kid`: from the cache while it is fresh; a stale cache or an
    /// unknown `kid` fetches (the latter at most every [`REFETCH_AFTER`]);
    /// after a failed fetch none is tried for [`RETRY_FAILED_AFTER`].
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, PushAuthError> {
        let fresh =
            |cache: &Cache, now: DateTime<Utc>| cache.fresh_until.is_some_and(|until| now < until);
        {
            let cache = self.read();
            if fresh(&cache, self.http.ambient().now())
                && let Some(key) = cache.keys.get(kid)
            {
                return Ok(Arc::clone(key));
            }
        }
        let _fetching = self.fetching.lock().await;
        let now = self.http.ambient().now();
        let (known, fetch) = {
            let mut cache = self.write();
            let known = cache.keys.contains_key(kid);
            let stale = !fresh(&cache, now);
            let refetch = !known
                && cache
                    .refetched_at
                    .is_none_or(|at| now - at >= span(REFETCH_AFTER));
            let failed_lately = cache
                .failed_at
                .is_some_and(|at| now - at < span(RETRY_FAILED_AFTER));
            let fetch = (stale || refetch) && !failed_lately;
            if fetch && !stale {
                cache.refetched_at = Some(now);
            }
            // Google's keys outlive their max-age: a known one still
            // verifies while the endpoint is down, an unknown one cannot.
            if (stale || refetch) && failed_lately && !known {
                return Err(PushAuthError::Keys(
                    "the last fetch failed moments ago".into(),
                ));
            }
            (known, fetch)
        };
        if fetch {
            let fetched = self.fetch(now).await;
            let mut cache = self.write();
            match fetched {
                Ok((keys, until)) => {
                    (cache.keys, cache.fresh_until, cache.failed_at) = (keys, Some(until), None);
                }
                Err(e) => {
                    cache.failed_at = Some(now);
                    if !known {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "keeping Google's cached signing keys");
                }
            }
        }
        self.read()
            .keys
            .get(kid)
            .cloned()
            .ok_or(PushAuthError::UnknownKey)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys of the JWKS, and until when they are fresh.
    async fn fetch(&self, now: DateTime<Utc>) -> Result<(Keys, DateTime<Utc>), PushAuthError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut request = HttpRequest::new(http::Method::GET, self.url.clone());
        request.timeout = FETCH_TIMEOUT;
        request.max_response_bytes = MAX_JWKS_BYTES;
        let response = self
            .http
            .send_once(&request)
            .await
            .map_err(|e| PushAuthError::Keys(e.to_string()))?;
        if response.status != 200 {
            return Err(PushAuthError::Keys(format!(
                "the JWKS endpoint answered {}",
                response.status
            )));
        }
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(&response.body)
            .map_err(|e| PushAuthError::Keys(format!("the JWKS is not a key set: {e}")))?;
        let keys: Keys = set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter_map(|jwk| rs256_key(&jwk))
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(PushAuthError::Keys("the JWKS holds no RS256 key".into()));
        }
        let max_age = max_age(response.headers.get(http::header::CACHE_CONTROL));
        Ok((keys, now + span(max_age)))
    }
}

/// A JWK usable for RS256 signatures, by its `kid`.
fn rs256_key(jwk: &Jwk) -> Option<(String, Arc<DecodingKey>)> {
    let kid = jwk.common.key_id.clone()?;
    let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
        return None;
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a != KeyAlgorithm::RS256)
        || jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let key = DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?;
    Some((kid, Arc::new(key)))
}

/// A duration on the clock's scale (every one here is well within range).
fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// How long a JWKS response may be cached: its `max-age`, bounded.
fn max_age(header: Option<&http::HeaderValue>) -> Duration {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|d| {
                let (name, value) = d.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("max-age")
                    .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                    .flatten()
            })
        })
        .map_or(DEFAULT_MAX_AGE, |s| {
            Duration::from_secs(s).clamp(MIN_MAX_AGE, MAX_MAX_AGE)
        })
}

/// Verifies push tokens against Google's keys and a [`PushPolicy`].
#[derive(Debug)]
pub struct PushVerifier {
    keys: GoogleKeys,
    policy: PushPolicy,
}

impl PushVerifier {
    /// A verifier for `policy` with `keys`.
    pub fn new(keys: GoogleKeys, policy: PushPolicy) -> Self {
        PushVerifier { keys, policy }
    }

    /// Its keys (how often they were fetched, for tests and metrics).
    pub fn keys(&self) -> &GoogleKeys {
        &self.keys
    }

    /// Verifies the `Authorization` header of a push request.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<PushClaims, PushAuthError> {
        let token = bearer(authorization)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| PushAuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(PushAuthError::Algorithm);
        }
        let kid = header.kid.ok_or(PushAuthError::Malformed)?;
        let key = self.keys.key(&kid).await?;
        // Times are checked below against the node's clock, the audience
        // and issuer there too (one error per claim).
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<PushClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => PushAuthError::Signature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => PushAuthError::Algorithm,
                _ => PushAuthError::Malformed,
            })?
            .claims;
        if !ISSUERS.contains(&claims.iss.as_str()) {
            return Err(PushAuthError::Claim("iss"));
        }
        if claims.aud != self.policy.audience {
            return Err(PushAuthError::Claim("aud"));
        }
        if claims.email != self.policy.service_account {
            return Err(PushAuthError::Claim("email"));
        }
        if !claims.email_verified {
            return Err(PushAuthError::Claim("email_verified"));
        }
        let now = self.keys.http.ambient().now().timestamp();
        if now > claims.exp.saturating_add(SKEW_SECONDS)
            || claims.iat > now.saturating_add(SKEW_SECONDS)
        {
            return Err(PushAuthError::Time);
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer` value.
fn bearer(authorization: Option<&str>) -> Result<&str, PushAuthError> {
    let value = authorization.ok_or(PushAuthError::Missing)?;
    if value.len() > MAX_TOKEN_BYTES {
        return Err(PushAuthError::Malformed);
    }
    let (scheme, token) = value.trim().split_once(' ').ok_or(PushAuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(PushAuthError::Missing);
    }
    Ok(token.trim())
}

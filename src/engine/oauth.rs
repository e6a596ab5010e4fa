//! OAuth 2.0 authorization-code flow: the authorize URL (state, PKCE S256), the
//! code exchange and refresh at the token endpoint, and reading token responses
//! (JSON, or form-encoded; Slack-style `{"ok": false}` errors). `invalid_grant`
//! means the user must connect again.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use http::{HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::http::{HttpClient, HttpError, HttpRequest, RetryPolicy};
use crate::descriptor::auth::{OAuth2Config, TokenAuthMethod};
use crate::domain::Ambient;
pub use crate::domain::TokenSet;

/// The OAuth client (app) credentials.
pub struct ClientCredentials {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The grant (code or refresh token) is no longer valid: connect again.
    #[error("the provider rejected the grant ({0}): the connection must be authorized again")]
    InvalidGrant(String),
    /// The provider answered with another OAuth error.
    #[error("the token endpoint answered `{error}`{}", description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider {
        /// The `error` code.
        error: String,
        /// The `error_description`.
        description: Option<String>,
    },
    /// The request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The response has no access token.
    #[error("the token endpoint's answer has no access_token")]
    NoAccessToken,
}

/// A PKCE pair: the verifier kept secret, the S256 challenge sent.
pub fn pkce_pair(ambient: &Ambient) -> (String, String) {
    let verifier = ambient.token(48);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The URL the user is sent to.
pub fn authorize_url(
    config: &OAuth2Config,
    base: &Url,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    challenge: Option<&str>,
) -> Url {
    let mut url = base.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        if !config.scopes.is_empty() {
            let sep = config.scope_separator.as_deref().unwrap_or(" ");
            q.append_pair("scope", &config.scopes.join(sep));
        }
        if let Some(challenge) = challenge {
            q.append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &config.authorize_params {
            q.append_pair(k, v);
        }
    }
    url
}

/// A token endpoint and how to authenticate to it.
pub struct TokenEndpoint<'a> {
    /// The client.
    pub http: &'a HttpClient,
    /// The endpoint.
    pub url: &'a Url,
    /// How the client authenticates.
    pub method: Option<TokenAuthMethod>,
    /// The app credentials.
    pub client: &'a ClientCredentials,
}

/// Exchanges an authorization code.
pub async fn exchange_code(
    endpoint: &TokenEndpoint<'_>,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenSet, OAuthError> {
    let mut form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v.to_owned()));
    }
    token_request(endpoint, form, now).await
}

/// Refreshes an access token. A response without a new refresh token keeps the
/// old one (the caller does that: `refresh_token` is `None` here).
pub async fn refresh(
    endpoint: &TokenEndpoint<'_>,
    refresh_token: &SecretString,
    now: DateTime<Utc>,
) -> Result<TokenSet, OAuthError> {
    let form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.expose_secret().to_owned()),
    ];
    token_request(endpoint, form, now).await
}

async fn token_request(
    endpoint: &TokenEndpoint<'_>,
    mut form: Vec<(&str, String)>,
    now: DateTime<Utc>,
) -> Result<TokenSet, OAuthError> {
    let client = endpoint.client;
    let mut request = HttpRequest::new(Method::POST, endpoint.url.clone());
    for (name, value) in &form {
        if matches!(*name, "code" | "code_verifier" | "refresh_token") {
            request.secrets.add(value);
        }
    }
    request.secrets.add(client.client_secret.expose_secret());
    request
        .secrets
        .add_basic(&client.client_id, client.client_secret.expose_secret());
    match endpoint.method.unwrap_or(TokenAuthMethod::ClientSecretPost) {
        TokenAuthMethod::ClientSecretPost => {
            form.push(("client_id", client.client_id.clone()));
            form.push((
                "client_secret",
                client.client_secret.expose_secret().to_owned(),
            ));
        }
        TokenAuthMethod::ClientSecretBasic => {
            let basic = STANDARD.encode(format!(
                "{}:{}",
                client.client_id,
                client.client_secret.expose_secret()
            ));
            let mut value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                OAuthError::Provider {
                    error: "invalid_client".into(),
                    description: Some("the client id or secret cannot be sent".into()),
                }
            })?;
            value.set_sensitive(true);
            request.headers.insert(http::header::AUTHORIZATION, value);
        }
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    request.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request.headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    request.body = Some(body.into_bytes());
    let retry = RetryPolicy {
        statuses: vec![500, 502, 503, 504],
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let response = match endpoint.http.send(&request, &retry).await {
        Ok(r) => r,
        // OAuth errors come back as 400/401 with a JSON body.
        Err(HttpError::Status {
            status: 400 | 401,
            body,
            ..
        }) => {
            let parsed = parse_body(body.as_bytes());
            return Err(oauth_error(&parsed).unwrap_or(OAuthError::Provider {
                error: "invalid_request".into(),
                description: Some(body),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let parsed = parse_body(&response.body);
    if let Some(e) = oauth_error(&parsed) {
        return Err(e);
    }
    token_set(parsed, now)
}

/// JSON, or form-encoded (some providers answer that way).
fn parse_body(body: &[u8]) -> Map<String, Value> {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        return map;
    }
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn oauth_error(body: &Map<String, Value>) -> Option<OAuthError> {
    let error = match (body.get("error"), body.get("ok")) {
        (Some(Value::String(e)), _) => e.clone(),
        (None, Some(Value::Bool(false))) => "unknown_error".into(),
        _ => return None,
    };
    if matches!(
        error.as_str(),
        "invalid_grant"
            | "invalid_code"
            | "invalid_refresh_token"
            | "token_revoked"
            | "code_already_used"
    ) {
        return Some(OAuthError::InvalidGrant(error));
    }
    Some(OAuthError::Provider {
        error,
        description: body
            .get("error_description")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn token_set(mut body: Map<String, Value>, now: DateTime<Utc>) -> Result<TokenSet, OAuthError> {
    let take = |body: &mut Map<String, Value>, key: &str| match body.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s)),
        _ => None,
    };
    let access_token = take(&mut body, "access_token").ok_or(OAuthError::NoAccessToken)?;
    let refresh_token = take(&mut body, "refresh_token");
    body.remove("id_token");
    let expires_at = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map(|secs| now + Duration::seconds(secs));
    let mut metadata = Map::new();
    for (k, v) in body {
        match v {
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    if !iv.is_object()
                        && !iv.is_array()
                        && !ik.contains("token")
                        && !ik.contains("secret")
                    {
                        metadata.insert(format!("{k}_{ik}"), iv);
                    }
                }
            }
            v if !k.contains("token") && !k.contains("secret") => {
                metadata.insert(k, v);
            }
            _ => {}
        }
    }
    Ok(TokenSet {
        access_token,
        refresh_token,
        expires_at,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        let (verifier, challenge) = pkce_pair(&Ambient::system());
        assert!(verifier.len() >= 43 && verifier.len() <= 128);
        assert_eq!(
            challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        );
        // RFC 7636 appendix B.
        let rfc = URL_SAFE_NO_PAD.encode(Sha256::digest(
            b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ));
        assert_eq!(rfc, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn authorize_url_carries_everything() {
        let config: OAuth2Config = serde_json::from_value(json!({
            "authoriseUrl": "https://slack.com/oauth/v2/authorize", "tokenUrl": "https://slack.com/api/oauth.v2.access",
            "scopes": ["channels:history", "reactions:read"], "scopeSeparator": ",", "pkce": true,
            "authorizeParams": {"user_scope": "identify"}
        }))
        .unwrap();
        let url = authorize_url(
            &config,
            &Url::parse(&config.authorise_url).unwrap(),
            "cid",
            "https://core.example/cb",
            "st",
            Some("ch"),
        );
        let q: std::collections::BTreeMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "https://core.example/cb");
        assert_eq!(q["state"], "st");
        assert_eq!(q["scope"], "channels:history,reactions:read");
        assert_eq!(q["code_challenge"], "ch");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["user_scope"], "identify");
    }

    #[test]
    fn token_responses_and_errors() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let body = parse_body(br#"{"ok": true, "access_token": "xoxb", "expires_in": 3600, "refresh_token": "r", "team": {"id": "T1", "name": "Acme"}, "authed_user": {"id": "U1", "access_token": "xoxp"}, "scope": "a,b"}"#);
        let set = token_set(body, now).unwrap();
        assert_eq!(set.access_token.expose_secret(), "xoxb");
        assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "r");
        assert_eq!(set.expires_at, Some(now + Duration::hours(1)));
        assert_eq!(set.metadata["team_id"], "T1");
        assert_eq!(set.metadata["authed_user_id"], "U1");
        assert!(!format!("{:?}", set.metadata).contains("xoxp"));
        assert!(!format!("{set:?}").contains("xoxb"));
        let form = parse_body(b"access_token=gho_1&token_type=bearer&scope=repo");
        assert_eq!(
            token_set(form, now).unwrap().access_token.expose_secret(),
            "gho_1"
        );
        assert_eq!(
            oauth_error(&parse_body(br#"{"error": "invalid_grant"}"#)),
            Some(OAuthError::InvalidGrant("invalid_grant".into()))
        );
        assert_eq!(
            oauth_error(&parse_body(br#"{"ok": false, "error": "invalid_code"}"#)),
            Some(OAuthError::InvalidGrant("invalid_code".into()))
        );
        assert!(matches!(
            oauth_error(&parse_body(
                br#"{"error": "invalid_client", "error_description": "bad"}"#
            )),
            Some(OAuthError::Provider { .. })
        ));
        assert_eq!(
            token_set(parse_body(b"{}"), now).unwrap_err(),
            OAuthError::NoAccessToken
        );
    }
}

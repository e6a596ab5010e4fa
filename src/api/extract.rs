//! Request extractors with the house error shape: operator authentication,
//! the tenant header, JSON bodies, path ids and strictly checked query strings.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::domain::TenantId;

/// SHA-256 digests of the accepted operator tokens (fixed length, compared in
/// constant time).
#[derive(Clone)]
pub struct OperatorTokens(Vec<[u8; 32]>);

impl std::fmt::Debug for OperatorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OperatorTokens({} configured)", self.0.len())
    }
}

impl OperatorTokens {
    /// The accepted tokens.
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> Self {
        OperatorTokens(tokens.iter().map(|t| digest(t.as_ref())).collect())
    }

    /// Whether `presented` is one of the tokens. Every token is compared, so the
    /// time taken does not depend on which (if any) matched.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, t| {
                found | t.ct_eq(&presented)
            })
            .into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Proof that the request carries a valid operator token
/// (`Authorization: Bearer <token>`). 401 otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        if state.0.operator_tokens.accepts(token) {
            Ok(Operator)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The tenant of a tenant-scoped request (`X-Tenant-Id`, a UUID). 400 otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Tenant(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get("x-tenant-id")
            .ok_or_else(|| ApiError::bad_request("the X-Tenant-Id header is required"))?;
        value
            .to_str()
            .ok()
            .and_then(|v| Uuid::parse_str(v.trim()).ok())
            .map(|u| {
                crate::api::trace::record("tenant_id", u);
                Tenant(TenantId::from_uuid(u))
            })
            .ok_or_else(|| ApiError::bad_request("X-Tenant-Id must be a UUID"))
    }
}

/// A JSON body; malformed JSON is 400, a body of the wrong shape 400 (with the
/// serde message), a missing JSON content type 415, an oversized body 413.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
        }
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::bad_request(format!("invalid JSON body: {}", rejection.body_text())),
    }
}

/// A path segment that must be a UUID; 404 when it is not one (no such id).
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::bad_request("invalid path"))?;
        Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| ApiError::invalid_field("id", format!("`{raw}` is not a UUID")))
    }
}

/// A query string checked against the parameters a route accepts: an unknown
/// or repeated parameter is a 400 naming it.
#[derive(Debug, Default)]
pub struct QueryParams(BTreeMap<String, String>);

impl QueryParams {
    /// Parses `query`, accepting only `allowed` parameter names.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut params = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::invalid_field(
                    &k,
                    format!("unknown query parameter (accepted: {})", allowed.join(", ")),
                ));
            }
            if v.contains('\0') {
                return Err(ApiError::invalid_field(
                    &k,
                    "must not contain NUL characters",
                ));
            }
            if params.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ApiError::invalid_field(&k, "given more than once"));
            }
        }
        Ok(QueryParams(params))
    }

    /// Parses `query` keeping every parameter (the first of repeated ones), for
    /// requests a provider builds (OAuth callbacks add their own parameters).
    pub fn parse_lenient(query: Option<&str>) -> Self {
        let mut params = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            params
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        QueryParams(params)
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A parameter parsed by `parse`, with `expected` in the error.
    pub fn parsed<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .ok_or_else(|| ApiError::invalid_field(name, format!("`{v}` is not {expected}"))),
        }
    }

    /// `limit`: 1 to `max`, default `default`.
    pub fn limit(&self, default: u64, max: u64) -> Result<u64, ApiError> {
        let limit = self
            .parsed("limit", "a positive integer", |v| v.parse::<u64>().ok())?
            .unwrap_or(default);
        if limit == 0 || limit > max {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {max}, got {limit}"),
            ));
        }
        Ok(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_value() {
        let tokens = OperatorTokens::new(&["first-token-0123456", "second-token-012345"]);
        assert!(tokens.accepts("second-token-012345"));
        assert!(!tokens.accepts("second-token-01234"));
        assert!(!tokens.accepts(""));
        assert!(!OperatorTokens::new::<&str>(&[]).accepts("anything"));
    }

    #[test]
    fn query_params_are_strict() {
        let q = QueryParams::parse(Some("limit=5&kind=pr_merged"), &["limit", "kind"]).unwrap();
        assert_eq!(q.limit(50, 100).unwrap(), 5);
        assert_eq!(q.text("kind"), Some("pr_merged"));
        assert!(QueryParams::parse(Some("limt=5"), &["limit"]).is_err());
        assert!(QueryParams::parse(Some("limit=5&limit=6"), &["limit"]).is_err());
        let q = QueryParams::parse(Some("limit=101"), &["limit"]).unwrap();
        assert!(
            q.limit(50, 100)
                .unwrap_err()
                .to_string()
                .contains("between 1 and 100")
        );
        let q = QueryParams::parse(Some("limit=x"), &["limit"]).unwrap();
        assert!(q.limit(50, 100).is_err());
        assert_eq!(
            QueryParams::parse(None, &["limit"])
                .unwrap()
                .limit(50, 100)
                .unwrap(),
            50
        );
    }
}

//! Applies a connection's credentials to an outbound request, per the auth
//! method: API key (header, query or bearer), personal access token, HTTP Basic,
//! or an OAuth access token. Header values carrying secrets are marked sensitive.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::http::HttpRequest;
use crate::descriptor::auth::{KeyDelivery, TokenDelivery};
use crate::descriptor::compile::CompiledAuth;

/// What a connection authenticates with.
#[derive(Default)]
pub struct Credentials {
    /// The credential fields.
    pub fields: BTreeMap<String, SecretString>,
    /// The OAuth access token.
    pub access_token: Option<SecretString>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("access_token", &self.access_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Why credentials could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A credential field the method needs has no value.
    #[error("the connection has no `{0}` credential")]
    MissingCredential(String),
    /// An OAuth connection without an access token.
    #[error("the connection has no OAuth access token (connect it again)")]
    MissingToken,
    /// A value cannot be sent in a header.
    #[error("the `{0}` credential cannot be sent in a header (control characters)")]
    InvalidHeaderValue(String),
}

fn secret<'a>(creds: &'a Credentials, key: &str) -> Result<&'a str, AuthError> {
    creds
        .fields
        .get(key)
        .map(ExposeSecret::expose_secret)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AuthError::MissingCredential(key.to_owned()))
}

fn header(req: &mut HttpRequest, name: &str, value: String, field: &str) -> Result<(), AuthError> {
    req.secrets.add(&value);
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| AuthError::InvalidHeaderValue(field.to_owned()))?;
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| AuthError::InvalidHeaderValue(field.to_owned()))?;
    value.set_sensitive(true);
    req.headers.insert(name, value);
    Ok(())
}

fn query(req: &mut HttpRequest, name: &str, value: &str) {
    req.secrets.add(value);
    req.url.query_pairs_mut().append_pair(name, value);
}

/// Adds the connection's credentials to `req`, as `auth` says.
pub fn apply(
    auth: &CompiledAuth,
    creds: &Credentials,
    req: &mut HttpRequest,
) -> Result<(), AuthError> {
    match auth {
        CompiledAuth::ApiKey {
            credential_key,
            delivery,
            param_name,
            prefix,
            extra,
        } => {
            let key = secret(creds, credential_key)?;
            req.secrets.add(key);
            match delivery {
                KeyDelivery::Header => {
                    header(req, param_name, format!("{prefix}{key}"), credential_key)?
                }
                KeyDelivery::Query => query(req, param_name, key),
                KeyDelivery::Bearer => header(
                    req,
                    AUTHORIZATION.as_str(),
                    format!("Bearer {key}"),
                    credential_key,
                )?,
            }
            for extra in extra {
                let value = secret(creds, &extra.credential_key)?;
                req.secrets.add(value);
                match extra.delivery {
                    KeyDelivery::Query => query(req, &extra.param_name, value),
                    _ => header(
                        req,
                        &extra.param_name,
                        value.to_owned(),
                        &extra.credential_key,
                    )?,
                }
            }
        }
        CompiledAuth::Pat {
            credential_key,
            delivery,
            param_name,
            prefix,
        } => {
            let token = secret(creds, credential_key)?;
            req.secrets.add(token);
            match delivery {
                TokenDelivery::Header => {
                    header(req, param_name, format!("{prefix}{token}"), credential_key)?
                }
                TokenDelivery::Bearer => header(
                    req,
                    AUTHORIZATION.as_str(),
                    format!("Bearer {token}"),
                    credential_key,
                )?,
            }
        }
        CompiledAuth::Basic {
            token_key: Some(key),
            ..
        } if creds.fields.contains_key(key) => {
            let token = secret(creds, key)?;
            req.secrets.add(token);
            header(req, AUTHORIZATION.as_str(), format!("Bearer {token}"), key)?;
        }
        CompiledAuth::Basic {
            username_key,
            password_key,
            ..
        } => {
            let user = secret(creds, username_key)?;
            let password = creds
                .fields
                .get(password_key)
                .map(ExposeSecret::expose_secret)
                .unwrap_or_default();
            req.secrets.add_basic(user, password);
            let encoded = STANDARD.encode(format!("{user}:{password}"));
            header(
                req,
                AUTHORIZATION.as_str(),
                format!("Basic {encoded}"),
                username_key,
            )?;
        }
        // A token given as a credential, else the exchanged one.
        CompiledAuth::JwtExchange(x)
            if x.token_key
                .as_ref()
                .is_some_and(|k| creds.fields.contains_key(k)) =>
        {
            let key = x.token_key.as_deref().unwrap_or_default();
            let token = secret(creds, key)?;
            req.secrets.add(token);
            header(req, AUTHORIZATION.as_str(), format!("Bearer {token}"), key)?;
        }
        CompiledAuth::OAuth2 { .. } | CompiledAuth::JwtExchange(_) => {
            let token = creds.access_token.as_ref().ok_or(AuthError::MissingToken)?;
            req.secrets.add(token.expose_secret());
            header(
                req,
                AUTHORIZATION.as_str(),
                format!("Bearer {}", token.expose_secret()),
                "access_token",
            )?;
        }
        // Webhook-only auth and none send nothing with outbound requests.
        CompiledAuth::WebhookSecret(_) | CompiledAuth::None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::load::load_str;
    use crate::descriptor::source::Format;
    use http::Method;

    fn compiled(auth_yaml: &str) -> crate::descriptor::compile::CompiledDescriptor {
        let text = format!(
            "id: t\nname: T\ndescription: d\ncategory: custom\nicon: i\nkind: generic\nversion: 1.0.0\n{auth_yaml}\ningestion:\n  mode: webhook\n  eventTypes: [e]\n  eventTypePath: $.e\n  verification: none\nfieldMapping: {{itemsPath: $, idPath: $.id, timestampPath: $.t, summaryTemplate: x, signalTypeRules: [], defaultType: x}}\nhealthCheck: {{endpoint: 'https://x.example/h', method: GET, expectStatus: 200, timeoutMs: 10}}\n"
        );
        load_str("<test>", &text, Format::Yaml).unwrap_or_else(|d| panic!("{d:#?}"))
    }

    fn creds(pairs: &[(&str, &str)]) -> Credentials {
        Credentials {
            fields: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
                .collect(),
            access_token: None,
        }
    }

    fn applied(auth_yaml: &str, c: &Credentials) -> Result<HttpRequest, AuthError> {
        let d = compiled(auth_yaml);
        let mut req = HttpRequest::new(
            Method::GET,
            "https://api.example.com/x?a=1".parse().unwrap(),
        );
        apply(&d.auth, c, &mut req)?;
        Ok(req)
    }

    const FIELD: &str = "{key: k, label: K, type: password, required: true}";

    #[test]
    fn every_method_is_applied_as_specified() {
        let r = applied(&format!("auth: {{method: api_key, config: {{delivery: header, paramName: X-Api-Key, prefix: 'Key ', credentialFields: [{FIELD}]}}}}"), &creds(&[("k", "s3")])).unwrap();
        assert_eq!(r.headers["x-api-key"], "Key s3");
        assert!(r.headers["x-api-key"].is_sensitive());
        let r = applied(&format!("auth: {{method: api_key, config: {{delivery: query, paramName: key, credentialFields: [{FIELD}, {{key: t, label: T, type: password, required: true}}], credentialKey: k, extraParams: [{{delivery: query, paramName: token, credentialKey: t}}]}}}}"), &creds(&[("k", "a b"), ("t", "tt")])).unwrap();
        assert_eq!(r.url.query(), Some("a=1&key=a+b&token=tt"));
        let r = applied(&format!("auth: {{method: api_key, config: {{delivery: bearer, paramName: '', credentialFields: [{FIELD}]}}}}"), &creds(&[("k", "s3")])).unwrap();
        assert_eq!(r.headers["authorization"], "Bearer s3");
        let r = applied(&format!("auth: {{method: pat, config: {{delivery: header, paramName: Authorization, prefix: 'token ', credentialFields: [{FIELD}]}}}}"), &creds(&[("k", "ghp")])).unwrap();
        assert_eq!(r.headers["authorization"], "token ghp");
        let r = applied("auth: {method: basic, config: {credentialFields: [{key: username, label: U, type: text, required: true}, {key: password, label: P, type: password, required: true}]}}", &creds(&[("username", "me@x.io"), ("password", "pw")])).unwrap();
        assert_eq!(
            r.headers["authorization"],
            format!("Basic {}", STANDARD.encode("me@x.io:pw"))
        );
        let mut oauth = creds(&[]);
        let yaml = "auth: {method: oauth2, config: {authoriseUrl: 'https://x.example/a', tokenUrl: 'https://x.example/t', scopes: []}}";
        assert_eq!(applied(yaml, &oauth).unwrap_err(), AuthError::MissingToken);
        oauth.access_token = Some(SecretString::from("at"));
        assert_eq!(
            applied(yaml, &oauth).unwrap().headers["authorization"],
            "Bearer at"
        );
        let r = applied("auth: {method: none}", &creds(&[])).unwrap();
        assert!(r.headers.is_empty());
    }

    #[test]
    fn missing_or_unsendable_credentials_are_errors() {
        let yaml = format!(
            "auth: {{method: pat, config: {{delivery: bearer, paramName: '', credentialFields: [{FIELD}]}}}}"
        );
        assert_eq!(
            applied(&yaml, &creds(&[])).unwrap_err(),
            AuthError::MissingCredential("k".into())
        );
        assert_eq!(
            applied(&yaml, &creds(&[("k", "a\nb")])).unwrap_err(),
            AuthError::InvalidHeaderValue("k".into())
        );
        assert!(!format!("{:?}", creds(&[("k", "hunter2")])).contains("hunter2"));
    }
}

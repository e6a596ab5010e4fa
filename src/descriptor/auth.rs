//! Auth descriptors: how credentials are applied to provider requests, and the
//! webhook signature-verification block shared by `auth.webhook_secret` and
//! `ingestion.webhook.signature`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::CredentialField;

/// Authentication method and its configuration (`{method, config}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "config", deny_unknown_fields)]
pub enum AuthDescriptor {
    /// OAuth 2.0 authorization-code flow (with refresh).
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Config),
    /// A static API key sent in a header, a query parameter or as a bearer token.
    #[serde(rename = "api_key")]
    ApiKey(ApiKeyConfig),
    /// A personal access token sent in a header or as a bearer token.
    #[serde(rename = "pat")]
    Pat(PatConfig),
    /// HTTP Basic authentication.
    #[serde(rename = "basic")]
    Basic(BasicAuthConfig),
    /// Extension: an RS256 JWT signed with the app's private key, exchanged for a
    /// short-lived bearer token (a GitHub App installation token), kept until
    /// shortly before it expires.
    #[serde(rename = "jwt_exchange")]
    JwtExchange(JwtExchangeConfig),
    /// No request auth; the connection holds a webhook signing secret.
    #[serde(rename = "webhook_secret")]
    WebhookSecret(WebhookSecretConfig),
    /// No authentication.
    #[serde(rename = "none")]
    None,
}

impl AuthDescriptor {
    /// The credential fields the user provides for this method.
    pub fn credential_fields(&self) -> &[CredentialField] {
        match self {
            AuthDescriptor::OAuth2(c) => &c.credential_fields,
            AuthDescriptor::ApiKey(c) => &c.credential_fields,
            AuthDescriptor::Pat(c) => &c.credential_fields,
            AuthDescriptor::Basic(c) => &c.credential_fields,
            AuthDescriptor::JwtExchange(c) => &c.credential_fields,
            AuthDescriptor::WebhookSecret(c) => &c.credential_fields,
            AuthDescriptor::None => &[],
        }
    }

    /// The method name as written in descriptors.
    pub fn method_name(&self) -> &'static str {
        match self {
            AuthDescriptor::OAuth2(_) => "oauth2",
            AuthDescriptor::ApiKey(_) => "api_key",
            AuthDescriptor::Pat(_) => "pat",
            AuthDescriptor::Basic(_) => "basic",
            AuthDescriptor::JwtExchange(_) => "jwt_exchange",
            AuthDescriptor::WebhookSecret(_) => "webhook_secret",
            AuthDescriptor::None => "none",
        }
    }
}

/// OAuth 2.0 authorization-code configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Config {
    /// Authorization endpoint (absolute URL; may use `{{config.<key>}}`).
    pub authorise_url: String,
    /// Token endpoint (absolute URL; may use `{{config.<key>}}`).
    pub token_url: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Credential fields the user must provide (often none: the client id and secret
    /// come from `POBLYSH_<PROVIDER>_CLIENT_ID` / `_CLIENT_SECRET`).
    #[serde(default)]
    pub credential_fields: Vec<CredentialField>,
    /// Extension: use PKCE (S256) in the authorization request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pkce: bool,
    /// Extension: separator between scopes in the authorize URL (default a space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_separator: Option<String>,
    /// Extension: extra query parameters for the authorize URL (e.g. `access_type: offline`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// Extension: how the client authenticates at the token endpoint (default `client_secret_post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_auth_method: Option<TokenAuthMethod>,
}

/// Client authentication at the OAuth token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic with the client id and secret.
    ClientSecretBasic,
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyDelivery {
    /// In the header named by `paramName`.
    Header,
    /// In the query parameter named by `paramName`.
    Query,
    /// As `Authorization: Bearer <key>`.
    Bearer,
}

/// Where a personal access token goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenDelivery {
    /// In the header named by `paramName`.
    Header,
    /// As `Authorization: Bearer <token>`.
    Bearer,
}

/// Static API key configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Where to send the key.
    pub delivery: KeyDelivery,
    /// Header or query parameter name (ignored for `bearer`, where it may be empty).
    pub param_name: String,
    /// Credential fields the user must provide.
    pub credential_fields: Vec<CredentialField>,
    /// Extension: which credential field holds the key (default: the only credential field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_key: Option<String>,
    /// Extension: text put before the key in a header (e.g. `token `, `GenieKey `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Extension: further credentials sent with every request (e.g. Trello's `key` and `token`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_params: Vec<ExtraAuthParam>,
}

/// A further credential sent with every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraAuthParam {
    /// `header` or `query` (`bearer` is not allowed here).
    pub delivery: KeyDelivery,
    /// Header or query parameter name.
    pub param_name: String,
    /// The credential field whose value is sent.
    pub credential_key: String,
}

/// Personal access token configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatConfig {
    /// Where to send the token.
    pub delivery: TokenDelivery,
    /// Header name (ignored for `bearer`, where it may be empty).
    pub param_name: String,
    /// Credential fields the user must provide.
    pub credential_fields: Vec<CredentialField>,
    /// Extension: which credential field holds the token (default: the only credential field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_key: Option<String>,
    /// Extension: text put before the token in a header (e.g. `token `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// HTTP Basic configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Credential fields the user must provide.
    pub credential_fields: Vec<CredentialField>,
    /// Extension: credential field holding the user name (default `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Extension: credential field holding the password (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// Extension: a credential field that, when a connection gives it, is sent
    /// as `Authorization: Bearer <token>` instead of Basic (an Atlassian Data
    /// Center personal access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
}

/// Extension: a signed-JWT exchange. The JWT's issuer is the app id and it is
/// signed (RS256) with the app's private key: the connection's `appId` and
/// `privateKey` credential fields when it has them, else
/// `POBLYSH_<PROVIDER>_APP_ID` and `POBLYSH_<PROVIDER>_PRIVATE_KEY` (PEM). It is
/// `POST`ed to `tokenUrl` as `Authorization: Bearer <jwt>`; the token in the
/// answer goes out as `Authorization: Bearer <token>` until 5 minutes before
/// it expires, then it is exchanged again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtExchangeConfig {
    /// Where the JWT is exchanged (template over `{{baseUrl}}` and `{{config.<key>}}`,
    /// e.g. `{{baseUrl}}/app/installations/{{config.installationId}}/access_tokens`).
    pub token_url: String,
    /// JSONPath to the token in the answer (`$.token`).
    pub token_path: String,
    /// JSONPath to when it expires (RFC 3339 or unix seconds); without it, an
    /// hour after the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_path: Option<String>,
    /// Fixed headers of the exchange request (an API version, `Accept`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long the JWT is valid, in seconds (default 540, 60-600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u32>,
    /// A credential field holding a token to use as it is instead (a personal
    /// access token): a connection that gives it is never exchanged for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<String>,
    /// Credential fields the user may provide.
    pub credential_fields: Vec<CredentialField>,
}

/// Signature algorithm of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SignatureAlgorithm {
    /// HMAC with SHA-256.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// HMAC with SHA-1.
    #[serde(rename = "hmac-sha1")]
    HmacSha1,
    /// Extension: an HS256-signed JWT (e.g. Jira dynamic webhooks, `Authorization: JWT <token>`).
    #[serde(rename = "jwt-hs256")]
    JwtHs256,
}

/// How the signature bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Hexadecimal (either case).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// How the shared secret is turned into key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    /// The secret's UTF-8 bytes as they are.
    #[default]
    Utf8,
    /// Base64-decode the secret (after removing `secretPrefix`), e.g. Standard Webhooks.
    Base64,
}

/// Format of a signed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Seconds since the Unix epoch.
    #[default]
    Unix,
    /// Milliseconds since the Unix epoch.
    UnixMs,
}

/// Declares a struct holding every signature-verification field, plus the extra
/// fields given. `WebhookSecretConfig` and `SignatureConfig` share these fields but
/// stay closed (`deny_unknown_fields`), which `#[serde(flatten)]` would defeat.
macro_rules! with_signature_fields {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Header that carries the signature (e.g. `X-Hub-Signature-256`).
            pub signature_header: String,
            /// `hmac-sha256`, `hmac-sha1`, or (extension) `jwt-hs256`.
            pub algorithm: SignatureAlgorithm,
            /// Extension: `hex` (default) or `base64`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub encoding: Option<SignatureEncoding>,
            /// Extension: text before each signature (`sha256=`, `v0=`, `v1=`, `v1,`, `JWT `).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub prefix: Option<String>,
            /// Extension: separator when one header carries several signatures (`" "` or `","`);
            /// any valid one passes.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub separator: Option<String>,
            /// Extension: what is signed, default `{{body}}` (the raw body bytes). Variables:
            /// `{{body}}`, `{{timestamp}}`, `{{callbackUrl}}`, `{{header.<name>}}`,
            /// e.g. `v0:{{header.x-slack-request-timestamp}}:{{body}}`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub signed_payload: Option<String>,
            /// Extension: header carrying the signed timestamp (replay protection).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timestamp_header: Option<String>,
            /// Extension: JSONPath to the signed timestamp inside the body (e.g. Linear's
            /// `$.webhookTimestamp`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timestamp_path: Option<String>,
            /// Extension: `unix` (seconds, default) or `unix_ms`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timestamp_format: Option<TimestampFormat>,
            /// Extension: accepted clock difference in seconds (default 300 when a timestamp is
            /// configured).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub tolerance_seconds: Option<u32>,
            /// Extension: credential field holding this connection's secret. Without it, or
            /// when the connection has none, the app-level `POBLYSH_<PROVIDER>_WEBHOOK_SECRET` is used.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub secret_field: Option<String>,
            /// Extension: `utf8` (default) or `base64`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub secret_encoding: Option<SecretEncoding>,
            /// Extension: prefix removed from the secret before decoding (e.g. `whsec_`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub secret_prefix: Option<String>,
        }

        impl $name {
            /// The signature-verification part of this block.
            pub fn signature(&self) -> SignatureConfig {
                SignatureConfig {
                    signature_header: self.signature_header.clone(),
                    algorithm: self.algorithm,
                    encoding: self.encoding,
                    prefix: self.prefix.clone(),
                    separator: self.separator.clone(),
                    signed_payload: self.signed_payload.clone(),
                    timestamp_header: self.timestamp_header.clone(),
                    timestamp_path: self.timestamp_path.clone(),
                    timestamp_format: self.timestamp_format,
                    tolerance_seconds: self.tolerance_seconds,
                    secret_field: self.secret_field.clone(),
                    secret_encoding: self.secret_encoding,
                    secret_prefix: self.secret_prefix.clone(),
                }
            }
        }
    };
}

with_signature_fields! {
    /// `auth.method: webhook_secret`: the connection only receives signed webhooks.
    pub struct WebhookSecretConfig {
        /// Credential fields the user must provide (typically the signing secret).
        pub credential_fields: Vec<CredentialField>,
    }
}

with_signature_fields! {
    /// Extension: webhook signature verification (`ingestion.webhook.signature`), for
    /// connectors whose request auth is something else (GitHub: PAT + HMAC webhooks).
    pub struct SignatureConfig {}
}

//! Compiles the auth descriptor: OAuth URLs, which credential fields hold the key,
//! token or user name, and the `webhook_secret` signature block.

use super::context::{Ctx, Scope, is_header_name};
use super::template::TemplateId;
use super::webhook::{self, CompiledSignature};
use crate::descriptor::auth::{
    AuthDescriptor, ExtraAuthParam, KeyDelivery, OAuth2Config, TokenDelivery,
};
use crate::descriptor::diagnostic::{Code, Pointer};
use crate::descriptor::model::CredentialField;

/// Request authentication, with every field reference resolved: everything
/// needed to authenticate a request, without the descriptor beside it.
#[derive(Debug, Clone)]
pub enum CompiledAuth {
    /// OAuth 2.0.
    OAuth2 {
        /// The authorization endpoint.
        authorize_url: TemplateId,
        /// The token endpoint.
        token_url: TemplateId,
        /// Scopes, extra parameters, PKCE and the token endpoint's client auth.
        config: Box<OAuth2Config>,
    },
    /// An API key; `credential_key` holds it.
    ApiKey {
        /// The credential field holding the key.
        credential_key: String,
        /// Where the key goes.
        delivery: KeyDelivery,
        /// The header or query parameter name.
        param_name: String,
        /// Text before the key (`Key `).
        prefix: String,
        /// Further credentials sent beside the key.
        extra: Vec<ExtraAuthParam>,
    },
    /// A personal access token; `credential_key` holds it.
    Pat {
        /// The credential field holding the token.
        credential_key: String,
        /// Where the token goes.
        delivery: TokenDelivery,
        /// The header name (`header` delivery).
        param_name: String,
        /// Text before the token (`token `).
        prefix: String,
    },
    /// HTTP Basic.
    Basic {
        /// The credential field holding the user name.
        username_key: String,
        /// The credential field holding the password.
        password_key: String,
        /// A credential sent as a bearer token instead, when given.
        token_key: Option<String>,
    },
    /// A signed JWT exchanged for a bearer token.
    JwtExchange(Box<CompiledJwtExchange>),
    /// Webhooks signed with a shared secret.
    WebhookSecret(Box<CompiledSignature>),
    /// No authentication.
    None,
}

/// A compiled `jwt_exchange`.
#[derive(Debug, Clone)]
pub struct CompiledJwtExchange {
    /// Where the JWT is exchanged.
    pub token_url: TemplateId,
    /// The token in the answer.
    pub token_path: super::CompiledPath,
    /// When it expires.
    pub expires_at_path: Option<super::CompiledPath>,
    /// Fixed headers of the exchange request.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The JWT's lifetime in seconds.
    pub lifetime_seconds: u32,
    /// A credential used as the token instead, when given.
    pub token_key: Option<String>,
    /// The config fields the token URL names (path segments: checked before use).
    pub path_config: Vec<String>,
}

pub(super) fn compile(
    ctx: &mut Ctx<'_>,
    auth: &AuthDescriptor,
    at: &Pointer,
) -> Option<CompiledAuth> {
    let config = at.key("config");
    let fields = auth.credential_fields();
    ctx.unique_keys(&config.key("credentialFields"), fields);
    match auth {
        AuthDescriptor::JwtExchange(c) => {
            let token_url =
                ctx.url_template_vars(&config.key("tokenUrl"), &c.token_url, Scope::CONFIG);
            let token_path = ctx.singular_path(&config.key("tokenPath"), &c.token_path);
            let expires_at_path = c
                .expires_at_path
                .as_ref()
                .map(|p| ctx.singular_path(&config.key("expiresAtPath"), p));
            let mut headers = Vec::new();
            for (name, value) in &c.headers {
                match (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) {
                    (Ok(n), Ok(v)) if is_header_name(name) => headers.push((n, v)),
                    _ => ctx.error(
                        config.key("headers").key(name),
                        Code::Invalid,
                        format!("`{name}: {value}` is not a valid HTTP header"),
                    ),
                }
            }
            let lifetime = c.lifetime_seconds.unwrap_or(540);
            if !(60..=600).contains(&lifetime) {
                ctx.error(
                    config.key("lifetimeSeconds"),
                    Code::Invalid,
                    "must be 60-600 (providers refuse JWTs valid longer than 10 minutes)",
                );
            }
            if let Some(key) = &c.token_key {
                ctx.require_credential(config.key("tokenKey"), key);
            }
            let expires_at_path = match expires_at_path {
                Some(p) => Some(p?),
                None => None,
            };
            let (token_url, vars) = token_url?;
            // The config fields the token URL names, from the template's own variables.
            let path_config = vars
                .iter()
                .filter_map(|v| v.strip_prefix("config."))
                .map(str::to_owned)
                .collect();
            Some(CompiledAuth::JwtExchange(Box::new(CompiledJwtExchange {
                token_url,
                token_path: token_path?,
                expires_at_path,
                headers,
                lifetime_seconds: lifetime,
                token_key: c.token_key.clone(),
                path_config,
            })))
        }
        AuthDescriptor::OAuth2(c) => {
            let authorize =
                ctx.url_template(&config.key("authoriseUrl"), &c.authorise_url, Scope::CONFIG);
            let token = ctx.url_template(&config.key("tokenUrl"), &c.token_url, Scope::CONFIG);
            if c.scope_separator.as_deref() == Some("") {
                ctx.error(
                    config.key("scopeSeparator"),
                    Code::Invalid,
                    "must not be empty",
                );
            }
            Some(CompiledAuth::OAuth2 {
                authorize_url: authorize?,
                token_url: token?,
                config: Box::new(c.clone()),
            })
        }
        AuthDescriptor::ApiKey(c) => {
            if c.delivery != KeyDelivery::Bearer {
                param_name(
                    ctx,
                    &config.key("paramName"),
                    &c.param_name,
                    c.delivery == KeyDelivery::Header,
                );
            }
            for (i, extra) in c.extra_params.iter().enumerate() {
                let extra_at = config.key("extraParams").index(i);
                if extra.delivery == KeyDelivery::Bearer {
                    ctx.error(
                        extra_at.key("delivery"),
                        Code::Invalid,
                        "extra parameters go in a `header` or the `query`, not `bearer`",
                    );
                }
                param_name(
                    ctx,
                    &extra_at.key("paramName"),
                    &extra.param_name,
                    extra.delivery == KeyDelivery::Header,
                );
                ctx.require_credential(extra_at.key("credentialKey"), &extra.credential_key);
            }
            let key = credential_key(ctx, &config, c.credential_key.as_deref(), fields)?;
            Some(CompiledAuth::ApiKey {
                credential_key: key,
                delivery: c.delivery,
                param_name: c.param_name.clone(),
                prefix: c.prefix.clone().unwrap_or_default(),
                extra: c.extra_params.clone(),
            })
        }
        AuthDescriptor::Pat(c) => {
            if c.delivery == TokenDelivery::Header {
                param_name(ctx, &config.key("paramName"), &c.param_name, true);
            }
            let key = credential_key(ctx, &config, c.credential_key.as_deref(), fields)?;
            Some(CompiledAuth::Pat {
                credential_key: key,
                delivery: c.delivery,
                param_name: c.param_name.clone(),
                prefix: c.prefix.clone().unwrap_or_default(),
            })
        }
        AuthDescriptor::Basic(c) => {
            let username = c.username_key.clone().unwrap_or_else(|| "username".into());
            let password = c.password_key.clone().unwrap_or_else(|| "password".into());
            let u = ctx.require_credential(
                config.key(if c.username_key.is_some() {
                    "usernameKey"
                } else {
                    "credentialFields"
                }),
                &username,
            );
            let p = ctx.require_credential(
                config.key(if c.password_key.is_some() {
                    "passwordKey"
                } else {
                    "credentialFields"
                }),
                &password,
            );
            let t = match &c.token_key {
                Some(k) => ctx.require_credential(config.key("tokenKey"), k),
                None => true,
            };
            (u && p && t).then_some(CompiledAuth::Basic {
                username_key: username,
                password_key: password,
                token_key: c.token_key.clone(),
            })
        }
        AuthDescriptor::WebhookSecret(c) => webhook::signature(ctx, &c.signature(), &config)
            .map(|s| CompiledAuth::WebhookSecret(Box::new(s))),
        AuthDescriptor::None => Some(CompiledAuth::None),
    }
}

fn param_name(ctx: &mut Ctx<'_>, at: &Pointer, name: &str, header: bool) {
    if name.is_empty() {
        ctx.error(
            at.clone(),
            Code::Invalid,
            "the header or query parameter name must not be empty",
        );
    } else if header && !is_header_name(name) {
        ctx.error(
            at.clone(),
            Code::Invalid,
            format!("`{name}` is not a valid HTTP header name"),
        );
    }
}

/// The credential field holding the key or token: `credentialKey`, or the only field.
fn credential_key(
    ctx: &mut Ctx<'_>,
    config: &Pointer,
    explicit: Option<&str>,
    fields: &[CredentialField],
) -> Option<String> {
    match (explicit, fields) {
        (Some(key), _) => ctx
            .require_credential(config.key("credentialKey"), key)
            .then(|| key.to_owned()),
        (None, [only]) => Some(only.key.clone()),
        (None, []) => {
            ctx.error(
                config.key("credentialFields"),
                Code::Invalid,
                "declare the credential field that holds the key or token",
            );
            None
        }
        (None, _) => {
            ctx.error(
                config.key("credentialKey"),
                Code::Invalid,
                "several credential fields are declared: set `credentialKey` to the one holding the key or token",
            );
            None
        }
    }
}

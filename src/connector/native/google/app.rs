//! The Google OAuth app the three Google connectors share: the consent URL
//! (offline access, consent prompt, incremental scopes, PKCE) and the token
//! requests, at the configured endpoints (`POBLYSH_GOOGLE_AUTHORIZE_URL`,
//! `POBLYSH_GOOGLE_TOKEN_URL`). Client id and secret come from
//! `POBLYSH_GOOGLE_CLIENT_ID/_SECRET` unless a connector has its own
//! (`OAuthOptions::shared_app`).

use std::collections::BTreeMap;

use secrecy::SecretString;
use url::Url;

use crate::config::GoogleConfig;
use crate::connector::{AuthorizeRequest, ConnectorError, OAuthOptions, TokenContext};
use crate::descriptor::auth::OAuth2Config;
use crate::domain::TokenSet;
use crate::engine::oauth::{self, TokenEndpoint};

/// The app name whose `POBLYSH_<APP>_CLIENT_ID/_SECRET` the connectors share.
pub const SHARED_APP: &str = "google";

/// How every Google connector uses OAuth.
pub const OAUTH: OAuthOptions = OAuthOptions {
    pkce: true,
    shared_app: Some(SHARED_APP),
};

/// Query parameters every consent URL carries: a refresh token
/// (`access_type=offline`), issued again on every consent (`prompt=consent`:
/// Google issues one only on the first consent otherwise), and scopes granted
/// before kept (`include_granted_scopes`).
pub const AUTHORIZE_PARAMS: [(&str, &str); 3] = [
    ("access_type", "offline"),
    ("prompt", "consent"),
    ("include_granted_scopes", "true"),
];

/// The OAuth side of one Google connector.
#[derive(Debug, Clone)]
pub struct GoogleApp {
    config: OAuth2Config,
    authorize_url: Result<Url, String>,
    token_url: Result<Url, String>,
}

fn parse(var: &str, url: &str) -> Result<Url, String> {
    Url::parse(url).map_err(|e| format!("{var} `{url}` is not a URL: {e}"))
}

impl GoogleApp {
    /// The app for a connector asking for `scopes`, at `google`'s endpoints.
    pub fn new(scopes: &[&str], google: &GoogleConfig) -> Self {
        GoogleApp {
            config: OAuth2Config {
                authorise_url: google.authorize_url.clone(),
                token_url: google.token_url.clone(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                credential_fields: Vec::new(),
                pkce: true,
                scope_separator: None,
                authorize_params: AUTHORIZE_PARAMS
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
                token_auth_method: None,
            },
            authorize_url: parse("POBLYSH_GOOGLE_AUTHORIZE_URL", &google.authorize_url),
            token_url: parse("POBLYSH_GOOGLE_TOKEN_URL", &google.token_url),
        }
    }

    /// The consent URL for the user.
    pub fn authorize(&self, request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError> {
        let base = self.authorize_url.clone().map_err(ConnectorError::Url)?;
        Ok(oauth::authorize_url(
            &self.config,
            &base,
            request.client_id,
            request.redirect_uri,
            request.state,
            request.code_challenge,
        ))
    }

    fn endpoint<'a>(&'a self, ctx: &'a TokenContext<'_>, url: &'a Url) -> TokenEndpoint<'a> {
        TokenEndpoint {
            http: ctx.http,
            url,
            method: self.config.token_auth_method,
            client: ctx.client,
        }
    }

    /// Exchanges an authorization code.
    pub async fn exchange(
        &self,
        ctx: &TokenContext<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        let url = self.token_url.clone().map_err(ConnectorError::Url)?;
        let endpoint = self.endpoint(ctx, &url);
        Ok(oauth::exchange_code(&endpoint, code, redirect_uri, code_verifier, ctx.now).await?)
    }

    /// Refreshes the access token (`invalid_grant` when Google revoked it).
    pub async fn refresh(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        let url = self.token_url.clone().map_err(ConnectorError::Url)?;
        let endpoint = self.endpoint(ctx, &url);
        Ok(oauth::refresh(&endpoint, refresh_token, ctx.now).await?)
    }
}

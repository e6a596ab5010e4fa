//! `DescriptorConnector`: the `Connector` of a compiled descriptor, run by the
//! generic engine (OAuth URLs and token requests, polling, webhook mapping,
//! health check).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use super::{
    AuthorizeRequest, ConnectionContext, Connector, ConnectorError, OAuthOptions, SyncMode,
    TokenContext,
};
use crate::descriptor::auth::{AuthDescriptor, OAuth2Config};
use crate::descriptor::compile::{CompiledAuth, CompiledDescriptor, TemplateId};
use crate::engine::health::{self, HealthResult};
use crate::engine::mapping::{self, MapContext, WebhookInput, WebhookMapped};
use crate::engine::oauth::{self, TokenEndpoint, TokenSet};
use crate::engine::poll::{self, Checkpoints, PollContext, PollOutcome, SignalSink};

/// A descriptor-driven connector.
#[derive(Debug, Clone)]
pub struct DescriptorConnector {
    compiled: Arc<CompiledDescriptor>,
}

impl DescriptorConnector {
    /// The connector of a compiled descriptor.
    pub fn new(compiled: Arc<CompiledDescriptor>) -> Self {
        DescriptorConnector { compiled }
    }

    /// The descriptor.
    pub fn compiled(&self) -> &CompiledDescriptor {
        &self.compiled
    }

    fn oauth2(
        &self,
        operation: &'static str,
    ) -> Result<(&OAuth2Config, TemplateId, TemplateId), ConnectorError> {
        match (&self.compiled.descriptor.auth, &self.compiled.auth) {
            (
                AuthDescriptor::OAuth2(config),
                CompiledAuth::OAuth2 {
                    authorize_url,
                    token_url,
                },
            ) => Ok((config, *authorize_url, *token_url)),
            _ => Err(ConnectorError::Unsupported {
                connector: self.id().to_owned(),
                operation,
            }),
        }
    }

    /// Renders one of the OAuth URLs with the connection's config.
    fn oauth_url(
        &self,
        which: &str,
        template: TemplateId,
        config: &serde_json::Value,
    ) -> Result<Url, ConnectorError> {
        let d = &self.compiled;
        let base_url = d.base_url(config).unwrap_or_default();
        let rendered = d
            .templates
            .render(template, &json!({ "config": config, "baseUrl": base_url }))
            .map_err(|e| ConnectorError::Url(format!("cannot build the {which}: {}", e.0)))?;
        Url::parse(&rendered)
            .map_err(|e| ConnectorError::Url(format!("the {which} `{rendered}` is invalid: {e}")))
    }

    fn token_endpoint_url(
        &self,
        ctx: &TokenContext<'_>,
        operation: &'static str,
    ) -> Result<(Url, &OAuth2Config), ConnectorError> {
        let (config, _, token_url) = self.oauth2(operation)?;
        Ok((self.oauth_url("token URL", token_url, ctx.config)?, config))
    }
}

#[async_trait]
impl Connector for DescriptorConnector {
    fn id(&self) -> &str {
        self.compiled.id()
    }

    fn oauth(&self) -> Option<OAuthOptions> {
        match &self.compiled.descriptor.auth {
            AuthDescriptor::OAuth2(config) => Some(OAuthOptions { pkce: config.pkce }),
            _ => None,
        }
    }

    fn polls(&self) -> bool {
        self.compiled.polling.is_some()
    }

    async fn authorize(&self, request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError> {
        let (config, authorize_url, _) = self.oauth2("OAuth 2.0 authorization")?;
        let base = self.oauth_url("authorization URL", authorize_url, request.config)?;
        Ok(oauth::authorize_url(
            config,
            &base,
            request.client_id,
            request.redirect_uri,
            request.state,
            request.code_challenge,
        ))
    }

    async fn exchange_token(
        &self,
        ctx: &TokenContext<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        let (url, config) = self.token_endpoint_url(ctx, "OAuth 2.0 code exchange")?;
        let endpoint = TokenEndpoint {
            http: ctx.http,
            url: &url,
            method: config.token_auth_method,
            client: ctx.client,
        };
        Ok(oauth::exchange_code(&endpoint, code, redirect_uri, code_verifier, ctx.now).await?)
    }

    async fn refresh_token(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        let (url, config) = self.token_endpoint_url(ctx, "OAuth 2.0 token refresh")?;
        let endpoint = TokenEndpoint {
            http: ctx.http,
            url: &url,
            method: config.token_auth_method,
            client: ctx.client,
        };
        Ok(oauth::refresh(&endpoint, refresh_token, ctx.now).await?)
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let poll_ctx = PollContext {
            descriptor: &self.compiled,
            http: ctx.http,
            credentials: ctx.credentials,
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            config: ctx.config,
            now: ctx.now,
            full: mode == SyncMode::Full,
        };
        Ok(poll::poll(&poll_ctx, checkpoints, sink).await?)
    }

    async fn handle_webhook(
        &self,
        delivery: WebhookInput<'_>,
        ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError> {
        Ok(mapping::map_webhook(&self.compiled, delivery, ctx)?)
    }

    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        health::check(ctx.http, &self.compiled, ctx.credentials, ctx.config).await
    }
}

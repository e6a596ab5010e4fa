//! `DescriptorConnector`: the `Connector` of a compiled descriptor, run by the
//! generic engine (OAuth URLs and token requests, polling, webhook
//! verification, handshakes, routing and mapping, health check). Its
//! capabilities and catalogue entry are read off the descriptor once, here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use super::{
    AuthorizeRequest, Capabilities, Catalogue, ConnectionContext, Connector, ConnectorError,
    IssuedToken, OAuthOptions, PollSchedule, SyncMode, TokenContext, TokenExchange, WebhookProfile,
    WebhookReceiver,
};
use crate::descriptor::auth::OAuth2Config;
use crate::descriptor::compile::{
    CompiledAuth, CompiledDescriptor, CompiledVerification, CompiledWebhook, TemplateId,
};
use crate::domain::TokenSet;
use crate::engine::health::{self, HealthResult};
use crate::engine::http::HttpClient;
use crate::engine::jwt_exchange;
use crate::engine::mapping::{self, MapContext, WebhookInput, WebhookMapped};
use crate::engine::oauth::{self, TokenEndpoint};
use crate::engine::poll::{self, Checkpoints, PollContext, PollOutcome, SignalSink};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::handshake::{self, HandshakeReply};
use crate::engine::webhook::verify::{self, VerifyError};

/// A descriptor-driven connector.
#[derive(Debug, Clone)]
pub struct DescriptorConnector {
    compiled: Arc<CompiledDescriptor>,
    catalogue: Catalogue,
    capabilities: Capabilities,
    webhooks: Option<DescriptorWebhooks>,
}

/// The webhook half of a descriptor connector.
#[derive(Debug, Clone)]
struct DescriptorWebhooks {
    compiled: Arc<CompiledDescriptor>,
    profile: WebhookProfile,
}

impl DescriptorWebhooks {
    fn webhook(&self) -> &CompiledWebhook {
        self.compiled
            .webhook
            .as_ref()
            .expect("built only for descriptors with webhooks")
    }
}

impl DescriptorConnector {
    /// The connector of a compiled descriptor.
    pub fn new(compiled: Arc<CompiledDescriptor>) -> Self {
        let d = &compiled.descriptor;
        let capabilities = Capabilities {
            oauth: match &compiled.auth {
                CompiledAuth::OAuth2 { config, .. } => Some(OAuthOptions {
                    pkce: config.pkce,
                    shared_app: None,
                }),
                _ => None,
            },
            token_exchange: match &compiled.auth {
                CompiledAuth::JwtExchange(x) => Some(TokenExchange {
                    static_token_key: x.token_key.clone(),
                    needs_config: x.path_config.clone(),
                }),
                _ => None,
            },
            polling: compiled.polling.as_ref().map(|p| PollSchedule {
                interval: Duration::from_secs(u64::from(p.interval_seconds)),
            }),
            hooks: Default::default(),
        };
        let webhooks = compiled.webhook.as_ref().map(|w| DescriptorWebhooks {
            compiled: Arc::clone(&compiled),
            profile: WebhookProfile {
                verified: !matches!(w.verification, CompiledVerification::None),
                secret_field: match &w.verification {
                    CompiledVerification::Signature(sig) => sig.config.secret_field.clone(),
                    CompiledVerification::Token(token) => token.secret_field.clone(),
                    CompiledVerification::None => None,
                },
                routing: w.routing.as_ref().map(|r| r.target.clone()),
                json_body: true,
                change_ping: false,
                issued_token: match &w.verification {
                    CompiledVerification::Token(t) if t.per_connection => Some(IssuedToken {
                        header: t.header.clone(),
                        query_param: t.query_param.clone(),
                        prefix: t.prefix.clone(),
                    }),
                    _ => None,
                },
                hands_over_secret: w.handshakes.iter().any(|h| h.capture.is_some()),
                connection_filter: w.connection_filter.as_ref().map(|(_, f)| f.clone()),
            },
        });
        DescriptorConnector {
            catalogue: Catalogue::of(d),
            capabilities,
            webhooks,
            compiled,
        }
    }

    /// The descriptor.
    pub fn compiled(&self) -> &CompiledDescriptor {
        &self.compiled
    }

    fn oauth2(
        &self,
        operation: &'static str,
    ) -> Result<(&OAuth2Config, TemplateId, TemplateId), ConnectorError> {
        match &self.compiled.auth {
            CompiledAuth::OAuth2 {
                authorize_url,
                token_url,
                config,
            } => Ok((config, *authorize_url, *token_url)),
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

    fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn webhooks(&self) -> Option<&dyn WebhookReceiver> {
        self.webhooks.as_ref().map(|w| w as &dyn WebhookReceiver)
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

    async fn exchange_app_token(
        &self,
        http: &HttpClient,
        key: &jwt_exchange::AppKey,
        config: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ConnectorError> {
        let CompiledAuth::JwtExchange(x) = &self.compiled.auth else {
            return Err(self.unsupported("a signed-JWT token exchange"));
        };
        jwt_exchange::exchange(http, &self.compiled, x, key, config, now)
            .await
            .map_err(|e| match e {
                jwt_exchange::ExchangeError::Http(h) => ConnectorError::Http(h),
                other => ConnectorError::Other {
                    retryable: other.is_retryable(),
                    message: other.to_string(),
                },
            })
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
            resume: ctx.resume,
        };
        Ok(poll::poll(&poll_ctx, checkpoints, sink).await?)
    }

    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        health::check(ctx.http, &self.compiled, ctx.credentials, ctx.config).await
    }
}

#[async_trait]
impl WebhookReceiver for DescriptorWebhooks {
    fn profile(&self) -> &WebhookProfile {
        &self.profile
    }

    fn prepare(&self, request: &mut WebhookRequest) {
        request.set_projection(Arc::clone(&self.webhook().projection));
    }

    fn handshake(&self, request: &WebhookRequest, verified: bool) -> Option<HandshakeReply> {
        handshake::answer(self.webhook(), request, verified)
    }

    async fn verify(
        &self,
        request: &WebhookRequest,
        secret: Option<&SecretString>,
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        verify::verify(&self.webhook().verification, secret, request, now)
    }

    fn routing_value(&self, request: &WebhookRequest) -> Option<String> {
        request.value(&self.webhook().routing.as_ref()?.source)
    }

    fn delivery_id(&self, request: &WebhookRequest) -> Option<String> {
        request.value(self.webhook().delivery_id.as_ref()?)
    }

    fn filter_values(&self, request: &WebhookRequest) -> Vec<String> {
        let (Some((path, _)), Some(body)) = (&self.webhook().connection_filter, request.json())
        else {
            return Vec::new();
        };
        path.select(body)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    async fn map(
        &self,
        delivery: WebhookInput<'_>,
        ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError> {
        Ok(mapping::map_webhook(&self.compiled, delivery, ctx)?)
    }
}

//! A Google connector fed by watch channels (Drive, Calendar): everything but
//! the API it watches and syncs, written once. Google OAuth; a `Setup` or
//! `Renew` hook opens a channel per watched resource, then stops the ones they
//! replace; `Teardown` stops them all; pings are verified and routed by
//! `channel`; each one that is not `sync` asks for one coalesced incremental
//! sync; a scheduled poll runs as well. The [`Source`] says what is watched
//! and how it is read.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use super::api::{self, Api};
use super::app::{self, GoogleApp};
use super::channel::{self, Opened, Watch};
use crate::config::GoogleConfig;
use crate::connector::native::NativeInput;
use crate::connector::{
    AuthorizeRequest, Capabilities, Catalogue, ConnectionContext, Connector, ConnectorError, Hook,
    HookOutcome, Hooks, PollSchedule, SyncMode, TokenContext, WebhookProfile, WebhookReceiver,
};
use crate::domain::{Checkpoints, TokenSet};
use crate::engine::health::HealthResult;
use crate::engine::mapping::{MapContext, WebhookInput, WebhookMapped};
use crate::engine::poll::{PollOutcome, SignalSink};
use crate::engine::webhook::WebhookRequest;
use crate::engine::webhook::handshake::HandshakeReply;
use crate::engine::webhook::verify::VerifyError;

/// How often the poll fallback runs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// What a channel connector watches and how it reads it.
#[async_trait]
pub trait Source: Send + Sync + Debug + 'static {
    /// The API's name in errors ("Google Drive").
    const NAME: &'static str;
    /// The least scopes it needs.
    const SCOPES: &'static [&'static str];
    /// The event name a ping is recorded under.
    const EVENT: &'static str;

    /// The resources a connection watches (one channel each).
    fn resources(&self, config: &Value) -> Vec<String>;

    /// Opens a channel on `resource` (`body`: id, type, address, token, expiration).
    async fn open(
        &self,
        api: &Api<'_>,
        resource: &str,
        body: &Value,
    ) -> Result<Opened, ConnectorError>;

    /// `channels.stop` of this API.
    fn stop_url(&self) -> Result<Url, ConnectorError>;

    /// What changed since `checkpoints`, into `sink`.
    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError>;

    /// A cheap authenticated read for the health check.
    async fn ping(&self, api: &Api<'_>) -> Result<(), ConnectorError>;

    /// Metadata to set before the channels open (`metadata`: the current).
    async fn prepare(
        &self,
        _api: &Api<'_>,
        _metadata: &Value,
    ) -> Result<Map<String, Value>, ConnectorError> {
        Ok(Map::new())
    }
}

/// The connector of a [`Source`].
#[derive(Debug)]
pub struct Watched<S: Source> {
    source: S,
    catalogue: Catalogue,
    capabilities: Capabilities,
    app: GoogleApp,
    public_url: Option<String>,
    receiver: Pings<S>,
}

#[derive(Debug)]
struct Pings<S> {
    profile: WebhookProfile,
    _source: std::marker::PhantomData<fn() -> S>,
}

impl<S: Source> Watched<S> {
    /// The connector of `source`, bound to its catalogue descriptor.
    pub fn new(input: NativeInput, source: impl FnOnce(&GoogleConfig) -> S) -> Arc<Self> {
        let mut catalogue = Catalogue::of(&input.descriptor.descriptor);
        catalogue.ingestion_mode = "polling_and_webhook";
        Arc::new(Watched {
            source: source(&input.config.google),
            catalogue,
            capabilities: Capabilities {
                oauth: Some(app::OAUTH),
                token_exchange: None,
                polling: Some(PollSchedule {
                    interval: POLL_INTERVAL,
                }),
                hooks: Hooks {
                    setup: true,
                    teardown: true,
                },
            },
            app: GoogleApp::new(S::SCOPES, &input.config.google),
            public_url: input.config.public_url.clone(),
            receiver: Pings {
                profile: channel::profile(),
                _source: std::marker::PhantomData,
            },
        })
    }

    /// Opens a channel per resource, then stops the ones they replace.
    async fn renew(&self, ctx: &ConnectionContext<'_>) -> Result<HookOutcome, ConnectorError> {
        let api = Api::new(ctx, S::NAME)?;
        let address = channel::address(self.public_url.as_deref(), self.id())?;
        let mut outcome = HookOutcome {
            metadata: self.source.prepare(&api, ctx.metadata).await?,
            ..HookOutcome::default()
        };
        let secret = channel::secret(ctx, &mut outcome);
        let mut opened: Vec<Watch> = Vec::new();
        for resource in self.source.resources(ctx.config) {
            let id = channel::channel_id(ctx.ambient);
            let token = channel::channel_token(&secret, &id);
            let body = channel::watch_body(&id, &token, &address, ctx.now);
            match self.source.open(&api, &resource, &body).await {
                Ok(o) => opened.push(o.watch(id, &resource, ctx.now)),
                Err(e) => {
                    // Nothing half-done stays open: the retry opens them all again.
                    let _ = self.stop_all(&api, &opened).await;
                    return Err(e);
                }
            }
        }
        // The old channels stop only now that the new ones are open. One that
        // cannot be stopped runs out on its own; its pings route nowhere.
        let _ = self.stop_all(&api, &channel::watches(ctx.metadata)).await;
        Ok(channel::opened_outcome(outcome, &opened, ctx.now))
    }

    /// Stops every one of `watches`, logging what fails; the last failure.
    async fn stop_all(&self, api: &Api<'_>, watches: &[Watch]) -> Result<(), ConnectorError> {
        let mut failed = Ok(());
        for w in watches {
            if let Err(e) = self.stop(api, w).await {
                tracing::warn!(provider = self.id(), channel = w.id, error = %e, "cannot stop a watch channel");
                failed = Err(e);
            }
        }
        failed
    }

    async fn stop(&self, api: &Api<'_>, w: &Watch) -> Result<(), ConnectorError> {
        channel::stop(api, self.source.stop_url()?, w).await
    }
}

#[async_trait]
impl<S: Source> Connector for Watched<S> {
    fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn webhooks(&self) -> Option<&dyn WebhookReceiver> {
        Some(&self.receiver)
    }

    async fn authorize(&self, request: AuthorizeRequest<'_>) -> Result<Url, ConnectorError> {
        self.app.authorize(request)
    }

    async fn exchange_token(
        &self,
        ctx: &TokenContext<'_>,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, ConnectorError> {
        self.app
            .exchange(ctx, code, redirect_uri, code_verifier)
            .await
    }

    async fn refresh_token(
        &self,
        ctx: &TokenContext<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, ConnectorError> {
        self.app.refresh(ctx, refresh_token).await
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let api = Api::new(ctx, S::NAME)?;
        self.source.sync(ctx, &api, mode, checkpoints, sink).await
    }

    async fn health_check(&self, ctx: &ConnectionContext<'_>) -> HealthResult {
        let started = ctx.http.ambient().now();
        let result = match Api::new(ctx, S::NAME) {
            Ok(api) => self.source.ping(&api).await,
            Err(e) => Err(e),
        };
        api::health(started, ctx.http.ambient().now(), result)
    }

    async fn hook(
        &self,
        hook: Hook,
        ctx: &ConnectionContext<'_>,
    ) -> Result<HookOutcome, ConnectorError> {
        match hook {
            Hook::Setup | Hook::Renew => self.renew(ctx).await,
            Hook::Teardown => {
                // Every channel is tried; if one fails the job is retried
                // (those stopped already answer 404 then: done).
                let api = Api::new(ctx, S::NAME)?;
                self.stop_all(&api, &channel::watches(ctx.metadata)).await?;
                Ok(channel::closed_outcome())
            }
        }
    }
}

#[async_trait]
impl<S: Source> WebhookReceiver for Pings<S> {
    fn profile(&self) -> &WebhookProfile {
        &self.profile
    }

    fn handshake(&self, request: &WebhookRequest, verified: bool) -> Option<HandshakeReply> {
        channel::handshake(request, verified)
    }

    async fn verify(
        &self,
        request: &WebhookRequest,
        secret: Option<&SecretString>,
        _now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        channel::verify(request, secret)
    }

    fn routing_value(&self, request: &WebhookRequest) -> Option<String> {
        channel::routing_value(request)
    }

    fn delivery_id(&self, request: &WebhookRequest) -> Option<String> {
        channel::delivery_id(request)
    }

    async fn map(
        &self,
        _delivery: WebhookInput<'_>,
        _ctx: &MapContext,
    ) -> Result<WebhookMapped, ConnectorError> {
        Ok(channel::mapped(S::EVENT))
    }
}

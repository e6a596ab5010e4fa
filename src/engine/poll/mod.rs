//! The polling loop, written once for every descriptor: for each partition,
//! render the request, apply auth, page through the results (offset, cursor or
//! RFC 8288 link header), map every page, hand the Signals to a sink, and work
//! out the new checkpoint per the delta strategy.
//!
//! Checkpoint rules are `delta`'s, page positions `pagination`'s, request
//! building `request`'s; this module is the loop. A page token or link that
//! repeats is an error, not a loop.

mod delta;
mod pagination;
mod request;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use http::Method;
use serde_json::{Value, json};
use url::Url;

use super::auth::{self, AuthError, Credentials};
use super::http::{HttpClient, HttpError, HttpRequest, RetryPolicy};
use super::mapping::{MapContext, map_page};
use crate::descriptor::compile::{CompiledDescriptor, CompiledPartitions, CompiledPolling};
use crate::domain::{ConnectionId, Signal, TenantId};
use delta::{Progress, initial_checkpoint, sent_checkpoint};
use pagination::{Next, next_page};
use request::build_request;

pub use crate::domain::{Checkpoints, NO_PARTITION};

/// Where mapped Signals go (the executor writes them in the run's transaction).
#[async_trait::async_trait]
pub trait SignalSink: Send {
    /// Takes one page's Signals.
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String>;
}

/// A sink that keeps everything in memory (tests and dry runs).
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<Signal>);

#[async_trait::async_trait]
impl SignalSink for VecSink {
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String> {
        self.0.extend(signals);
        Ok(())
    }
}

/// Everything one polling run needs.
pub struct PollContext<'a> {
    /// The connector.
    pub descriptor: &'a CompiledDescriptor,
    /// The outbound client.
    pub http: &'a HttpClient,
    /// The connection's credentials.
    pub credentials: &'a Credentials,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connection.
    pub connection_id: ConnectionId,
    /// The connection's config (`{{config.*}}`).
    pub config: &'a Value,
    /// The run's start (also each Signal's `received_at`).
    pub now: DateTime<Utc>,
    /// A full sync starts from the initial checkpoint.
    pub full: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollOutcome {
    /// The new checkpoints, by partition.
    pub checkpoints: Checkpoints,
    /// Signals handed to the sink.
    pub signals: u64,
    /// Items skipped by the mapping.
    pub skipped: u64,
    /// Pages fetched.
    pub pages: u32,
    /// Whether a partition stopped at `maxPages` (the rest comes next run).
    pub truncated: bool,
}

/// Why a run failed. Nothing it produced may be committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The connector does not poll.
    #[error("connector `{0}` does not poll")]
    NotPolling(String),
    /// A request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Credentials could not be applied.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A template failed to render into a usable request.
    #[error("cannot build the request: {0}")]
    Request(String),
    /// A response is not what the descriptor describes.
    #[error("{0}")]
    InvalidResponse(String),
    /// The provider sent the same page token or link twice.
    #[error("pagination does not advance: page {page} repeats `{token}`")]
    RepeatedPage {
        /// Page number.
        page: u32,
        /// The repeated token or link (query hidden).
        token: String,
    },
    /// The sink refused the Signals.
    #[error("cannot store signals: {0}")]
    Sink(String),
}

/// Runs one poll of every partition.
pub async fn poll(
    ctx: &PollContext<'_>,
    previous: &Checkpoints,
    sink: &mut dyn SignalSink,
) -> Result<PollOutcome, PollError> {
    let polling = ctx
        .descriptor
        .polling
        .as_ref()
        .ok_or_else(|| PollError::NotPolling(ctx.descriptor.id().to_owned()))?;
    let base_url = base_url(ctx)?;
    let partitions = partitions(ctx, polling, &base_url).await?;
    let mut outcome = PollOutcome::default();
    for partition in partitions {
        let start = if ctx.full {
            initial_checkpoint(polling, ctx.now)
        } else {
            previous
                .get(&partition)
                .cloned()
                .flatten()
                .or_else(|| initial_checkpoint(polling, ctx.now))
        };
        let new = poll_partition(
            ctx,
            polling,
            &base_url,
            &partition,
            start,
            sink,
            &mut outcome,
        )
        .await?;
        outcome.checkpoints.insert(partition, new);
    }
    Ok(outcome)
}

/// The connection's `{{baseUrl}}`.
fn base_url(ctx: &PollContext<'_>) -> Result<String, PollError> {
    ctx.descriptor
        .base_url(ctx.config)
        .map_err(|e| PollError::Request(format!("baseUrl: {e}")))
}

async fn partitions(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    base_url: &str,
) -> Result<Vec<String>, PollError> {
    match &polling.partitions {
        None => Ok(vec![NO_PARTITION.to_owned()]),
        Some(CompiledPartitions::Config { field }) => Ok(match ctx.config.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }),
        Some(CompiledPartitions::Request {
            endpoint,
            items_path,
            value_path,
        }) => {
            let context = json!({ "baseUrl": base_url, "config": ctx.config });
            let url = ctx
                .descriptor
                .templates
                .render(*endpoint, &context)
                .map_err(|e| PollError::Request(format!("partitions.endpoint: {e}")))?;
            let mut request = HttpRequest::new(Method::GET, parse_url(&url)?);
            request.max_response_bytes = polling.max_response_bytes as usize;
            auth::apply(&ctx.descriptor.auth, ctx.credentials, &mut request)?;
            let body = fetch_json(ctx, polling, &request, 0).await?.1;
            let selected = items_path.select(&body);
            let items: Vec<&Value> = match selected.as_slice() {
                [Value::Array(items)] => items.iter().collect(),
                _ => selected,
            };
            Ok(items
                .into_iter()
                .filter_map(|item| value_path.first(item))
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect())
        }
    }
}

fn parse_url(url: &str) -> Result<Url, PollError> {
    Url::parse(url).map_err(|e| {
        PollError::Request(format!(
            "`{}` is not a URL: {e}",
            url.split('?').next().unwrap_or(url)
        ))
    })
}

/// Sends with throttling and retries; returns the response headers and JSON body.
async fn fetch_json(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    request: &HttpRequest,
    page: u32,
) -> Result<(http::HeaderMap, Value), PollError> {
    let retry = RetryPolicy {
        statuses: polling.retry.statuses.clone(),
        max_attempts: polling.retry.max_attempts,
        initial_backoff: std::time::Duration::from_millis(u64::from(
            polling.retry.initial_backoff_ms,
        )),
    };
    ctx.http
        .throttle(
            &format!("{}:{}", ctx.descriptor.id(), ctx.connection_id),
            polling.rate_limit_rpm,
        )
        .await;
    let response = ctx.http.send(request, &retry).await?;
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| {
        PollError::InvalidResponse(format!(
            "page {} of {} is not valid JSON: {e}",
            page + 1,
            super::http::display_url(&request.url)
        ))
    })?;
    Ok((response.headers, body))
}

#[allow(clippy::too_many_arguments)]
async fn poll_partition(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    base_url: &str,
    partition: &str,
    checkpoint: Option<String>,
    sink: &mut dyn SignalSink,
    outcome: &mut PollOutcome,
) -> Result<Option<String>, PollError> {
    let descriptor = ctx.descriptor;
    let pagination = polling.pagination.as_ref();
    let sent = checkpoint.as_deref().map(|cp| sent_checkpoint(polling, cp));
    let map_ctx = MapContext {
        tenant_id: ctx.tenant_id,
        connection_id: ctx.connection_id,
        received_at: ctx.now,
    };
    let mut next = Next::first(pagination);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut progress = Progress::default();
    let mut page = 0u32;
    let mut request = build_request(
        ctx,
        polling,
        base_url,
        partition,
        sent.as_deref(),
        next.as_ref(),
    )?;
    let mut fetched = fetch_json(ctx, polling, &request, page).await?;
    loop {
        let (headers, body) = fetched;
        let mapped = map_page(descriptor, &body, &map_ctx);
        outcome.skipped += mapped.skipped.len() as u64;
        let item_count = count_items(descriptor, &body);
        progress.observe(&polling.delta, descriptor, &body, &mapped.signals);
        outcome.signals += mapped.signals.len() as u64;
        page += 1;
        outcome.pages += 1;

        next = match pagination {
            None => None,
            Some(p) => next_page(p, &body, &headers, &request.url, &next, item_count)?,
        };
        drop(body);
        let next_request = match &next {
            None => None,
            Some(_) if page >= polling.max_pages => {
                tracing::warn!(connector = %descriptor.id(), partition, pages = page, "stopped at maxPages; the rest comes next run");
                outcome.truncated = true;
                None
            }
            Some(n) => {
                let (key, shown) = n.key();
                if !seen.insert(key) {
                    return Err(PollError::RepeatedPage {
                        page: page + 1,
                        token: shown,
                    });
                }
                Some(build_request(
                    ctx,
                    polling,
                    base_url,
                    partition,
                    sent.as_deref(),
                    next.as_ref(),
                )?)
            }
        };
        let write = sink.write(mapped.signals);
        let Some(next_request) = next_request else {
            write.await.map_err(PollError::Sink)?;
            break;
        };
        // The next page is fetched while this one is written.
        let (written, next_fetched) =
            tokio::join!(write, fetch_json(ctx, polling, &next_request, page));
        written.map_err(PollError::Sink)?;
        fetched = next_fetched?;
        request = next_request;
    }

    Ok(progress.checkpoint(&polling.delta, checkpoint, ctx.now))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn items<'a>(descriptor: &CompiledDescriptor, body: &'a Value) -> Vec<&'a Value> {
    let selected = descriptor.mapping.items.select(body);
    match selected.as_slice() {
        [Value::Array(items)] => items.iter().collect(),
        _ => selected,
    }
}

fn count_items(descriptor: &CompiledDescriptor, body: &Value) -> u64 {
    items(descriptor, body).len() as u64
}

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
use crate::descriptor::compile::{
    CompiledDelta, CompiledDescriptor, CompiledPartitions, CompiledPolling, Projection,
};
use crate::domain::{ConnectionId, Signal, TenantId};
use delta::{Progress, initial_checkpoint, sent_checkpoint};
use pagination::{Next, next_page};
use request::build_request;

pub use crate::domain::{Checkpoints, NO_PARTITION};

/// Where mapped Signals go (the executor commits them in short transactions).
#[async_trait::async_trait]
pub trait SignalSink: Send {
    /// Takes one page's Signals.
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String>;

    /// Everything written so far may be made durable together with `position`,
    /// where an interrupted run resumes (`ConnectionContext::resume`). Called
    /// at page boundaries; an error stops the run (a lost lease, a shutdown).
    async fn progress(&mut self, _position: Value) -> Result<(), String> {
        Ok(())
    }
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
    /// Where an interrupted run of the same job left off (a [`SignalSink::progress`] position).
    pub resume: Option<&'a Value>,
}

/// Where a run is, as handed to [`SignalSink::progress`]: the partitions of
/// the run (fixed at its start), the new checkpoints of those finished, and the
/// next page of the one under way with what its pages so far taught about its
/// checkpoint. The run's start is kept, so a resumed run requests the same
/// window and caps its checkpoint at the same time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Position {
    v: u32,
    started: DateTime<Utc>,
    partitions: Vec<String>,
    done: Checkpoints,
    current: Option<Current>,
    signals: u64,
    skipped: u64,
    pages: u32,
    truncated: bool,
}

/// The partition under way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Current {
    partition: String,
    start: Option<String>,
    next: Option<Next>,
    page: u32,
    progress: Progress,
}

const POSITION_VERSION: u32 = 1;

impl Position {
    fn report(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
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
    let resumed = ctx
        .resume
        .and_then(|v| serde_json::from_value::<Position>(v.clone()).ok())
        .filter(|p| p.v == POSITION_VERSION);
    let mut position = match resumed {
        Some(p) => p,
        None => Position {
            v: POSITION_VERSION,
            started: ctx.now,
            partitions: partitions(ctx, polling, &base_url).await?,
            done: Checkpoints::new(),
            current: None,
            signals: 0,
            skipped: 0,
            pages: 0,
            truncated: false,
        },
    };
    let now = position.started;
    for partition in position.partitions.clone() {
        if position.done.contains_key(&partition) {
            continue;
        }
        let current = match position.current.take() {
            Some(c) if c.partition == partition => c,
            _ => {
                let start = if ctx.full {
                    initial_checkpoint(polling, now)
                } else {
                    previous
                        .get(&partition)
                        .cloned()
                        .flatten()
                        .or_else(|| initial_checkpoint(polling, now))
                };
                Current {
                    partition: partition.clone(),
                    start,
                    next: Next::first(polling.pagination.as_ref()),
                    page: 0,
                    progress: Progress::default(),
                }
            }
        };
        let new = poll_partition(ctx, polling, &base_url, current, &mut position, sink).await?;
        position.done.insert(partition, new);
        sink.progress(position.report())
            .await
            .map_err(PollError::Sink)?;
    }
    Ok(PollOutcome {
        checkpoints: position.done,
        signals: position.signals,
        skipped: position.skipped,
        pages: position.pages,
        truncated: position.truncated,
    })
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
            let body = fetch_json(ctx, polling, &request, 0, &Projection::all())
                .await?
                .1;
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

/// Sends with throttling and retries; returns the response headers and the
/// JSON body, parsed through `projection` (a page materializes only what the
/// run reads of it).
async fn fetch_json(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    request: &HttpRequest,
    page: u32,
    projection: &Projection,
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
    let body = projection.parse(&response.body).map_err(|e| {
        PollError::InvalidResponse(format!(
            "page {} of {} is not valid JSON: {e}",
            page + 1,
            super::http::display_url(&request.url)
        ))
    })?;
    Ok((response.headers, body))
}

/// Pages through one partition from `current` (its first page, or where an
/// interrupted run left it), reporting the position after every page.
async fn poll_partition(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    base_url: &str,
    current: Current,
    position: &mut Position,
    sink: &mut dyn SignalSink,
) -> Result<Option<String>, PollError> {
    let descriptor = ctx.descriptor;
    let pagination = polling.pagination.as_ref();
    let Current {
        partition,
        start: checkpoint,
        mut next,
        mut page,
        mut progress,
    } = current;
    let sent = checkpoint.as_deref().map(|cp| sent_checkpoint(polling, cp));
    let map_ctx = MapContext {
        tenant_id: ctx.tenant_id,
        connection_id: ctx.connection_id,
        received_at: position.started,
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut request = build_request(
        ctx,
        polling,
        base_url,
        &partition,
        sent.as_deref(),
        next.as_ref(),
    )?;
    let projection = polling.projection.as_ref();
    let mut fetched = fetch_json(ctx, polling, &request, page, projection).await?;
    loop {
        let (headers, body) = fetched;
        let item_count = count_items(descriptor, &body);
        page += 1;
        position.pages += 1;

        next = match pagination {
            None => None,
            // Newest first: a page that reaches back past the checkpoint is the last.
            Some(_) if reaches_back_past(polling, descriptor, &body, checkpoint.as_deref()) => None,
            Some(p) => next_page(p, &body, &headers, &request.url, &next, item_count)?,
        };
        let next_request = match &next {
            None => None,
            Some(_) if page >= polling.max_pages => {
                tracing::warn!(connector = %descriptor.id(), partition, pages = page, "stopped at maxPages; the rest comes next run");
                position.truncated = true;
                progress.truncated();
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
                    &partition,
                    sent.as_deref(),
                    next.as_ref(),
                )?)
            }
        };
        // This page is mapped and written while the next one is fetched (the
        // request goes out first).
        let fetch_next = async {
            match &next_request {
                Some(r) => Some(fetch_json(ctx, polling, r, page, projection).await),
                None => None,
            }
        };
        let map_and_write = async {
            let mapped = map_page(descriptor, &body, &map_ctx);
            position.skipped += mapped.skipped.len() as u64;
            progress.observe(&polling.delta, descriptor, &body, &mapped.signals);
            position.signals += mapped.signals.len() as u64;
            sink.write(mapped.signals).await
        };
        let (next_fetched, written) = tokio::join!(fetch_next, map_and_write);
        drop(body);
        written.map_err(PollError::Sink)?;
        let (Some(next_request), Some(next_fetched)) = (next_request, next_fetched) else {
            break;
        };
        // This page is written; a resumed run starts at the next one (unless
        // the provider put a credential into it: that is never stored, and a
        // resumed run redoes the partition).
        let carries_secret = next.as_ref().is_some_and(|n| {
            let (key, _) = n.key();
            next_request.secrets.scrub(&key) != key
        });
        position.current = (!carries_secret).then(|| Current {
            partition: partition.clone(),
            start: checkpoint.clone(),
            next: next.clone(),
            page,
            progress: progress.clone(),
        });
        let reported = sink.progress(position.report()).await;
        position.current = None;
        reported.map_err(PollError::Sink)?;
        fetched = next_fetched?;
        request = next_request;
    }

    Ok(progress.checkpoint(&polling.delta, checkpoint, position.started))
}

/// Whether a newest-first listing's page holds an item older than the
/// checkpoint (its later pages are older still).
fn reaches_back_past(
    polling: &CompiledPolling,
    descriptor: &CompiledDescriptor,
    body: &Value,
    checkpoint: Option<&str>,
) -> bool {
    let CompiledDelta::TimestampFilter {
        newest_first: true,
        format,
        ..
    } = &polling.delta
    else {
        return false;
    };
    let Some(from) = checkpoint.and_then(|cp| delta::parse_checkpoint_time(cp, *format)) else {
        return false;
    };
    items(descriptor, body).into_iter().any(|item| {
        descriptor
            .mapping
            .timestamp
            .first(item)
            .and_then(crate::engine::timestamp::parse)
            .is_some_and(|t| t < from)
    })
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

//! The polling loop, written once for every descriptor: for each partition,
//! render the request, apply auth, page through the results (offset, cursor or
//! RFC 8288 link header), map every page, hand the Signals to a sink, and work
//! out the new checkpoint per the delta strategy.
//!
//! Checkpoint rules: a timestamp checkpoint is sent one unit early (windows
//! overlap, dedupe absorbs the repeats, so same-second items are never lost) and
//! never moves past the run's start, so items changed during the run are read
//! next time. A page token or link that repeats is an error, not a loop.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map, Value, json};
use url::Url;

use super::auth::{self, AuthError, Credentials};
use super::http::{HttpClient, HttpError, HttpRequest, RetryPolicy};
use super::mapping::{MapContext, map_page};
use crate::descriptor::compile::{
    CompiledDelta, CompiledDescriptor, CompiledPagination, CompiledPartitions, CompiledPolling,
};
use crate::descriptor::ingestion::{OffsetUnit, PaginationType, TimestampFilterFormat};
use crate::descriptor::model::HttpMethod;
use crate::domain::{ConnectionId, Signal, TenantId};

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

/// The checkpoint of a first (full) sync.
fn initial_checkpoint(polling: &CompiledPolling, now: DateTime<Utc>) -> Option<String> {
    if let Some(cp) = &polling.initial_checkpoint {
        return Some(cp.clone());
    }
    match (&polling.delta, polling.backfill_days) {
        (CompiledDelta::TimestampFilter { format, .. }, Some(days)) => {
            Some(format_time(now - Duration::days(i64::from(days)), *format))
        }
        _ => None,
    }
}

fn format_time(t: DateTime<Utc>, format: TimestampFilterFormat) -> String {
    match format {
        TimestampFilterFormat::Iso8601 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        TimestampFilterFormat::Unix => t.timestamp().to_string(),
        TimestampFilterFormat::UnixMs => t.timestamp_millis().to_string(),
    }
}

fn parse_checkpoint_time(cp: &str, format: TimestampFilterFormat) -> Option<DateTime<Utc>> {
    match format {
        TimestampFilterFormat::Iso8601 => DateTime::parse_from_rfc3339(cp).ok().map(|t| t.to_utc()),
        TimestampFilterFormat::Unix => cp
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        TimestampFilterFormat::UnixMs => cp
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
    }
}

/// What is sent for a checkpoint: timestamps one unit early (overlap).
fn sent_checkpoint(polling: &CompiledPolling, cp: &str) -> String {
    match &polling.delta {
        CompiledDelta::TimestampFilter { format, .. } => match parse_checkpoint_time(cp, *format) {
            Some(t) => {
                let unit = match format {
                    TimestampFilterFormat::UnixMs => Duration::milliseconds(1),
                    _ => Duration::seconds(1),
                };
                format_time(t - unit, *format)
            }
            None => cp.to_owned(),
        },
        _ => cp.to_owned(),
    }
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
            auth::apply(
                &ctx.descriptor.descriptor.auth,
                &ctx.descriptor.auth,
                ctx.credentials,
                &mut request,
            )?;
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

/// Where the next page is.
enum Next {
    Token(String),
    Offset(u64),
    Link(Url),
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
    let mut next: Option<Next> = pagination.and_then(|p| match p.kind {
        PaginationType::Offset => Some(Next::Offset(u64::from(p.start_from))),
        _ => None,
    });
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut max_time: Option<DateTime<Utc>> = None;
    let mut max_id: Option<String> = None;
    let mut last_token: Option<String> = None;
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
        for s in &mapped.signals {
            max_time = max_time.max(Some(s.occurred_at));
        }
        let item_count = count_items(descriptor, &body);
        match &polling.delta {
            CompiledDelta::Cursor {
                cursor_path: path, ..
            }
            | CompiledDelta::DeltaToken {
                token_path: path, ..
            } => {
                if let Some(t) = path.first(&body).and_then(text) {
                    last_token = Some(t);
                }
            }
            CompiledDelta::SinceId { id_path, .. } => {
                for item in items(descriptor, &body) {
                    if let Some(id) = id_path.first(item).and_then(text) {
                        max_id = Some(match max_id.take() {
                            Some(m) if greater_id(&m, &id) => m,
                            _ => id,
                        });
                    }
                }
            }
            CompiledDelta::TimestampFilter { .. } => {}
        }
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
                let key = match n {
                    Next::Token(t) => t.clone(),
                    Next::Offset(o) => o.to_string(),
                    Next::Link(u) => u.to_string(),
                };
                if !seen.insert(key.clone()) {
                    let shown = match n {
                        Next::Link(u) => super::http::display_url(u),
                        _ => key,
                    };
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

    Ok(match &polling.delta {
        CompiledDelta::TimestampFilter { format, .. } => match max_time {
            Some(t) => Some(format_time(t.min(ctx.now), *format)),
            None => checkpoint,
        },
        CompiledDelta::Cursor { .. } | CompiledDelta::DeltaToken { .. } => {
            last_token.or(checkpoint)
        }
        CompiledDelta::SinceId { .. } => match (checkpoint, max_id) {
            (Some(old), Some(new)) => Some(if greater_id(&old, &new) { old } else { new }),
            (old, new) => new.or(old),
        },
    })
}

/// Whether id `a` is after id `b` (numerically when both are numbers).
fn greater_id(a: &str, b: &str) -> bool {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
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

fn next_page(
    p: &CompiledPagination,
    body: &Value,
    headers: &http::HeaderMap,
    request_url: &Url,
    current: &Option<Next>,
    item_count: u64,
) -> Result<Option<Next>, PollError> {
    if let Some(has_more) = &p.has_more_path
        && has_more.first(body) == Some(&Value::Bool(false))
    {
        return Ok(None);
    }
    Ok(match p.kind {
        PaginationType::Cursor => p
            .next_path
            .as_ref()
            .and_then(|path| path.first(body))
            .and_then(text)
            .map(Next::Token),
        PaginationType::Offset => {
            let Some(Next::Offset(offset)) = current else {
                return Ok(None);
            };
            if item_count == 0 || item_count < u64::from(p.page_size) {
                return Ok(None);
            }
            let next = match p.offset_by {
                OffsetUnit::Items => offset + item_count,
                OffsetUnit::Pages => offset + 1,
            };
            if let Some(total) = p
                .total_path
                .as_ref()
                .and_then(|t| t.first(body))
                .and_then(Value::as_u64)
            {
                let consumed = match p.offset_by {
                    OffsetUnit::Items => next - u64::from(p.start_from),
                    OffsetUnit::Pages => (next - u64::from(p.start_from)) * u64::from(p.page_size),
                };
                if consumed >= total {
                    return Ok(None);
                }
            }
            Some(Next::Offset(next))
        }
        PaginationType::LinkHeader => next_link(headers, request_url)?.map(Next::Link),
    })
}

/// The `rel="next"` target of RFC 8288 `Link` headers, resolved against the
/// URL of the request that returned them.
fn next_link(headers: &http::HeaderMap, base: &Url) -> Result<Option<Url>, PollError> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            let target = &rest[open + 1..open + close];
            let after = &rest[open + close + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let params = &after[..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.strip_prefix("rel=")
                    .map(|r| {
                        r.trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                return base.join(target).map(Some).map_err(|e| {
                    PollError::InvalidResponse(format!(
                        "the Link header's next URL is invalid: {e}"
                    ))
                });
            }
            rest = &after[params_end..];
        }
    }
    Ok(None)
}

fn build_request(
    ctx: &PollContext<'_>,
    polling: &CompiledPolling,
    base_url: &str,
    partition: &str,
    checkpoint: Option<&str>,
    next: Option<&Next>,
) -> Result<HttpRequest, PollError> {
    let templates = &ctx.descriptor.templates;
    let page_token = match next {
        Some(Next::Token(t)) => Value::String(t.clone()),
        Some(Next::Offset(o)) => Value::String(o.to_string()),
        _ => Value::Null,
    };
    let mut context = Map::new();
    context.insert("baseUrl".into(), Value::String(base_url.to_owned()));
    context.insert(
        "checkpoint".into(),
        checkpoint.map_or(Value::Null, |c| Value::String(c.to_owned())),
    );
    context.insert("pageToken".into(), page_token);
    context.insert("partition".into(), Value::String(partition.to_owned()));
    context.insert("config".into(), ctx.config.clone());
    let context = Value::Object(context);

    let mut url = match next {
        Some(Next::Link(link)) => link.clone(),
        _ => {
            let rendered = templates
                .render(polling.endpoint, &context)
                .map_err(|e| PollError::Request(format!("endpoint: {e}")))?;
            let mut url = parse_url(&rendered)?;
            {
                let mut q = url.query_pairs_mut();
                if let (Some(param), Some(cp)) = (delta_param(&polling.delta), checkpoint) {
                    q.append_pair(param, cp);
                }
                if let Some(p) = &polling.pagination {
                    if let Some(size_param) = &p.page_size_param {
                        q.append_pair(size_param, &p.page_size.to_string());
                    }
                    if let (Some(param), Some(next)) = (&p.next_param, next) {
                        match next {
                            Next::Token(t) => {
                                q.append_pair(param, t);
                            }
                            Next::Offset(o) => {
                                q.append_pair(param, &o.to_string());
                            }
                            Next::Link(_) => {}
                        }
                    }
                }
            }
            url
        }
    };
    // `url::Url` leaves an empty query marker after `query_pairs_mut` with nothing appended.
    if url.query() == Some("") {
        url.set_query(None);
    }
    let method = match polling.method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
    };
    let mut request = HttpRequest::new(method, url);
    for (name, template) in &polling.headers {
        let value = templates
            .render(*template, &context)
            .map_err(|e| PollError::Request(format!("header {name}: {e}")))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PollError::Request(format!("header name {name}")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| PollError::Request(format!("the value of header {name}")))?;
        request.headers.insert(name, value);
    }
    if let Some(body) = polling.body {
        let rendered = templates
            .render(body, &context)
            .map_err(|e| PollError::Request(format!("body: {e}")))?;
        if !request.headers.contains_key(http::header::CONTENT_TYPE) {
            request.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        request.body = Some(rendered.into_bytes());
    }
    auth::apply(
        &ctx.descriptor.descriptor.auth,
        &ctx.descriptor.auth,
        ctx.credentials,
        &mut request,
    )?;
    Ok(request)
}

fn delta_param(delta: &CompiledDelta) -> Option<&str> {
    match delta {
        CompiledDelta::TimestampFilter { query_param, .. } => query_param.as_deref(),
        CompiledDelta::DeltaToken { token_param, .. } => token_param.as_deref(),
        CompiledDelta::Cursor { cursor_param, .. } => cursor_param.as_deref(),
        CompiledDelta::SinceId { id_param, .. } => id_param.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_per_rfc_8288() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::LINK,
            r#"<https://api.github.com/repositories/515435940/issues?per_page=3&page=2>; rel="next", <https://api.github.com/repositories/515435940/issues?per_page=3&page=5>; rel="last""#.parse().unwrap(),
        );
        let base =
            Url::parse("https://api.github.com/repositories/515435940/issues?per_page=3").unwrap();
        assert_eq!(
            next_link(&h, &base).unwrap().unwrap().as_str(),
            "https://api.github.com/repositories/515435940/issues?per_page=3&page=2"
        );
        h.insert(
            http::header::LINK,
            r#"<https://x.example/?page=4>; rel="prev", <https://x.example/?page=1>; rel="first""#
                .parse()
                .unwrap(),
        );
        assert!(next_link(&h, &base).unwrap().is_none());
        h.insert(
            http::header::LINK,
            r#"<https://x.example/a>; title="x"; rel="prev next""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h, &base).unwrap().unwrap().as_str(),
            "https://x.example/a"
        );
    }

    #[test]
    fn checkpoints_overlap_by_one_unit() {
        let t = |s: &str| parse_checkpoint_time(s, TimestampFilterFormat::Iso8601).unwrap();
        assert_eq!(
            format_time(
                t("2024-01-01T00:00:00Z") - Duration::seconds(1),
                TimestampFilterFormat::Iso8601
            ),
            "2023-12-31T23:59:59Z"
        );
        assert_eq!(
            format_time(t("2024-01-01T00:00:00Z"), TimestampFilterFormat::Unix),
            "1704067200"
        );
        assert_eq!(
            format_time(t("2024-01-01T00:00:00Z"), TimestampFilterFormat::UnixMs),
            "1704067200000"
        );
        assert!(greater_id("100", "99") && !greater_id("99", "100") && greater_id("b", "a"));
    }
}

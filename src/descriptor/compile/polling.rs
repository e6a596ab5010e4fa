//! Compiles the polling half: request templates, delta strategy, pagination,
//! partitions and retries, with the checks that tie them together.

use std::collections::BTreeSet;

use std::sync::Arc;

use super::context::{Ctx, Scope, is_header_name};
use super::mapping::CompiledMapping;
use super::path::CompiledPath;
use super::projection::Projection;
use super::template::{TemplateId, TemplateKind};
use crate::descriptor::diagnostic::{Code, Pointer};
use crate::descriptor::ingestion::{
    DeltaStrategy, OffsetUnit, PaginationDescriptor, PaginationType, PartitionsDescriptor,
    PollingSpec, TimestampFilterFormat,
};
use crate::descriptor::model::{FieldType, HttpMethod};

/// Default seconds between scheduled runs.
pub const DEFAULT_INTERVAL_SECONDS: u32 = 900;
/// Default cap on pages per run.
pub const DEFAULT_MAX_PAGES: u32 = 100;
/// Largest response body read by default (`maxResponseBytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 16 << 20;
/// Largest `maxResponseBytes` a descriptor may ask for.
pub const MAX_RESPONSE_BYTES: u32 = 64 << 20;

/// The compiled polling half.
#[derive(Debug, Clone)]
pub struct CompiledPolling {
    /// The request URL.
    pub endpoint: TemplateId,
    /// HTTP method.
    pub method: HttpMethod,
    /// Request headers (name, value template).
    pub headers: Vec<(String, TemplateId)>,
    /// Request body.
    pub body: Option<TemplateId>,
    /// Delta strategy.
    pub delta: CompiledDelta,
    /// Pagination.
    pub pagination: Option<CompiledPagination>,
    /// Partitions.
    pub partitions: Option<CompiledPartitions>,
    /// Retries.
    pub retry: CompiledRetry,
    /// Requests per minute.
    pub rate_limit_rpm: u32,
    /// Seconds between scheduled runs.
    pub interval_seconds: u32,
    /// Page cap per run.
    pub max_pages: u32,
    /// Largest response body read.
    pub max_response_bytes: u32,
    /// First checkpoint of a full sync.
    pub initial_checkpoint: Option<String>,
    /// Days back for the first sync.
    pub backfill_days: Option<u32>,
    /// What of a page body is parsed: every path the run reads from it
    /// (mapping, pagination, delta); set once the mapping is compiled.
    pub projection: Arc<Projection>,
}

/// The compiled delta strategy.
#[derive(Debug, Clone)]
pub enum CompiledDelta {
    /// Timestamp filter.
    TimestampFilter {
        /// Query parameter, unless a template places the checkpoint.
        query_param: Option<String>,
        /// Checkpoint format.
        format: TimestampFilterFormat,
        /// Items come newest first: stop paging past the checkpoint.
        newest_first: bool,
    },
    /// Delta token read from the response.
    DeltaToken {
        /// Where the new token is.
        token_path: CompiledPath,
        /// Query parameter, unless a template places the checkpoint.
        token_param: Option<String>,
    },
    /// Cursor read from the response.
    Cursor {
        /// Where the new cursor is.
        cursor_path: CompiledPath,
        /// Query parameter, unless a template places the checkpoint.
        cursor_param: Option<String>,
    },
    /// Highest id seen.
    SinceId {
        /// Where each item's id is.
        id_path: CompiledPath,
        /// Query parameter, unless a template places the checkpoint.
        id_param: Option<String>,
    },
}

/// The compiled pagination.
#[derive(Debug, Clone)]
pub struct CompiledPagination {
    /// Type.
    pub kind: PaginationType,
    /// Next token or offset in the response.
    pub next_path: Option<CompiledPath>,
    /// Query parameter for it, unless a template uses `{{pageToken}}`.
    pub next_param: Option<String>,
    /// Total count in the response.
    pub total_path: Option<CompiledPath>,
    /// "More pages" flag in the response.
    pub has_more_path: Option<CompiledPath>,
    /// Items per page.
    pub page_size: u32,
    /// Query parameter for the page size.
    pub page_size_param: Option<String>,
    /// Offset unit.
    pub offset_by: OffsetUnit,
    /// First offset or page.
    pub start_from: u32,
    /// `next_url`: what a relative next link is appended to.
    pub next_base_path: Option<CompiledPath>,
}

/// The compiled partitions source.
#[derive(Debug, Clone)]
pub enum CompiledPartitions {
    /// A `list` config field.
    Config {
        /// The field.
        field: String,
    },
    /// A listing request.
    Request {
        /// The listing URL.
        endpoint: TemplateId,
        /// Items in the response.
        items_path: CompiledPath,
        /// Value per item.
        value_path: CompiledPath,
    },
}

/// The retry policy, defaults applied.
#[derive(Debug, Clone)]
pub struct CompiledRetry {
    /// Statuses retried.
    pub statuses: Vec<u16>,
    /// Attempts in total.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff_ms: u32,
}

pub(super) fn compile(ctx: &mut Ctx<'_>, p: &PollingSpec, at: &Pointer) -> Option<CompiledPolling> {
    let mut ok = true;
    let checkpoint_sample = match &p.delta {
        DeltaStrategy::TimestampFilter {
            format: TimestampFilterFormat::Iso8601,
            ..
        } => "2024-01-01T00:00:00Z",
        DeltaStrategy::TimestampFilter {
            format: TimestampFilterFormat::Unix,
            ..
        } => "1704067200",
        DeltaStrategy::TimestampFilter {
            format: TimestampFilterFormat::UnixMs,
            ..
        } => "1704067200000",
        DeltaStrategy::SinceId { .. } => "12345",
        _ => "sample-checkpoint",
    };
    ctx.set_checkpoint_sample(checkpoint_sample);

    let pagination_kind = p.pagination.as_ref().map(|pg| pg.pagination_type);
    let scope = Scope {
        base_url: true,
        checkpoint: true,
        page_token: matches!(
            pagination_kind,
            Some(PaginationType::Cursor | PaginationType::Offset)
        ),
        partition: p.partitions.is_some(),
    };
    let mut used: BTreeSet<String> = BTreeSet::new();

    let endpoint = ctx
        .url_template_vars(&at.key("endpoint"), &p.endpoint, scope)
        .map(|(id, vars)| {
            used.extend(vars);
            id
        });

    let mut headers = Vec::new();
    for (name, value) in &p.headers {
        let header_at = at.key("headers").key(name);
        if !is_header_name(name) {
            ctx.error(
                header_at.clone(),
                Code::Invalid,
                format!("`{name}` is not a valid HTTP header name"),
            );
            ok = false;
        }
        match ctx.template(&header_at, value, TemplateKind::Text, scope) {
            Some((id, vars)) => {
                used.extend(vars);
                headers.push((name.clone(), id));
            }
            None => ok = false,
        }
    }

    let body = match &p.body {
        None => None,
        Some(source) => {
            let body_at = at.key("body");
            if p.method == HttpMethod::Get {
                ctx.error(
                    body_at.clone(),
                    Code::Invalid,
                    "a request `body` needs `method: POST`",
                );
                ok = false;
            }
            match ctx.template(&body_at, source, TemplateKind::Text, scope) {
                Some((id, vars)) => {
                    used.extend(vars);
                    check_json_body(ctx, &body_at, p, id);
                    Some(id)
                }
                None => {
                    ok = false;
                    None
                }
            }
        }
    };

    // Checks that depend on which variables the templates use are skipped when a
    // template failed (its variables are unknown), to avoid follow-on errors.
    let known = ok && endpoint.is_some();
    let uses_checkpoint = !known || used.contains("checkpoint");
    let uses_page_token = !known || used.contains("pageToken");
    let uses_partition = !known || used.contains("partition");
    let delta = delta(ctx, &p.delta, &at.key("delta"), uses_checkpoint);
    checkpoint_options(ctx, p, at);
    let pagination = match &p.pagination {
        None => Some(None),
        Some(pg) => pagination(ctx, pg, &at.key("pagination"), uses_page_token).map(Some),
    };
    let partitions = match &p.partitions {
        None => Some(None),
        Some(pt) => partitions(ctx, pt, &at.key("partitions"), uses_partition).map(Some),
    };

    let retry = p.retry.as_ref();
    let statuses = retry
        .map(|r| r.statuses.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec![500, 502, 503, 504]);
    for (i, s) in retry
        .map(|r| r.statuses.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !(400..=599).contains(s) {
            ctx.error(
                at.key("retry").key("statuses").index(i),
                Code::Invalid,
                format!("{s} is not an HTTP error status (400-599)"),
            );
            ok = false;
        }
    }

    let polling = CompiledPolling {
        endpoint: endpoint?,
        method: p.method,
        headers,
        body,
        delta: delta?,
        pagination: pagination?,
        partitions: partitions?,
        retry: CompiledRetry {
            statuses,
            max_attempts: retry.and_then(|r| r.max_attempts).unwrap_or(3),
            initial_backoff_ms: retry.and_then(|r| r.initial_backoff_ms).unwrap_or(500),
        },
        rate_limit_rpm: p.rate_limit_rpm,
        interval_seconds: p.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS),
        max_pages: p.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
        max_response_bytes: p
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
            .min(MAX_RESPONSE_BYTES),
        initial_checkpoint: p.initial_checkpoint.clone(),
        backfill_days: p.backfill_days,
        projection: Arc::new(Projection::all()),
    };
    ok.then_some(polling)
}

/// Everything a run reads from a page body: the mapping's items and fields,
/// the pagination's next/total/has-more paths and the delta's token, cursor
/// or per-item id.
pub(super) fn projection(p: &CompiledPolling, mapping: &CompiledMapping) -> Projection {
    let mut projection = Projection::default();
    projection.add_mapping(mapping);
    if let Some(pg) = &p.pagination {
        for path in [
            &pg.next_path,
            &pg.total_path,
            &pg.has_more_path,
            &pg.next_base_path,
        ]
        .into_iter()
        .flatten()
        {
            projection.add_path(path);
        }
    }
    match &p.delta {
        CompiledDelta::Cursor {
            cursor_path: path, ..
        }
        | CompiledDelta::DeltaToken {
            token_path: path, ..
        } => projection.add_path(path),
        CompiledDelta::SinceId { id_path, .. } => projection.add_item_path(mapping, id_path),
        CompiledDelta::TimestampFilter { .. } => {}
    }
    projection
}

/// A JSON body must be valid JSON once rendered.
fn check_json_body(ctx: &mut Ctx<'_>, at: &Pointer, p: &PollingSpec, id: TemplateId) {
    let declared_json = p
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("json"));
    let looks_json = p
        .body
        .as_deref()
        .is_some_and(|b| b.trim_start().starts_with(['{', '[']));
    if !(declared_json || looks_json) {
        return;
    }
    if let Ok(rendered) = ctx.render_sample(id)
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&rendered)
    {
        ctx.error(
            at.clone(),
            Code::Template,
            format!("the body is not valid JSON once rendered with sample values ({e}); insert values with `{{{{json …}}}}`"),
        );
    }
}

fn delta(
    ctx: &mut Ctx<'_>,
    d: &DeltaStrategy,
    at: &Pointer,
    uses_checkpoint: bool,
) -> Option<CompiledDelta> {
    let (param_key, param) = match d {
        DeltaStrategy::TimestampFilter { query_param, .. } => ("queryParam", query_param),
        DeltaStrategy::DeltaToken { token_param, .. } => ("tokenParam", token_param),
        DeltaStrategy::Cursor { cursor_param, .. } => ("cursorParam", cursor_param),
        DeltaStrategy::SinceId { id_param, .. } => ("idParam", id_param),
    };
    let stops_at_checkpoint = matches!(
        d,
        DeltaStrategy::TimestampFilter {
            newest_first: true,
            ..
        }
    );
    match param {
        None if !uses_checkpoint && !stops_at_checkpoint => {
            ctx.error(
                at.key(param_key),
                Code::Invalid,
                format!(
                    "`{}` needs `{param_key}`, or a request template that uses `{{{{checkpoint}}}}`",
                    d.type_name()
                ),
            );
            return None;
        }
        Some(p) if p.is_empty() => {
            ctx.error(at.key(param_key), Code::Invalid, "must not be empty");
            return None;
        }
        _ => {}
    }
    Some(match d {
        DeltaStrategy::TimestampFilter {
            query_param,
            format,
            newest_first,
        } => CompiledDelta::TimestampFilter {
            query_param: query_param.clone(),
            format: *format,
            newest_first: *newest_first,
        },
        DeltaStrategy::DeltaToken {
            token_path,
            token_param,
        } => CompiledDelta::DeltaToken {
            token_path: ctx.singular_path(&at.key("tokenPath"), token_path)?,
            token_param: token_param.clone(),
        },
        DeltaStrategy::Cursor {
            cursor_path,
            cursor_param,
        } => CompiledDelta::Cursor {
            cursor_path: ctx.singular_path(&at.key("cursorPath"), cursor_path)?,
            cursor_param: cursor_param.clone(),
        },
        DeltaStrategy::SinceId { id_path, id_param } => CompiledDelta::SinceId {
            id_path: ctx.singular_path(&at.key("idPath"), id_path)?,
            id_param: id_param.clone(),
        },
    })
}

/// `initialCheckpoint` must be in the strategy's format; `backfillDays` only for timestamps.
fn checkpoint_options(ctx: &mut Ctx<'_>, p: &PollingSpec, at: &Pointer) {
    let format = match &p.delta {
        DeltaStrategy::TimestampFilter { format, .. } => Some(*format),
        _ => None,
    };
    if p.backfill_days.is_some() {
        if format.is_none() {
            ctx.error(
                at.key("backfillDays"),
                Code::Invalid,
                format!(
                    "`backfillDays` applies to `timestamp_filter` deltas, not `{}`",
                    p.delta.type_name()
                ),
            );
        }
        if p.initial_checkpoint.is_some() {
            ctx.error(
                at.key("backfillDays"),
                Code::Invalid,
                "set either `initialCheckpoint` or `backfillDays`, not both",
            );
        }
    }
    if let (Some(cp), Some(format)) = (&p.initial_checkpoint, format) {
        let valid = match format {
            TimestampFilterFormat::Iso8601 => chrono::DateTime::parse_from_rfc3339(cp).is_ok(),
            TimestampFilterFormat::Unix | TimestampFilterFormat::UnixMs => {
                !cp.is_empty() && cp.bytes().all(|b| b.is_ascii_digit())
            }
        };
        if !valid {
            let expected = match format {
                TimestampFilterFormat::Iso8601 => {
                    "an RFC 3339 timestamp, e.g. `2024-01-01T00:00:00Z`"
                }
                TimestampFilterFormat::Unix => "unix seconds, e.g. `1704067200`",
                TimestampFilterFormat::UnixMs => "unix milliseconds, e.g. `1704067200000`",
            };
            ctx.error(
                at.key("initialCheckpoint"),
                Code::Invalid,
                format!("`{cp}` is not {expected}"),
            );
        }
    }
}

fn pagination(
    ctx: &mut Ctx<'_>,
    pg: &PaginationDescriptor,
    at: &Pointer,
    uses_page_token: bool,
) -> Option<CompiledPagination> {
    let mut ok = true;
    let kind = pg.pagination_type;
    let type_name = match kind {
        PaginationType::Offset => "offset",
        PaginationType::Cursor => "cursor",
        PaginationType::LinkHeader => "link_header",
        PaginationType::NextUrl => "next_url",
    };
    if kind == PaginationType::Cursor && pg.next_path.is_none() {
        ctx.error(
            at.key("nextPath"),
            Code::Invalid,
            "`cursor` pagination needs `nextPath`, the JSONPath to the next page token in the response",
        );
        ok = false;
    }
    if kind == PaginationType::NextUrl && pg.next_path.is_none() {
        ctx.error(
            at.key("nextPath"),
            Code::Invalid,
            "`next_url` pagination needs `nextPath`, the JSONPath to the next page's URL in the response",
        );
        ok = false;
    }
    let base = ("nextBasePath", pg.next_base_path.is_some());
    let unused: &[(&str, bool)] = match kind {
        PaginationType::Offset => &[base],
        PaginationType::Cursor => &[
            ("totalPath", pg.total_path.is_some()),
            ("offsetBy", pg.offset_by.is_some()),
            ("startFrom", pg.start_from.is_some()),
            base,
        ],
        PaginationType::LinkHeader => &[
            ("nextPath", pg.next_path.is_some()),
            ("nextParam", pg.next_param.is_some()),
            ("totalPath", pg.total_path.is_some()),
            ("hasMorePath", pg.has_more_path.is_some()),
            ("offsetBy", pg.offset_by.is_some()),
            ("startFrom", pg.start_from.is_some()),
            base,
        ],
        PaginationType::NextUrl => &[
            ("nextParam", pg.next_param.is_some()),
            ("totalPath", pg.total_path.is_some()),
            ("offsetBy", pg.offset_by.is_some()),
            ("startFrom", pg.start_from.is_some()),
        ],
    };
    for (key, present) in unused {
        if *present {
            ctx.error(
                at.key(key),
                Code::Invalid,
                format!("`{key}` is not used by `{type_name}` pagination"),
            );
            ok = false;
        }
    }
    let link = matches!(kind, PaginationType::LinkHeader | PaginationType::NextUrl);
    if !link && pg.next_param.is_none() && !uses_page_token {
        ctx.error(
            at.key("nextParam"),
            Code::Invalid,
            format!("`{type_name}` pagination needs `nextParam`, or a request template that uses `{{{{pageToken}}}}`"),
        );
        ok = false;
    }
    for (key, value) in [
        ("nextParam", &pg.next_param),
        ("pageSizeParam", &pg.page_size_param),
    ] {
        if value.as_deref() == Some("") {
            ctx.error(at.key(key), Code::Invalid, "must not be empty");
            ok = false;
        }
    }
    let next_path = match &pg.next_path {
        Some(p) => Some(ctx.singular_path(&at.key("nextPath"), p)?),
        None => None,
    };
    let total_path = match &pg.total_path {
        Some(p) => Some(ctx.singular_path(&at.key("totalPath"), p)?),
        None => None,
    };
    let has_more_path = match &pg.has_more_path {
        Some(p) => Some(ctx.singular_path(&at.key("hasMorePath"), p)?),
        None => None,
    };
    let next_base_path = match &pg.next_base_path {
        Some(p) => Some(ctx.singular_path(&at.key("nextBasePath"), p)?),
        None => None,
    };
    ok.then(|| CompiledPagination {
        kind,
        next_path,
        next_param: pg.next_param.clone(),
        total_path,
        has_more_path,
        page_size: pg.page_size,
        page_size_param: pg.page_size_param.clone(),
        offset_by: pg.offset_by.unwrap_or(OffsetUnit::Items),
        start_from: pg.start_from.unwrap_or(0),
        next_base_path,
    })
}

fn partitions(
    ctx: &mut Ctx<'_>,
    pt: &PartitionsDescriptor,
    at: &Pointer,
    used: bool,
) -> Option<CompiledPartitions> {
    if !used {
        ctx.error(
            at.clone(),
            Code::Invalid,
            "`partitions` is declared but no request template uses `{{partition}}`",
        );
        return None;
    }
    match pt {
        PartitionsDescriptor::Config { field } => {
            if !ctx.require_config(at.key("field"), field) {
                return None;
            }
            if ctx.config_field(field) != Some(FieldType::List) {
                ctx.error(
                    at.key("field"),
                    Code::Invalid,
                    format!("partitions come from a `list` config field; `{field}` is not of type `list`"),
                );
                return None;
            }
            Some(CompiledPartitions::Config {
                field: field.clone(),
            })
        }
        PartitionsDescriptor::Request {
            endpoint,
            items_path,
            value_path,
        } => {
            let endpoint = ctx.url_template(&at.key("endpoint"), endpoint, Scope::CONFIG);
            let items_path = ctx.path(&at.key("itemsPath"), items_path);
            let value_path = ctx.singular_path(&at.key("valuePath"), value_path);
            Some(CompiledPartitions::Request {
                endpoint: endpoint?,
                items_path: items_path?,
                value_path: value_path?,
            })
        }
    }
}

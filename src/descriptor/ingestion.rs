//! Ingestion descriptors: the three modes, and everything about polling (request
//! templates, delta strategies, pagination, partitions, retries).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{Headers, HttpMethod};
use super::webhook::WebhookSpec;

/// How activity is ingested, selected by `mode`.
#[expect(
    clippy::large_enum_variant,
    reason = "descriptors are loaded once; boxing would only add noise"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum IngestionDescriptor {
    /// Poll the provider's API on a schedule.
    Polling(PollingSpec),
    /// Receive webhooks pushed by the provider.
    Webhook(WebhookSpec),
    /// Both: webhooks for freshness, polling for backfill and missed events.
    PollingAndWebhook(PollingAndWebhookSpec),
}

impl IngestionDescriptor {
    /// The polling part, if this mode polls.
    pub fn polling(&self) -> Option<&PollingSpec> {
        match self {
            IngestionDescriptor::Polling(p) => Some(p),
            IngestionDescriptor::PollingAndWebhook(pw) => Some(&pw.polling),
            IngestionDescriptor::Webhook(_) => None,
        }
    }

    /// The webhook part, if this mode receives webhooks.
    pub fn webhook(&self) -> Option<&WebhookSpec> {
        match self {
            IngestionDescriptor::Webhook(w) => Some(w),
            IngestionDescriptor::PollingAndWebhook(pw) => Some(&pw.webhook),
            IngestionDescriptor::Polling(_) => None,
        }
    }

    /// The mode name as written in descriptors.
    pub fn mode_name(&self) -> &'static str {
        match self {
            IngestionDescriptor::Polling(_) => "polling",
            IngestionDescriptor::Webhook(_) => "webhook",
            IngestionDescriptor::PollingAndWebhook(_) => "polling_and_webhook",
        }
    }
}

/// `mode: polling_and_webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollingAndWebhookSpec {
    /// The polling half (a polling descriptor without `mode`).
    pub polling: PollingSpec,
    /// The webhook half (a webhook descriptor without `mode`).
    pub webhook: WebhookSpec,
}

/// Polling: one request template, paged, with a delta checkpoint between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollingSpec {
    /// URL template. Variables: `{{baseUrl}}`, `{{checkpoint}}`, `{{pageToken}}`,
    /// `{{partition}}`, `{{config.<key>}}`. Values in the query part are percent-encoded.
    pub endpoint: String,
    /// HTTP method.
    pub method: HttpMethod,
    /// Request headers (values are templates, same variables as `endpoint`).
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Request body template (for `POST`), e.g. a GraphQL query. The `json` helper inserts
    /// a value as JSON: `"after": {{json pageToken}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How the checkpoint between runs works.
    pub delta: DeltaStrategy,
    /// Rate limit, requests per minute per connection (at least 1).
    #[schemars(range(min = 1))]
    pub rate_limit_rpm: u32,
    /// Pagination within one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<PaginationDescriptor>,
    /// Extension: seconds between scheduled incremental runs (default 900, at least 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub interval_seconds: Option<u32>,
    /// Extension: run the request once per partition (e.g. per repository), exposing
    /// `{{partition}}` to templates; each partition keeps its own checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionsDescriptor>,
    /// Extension: safety cap on pages fetched in one run (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_pages: Option<u32>,
    /// Extension: which responses are retried and how often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDescriptor>,
    /// Extension: checkpoint used by the first (full) sync, in the delta strategy's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_checkpoint: Option<String>,
    /// Extension: for `timestamp_filter`, the first sync starts this many days back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub backfill_days: Option<u32>,
    /// Extension: largest response body read, in bytes (default 16 MiB, at most
    /// 64 MiB); a larger page fails the run with an error naming the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_response_bytes: Option<u32>,
}

/// How the checkpoint between runs is kept and sent, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeltaStrategy {
    /// Send the time of the last run; the provider returns items changed since.
    TimestampFilter {
        /// Query parameter carrying the timestamp (`since`). Without it, a template must use
        /// `{{checkpoint}}` (e.g. a GraphQL filter in the body).
        #[serde(
            default,
            rename = "queryParam",
            skip_serializing_if = "Option::is_none"
        )]
        query_param: Option<String>,
        /// `iso8601`, `unix` (seconds) or `unix_ms`.
        format: TimestampFilterFormat,
        /// Extension: the provider lists items newest first (by the mapping's
        /// `timestampPath`) and may not filter them: paging stops after the first
        /// page that reaches back past the checkpoint, and the checkpoint may go
        /// without `queryParam` or template. A run cut short by `maxPages` keeps
        /// its old checkpoint (what it did not reach is read next run).
        #[serde(
            default,
            rename = "newestFirst",
            skip_serializing_if = "std::ops::Not::not"
        )]
        newest_first: bool,
    },
    /// The provider returns a delta token to send next time (e.g. Microsoft Graph, Drive).
    DeltaToken {
        /// JSONPath to the new token in the response.
        #[serde(rename = "tokenPath")]
        token_path: String,
        /// Query parameter carrying the token. Without it, a template must use `{{checkpoint}}`.
        #[serde(
            default,
            rename = "tokenParam",
            skip_serializing_if = "Option::is_none"
        )]
        token_param: Option<String>,
    },
    /// The provider returns a cursor to resume from.
    Cursor {
        /// JSONPath to the new cursor in the response.
        #[serde(rename = "cursorPath")]
        cursor_path: String,
        /// Query parameter carrying the cursor. Without it, a template must use `{{checkpoint}}`.
        #[serde(
            default,
            rename = "cursorParam",
            skip_serializing_if = "Option::is_none"
        )]
        cursor_param: Option<String>,
    },
    /// Send the highest id seen; the provider returns newer items.
    SinceId {
        /// JSONPath (per item) to the id compared between runs.
        #[serde(rename = "idPath")]
        id_path: String,
        /// Query parameter carrying the id. Without it, a template must use `{{checkpoint}}`.
        #[serde(default, rename = "idParam", skip_serializing_if = "Option::is_none")]
        id_param: Option<String>,
    },
}

impl DeltaStrategy {
    /// The strategy's name as written in descriptors.
    pub fn type_name(&self) -> &'static str {
        match self {
            DeltaStrategy::TimestampFilter { .. } => "timestamp_filter",
            DeltaStrategy::DeltaToken { .. } => "delta_token",
            DeltaStrategy::Cursor { .. } => "cursor",
            DeltaStrategy::SinceId { .. } => "since_id",
        }
    }
}

/// Format of a timestamp checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TimestampFilterFormat {
    /// RFC 3339 / ISO 8601 (`2024-01-31T12:00:00Z`).
    #[serde(rename = "iso8601")]
    Iso8601,
    /// Seconds since the Unix epoch.
    #[serde(rename = "unix")]
    Unix,
    /// Milliseconds since the Unix epoch.
    #[serde(rename = "unix_ms")]
    UnixMs,
}

/// Pagination type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaginationType {
    /// Numeric offset (or page number) in a query parameter.
    Offset,
    /// Opaque next-page token read from the response.
    Cursor,
    /// RFC 8288 `Link: <…>; rel="next"` header.
    LinkHeader,
    /// Extension: the next page's URL in the response body (`nextPath`),
    /// absolute or relative (Confluence's `_links.next`).
    NextUrl,
}

/// How to page through one run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaginationDescriptor {
    /// `offset`, `cursor`, `link_header` or `next_url`.
    #[serde(rename = "type")]
    pub pagination_type: PaginationType,
    /// JSONPath to the next page token in the response (`cursor`: required), or
    /// to the next page's URL (`next_url`: required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_path: Option<String>,
    /// Query parameter for the next page token or offset (`offset`: required; `cursor`:
    /// required unless a template uses `{{pageToken}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_param: Option<String>,
    /// JSONPath to the total item count (`offset`, optional: without it paging stops at the
    /// first short page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_path: Option<String>,
    /// Items per page (at least 1).
    #[schemars(range(min = 1))]
    pub page_size: u32,
    /// Extension (`cursor`, `offset`): JSONPath to a boolean that is `false` on the last page
    /// (Slack `$.has_more`, GraphQL `$.data.issues.pageInfo.hasNextPage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more_path: Option<String>,
    /// Extension: query parameter carrying `pageSize` (e.g. `per_page`, `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size_param: Option<String>,
    /// Extension (`offset`): count in `items` (default) or `pages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_by: Option<OffsetUnit>,
    /// Extension (`offset`): first offset or page number (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<u32>,
    /// Extension (`next_url`): JSONPath to the URL a relative next link is
    /// appended to (Confluence's `_links.base`); without it a relative link is
    /// resolved against the request's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_base_path: Option<String>,
}

/// Unit of an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffsetUnit {
    /// The offset counts items (`startAt=100`).
    Items,
    /// The offset counts pages (`page=2`).
    Pages,
}

/// Where the partitions of a polling run come from, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionsDescriptor {
    /// The values of a `list` config field (e.g. `repos`).
    Config {
        /// The config field holding the list.
        field: String,
    },
    /// The values returned by a request.
    Request {
        /// URL template of the listing request (`{{baseUrl}}`, `{{config.<key>}}`).
        endpoint: String,
        /// JSONPath to the items in the response.
        #[serde(rename = "itemsPath")]
        items_path: String,
        /// JSONPath (per item) to the partition value.
        #[serde(rename = "valuePath")]
        value_path: String,
    },
}

/// Retry policy for polling requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryDescriptor {
    /// HTTP statuses that are retried (default 500, 502, 503, 504).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// Attempts in total, first one included (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: Option<u32>,
    /// First backoff in milliseconds, doubled per attempt with jitter (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u32>,
}

//! Prometheus metrics: the recorder, the `/metrics` endpoint and the request
//! middleware (requests by method, route template and status; durations).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once: histograms with
/// `observe::SECONDS_BUCKETS`, every metric described, the node-wide series
/// at zero); `None` if another recorder is installed.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&crate::observe::SECONDS_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            crate::observe::describe();
            crate::observe::zero_node();
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
    security(()),
)]
pub async fn metrics() -> Response {
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Counts and times every request by its route template (not its raw path, so
/// ids do not explode the label space).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    #[expect(
        clippy::disallowed_methods,
        reason = "request latency in /metrics is real elapsed time, whatever clock the node runs on"
    )]
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

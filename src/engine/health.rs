//! The health check of a connection: the descriptor's `healthCheck` request with
//! the connection's auth, its status compared with `expectStatus`.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::auth::{self, Credentials};
use super::http::{HttpClient, HttpRequest, snippet};
use crate::descriptor::compile::CompiledDescriptor;
use crate::descriptor::model::HealthCheckMethod;

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResult {
    /// Whether the provider answered `expectStatus`.
    pub healthy: bool,
    /// The status it answered, if it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it is unhealthy.
    pub error: Option<String>,
}

/// Runs the health check (no retries: it reports the provider as it is now).
pub async fn check(
    http: &HttpClient,
    descriptor: &CompiledDescriptor,
    credentials: &Credentials,
    config: &Value,
) -> HealthResult {
    let started = http.ambient().now();
    let hc = &descriptor.descriptor.health_check;
    let result = async {
        let base_url = descriptor
            .base_url(config)
            .map_err(|e| format!("cannot build the base URL: {e}"))?;
        let url = descriptor
            .templates
            .render(
                descriptor.health_check,
                &json!({"baseUrl": base_url, "config": config}),
            )
            .map_err(|e| format!("cannot build the health-check URL: {e}"))?;
        let url =
            url::Url::parse(&url).map_err(|e| format!("the health-check URL is invalid: {e}"))?;
        let method = match hc.method {
            HealthCheckMethod::Get => Method::GET,
            HealthCheckMethod::Head => Method::HEAD,
        };
        let mut request = HttpRequest::new(method, url);
        request.timeout = Duration::from_millis(u64::from(hc.timeout_ms));
        for (name, value) in &hc.headers {
            // Checked when the descriptor was compiled.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                request.headers.insert(name, value);
            }
        }
        auth::apply(&descriptor.auth, credentials, &mut request).map_err(|e| e.to_string())?;
        let response = http.send_once(&request).await.map_err(|e| e.to_string())?;
        let said = if response.status == hc.expect_status || response.body.is_empty() {
            String::new()
        } else {
            format!(": {}", request.secrets.scrub(&snippet(&response.body)))
        };
        Ok::<(u16, String), String>((response.status, said))
    }
    .await;
    let latency_ms = (http.ambient().now() - started).num_milliseconds().max(0) as u64;
    match result {
        Ok((status, _)) if status == hc.expect_status => HealthResult {
            healthy: true,
            status: Some(status),
            latency_ms,
            error: None,
        },
        Ok((status, said)) => HealthResult {
            healthy: false,
            status: Some(status),
            latency_ms,
            error: Some(format!(
                "the health check answered {status}, expected {}{said}",
                hc.expect_status
            )),
        },
        Err(error) => HealthResult {
            healthy: false,
            status: None,
            latency_ms,
            error: Some(error),
        },
    }
}

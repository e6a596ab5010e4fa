//! Builds a page request: renders the endpoint (or follows a `Link` target),
//! adds the checkpoint, page size and page token parameters, renders headers
//! and body, and applies the connection's auth.

use http::{HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};

use super::delta::delta_param;
use super::pagination::Next;
use super::{PollContext, PollError, parse_url};
use crate::descriptor::compile::CompiledPolling;
use crate::descriptor::model::HttpMethod;
use crate::engine::auth;
use crate::engine::http::HttpRequest;

/// The request of one page of one partition.
pub(super) fn build_request(
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
    request.max_response_bytes = polling.max_response_bytes as usize;
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
    auth::apply(&ctx.descriptor.auth, ctx.credentials, &mut request)?;
    Ok(request)
}

//! Pagination: where the next page is (an offset, a cursor token, or the
//! RFC 8288 `Link: rel="next"` target), read from a page and its headers, and
//! the key that detects a provider repeating a page.

use serde_json::Value;
use url::Url;

use super::{PollError, text};
use crate::descriptor::compile::CompiledPagination;
use crate::descriptor::ingestion::{OffsetUnit, PaginationType};

/// Where the next page is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Next {
    /// A cursor token.
    Token(String),
    /// An offset (items or pages).
    Offset(u64),
    /// The next page's URL.
    Link(Url),
}

impl Next {
    /// The first page's position: offset pagination starts at `startFrom`.
    pub(super) fn first(pagination: Option<&CompiledPagination>) -> Option<Next> {
        pagination.and_then(|p| match p.kind {
            PaginationType::Offset => Some(Next::Offset(u64::from(p.start_from))),
            _ => None,
        })
    }

    /// What identifies this page (a repeat means the provider loops), and how
    /// it is shown in an error (a link without its query).
    pub(super) fn key(&self) -> (String, String) {
        match self {
            Next::Token(t) => (t.clone(), t.clone()),
            Next::Offset(o) => (o.to_string(), o.to_string()),
            Next::Link(u) => (u.to_string(), crate::engine::http::display_url(u)),
        }
    }
}

/// The next page after `body` (fetched at `request_url`), if any.
pub(super) fn next_page(
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
}

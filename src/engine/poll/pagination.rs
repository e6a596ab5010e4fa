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
        PaginationType::LinkHeader => {
            same_origin(next_link(headers, request_url)?, request_url)?.map(Next::Link)
        }
        PaginationType::NextUrl => {
            let Some(link) = p
                .next_path
                .as_ref()
                .and_then(|n| n.first(body))
                .and_then(text)
            else {
                return Ok(None);
            };
            let base = p
                .next_base_path
                .as_ref()
                .and_then(|b| b.first(body))
                .and_then(text);
            let url = match base {
                // `_links.base` + `/rest/api/search?…`: appended, not resolved
                // (resolving would drop the base's path, `/wiki`).
                Some(base) if link.starts_with('/') => {
                    Url::parse(&format!("{}{link}", base.trim_end_matches('/')))
                }
                _ => request_url.join(&link),
            }
            .map_err(|e| {
                PollError::InvalidResponse(format!("the next page's URL `{link}` is invalid: {e}"))
            })?;
            same_origin(Some(url), request_url)?.map(Next::Link)
        }
    })
}

/// A next page on another origin is refused: the request carries the
/// connection's credentials.
fn same_origin(next: Option<Url>, request_url: &Url) -> Result<Option<Url>, PollError> {
    match next {
        Some(u) if u.origin() != request_url.origin() => Err(PollError::InvalidResponse(format!(
            "the next page is on another host ({}); the credentials stay with {}",
            crate::engine::http::display_url(&u),
            request_url.origin().ascii_serialization()
        ))),
        other => Ok(other),
    }
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
    use crate::descriptor::compile::CompiledPath;

    fn next_url(base_path: Option<&str>) -> CompiledPagination {
        CompiledPagination {
            kind: PaginationType::NextUrl,
            next_path: Some(CompiledPath::parse("$._links.next").unwrap()),
            next_param: None,
            total_path: None,
            has_more_path: None,
            page_size: 5,
            page_size_param: Some("limit".into()),
            offset_by: OffsetUnit::Items,
            start_from: 0,
            next_base_path: base_path.map(|p| CompiledPath::parse(p).unwrap()),
        }
    }

    fn follow(
        p: &CompiledPagination,
        body: serde_json::Value,
    ) -> Result<Option<String>, PollError> {
        let request =
            Url::parse("https://acme.atlassian.net/wiki/rest/api/search?cql=type%3Dpage&limit=5")
                .unwrap();
        next_page(p, &body, &http::HeaderMap::new(), &request, &None, 5).map(|n| {
            n.map(|n| match n {
                Next::Link(u) => u.to_string(),
                other => panic!("{other:?}"),
            })
        })
    }

    #[test]
    fn a_next_url_in_the_body_is_followed_on_the_same_host_only() {
        // Confluence: relative to `_links.base`, which carries `/wiki`.
        let body = serde_json::json!({"_links": {
            "base": "https://acme.atlassian.net/wiki",
            "next": "/rest/api/search?next=true&cursor=_f_NQ%3D%3D&limit=5&start=5&cql=type%3Dpage"
        }});
        assert_eq!(
            follow(&next_url(Some("$._links.base")), body.clone())
                .unwrap()
                .as_deref(),
            Some(
                "https://acme.atlassian.net/wiki/rest/api/search?next=true&cursor=_f_NQ%3D%3D&limit=5&start=5&cql=type%3Dpage"
            )
        );
        // Without a base path: resolved against the request.
        assert_eq!(
            follow(&next_url(None), body).unwrap().as_deref(),
            Some(
                "https://acme.atlassian.net/rest/api/search?next=true&cursor=_f_NQ%3D%3D&limit=5&start=5&cql=type%3Dpage"
            )
        );
        assert_eq!(
            follow(&next_url(None), serde_json::json!({"_links": {}})).unwrap(),
            None
        );
        // Another host (or scheme) would get the connection's credentials: refused.
        for next in [
            "https://evil.example/steal",
            "http://acme.atlassian.net/wiki/x",
            "//evil.example/x",
        ] {
            let body = serde_json::json!({"_links": {"next": next}});
            assert!(follow(&next_url(None), body).is_err(), "{next}");
        }
        let body = serde_json::json!({"_links": {"base": "https://evil.example", "next": "/x"}});
        assert!(follow(&next_url(Some("$._links.base")), body).is_err());
        // The origin is scheme, host and port: another port is another
        // origin; the default port written out, or the host in capitals, is not.
        let on = |next: &str| {
            follow(
                &next_url(None),
                serde_json::json!({"_links": {"next": next}}),
            )
        };
        assert!(on("https://acme.atlassian.net:8443/wiki/x").is_err());
        assert!(
            on("https://acme.atlassian.net:443/wiki/x")
                .unwrap()
                .is_some()
        );
        assert!(on("https://ACME.atlassian.net/wiki/x").unwrap().is_some());
    }

    #[test]
    fn a_link_header_to_another_host_is_refused() {
        let mut p = next_url(None);
        p.kind = PaginationType::LinkHeader;
        p.next_path = None;
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::LINK,
            r#"<https://x.example/a>; rel="next""#.parse().unwrap(),
        );
        let request = Url::parse("https://api.github.com/issues").unwrap();
        assert!(next_page(&p, &serde_json::Value::Null, &h, &request, &None, 1).is_err());
        h.insert(
            http::header::LINK,
            r#"</issues?page=2>; rel="next""#.parse().unwrap(),
        );
        assert!(
            next_page(&p, &serde_json::Value::Null, &h, &request, &None, 1)
                .unwrap()
                .is_some()
        );
    }

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

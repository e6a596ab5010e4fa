//! A fake provider API behind wiremock that speaks every delta strategy and
//! pagination style the descriptor language has, over a list of items that the
//! test creates and updates between runs.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub seq: u64,
    pub updated_at: DateTime<Utc>,
    pub title: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    Timestamp,
    Cursor,
    Token,
    SinceId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    Offset,
    Cursor,
    Link,
}

pub const PAGE_SIZE: usize = 3;

/// The provider's data and a log of the requests it saw.
#[derive(Debug, Default, Clone)]
pub struct Fake {
    pub items: Arc<Mutex<Vec<Item>>>,
    next_seq: Arc<Mutex<u64>>,
}

pub fn t0() -> DateTime<Utc> {
    "2024-03-01T10:00:00Z".parse().unwrap()
}

impl Fake {
    /// Adds an item; `second` offsets its time from `t0` (equal seconds allowed).
    pub fn add(&self, id: u64, second: i64) {
        let seq = self.bump();
        self.items.lock().unwrap().push(Item {
            id,
            seq,
            updated_at: t0() + Duration::seconds(second),
            title: format!("Item {id}"),
        });
    }

    /// Updates an item (new sequence number and time).
    pub fn touch(&self, id: u64, second: i64) {
        let seq = self.bump();
        let mut items = self.items.lock().unwrap();
        let item = items.iter_mut().find(|i| i.id == id).unwrap();
        item.seq = seq;
        item.updated_at = t0() + Duration::seconds(second);
        item.title = format!("Item {id} (edited)");
    }

    fn bump(&self) -> u64 {
        let mut s = self.next_seq.lock().unwrap();
        *s += 1;
        *s
    }
}

fn param(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut items = self.items.lock().unwrap().clone();
        items.sort_by_key(|i| i.seq);
        // Delta filters.
        if let Some(since) = param(req, "since") {
            let since: DateTime<Utc> = since.parse().unwrap();
            items.retain(|i| i.updated_at >= since);
        }
        if let Some(after) = param(req, "after_seq") {
            let after: u64 = after.parse().unwrap();
            items.retain(|i| i.seq > after);
        }
        if let Some(token) = param(req, "delta") {
            let after: u64 = token.trim_start_matches("tok-").parse().unwrap();
            items.retain(|i| i.seq > after);
        }
        if let Some(since_id) = param(req, "since_id") {
            let since_id: u64 = since_id.parse().unwrap();
            items.retain(|i| i.id > since_id);
            items.sort_by_key(|i| i.id);
        }
        let all_max_seq = self
            .items
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.seq)
            .max()
            .unwrap_or(0);
        let total = items.len();
        // Pagination.
        let limit = param(req, "limit")
            .or_else(|| param(req, "per_page"))
            .map_or(PAGE_SIZE, |l| l.parse().unwrap());
        let start = if let Some(offset) = param(req, "offset") {
            offset.parse().unwrap()
        } else if let Some(token) = param(req, "page_token") {
            let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
            String::from_utf8(raw).unwrap().parse().unwrap()
        } else if let Some(page) = param(req, "page") {
            (page.parse::<usize>().unwrap() - 1) * limit
        } else {
            0
        };
        let page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(limit)
            .map(|i| json!({"id": i.id, "seq": i.seq, "updated_at": i.updated_at.to_rfc3339(), "title": i.title}))
            .collect();
        let end = start + page.len();
        let has_more = end < total;
        let next = has_more.then(|| URL_SAFE_NO_PAD.encode(end.to_string()));
        let mut response = ResponseTemplate::new(200).set_body_json(json!({
            "items": page,
            "next": next,
            "total": total,
            "cursor": all_max_seq.to_string(),
            "delta_token": format!("tok-{all_max_seq}"),
        }));
        if has_more {
            // A relative link (resolved against the request URL), as RFC 8288 allows.
            let mut url = req.url.clone();
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .into_owned()
                .filter(|(k, _)| k != "page")
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(pairs)
                .append_pair("page", &(end / limit + 1).to_string());
            let relative = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            response = response.insert_header(
                "link",
                format!("<{relative}>; rel=\"next\", <{relative}&last=1>; rel=\"last\""),
            );
        }
        response
    }
}

/// A descriptor for the fake API with the given delta and paging.
/// The auth block of [`descriptor`] (tests swap it for another method).
pub const PAT_BLOCK: &str = r#"auth:
  method: pat
  config:
    delivery: bearer
    paramName: ""
    credentialFields: [{key: token, label: Token, type: password, required: true}]"#;

pub fn descriptor(id: &str, base_url: &str, delta: Delta, paging: Paging) -> String {
    let delta = match delta {
        Delta::Timestamp => "{type: timestamp_filter, queryParam: since, format: iso8601}",
        Delta::Cursor => "{type: cursor, cursorPath: $.cursor, cursorParam: after_seq}",
        Delta::Token => "{type: delta_token, tokenPath: $.delta_token, tokenParam: delta}",
        Delta::SinceId => "{type: since_id, idPath: $.id, idParam: since_id}",
    };
    let pagination = match paging {
        Paging::Offset => format!(
            "{{type: offset, nextParam: offset, totalPath: $.total, pageSize: {PAGE_SIZE}, pageSizeParam: limit}}"
        ),
        Paging::Cursor => format!(
            "{{type: cursor, nextPath: $.next, nextParam: page_token, pageSize: {PAGE_SIZE}, pageSizeParam: limit}}"
        ),
        Paging::Link => {
            format!("{{type: link_header, pageSize: {PAGE_SIZE}, pageSizeParam: per_page}}")
        }
    };
    format!(
        r#"
id: {id}
name: Fake
description: A fake provider.
category: custom
icon: box
kind: generic
version: 1.0.0
baseUrl: {base_url}
{PAT_BLOCK}
ingestion:
  mode: polling
  endpoint: "{{{{baseUrl}}}}/items"
  method: GET
  delta: {delta}
  rateLimitRpm: 100000
  pagination: {pagination}
  retry: {{initialBackoffMs: 5}}
fieldMapping:
  itemsPath: $.items[*]
  idPath: $.id
  timestampPath: $.updated_at
  summaryTemplate: "{{{{title}}}}"
  signalTypeRules: []
  defaultType: item_changed
healthCheck: {{endpoint: "{{{{baseUrl}}}}/health", method: GET, expectStatus: 200, timeoutMs: 2000}}
"#
    )
}

/// The fake API, counting the pages it serves, each after `delay`.
#[derive(Clone)]
pub struct Counted {
    pub fake: Fake,
    pub pages: Arc<std::sync::atomic::AtomicUsize>,
    pub delay: std::time::Duration,
}

impl Counted {
    /// Serves items 1..=`items` (item `n` updated at second `n`) on `GET
    /// /items` of `server`, each page after `delay`; returns the page count.
    pub async fn mount(
        server: &wiremock::MockServer,
        items: u64,
        delay: std::time::Duration,
    ) -> Arc<std::sync::atomic::AtomicUsize> {
        let fake = Fake::default();
        for id in 1..=items {
            fake.add(id, id as i64);
        }
        let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/items"))
            .respond_with(Counted {
                fake,
                pages: Arc::clone(&pages),
                delay,
            })
            .mount(server)
            .await;
        pages
    }
}

impl Respond for Counted {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.fake.respond(req).set_delay(self.delay)
    }
}

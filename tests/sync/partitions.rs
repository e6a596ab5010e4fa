//! Descriptor features no other sync test exercises: `partitions` from a
//! config list and from a parent request (one request per partition, each with
//! its own checkpoint), and `maxPages` (a run stops at the cap and the next one
//! goes on from where it stopped, losing nothing).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::TenantId;
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::sync::harness::{Node, signals};

fn t0() -> DateTime<Utc> {
    "2026-11-01T10:00:00Z".parse().unwrap()
}

/// Each board's cards: (id, updated at).
type Cards = BTreeMap<String, Vec<(u64, DateTime<Utc>)>>;
/// A request's board and `since`.
type Seen = Vec<(String, Option<String>)>;

/// Boards of items; `GET /boards/{id}/items?since=…` answers the board's items
/// updated at or after `since`, oldest first, `limit` per page from `offset`.
#[derive(Clone, Default)]
struct Boards {
    items: Arc<Mutex<Cards>>,
    /// (board, since) of every request, in order.
    seen: Arc<Mutex<Seen>>,
}

impl Boards {
    fn add(&self, board: &str, id: u64, at: DateTime<Utc>) {
        self.items
            .lock()
            .unwrap()
            .entry(board.to_owned())
            .or_default()
            .push((id, at));
    }
}

impl Respond for Boards {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let board = req.url.path().split('/').nth(2).unwrap().to_owned();
        let q: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
        self.seen
            .lock()
            .unwrap()
            .push((board.clone(), q.get("since").cloned()));
        let since: Option<DateTime<Utc>> = q.get("since").map(|s| s.parse().unwrap());
        let mut items = self
            .items
            .lock()
            .unwrap()
            .get(&board)
            .cloned()
            .unwrap_or_default();
        items.sort_by_key(|(_, at)| *at);
        items.retain(|(_, at)| since.is_none_or(|s| *at >= s));
        let offset: usize = q.get("offset").map_or(0, |o| o.parse().unwrap());
        let limit: usize = q.get("limit").map_or(100, |l| l.parse().unwrap());
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, at)| json!({"id": id, "updated_at": at.to_rfc3339(), "title": format!("Card {id} on {board}")}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"items": page, "total": items.len()}))
    }
}

fn descriptor(base_url: &str, partitions: &str, extra: &str) -> String {
    format!(
        r#"
id: boards
name: Boards
description: A test provider with boards of cards.
category: custom
icon: box
kind: generic
version: 1.0.0
baseUrl: {base_url}
configFields:
  - {{key: boards, label: Boards, type: list, required: false}}
signals: [card_changed]
auth:
  method: pat
  config:
    delivery: bearer
    paramName: ""
    credentialFields: [{{key: token, label: Token, type: password, required: true}}]
ingestion:
  mode: polling
  endpoint: "{{{{baseUrl}}}}/boards/{{{{partition}}}}/items"
  method: GET
  delta: {{type: timestamp_filter, queryParam: since, format: iso8601}}
  rateLimitRpm: 100000
  initialCheckpoint: "2026-10-01T00:00:00Z"
  partitions: {partitions}
{extra}
fieldMapping:
  itemsPath: $.items[*]
  idPath: $.id
  timestampPath: $.updated_at
  summaryTemplate: "{{{{title}}}}"
  signalTypeRules: []
  defaultType: card_changed
healthCheck: {{endpoint: "{{{{baseUrl}}}}/health", method: GET, expectStatus: 200, timeoutMs: 2000}}
"#
    )
}

struct Setup {
    node: Node,
    boards: Boards,
    tenant: TenantId,
    _server: MockServer,
}

async fn setup(
    backend: crate::sync::harness::Backend,
    partitions: &str,
    extra: &str,
    config: Value,
) -> Setup {
    let server = MockServer::start().await;
    let boards = Boards::default();
    Mock::given(method("GET"))
        .and(path_regex("^/boards/[^/]+/items$"))
        .respond_with(boards.clone())
        .mount(&server)
        .await;
    // The parent request of `type: request` partitions: the recorded shape
    // of a list of boards (ids and names).
    Mock::given(method("GET"))
        .and(path("/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"boards": [{"id": "b1", "name": "Launch"}, {"id": "b2", "name": "Press"}]}),
        ))
        .mount(&server)
        .await;
    let node = Node::new(backend, true, &[]).await;
    node.register(&descriptor(&server.uri(), partitions, extra));
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let conn = node
        .connection(tenant, "boards", &[("token", "t")], config)
        .await;
    assert!(
        scheduler::enqueue_backfill(&node.services, tenant, conn, "boards")
            .await
            .unwrap()
    );
    Setup {
        node,
        boards,
        tenant,
        _server: server,
    }
}

/// Runs one sync of the connection: the backfill first, then incremental ones.
async fn sync_once(s: &Setup) -> (JobState, u64) {
    let report = s
        .node
        .executor("w")
        .try_execute_next()
        .await
        .unwrap()
        .expect("a job is due");
    (report.state, report.signals)
}

async fn incremental(s: &Setup) {
    let (status, body) = s
        .node
        .api("POST", "/sync/boards", Some(s.tenant), Some(json!({})))
        .await;
    assert!(status < 300, "{body}");
}

/// Each partition's run is its own: the board's items, then the board's own
/// checkpoint (a second early), whatever the other board holds.
async fn partitions_keep_their_own_checkpoints(s: Setup) {
    s.boards.add("b1", 1, t0());
    s.boards.add("b1", 2, t0() + Duration::minutes(5));
    s.boards.add("b2", 3, t0() + Duration::hours(2));
    s.boards.add("b3", 9, t0());
    assert_eq!(sync_once(&s).await, (JobState::Succeeded, 3));
    let got = signals(&s.node, s.tenant).await;
    assert_eq!(
        got.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3"],
        "b3 is not a partition"
    );
    let seen = std::mem::take(&mut *s.boards.seen.lock().unwrap());
    assert_eq!(
        seen,
        [
            ("b1".into(), Some("2026-09-30T23:59:59Z".into())),
            ("b2".into(), Some("2026-09-30T23:59:59Z".into()))
        ]
    );

    s.boards.add("b2", 4, t0() + Duration::hours(3));
    incremental(&s).await;
    assert_eq!(sync_once(&s).await, (JobState::Succeeded, 1));
    let seen = std::mem::take(&mut *s.boards.seen.lock().unwrap());
    assert_eq!(
        seen,
        [
            ("b1".into(), Some("2026-11-01T10:04:59Z".into())),
            ("b2".into(), Some("2026-11-01T11:59:59Z".into()))
        ]
    );
    assert_eq!(signals(&s.node, s.tenant).await.len(), 4);
}

crate::on_both! {
    async fn config_list_partitions_run_once_each_with_their_own_checkpoint(backend) {
        let s = setup(backend, "{type: config, field: boards}", "", json!({"boards": ["b1", "b2"]})).await;
        partitions_keep_their_own_checkpoints(s).await;
    }
}

crate::on_both! {
    async fn request_partitions_come_from_the_parent_listing(backend) {
        let s = setup(backend, "{type: request, endpoint: \"{{baseUrl}}/boards\", itemsPath: \"$.boards[*]\", valuePath: $.id}", "", json!({})).await;
        partitions_keep_their_own_checkpoints(s).await;
    }
}

crate::on_both! {
    async fn max_pages_stops_a_run_and_the_next_goes_on_without_a_gap(backend) {
        let extra = "  pagination: {type: offset, nextParam: offset, totalPath: $.total, pageSize: 2, pageSizeParam: limit}\n  maxPages: 2";
        let s = setup(backend, "{type: config, field: boards}", extra, json!({"boards": ["b1"]})).await;
        for (id, minute) in [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (7, 6)] {
            s.boards.add("b1", id, t0() + Duration::minutes(minute));
        }
        // Two pages of two, then the cap: the run ends there.
        assert_eq!(sync_once(&s).await, (JobState::Succeeded, 4));
        assert_eq!(s.boards.seen.lock().unwrap().len(), 2);
        // The next run starts from the last item stored (a second early), so
        // nothing between is lost; dedupe drops the overlap.
        incremental(&s).await;
        assert_eq!(sync_once(&s).await, (JobState::Succeeded, 3));
        let got = signals(&s.node, s.tenant).await;
        assert_eq!(got.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), ["1", "2", "3", "4", "5", "6", "7"]);
        let seen = s.boards.seen.lock().unwrap().clone();
        assert_eq!(seen[2], ("b1".into(), Some("2026-11-01T10:02:59Z".into())));
    }
}

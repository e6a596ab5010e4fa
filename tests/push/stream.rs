//! The live stream, `GET /signals/stream`: 1,000 Signals ingested by four
//! concurrent senders while a client disconnects and reconnects three times
//! with `Last-Event-ID`: each seen exactly once, in arrival order (as
//! `GET /signals?after=` lists them); heartbeats while idle; a client too far
//! behind is told to page instead.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::support::{arrival_order, github, ingest, start};
use crate::api::harness::{Backend, Server};

/// One server-sent event.
#[derive(Debug, Clone, Default)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// An open stream, read event by event.
struct Client {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    comments: usize,
}

impl Client {
    async fn open(server: &Server, tenant: Uuid, query: &str, last: Option<&str>) -> Client {
        let mut request = server
            .tenant(tenant, Method::GET, &format!("/signals/stream{query}"))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Client {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` when the stream ended or nothing came within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event::default();
                let mut any = false;
                for line in block.lines() {
                    if line.is_empty() {
                        continue;
                    }
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    any = true;
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "data" => event.data.push_str(value),
                        _ => {}
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(_) | Err(_) => return None,
            }
        }
    }
}

async fn a_thousand_signals_across_three_reconnects(backend: Backend) {
    let server = start(backend, &[("POBLYSH_STREAM_HEARTBEAT_SECONDS", "1")]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    // Four senders, 250 Signals each, all at once.
    let base = server.base.clone();
    let senders: Vec<_> = (0..4u64)
        .map(|k| {
            let base = base.clone();
            tokio::spawn(async move {
                for n in 0..250u64 {
                    let number = 1 + k * 1000 + n;
                    let (status, ack) = crate::api::harness::send(super::support::webhook_to(
                        &base, tenant, number,
                    ))
                    .await;
                    assert_eq!(status, 200, "{ack}");
                }
            })
        })
        .collect();
    let mut seen: Vec<Event> = Vec::new();
    let mut last: Option<String> = None;
    for connection in 0..4 {
        let mut client = Client::open(&server, tenant, "?after=beginning", last.as_deref()).await;
        // Three disconnects: after 100, 350 and 600 events.
        let leave_at = [100, 350, 600, 1000][connection];
        while seen.len() < leave_at {
            let event = client
                .next(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("the stream stopped after {} events", seen.len()));
            assert_eq!(event.event.as_deref(), Some("signal"));
            last.clone_from(&event.id);
            seen.push(event);
        }
        drop(client);
    }
    for s in senders {
        s.await.unwrap();
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 1000, "each Signal exactly once");
    assert_eq!(
        ids,
        arrival_order(&server, tenant, "beginning").await,
        "in arrival order"
    );
    // Nothing more, and heartbeats meanwhile.
    let mut client = Client::open(&server, tenant, "", last.as_deref()).await;
    let more = client.next(Duration::from_millis(2500)).await;
    assert!(more.is_none(), "{more:?}");
    assert!(client.comments >= 1, "no heartbeat while idle");
    // A new Signal reaches the open stream.
    ingest(&server, tenant, 9999).await;
    let event = client
        .next(Duration::from_secs(5))
        .await
        .expect("the new Signal");
    let v: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(v["external_id"], "9999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_signals_three_reconnects_sqlite() {
    a_thousand_signals_across_three_reconnects(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_signals_three_reconnects_postgres() {
    a_thousand_signals_across_three_reconnects(Backend::Postgres).await;
}

#[tokio::test]
async fn a_client_too_far_behind_is_told_to_page_and_a_bad_resume_is_refused() {
    let server = start(Backend::Sqlite, &[("POBLYSH_STREAM_MAX_BACKLOG", "100")]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    for n in 1..=300 {
        ingest(&server, tenant, n).await;
    }
    let mut client = Client::open(&server, tenant, "?after=beginning", None).await;
    let mut signals = 0;
    let resync = loop {
        let event = client
            .next(Duration::from_secs(10))
            .await
            .expect("an event");
        match event.event.as_deref() {
            Some("signal") => signals += 1,
            Some("resync") => break event,
            other => panic!("{other:?}"),
        }
    };
    assert!(signals <= 100, "{signals}");
    assert!(
        client.next(Duration::from_secs(2)).await.is_none(),
        "the stream ends"
    );
    // Paging from where it says covers the rest.
    let after: Value = serde_json::from_str(&resync.data).unwrap();
    let rest = arrival_order(&server, tenant, after["after"].as_str().unwrap()).await;
    assert_eq!(signals + rest.len(), 300);
    // A Last-Event-ID that is not one of ours.
    let (status, problem) = crate::api::harness::send(
        server
            .tenant(tenant, Method::GET, "/signals/stream")
            .header("last-event-id", "not-an-id"),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
}

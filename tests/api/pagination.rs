//! `GET /signals`: keyset pagination returns every signal exactly once and in
//! order even with many equal timestamps; filters; idempotent inserts; bad
//! parameters are 400s naming the parameter.

use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::db::repo::signals;
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::harness::send;
use crate::on_both_backends;

fn signal(tenant: Uuid, connection: Uuid, i: usize, at: DateTime<Utc>) -> Signal {
    Signal {
        id: Uuid::nil(),
        tenant_id: TenantId::from_uuid(tenant),
        connection_id: ConnectionId::from_uuid(connection),
        provider: if i.is_multiple_of(3) {
            "linear"
        } else {
            "github"
        }
        .into(),
        kind: if i.is_multiple_of(2) {
            "issue_created"
        } else {
            "pr_merged"
        }
        .into(),
        occurred_at: at,
        received_at: Utc::now(),
        external_id: format!("item-{i}"),
        summary: format!("Signal {i} — ünïcödé"),
        priority: None,
        participants: vec!["octo".into()],
        tags: vec![format!("t{}", i % 5)],
        related: vec![],
        url: Some(format!("https://example.com/{i}")),
        payload: json!({"raw": {"i": i}}),
    }
    .with_derived_id()
}

on_both_backends! {
    async fn a_thousand_signals_paged_seven_at_a_time(server) {
        let tenant = Uuid::now_v7();
        let connection = Uuid::now_v7();
        // Ten distinct instants (microsecond precision), a hundred signals each.
        let base: DateTime<Utc> = "2024-05-01T12:00:00.123456Z".parse().unwrap();
        let all: Vec<Signal> = (0..1000)
            .map(|i| signal(tenant, connection, i, base + Duration::seconds((i % 10) as i64)))
            .collect();
        let db = server.db().await;
        assert_eq!(signals::insert(db.conn(), &all).await.unwrap(), 1000);
        // Inserting again (the same events: the same ids) stores nothing.
        assert_eq!(signals::insert(db.conn(), &all).await.unwrap(), 0);

        let mut expected: Vec<(DateTime<Utc>, Uuid)> = all.iter().map(|s| (s.occurred_at, s.id)).collect();
        expected.sort_by(|a, b| b.cmp(a));

        let mut seen: Vec<(DateTime<Utc>, Uuid)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                None => "/signals?limit=7".to_owned(),
                Some(c) => format!("/signals?limit=7&cursor={c}"),
            };
            let (status, page) = send(server.tenant(tenant, Method::GET, &path)).await;
            assert_eq!(status, 200, "{page}");
            let items = page["signals"].as_array().unwrap();
            assert!(items.len() <= 7);
            for s in items {
                assert!(s.get("payload").is_none(), "no payload unless asked");
                seen.push((s["occurred_at"].as_str().unwrap().parse().unwrap(), s["id"].as_str().unwrap().parse().unwrap()));
            }
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(pages < 200, "pagination does not end");
        }
        assert_eq!(pages, 143);
        assert_eq!(seen.len(), 1000);
        assert_eq!(seen, expected, "every signal once, newest first, ties by id");
    }
}

on_both_backends! {
    async fn filters_and_parameters(server) {
        let tenant = Uuid::now_v7();
        let c1 = Uuid::now_v7();
        let c2 = Uuid::now_v7();
        let base: DateTime<Utc> = "2024-05-01T00:00:00Z".parse().unwrap();
        let mut all: Vec<Signal> = (0..30).map(|i| signal(tenant, c1, i, base + Duration::hours(i as i64))).collect();
        all.extend((30..40).map(|i| signal(tenant, c2, i, base + Duration::hours(i as i64))));
        signals::insert(server.db().await.conn(), &all).await.unwrap();

        let count = |body: &Value| body["signals"].as_array().unwrap().len();
        let get = |path: &str| server.tenant(tenant, Method::GET, path);

        let (_, body) = send(get("/signals?limit=100")).await;
        assert_eq!(count(&body), 40);
        assert!(body["next_cursor"].is_null());
        let (_, body) = send(get("/signals")).await;
        assert_eq!(count(&body), 40, "default limit 50");
        let (_, body) = send(get("/signals?provider=linear&limit=100")).await;
        assert_eq!(count(&body), all.iter().filter(|s| s.provider == "linear").count());
        let (_, body) = send(get("/signals?kind=pr_merged&limit=100")).await;
        assert_eq!(count(&body), 20);
        let (_, body) = send(get(&format!("/signals?connection_id={c2}&limit=100"))).await;
        assert_eq!(count(&body), 10);
        let (_, body) = send(get("/signals?occurred_after=2024-05-01T09:00:00Z&occurred_before=2024-05-01T20:00:00%2B00:00")).await;
        assert_eq!(count(&body), 10, "strictly between 09:00 and 20:00: {body}");
        // Paged within the range: the cursor and `occurred_before` together.
        let hours = |body: &Value| -> Vec<i64> {
            body["signals"].as_array().unwrap().iter()
                .map(|s| (s["occurred_at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap() - base).num_hours())
                .collect()
        };
        let mut seen = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let (_, body) = send(get(&format!("/signals?occurred_after=2024-05-01T09:00:00Z&occurred_before=2024-05-01T20:00:00Z&limit=3{cursor}"))).await;
            seen.extend(hours(&body));
            match body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, (10..20).rev().collect::<Vec<_>>());
        // A cursor newer than `occurred_before`: the bound decides.
        let (_, body) = send(get("/signals?limit=2")).await;
        let newer = body["next_cursor"].as_str().unwrap().to_owned();
        let (_, body) = send(get(&format!("/signals?cursor={newer}&occurred_before=2024-05-01T20:00:00Z&limit=100"))).await;
        assert_eq!(hours(&body), (0..20).rev().collect::<Vec<_>>());
        // A cursor older than it: the cursor decides.
        let (_, body) = send(get("/signals?limit=30")).await;
        let older = body["next_cursor"].as_str().unwrap().to_owned();
        let (_, body) = send(get(&format!("/signals?cursor={older}&occurred_before=2024-05-01T20:00:00Z&limit=100"))).await;
        assert_eq!(hours(&body), (0..10).rev().collect::<Vec<_>>());
        let (_, body) = send(get("/signals?limit=1&include_payload=true")).await;
        assert_eq!(body["signals"][0]["payload"], json!({"raw": {"i": 39}}));
        assert_eq!(body["signals"][0]["summary"], "Signal 39 — ünïcödé");
        assert_eq!(body["signals"][0]["tags"], json!(["t4"]));

        for (query, param) in [
            ("limit=101", "limit"),
            ("limit=0", "limit"),
            ("limit=ten", "limit"),
            ("occurred_after=yesterday", "occurred_after"),
            ("occurred_before=2024-13-01T00:00:00Z", "occurred_before"),
            ("connection_id=42", "connection_id"),
            ("cursor=bogus", "cursor"),
            ("include_payload=maybe", "include_payload"),
            ("provdier=github", "provdier"),
        ] {
            let (status, body) = send(get(&format!("/signals?{query}"))).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert!(body["message"].as_str().unwrap().starts_with(&format!("{param}:")), "{query}: {body}");
        }
    }
}

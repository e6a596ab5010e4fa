//! Push delivery end to end: a receiver that is down for a while gets every
//! Signal once back, in arrival order, repeats only under the same
//! `webhook-id`; the same across a `kill -9` of the service mid-delivery; an
//! exhausted schedule marks the subscription failing (API, metrics) until
//! it is re-enabled; `410` disables it; a slow subscriber holds up neither
//! ingestion nor another subscriber.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::{Receiver, arrival_order, github, ingest, restart, start, subscribe};
use crate::api::harness::{Backend, Server, send};

async fn subscription(server: &Server, tenant: Uuid, id: &str) -> Value {
    let (status, s) =
        send(server.tenant(tenant, Method::GET, &format!("/subscriptions/{id}"))).await;
    assert_eq!(status, 200, "{s}");
    s
}

/// Waits until the subscription satisfies `done` (at most `limit`).
async fn until(
    server: &Server,
    tenant: Uuid,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let s = subscription(server, tenant, id).await;
        if done(&s) {
            return s;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_receiver_down_then_back_gets_everything_once_in_order(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let server = start(backend, &[]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    let sub = subscribe(&server, tenant, &receiver.url, json!({})).await;
    let id = sub["id"].as_str().unwrap();
    let from = sub["cursor"].as_str().unwrap().to_owned();
    receiver.trust(sub["secret"].as_str().unwrap());
    // The secret is shown once.
    assert!(
        subscription(&server, tenant, id)
            .await
            .get("secret")
            .is_none()
    );
    for n in 1..=30 {
        ingest(&server, tenant, n).await;
    }
    // Down: retried on the schedule, the same batch each time.
    let failing = until(&server, tenant, id, Duration::from_secs(20), |s| {
        s["failures"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(failing["state"], "active");
    assert_eq!(failing["pending"], true);
    assert_eq!(failing["last_status"], 503);
    assert!(receiver.taken().is_empty());
    // Back.
    receiver.answer(200);
    receiver.wait_for(30, Duration::from_secs(30)).await;
    let expected = arrival_order(&server, tenant, &from).await;
    assert_eq!(expected.len(), 30);
    receiver.assert_delivered_once_in_order(&expected);
    // Sent one at a time, so arrival order is the order they were sent.
    let external: Vec<String> = receiver
        .taken()
        .into_iter()
        .flat_map(|t| t.external_ids)
        .collect();
    let sent: Vec<String> = (1..=30).map(|n| n.to_string()).collect();
    assert_eq!(external, sent);
    let done = until(&server, tenant, id, Duration::from_secs(5), |s| {
        s["delivered"] == 30
    })
    .await;
    assert_eq!(done["failures"], 0);
    assert_eq!(done["pending"], false);
    assert_eq!(done["last_status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_then_back_sqlite() {
    a_receiver_down_then_back_gets_everything_once_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_then_back_postgres() {
    a_receiver_down_then_back_gets_everything_once_in_order(Backend::Postgres).await;
}

async fn killed_mid_delivery_then_restarted(backend: Backend) {
    let receiver = Receiver::start().await;
    // Slow: the service is killed while a delivery waits for its answer.
    receiver.delay(Duration::from_secs(2));
    let env = [("POBLYSH_PUSH_TIMEOUT_SECONDS", "3")];
    let server = start(backend, &env).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    let sub = subscribe(&server, tenant, &receiver.url, json!({})).await;
    let from = sub["cursor"].as_str().unwrap().to_owned();
    receiver.trust(sub["secret"].as_str().unwrap());
    for n in 1..=20 {
        ingest(&server, tenant, n).await;
    }
    receiver.wait_in_flight(Duration::from_secs(10)).await;
    let url = server.database_url.clone();
    let dir = server.kill();
    receiver.delay(Duration::ZERO);
    let server = restart(dir, url, &env).await;
    for n in 21..=30 {
        ingest(&server, tenant, n).await;
    }
    // After the dead node's lease on the subscription expires.
    receiver.wait_for(30, Duration::from_secs(60)).await;
    let expected = arrival_order(&server, tenant, &from).await;
    assert_eq!(expected.len(), 30);
    receiver.assert_delivered_once_in_order(&expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_delivery_sqlite() {
    killed_mid_delivery_then_restarted(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_delivery_postgres() {
    killed_mid_delivery_then_restarted(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_schedule_marks_failing_until_re_enabled_and_410_disables() {
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let env = [("POBLYSH_PUSH_RETRY_SCHEDULE", "0.1,0.1,0.1")];
    let server = start(Backend::Sqlite, &env).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    let sub = subscribe(&server, tenant, &receiver.url, json!({})).await;
    let id = sub["id"].as_str().unwrap();
    receiver.trust(sub["secret"].as_str().unwrap());
    ingest(&server, tenant, 1).await;
    let failing = until(&server, tenant, id, Duration::from_secs(20), |s| {
        s["state"] == "failing"
    })
    .await;
    // The first attempt and one after each of the three waits.
    assert_eq!(failing["failures"], 4, "{failing}");
    assert_eq!(failing["last_status"], 500);
    assert_eq!(failing["pending"], true);
    assert_eq!(receiver.attempts(), 4);
    // Not retried any more; shown in the metrics.
    let started = Instant::now();
    loop {
        let metrics = server
            .anonymous(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("push_subscriptions{state=\"failing\"} 1") {
            assert!(
                metrics.contains("push_deliveries_total{outcome=\"failing\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.attempts(), 4);
    // Re-enabled: the pending batch goes at once.
    receiver.answer(200);
    let (status, s) = send(
        server
            .tenant(tenant, Method::PATCH, &format!("/subscriptions/{id}"))
            .json(&json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["state"], "active");
    receiver.wait_for(1, Duration::from_secs(10)).await;
    // Gone: disabled, not retried.
    receiver.answer(410);
    ingest(&server, tenant, 2).await;
    let gone = until(&server, tenant, id, Duration::from_secs(10), |s| {
        s["state"] == "disabled"
    })
    .await;
    assert_eq!(gone["enabled"], false);
    assert_eq!(gone["last_status"], 410);
    let attempts = receiver.attempts();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.attempts(), attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_holds_up_neither_ingestion_nor_another_subscriber() {
    // Subscribers get longer than the slow one's hold below to answer.
    let server = start(
        Backend::Postgres,
        &[("POBLYSH_PUSH_TIMEOUT_SECONDS", "120")],
    )
    .await;
    // Ingestion with no subscriber, for comparison.
    let quiet = Uuid::now_v7();
    github(&server, quiet).await;
    let t = Instant::now();
    for n in 1..=100 {
        ingest(&server, quiet, n).await;
    }
    let alone = t.elapsed();

    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    // The slow subscriber answers its first delivery only after a minute: so
    // long that a loaded machine cannot get there first, so the checks below
    // are about order (who waited for whom), not about wall-clock bounds.
    let hold = Duration::from_secs(60);
    slow.delay(hold);
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    for r in [&slow, &fast] {
        let sub = subscribe(&server, tenant, &r.url, json!({})).await;
        r.trust(sub["secret"].as_str().unwrap());
    }
    let t = Instant::now();
    for n in 1..=100 {
        ingest(&server, tenant, n).await;
    }
    let with_slow = t.elapsed();
    // Ingestion did not wait for the slow subscriber: every webhook was
    // acknowledged while it still holds its first delivery unanswered.
    assert!(
        slow.taken().is_empty() && with_slow < hold,
        "ingestion waited for the slow subscriber ({with_slow:?})"
    );
    fast.wait_for(100, hold - Duration::from_secs(10)).await;
    let fast_done = t.elapsed();
    // Nor did the other subscriber: it had all 100 before the slow one
    // answered anything, and the slow one is being delivered to meanwhile.
    slow.wait_in_flight(Duration::from_secs(20)).await;
    assert!(slow.taken().is_empty(), "{:?}", slow.taken().len());
    eprintln!(
        "ingestion of 100 webhooks: {alone:?} with no subscriber, {with_slow:?} beside a stalled subscriber \
         (ratio {:.2}); the other subscriber had all 100 after {fast_done:?}",
        with_slow.as_secs_f64() / alone.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_a_long_answer_is_taken_and_a_pending_batch_is_sent_as_recorded() {
    let receiver = Receiver::start().await;
    receiver.answer(302);
    let server = start(Backend::Sqlite, &[]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    let sub = subscribe(
        &server,
        tenant,
        &receiver.url,
        json!({"kinds": ["pr_opened"]}),
    )
    .await;
    let id = sub["id"].as_str().unwrap();
    receiver.trust(sub["secret"].as_str().unwrap());
    for n in 1..=3 {
        ingest(&server, tenant, n).await;
    }
    // A redirect is not followed (a POST would arrive as a bodiless GET) and
    // is not taken.
    let pending = until(&server, tenant, id, Duration::from_secs(20), |s| {
        s["failures"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(pending["last_status"], 302);
    assert_eq!(receiver.redirected(), 0);
    // The filters change while the batch is pending: the batch goes as it was
    // recorded (the change applies from the next one).
    let (status, _) = send(
        server
            .tenant(tenant, Method::PATCH, &format!("/subscriptions/{id}"))
            .json(&json!({"kinds": ["issue_closed"]})),
    )
    .await;
    assert_eq!(status, 200);
    // A 2xx with a long body counts as taken.
    receiver.answer_bytes(300 << 10);
    receiver.answer(200);
    receiver.wait_for(3, Duration::from_secs(10)).await;
    let taken = receiver.taken();
    assert_eq!(taken.len(), 1, "one batch, taken once");
    assert_eq!(taken[0].external_ids, ["1", "2", "3"]);
    let ids: Vec<String> = receiver
        .raw()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "every attempt of the batch under one id: {ids:?}"
    );
    let done = until(&server, tenant, id, Duration::from_secs(5), |s| {
        s["delivered"] == 3
    })
    .await;
    assert_eq!(done["failures"], 0);
    // The new filter from now on: nothing of these kinds.
    ingest(&server, tenant, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.taken().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_ahead_of_the_database_marks_the_subscription_failing() {
    use sea_orm::ConnectionTrait;
    let receiver = Receiver::start().await;
    let server = start(Backend::Postgres, &[]).await;
    let tenant = Uuid::now_v7();
    github(&server, tenant).await;
    let sub = subscribe(&server, tenant, &receiver.url, json!({})).await;
    let id = sub["id"].as_str().unwrap();
    // As after restoring a logical dump into another cluster.
    let ahead = poblysh_connectors::db::repo::arrivals::Position::Xact {
        xid: 1 << 40,
        id: Uuid::nil(),
    };
    let db = server.db().await;
    db.conn()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE subscriptions SET position = $1",
            [ahead.encode().into()],
        ))
        .await
        .unwrap();
    ingest(&server, tenant, 1).await;
    let failing = until(&server, tenant, id, Duration::from_secs(10), |s| {
        s["state"] == "failing"
    })
    .await;
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap()
            .contains("ahead of the database"),
        "{failing}"
    );
    // Moved back: delivered.
    receiver.trust(sub["secret"].as_str().unwrap());
    let (status, s) = send(
        server
            .tenant(tenant, Method::PATCH, &format!("/subscriptions/{id}"))
            .json(&json!({"start": "beginning", "enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{s}");
    receiver.wait_for(1, Duration::from_secs(10)).await;
}

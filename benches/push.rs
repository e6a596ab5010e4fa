//! Push delivery through the real server (`serve --role all`, release build,
//! its own process, PostgreSQL with fsync and synchronous commit on):
//!
//! * **ingestion with and without subscribers**: signed GitHub
//!   `pull_request` deliveries (the real octokit sample, each a new Signal)
//!   posted by 32 concurrent keep-alive connections for
//!   `POBLYSH_BENCH_ROUND_SECONDS` (8) to a tenant with no subscription, then
//!   to one with 3 active subscriptions (local receivers answering 204 at
//!   once), alternating, `POBLYSH_BENCH_ROUNDS` (3) rounds each, every
//!   round's deliveries drained before the next: accepted webhooks/s of each
//!   and the ratio of their sums;
//! * **webhook in → push delivered**: a steady `POBLYSH_BENCH_RATE` (500)
//!   webhooks/s for `POBLYSH_BENCH_SECONDS` (30) to the tenant with the 3
//!   subscriptions; for each Signal and each receiver, the time from sending
//!   the webhook to the receiver taking the delivery that carries it: p50,
//!   p99, max; every Signal delivered to every receiver (counted).
//!
//! Run: `cargo bench --bench push`.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "support/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SUBSCRIBERS: usize = 3;
const CONCURRENCY: usize = 32;

fn main() {
    if !server::serve_if_asked() {
        orchestrate();
    }
}

/// When each numbered webhook was sent, and what the receivers took.
#[derive(Default)]
struct Ledger {
    sent: Mutex<HashMap<u64, Instant>>,
    /// Microseconds from send to delivery, per receiver.
    latencies: Mutex<Vec<Vec<u32>>>,
    /// Distinct numbers taken, per receiver.
    taken: Mutex<Vec<std::collections::HashSet<u64>>>,
}

/// A receiver answering 204 at once, recording each Signal's latency.
async fn receiver(ledger: Arc<Ledger>, index: usize) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let ledger = Arc::clone(&ledger);
            async move {
                let now = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap();
                let numbers: Vec<u64> = v["data"]["signals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|s| s["external_id"].as_str()?.parse().ok())
                    .collect();
                let sent = ledger.sent.lock().unwrap();
                let mut latencies = ledger.latencies.lock().unwrap();
                let mut taken = ledger.taken.lock().unwrap();
                for n in numbers {
                    if taken[index].insert(n)
                        && let Some(at) = sent.get(&n)
                    {
                        latencies[index].push(now.duration_since(*at).as_micros() as u32);
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn orchestrate() {
    let round = server::env_or("POBLYSH_BENCH_ROUND_SECONDS", 8);
    let seconds = server::env_or("POBLYSH_BENCH_SECONDS", 30);
    let rate = server::env_or("POBLYSH_BENCH_RATE", 500);
    pg::durable();
    let database_url = pg::fresh_database();
    let env = [
        ("POBLYSH_WEBHOOK_RATE_LIMIT", "0"),
        ("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    let (mut server, base) = server::start(&database_url, "all", &env);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        poblysh_connectors::engine::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(CONCURRENCY * 2)
            .build()
            .unwrap();
        let ledger = Arc::new(Ledger {
            latencies: Mutex::new(vec![Vec::new(); SUBSCRIBERS]),
            taken: Mutex::new(vec![Default::default(); SUBSCRIBERS]),
            ..Ledger::default()
        });
        let quiet = uuid::Uuid::now_v7().to_string();
        let busy = uuid::Uuid::now_v7().to_string();
        for tenant in [&quiet, &busy] {
            github(&client, &base, tenant).await;
        }
        for i in 0..SUBSCRIBERS {
            let url = receiver(Arc::clone(&ledger), i).await;
            let _: Value = server::ok(
                client
                    .post(format!("{base}/subscriptions"))
                    .bearer_auth(server::OPERATOR)
                    .header("x-tenant-id", &busy)
                    .json(&json!({"url": url})),
            )
            .await;
        }
        let sample = Arc::new(
            std::fs::read_to_string("fixtures/github/webhook.pull_request.opened.json").unwrap(),
        );
        let next = Arc::new(AtomicU64::new(1));
        // Closed-loop rounds, alternating: no subscriber, then 3.
        let mut without = Vec::new();
        let mut with = Vec::new();
        let rounds = server::env_or("POBLYSH_BENCH_ROUNDS", 3) * 2;
        for r in 0..rounds {
            let tenant = if r % 2 == 0 { &quiet } else { &busy };
            let per_second = closed_loop(
                &client,
                &base,
                tenant,
                r % 2 == 1,
                &sample,
                &next,
                &ledger,
                round,
            )
            .await;
            if r % 2 == 0 {
                without.push(per_second);
            } else {
                with.push(per_second);
            }
            // Let the deliveries of the round drain before the next.
            drain(&ledger, Duration::from_secs(60)).await;
        }
        let ingestion_ratio = with.iter().sum::<f64>() / without.iter().sum::<f64>();
        // The steady phase: latencies from here only.
        {
            let mut latencies = ledger.latencies.lock().unwrap();
            latencies.iter_mut().for_each(Vec::clear);
        }
        let first = next.load(Ordering::Relaxed);
        let sent = steady(
            &client, &base, &busy, &sample, &next, &ledger, rate, seconds,
        )
        .await;
        drain(&ledger, Duration::from_secs(120)).await;
        let taken = ledger.taken.lock().unwrap();
        let mut all_delivered = true;
        for t in taken.iter() {
            let in_phase = (first..first + sent).filter(|n| t.contains(n)).count() as u64;
            all_delivered &= in_phase == sent;
        }
        let mut latencies: Vec<u32> = ledger.latencies.lock().unwrap().concat();
        latencies.sort_unstable();
        let q = |p: f64| server::quantile_ms(&latencies, p).unwrap_or(f64::NAN);
        json!({
            "backend": "postgres (fsync, synchronous_commit on)",
            "ingestion_webhooks_per_s_without_subscribers": without,
            "ingestion_webhooks_per_s_with_3_subscribers": with,
            "ingestion_ratio_with_to_without": (ingestion_ratio * 1000.0).round() / 1000.0,
            "steady_rate_per_s": rate,
            "steady_seconds": seconds,
            "steady_webhooks_sent": sent,
            "every_signal_delivered_to_every_subscriber": all_delivered,
            "webhook_sent_to_push_taken_ms": {
                "n": latencies.len(), "p50": q(0.5), "p99": q(0.99), "max": q(1.0),
            },
        })
    });
    let _ = server.kill();
    let _ = server.wait();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

async fn github(client: &reqwest::Client, base: &str, tenant: &str) {
    let _: Value = server::ok(client
        .post(format!("{base}/connections"))
        .bearer_auth(server::OPERATOR)
        .header("x-tenant-id", tenant)
        .json(&json!({
            "provider": "github",
            "credentials": {"token": "github_pat_bench", "webhookSecret": server::GITHUB_SECRET},
            "config": {"repos": ["Codertocat/Hello-World"]},
        })))
    .await;
}

/// Sends webhook `n` (the sample with its own number: a new Signal) to the
/// tenant; records when, if `record` (the subscribed tenant).
async fn send(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    sample: &str,
    n: u64,
    ledger: &Ledger,
    record: bool,
) {
    let mut v: Value = serde_json::from_str(sample).unwrap();
    v["number"] = json!(n);
    v["pull_request"]["number"] = json!(n);
    let body = serde_json::to_vec(&v).unwrap();
    let signature = server::github_signature(&body);
    if record {
        ledger.sent.lock().unwrap().insert(n, Instant::now());
    }
    let response = client
        .post(format!("{base}/webhooks/github/{tenant}"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", format!("push-bench-{n}"))
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// [`CONCURRENCY`] senders back to back for `seconds`: accepted per second.
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    record: bool,
    sample: &Arc<String>,
    next: &Arc<AtomicU64>,
    ledger: &Arc<Ledger>,
    seconds: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, base, tenant) = (client.clone(), base.to_owned(), tenant.to_owned());
            let (sample, next, ledger) = (Arc::clone(sample), Arc::clone(next), Arc::clone(ledger));
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    send(&client, &base, &tenant, &sample, n, &ledger, record).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `rate` webhooks a second for `seconds`, each on its own task: how many.
#[allow(clippy::too_many_arguments)]
async fn steady(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    sample: &Arc<String>,
    next: &Arc<AtomicU64>,
    ledger: &Arc<Ledger>,
    rate: u64,
    seconds: u64,
) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * seconds;
    let mut tasks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        tick.tick().await;
        let (client, base, tenant) = (client.clone(), base.to_owned(), tenant.to_owned());
        let (sample, ledger) = (Arc::clone(sample), Arc::clone(ledger));
        let n = next.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            send(&client, &base, &tenant, &sample, n, &ledger, true).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total
}

/// Waits until every receiver took every Signal sent to the busy tenant so
/// far (at most `limit`).
async fn drain(ledger: &Ledger, limit: Duration) {
    let started = Instant::now();
    loop {
        let sent = ledger.sent.lock().unwrap().len();
        let taken = ledger
            .taken
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.len())
            .min()
            .unwrap_or(0);
        if taken >= sent {
            return;
        }
        if started.elapsed() > limit {
            eprintln!("deliveries did not drain within {limit:?}: {taken} of {sent}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Signal reads at volume: `GET /signals?limit=50` against millions of stored
//! Signals (default 5,000,000 across 100 tenants, three connections each:
//! GitHub, Jira and Slack, three kinds per provider, a year of occurrence
//! times), 16 keep-alive clients paging from random depths (a cursor at a
//! random stored Signal), without a filter and with each filter combination
//! the API offers; and, in the same run, the same page's row-value keyset
//! query run directly on the same database by 16 concurrent tasks. Reports
//! p50/p99 of each and the ratio of the HTTP p99 to the raw query's p99, for
//! SQLite and for PostgreSQL.
//!
//! Run: `cargo bench --bench reads` (`POBLYSH_BENCH_SIGNALS=1000000` for a
//! quicker fill, `POBLYSH_BENCH_SECONDS=5` per phase,
//! `POBLYSH_BENCH_BACKEND=sqlite|postgres`, both by default). The fill goes
//! through the service's own batched insert; the server is the service's
//! `serve --role api` in its own process; PostgreSQL is a throwaway cluster
//! from the installed binaries (or `TEST_DATABASE_URL`). Every page read is
//! checked: 50 Signals (or the rest), all of the tenant and the filter.

#![expect(
    clippy::disallowed_methods,
    reason = "benchmarks time real work on the real clock"
)]

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "support/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use poblysh_connectors::db::Db;
use poblysh_connectors::db::repo::cursor::Cursor;
use poblysh_connectors::db::repo::signals::{self, SignalFilter};
use poblysh_connectors::domain::{ConnectionId, Signal, TenantId};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use uuid::Uuid;

const CLIENTS: usize = 16;
const LIMIT: u64 = 50;
const PROVIDERS: [(&str, [&str; 3]); 3] = [
    ("github", ["pr_merged", "issue_updated", "issue_closed"]),
    (
        "jira",
        ["issue_created", "issue_updated", "issue_transitioned"],
    ),
    (
        "slack",
        ["message_posted", "reaction_added", "thread_replied"],
    ),
];
/// Rows per fill transaction.
const FILL_TXN: usize = 10_000;

fn main() {
    if !server::serve_if_asked() {
        orchestrate();
    }
}

/// A stored Signal a page starts after, with what a filter can match of it.
#[derive(Debug, Clone)]
struct Sample {
    tenant: TenantId,
    connection: ConnectionId,
    provider: &'static str,
    kind: &'static str,
    time: DateTime<Utc>,
    id: Uuid,
}

/// The filter combinations the API offers.
const FILTERS: [&str; 8] = [
    "none",
    "provider",
    "kind",
    "provider+kind",
    "connection",
    "connection+kind",
    "time",
    "provider+time",
];

impl Sample {
    fn filter(&self, which: &str) -> SignalFilter {
        let mut f = SignalFilter::default();
        for part in which.split('+') {
            match part {
                "provider" => f.provider = Some(self.provider.to_owned()),
                "kind" => f.kind = Some(self.kind.to_owned()),
                "connection" => f.connection_id = Some(self.connection),
                "time" => {
                    f.occurred_after = Some(self.time - chrono::Duration::days(60));
                    f.occurred_before = Some(self.time + chrono::Duration::days(1));
                }
                _ => {}
            }
        }
        f
    }

    fn query(&self, which: &str) -> String {
        let f = self.filter(which);
        let mut q = format!(
            "limit={LIMIT}&cursor={}",
            Cursor {
                time: self.time,
                id: self.id
            }
            .encode()
        );
        if let Some(p) = &f.provider {
            q.push_str(&format!("&provider={p}"));
        }
        if let Some(k) = &f.kind {
            q.push_str(&format!("&kind={k}"));
        }
        if let Some(c) = f.connection_id {
            q.push_str(&format!("&connection_id={c}"));
        }
        for (name, t) in [
            ("occurred_after", f.occurred_after),
            ("occurred_before", f.occurred_before),
        ] {
            if let Some(t) = t {
                q.push_str(&format!(
                    "&{name}={}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                ));
            }
        }
        q
    }
}

fn orchestrate() {
    let total = server::env_or("POBLYSH_BENCH_SIGNALS", 5_000_000) as usize;
    let tenants = server::env_or("POBLYSH_BENCH_TENANTS", 100) as usize;
    let seconds = server::env_or("POBLYSH_BENCH_SECONDS", 5);
    let backends: Vec<String> = match std::env::var("POBLYSH_BENCH_BACKEND") {
        Ok(b) => vec![b],
        Err(_) => vec!["sqlite".into(), "postgres".into()],
    };
    poblysh_connectors::engine::http::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut reports = Vec::new();
    for backend in backends {
        let _dir;
        let url = if backend == "sqlite" {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/reads.db?mode=rwc", dir.path().display());
            _dir = Some(dir);
            url
        } else {
            _dir = None;
            pg::fresh_database()
        };
        let report = runtime.block_on(measure(&backend, &url, total, tenants, seconds));
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        reports.push(report);
    }
    println!("{}", summary_table(&reports));
}

async fn measure(backend: &str, url: &str, total: usize, tenants: usize, seconds: u64) -> Value {
    let db = Db::connect(url).await.unwrap();
    db.migrate().await.unwrap();
    let started = Instant::now();
    let samples = Arc::new(fill(&db, total, tenants).await);
    let fill_s = started.elapsed().as_secs_f64();
    if backend == "postgres" {
        db.conn()
            .execute_unprepared("ANALYZE signals")
            .await
            .unwrap();
    }
    eprintln!(
        "{backend}: {total} signals in {fill_s:.0} s; {} samples",
        samples.len()
    );
    let (mut server, base) = server::start(url, "api", &[]);
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let duration = Duration::from_secs(seconds);
    let mut phases = Vec::new();
    for which in FILTERS {
        // Warm both paths a little, then the HTTP pages, then the raw query.
        http_load(&client, &base, &samples, which, Duration::from_secs(1)).await;
        let http = http_load(&client, &base, &samples, which, duration).await;
        let raw = raw_load(&db, &samples, which, duration).await;
        let ratio = http.percentile(0.99) / raw.percentile(0.99);
        eprintln!(
            "{backend} {which:16} http p50 {:7.2} p99 {:7.2} ms ({:6.0}/s) | raw p50 {:7.2} p99 {:7.2} ms ({:6.0}/s) | p99 ratio {ratio:.2}",
            http.percentile(0.5),
            http.percentile(0.99),
            http.rate(),
            raw.percentile(0.5),
            raw.percentile(0.99),
            raw.rate()
        );
        phases.push(json!({
            "filter": which,
            "http": http.summary(),
            "raw_query": raw.summary(),
            "p99_ratio_http_to_raw": ratio,
        }));
    }
    let _ = server.kill();
    let _ = server.wait();
    json!({
        "backend": backend,
        "signals": total,
        "tenants": tenants,
        "clients": CLIENTS,
        "limit": LIMIT,
        "fill_seconds": fill_s,
        "phases": phases,
    })
}

/// The definitions of the signal indexes a fill can rebuild afterwards (all
/// but the primary key and the dedupe key the insert's `ON CONFLICT` needs).
async fn secondary_indexes(db: &Db) -> Vec<(String, String)> {
    let sql = if db.backend() == sea_orm::DbBackend::Sqlite {
        "SELECT name, sql AS def FROM sqlite_master WHERE type = 'index' \
         AND tbl_name = 'signals' AND sql IS NOT NULL AND name NOT LIKE 'ux_%'"
    } else {
        "SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'signals' \
         AND indexname NOT LIKE 'ux_%' AND indexname NOT LIKE '%pkey'"
    };
    db.conn()
        .query_all_raw(sea_orm::Statement::from_string(db.backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "def").unwrap(),
            )
        })
        .collect()
}

/// Stores `total` Signals across `tenants` tenants in time order, through the
/// service's batched insert, with the secondary indexes built afterwards (as
/// the migrations define them: a sorted build is many times faster than
/// millions of inserts into them); returns one in every 1,000 as a starting point.
async fn fill(db: &Db, total: usize, tenants: usize) -> Vec<Sample> {
    let indexes = secondary_indexes(db).await;
    assert!(indexes.len() >= 5, "{indexes:?}");
    for (name, _) in &indexes {
        db.conn()
            .execute_unprepared(&format!("DROP INDEX {name}"))
            .await
            .unwrap();
    }
    let mut rng = Rng(12);
    let tenant_ids: Vec<TenantId> = (0..tenants)
        .map(|_| TenantId::from_uuid(Uuid::now_v7()))
        .collect();
    let connection_ids: Vec<[ConnectionId; 3]> = (0..tenants)
        .map(|_| [(); 3].map(|_| ConnectionId::from_uuid(Uuid::now_v7())))
        .collect();
    let start: DateTime<Utc> = "2025-01-01T00:00:00Z".parse().unwrap();
    let span_us = 365 * 86_400 * 1_000_000i64;
    let received = Utc::now();
    let mut samples = Vec::new();
    let mut batch = Vec::with_capacity(FILL_TXN);
    for i in 0..total {
        let t = i % tenants;
        let p = rng.below(3);
        let (provider, kinds) = PROVIDERS[p];
        let kind = kinds[rng.below(3)];
        // Time order overall, with jitter, so a tenant's rows interleave.
        let time = start
            + chrono::Duration::microseconds(
                (i as i64 * (span_us / total as i64)) + rng.below(1_000_000) as i64,
            );
        let signal = Signal {
            id: Uuid::nil(),
            tenant_id: tenant_ids[t],
            connection_id: connection_ids[t][p],
            provider: provider.to_owned(),
            kind: kind.to_owned(),
            occurred_at: time,
            received_at: received,
            external_id: format!("{i}"),
            summary: format!("Item #{i}: something changed in the {provider} workspace"),
            priority: None,
            participants: vec!["octocat".into()],
            tags: vec!["bug".into()],
            related: vec![],
            url: Some(format!("https://example.com/{provider}/items/{i}")),
            payload: json!({"raw": {"number": i, "state": "open", "title": format!("Item #{i}")}}),
        }
        .with_derived_id();
        if i % 1000 == 500 {
            samples.push(Sample {
                tenant: signal.tenant_id,
                connection: signal.connection_id,
                provider,
                kind,
                time: signal.occurred_at,
                id: signal.id,
            });
        }
        batch.push(signal);
        if batch.len() == FILL_TXN || i + 1 == total {
            let txn = db.begin_write().await.unwrap();
            if db.backend() == sea_orm::DbBackend::Sqlite {
                // This process's fill connection only: a large page cache.
                txn.execute_unprepared("PRAGMA cache_size = -262144")
                    .await
                    .unwrap();
            }
            let stored = signals::insert(&txn, &batch).await.unwrap();
            assert_eq!(stored as usize, batch.len(), "every filled Signal is new");
            txn.commit().await.unwrap();
            batch.clear();
            if (i + 1) % 500_000 == 0 {
                eprintln!("  {} stored", i + 1);
            }
        }
    }
    for (name, def) in &indexes {
        eprintln!("  building {name}");
        db.conn().execute_unprepared(def).await.unwrap();
    }
    db.checkpoint_wal().await;
    samples
}

/// SplitMix64: reproducible choices without another dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Latencies of one phase.
struct Load {
    done: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile, in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        server::quantile_ms(&self.latencies_us, p).unwrap_or(f64::NAN)
    }

    fn summary(&self) -> Value {
        json!({
            "pages": self.done,
            "per_second": self.rate(),
            "p50_ms": self.percentile(0.5),
            "p99_ms": self.percentile(0.99),
            "max_ms": self.percentile(1.0),
        })
    }
}

/// Runs `CLIENTS` loops of `one` for `duration`; each picks a random sample.
async fn load<F, Fut>(samples: &Arc<Vec<Sample>>, duration: Duration, one: F) -> Load
where
    F: Fn(Sample) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let seed = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (samples, stop, one) = (Arc::clone(samples), Arc::clone(&stop), one.clone());
        let mut rng = Rng(seed.fetch_add(1, Ordering::Relaxed));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sample = samples[rng.below(samples.len())].clone();
                let sent = Instant::now();
                one(sample).await;
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    latencies_us.sort_unstable();
    Load {
        done: latencies_us.len() as u64,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

async fn http_load(
    client: &reqwest::Client,
    base: &str,
    samples: &Arc<Vec<Sample>>,
    which: &'static str,
    duration: Duration,
) -> Load {
    let (client, base) = (client.clone(), base.to_owned());
    load(samples, duration, move |sample| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .get(format!("{base}/signals?{}", sample.query(which)))
                .bearer_auth(server::OPERATOR)
                .header("x-tenant-id", sample.tenant.to_string())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let bytes = response.bytes().await.unwrap();
            let page: Page<'_> = serde_json::from_slice(&bytes).unwrap();
            check_page(&sample, which, &page.signals);
        }
    })
    .await
}

async fn raw_load(
    db: &Db,
    samples: &Arc<Vec<Sample>>,
    which: &'static str,
    duration: Duration,
) -> Load {
    let db = db.clone();
    load(samples, duration, move |sample| {
        let db = db.clone();
        async move {
            let cursor = Some(Cursor {
                time: sample.time,
                id: sample.id,
            });
            let rows = signals::page_select(sample.tenant, &sample.filter(which), LIMIT, cursor)
                .all(db.reads())
                .await
                .unwrap();
            assert!(rows.len() as u64 <= LIMIT + 1);
        }
    })
    .await
}

/// What the generator reads of a page (the rest is skipped, not built: the
/// generator shares the two cores with the server).
#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    signals: Vec<PageSignal<'a>>,
}

#[derive(serde::Deserialize)]
struct PageSignal<'a> {
    tenant_id: Uuid,
    connection_id: Uuid,
    provider: &'a str,
    kind: &'a str,
    occurred_at: DateTime<Utc>,
}

/// A page holds only the tenant's Signals that match the filter, older than the cursor.
fn check_page(sample: &Sample, which: &str, signals: &[PageSignal<'_>]) {
    assert!(signals.len() as u64 <= LIMIT);
    let filter = sample.filter(which);
    for s in signals {
        let time = s.occurred_at;
        assert_eq!(s.tenant_id, *sample.tenant.as_uuid());
        assert!(time <= sample.time);
        if let Some(p) = &filter.provider {
            assert_eq!(s.provider, p.as_str());
        }
        if let Some(k) = &filter.kind {
            assert_eq!(s.kind, k.as_str());
        }
        if let Some(c) = filter.connection_id {
            assert_eq!(s.connection_id, *c.as_uuid());
        }
        if let Some(after) = filter.occurred_after {
            assert!(time > after);
        }
    }
}

fn summary_table(reports: &[Value]) -> String {
    let mut out = String::from(
        "| backend | filter | HTTP p50 ms | HTTP p99 ms | raw p50 ms | raw p99 ms | p99 ratio |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        for p in r["phases"].as_array().unwrap() {
            out.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                r["backend"].as_str().unwrap(),
                p["filter"].as_str().unwrap(),
                p["http"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
                p["http"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
                p["raw_query"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
                p["raw_query"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
                p["p99_ratio_http_to_raw"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    out
}

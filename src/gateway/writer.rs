//! The webhook writer: one task that group-commits deliveries from many
//! concurrent requests. Each batch is one transaction: delivery ids recorded
//! (a retried delivery is a duplicate and stores nothing), Signals inserted in
//! bulk, follow-up incremental jobs enqueued; every request is answered only
//! after its batch committed, so an acknowledged delivery is never lost.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::db::repo::deliveries::{self, NewDelivery};
use crate::db::repo::jobs::{self, JobType, NewJob, Trigger};
use crate::db::repo::{connections, signals};
use crate::domain::{ConnectionId, Signal, TenantId};

/// Deliveries taken into one transaction at most.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before senders wait too.
const QUEUE: usize = 4096;
/// Follow-up syncs per connection are collapsed to one per this many seconds.
const JOB_WINDOW_SECONDS: i64 = 60;

/// A verified, mapped delivery to store.
#[derive(Debug)]
pub struct Delivery {
    /// Connector id.
    pub provider: String,
    /// The provider's delivery id, when the descriptor names one.
    pub delivery_id: Option<String>,
    /// `accepted` (handled event) or `ignored` (event not handled).
    pub outcome: &'static str,
    /// What each connection it was routed to gets.
    pub parts: Vec<Part>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// A delivery's share for one connection.
#[derive(Debug)]
pub struct Part {
    /// The tenant.
    pub tenant: TenantId,
    /// The connection.
    pub connection: ConnectionId,
    /// Its Signals.
    pub signals: Vec<Signal>,
    /// Whether it gets a follow-up incremental sync, and how soon.
    pub follow_up: FollowUp,
}

/// The incremental sync a delivery asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// None.
    None,
    /// A backstop for Signals the delivery itself carried: at most one per
    /// connection per minute.
    Backstop,
    /// The delivery only said that something changed (a change ping): a sync
    /// now, unless one is already queued for the connection and will see it.
    Now,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, for at least one connection; the Signals stored.
    New {
        /// Signals of the connections that had not seen the delivery.
        signals: usize,
    },
    /// Every connection saw its delivery id before: nothing stored.
    Duplicate,
}

/// The writer could not store a delivery (the caller answers 503; the provider retries).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the webhook could not be stored; retry later")]
pub struct WriteError;

type Reply = oneshot::Sender<Result<Stored, WriteError>>;

/// The handle requests submit to.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<(Delivery, Reply)>,
}

impl Writer {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn spawn(db: Db) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Writer { tx }
    }

    /// Stores a delivery; resolves once its batch is committed.
    pub async fn store(&self, delivery: Delivery) -> Result<Stored, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((delivery, reply))
            .await
            .map_err(|_| WriteError)?;
        answer.await.map_err(|_| WriteError)?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(Delivery, Reply)>) {
    let mut recent_jobs: HashMap<ConnectionId, i64> = HashMap::new();
    let mut firsts_known: HashSet<ConnectionId> = HashSet::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (deliveries, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let outcomes = match write(&db, &deliveries, &mut recent_jobs, &mut firsts_known).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // One bad row (a NUL the database refuses, a connection deleted
            // meanwhile) must not fail the others: each on its own.
            Err(e) if deliveries.len() > 1 => {
                tracing::warn!(error = %e, deliveries = deliveries.len(), "webhook batch failed; storing one by one");
                let mut outcomes = Vec::with_capacity(deliveries.len());
                for d in &deliveries {
                    outcomes.push(match write(&db, std::slice::from_ref(d), &mut recent_jobs, &mut firsts_known).await {
                        Ok(mut one) => Ok(one.remove(0)),
                        Err(e) => {
                            tracing::error!(error = %e, provider = d.provider, "cannot store a webhook delivery");
                            Err(WriteError)
                        }
                    });
                }
                outcomes
            }
            Err(e) => {
                tracing::error!(error = %e, provider = deliveries[0].provider, "cannot store a webhook delivery");
                vec![Err(WriteError)]
            }
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// The incremental sync a delivery asks for.
fn webhook_sync(tenant: TenantId, connection: ConnectionId, provider: &str) -> NewJob<'_> {
    NewJob {
        tenant,
        connection,
        provider,
        job_type: JobType::Incremental,
        trigger: Trigger::Webhook,
    }
}

/// Stores `deliveries` in one transaction; nothing of it when it fails.
async fn write(
    db: &Db,
    deliveries: &[Delivery],
    recent_jobs: &mut HashMap<ConnectionId, i64>,
    firsts_known: &mut HashSet<ConnectionId>,
) -> Result<Vec<Stored>, crate::db::StoreError> {
    // Which (delivery, part) pairs are new: a repeat inside the batch is not,
    // then the database says for the rest.
    let mut seen = HashSet::new();
    let mut fresh: Vec<Vec<bool>> = deliveries
        .iter()
        .map(|d| {
            d.parts
                .iter()
                .map(|p| match &d.delivery_id {
                    Some(id) => seen.insert((d.provider.as_str(), p.connection, id.as_str())),
                    None => true,
                })
                .collect()
        })
        .collect();
    let mut keys = Vec::new();
    let mut rows = Vec::new();
    for (i, d) in deliveries.iter().enumerate() {
        let Some(id) = d.delivery_id.as_deref() else {
            continue;
        };
        for (j, p) in d.parts.iter().enumerate() {
            if fresh[i][j] {
                keys.push((i, j));
                rows.push(NewDelivery {
                    provider: &d.provider,
                    delivery_id: id,
                    tenant_id: p.tenant,
                    connection_id: p.connection,
                    received_at: d.received_at,
                    outcome: d.outcome,
                });
            }
        }
    }
    let txn = db.begin_write().await?;
    for ((i, j), is_new) in keys.into_iter().zip(deliveries::record(&txn, &rows).await?) {
        fresh[i][j] = is_new;
    }
    let now = db.now();
    let window = now.timestamp().div_euclid(JOB_WINDOW_SECONDS);
    let mut to_insert: Vec<&Signal> = Vec::new();
    let mut follow_up: HashMap<ConnectionId, (TenantId, &str)> = HashMap::new();
    let mut now_syncs: HashMap<ConnectionId, (TenantId, &str)> = HashMap::new();
    // Per delivery: whether any part was new, and the ids of its Signals.
    let mut delivered: Vec<(bool, Vec<uuid::Uuid>)> = Vec::with_capacity(deliveries.len());
    // Two deliveries (or one) may carry the same event: the same id, stored
    // and counted once.
    let mut queued = HashSet::new();
    for (d, fresh) in deliveries.iter().zip(&fresh) {
        let mut ids = Vec::new();
        for (p, _) in d.parts.iter().zip(fresh).filter(|(_, new)| **new) {
            for s in p.signals.iter().filter(|s| queued.insert(s.id)) {
                ids.push(s.id);
                to_insert.push(s);
            }
            match p.follow_up {
                FollowUp::Backstop if recent_jobs.get(&p.connection) != Some(&window) => {
                    follow_up.insert(p.connection, (p.tenant, d.provider.as_str()));
                }
                FollowUp::Now => {
                    now_syncs.insert(p.connection, (p.tenant, d.provider.as_str()));
                }
                FollowUp::Backstop | FollowUp::None => {}
            }
        }
        delivered.push((fresh.iter().any(|new| *new) || d.parts.is_empty(), ids));
    }
    // Signals already stored (the same event by another route) are not counted.
    let inserted = signals::insert_returning(&txn, &to_insert).await?;
    crate::observe::freshness(
        "webhook",
        to_insert
            .iter()
            .filter(|s| inserted.contains(&s.id))
            .copied(),
    );
    let outcomes: Vec<Stored> = delivered
        .into_iter()
        .map(|(new, ids)| {
            if new {
                Stored::New {
                    signals: ids.iter().filter(|id| inserted.contains(id)).count(),
                }
            } else {
                Stored::Duplicate
            }
        })
        .collect();
    for (connection, (tenant, provider)) in &follow_up {
        let key = format!("webhook:{connection}:{window}");
        let job = webhook_sync(*tenant, *connection, provider);
        jobs::enqueue_keyed(&txn, job, &key, now, now).await?;
    }
    let mut woken = !follow_up.is_empty();
    for (connection, (tenant, provider)) in &now_syncs {
        let job = webhook_sync(*tenant, *connection, provider);
        woken |= jobs::enqueue_coalesced(&txn, job, now).await?.1;
    }
    // A connection's first Signals (once; this writer remembers the ones it marked).
    let mut firsts = Vec::new();
    let mut marked = HashSet::new();
    for s in to_insert.iter().filter(|s| inserted.contains(&s.id)) {
        if !firsts_known.contains(&s.connection_id) && marked.insert(s.connection_id) {
            let first = connections::mark_first_signal(&txn, s.tenant_id, s.connection_id, now);
            if let Some(after) = first.await? {
                firsts.push((s.provider.as_str(), after));
            }
        }
    }
    txn.commit().await?;
    if !inserted.is_empty() {
        let tenants = to_insert
            .iter()
            .filter(|s| inserted.contains(&s.id))
            .map(|s| s.tenant_id)
            .collect();
        db.announce_signals(&tenants);
    }
    firsts_known.extend(marked);
    for (provider, after) in firsts {
        crate::observe::first_signal(provider, after.num_milliseconds() as f64 / 1e3);
    }
    if firsts_known.len() > 100_000 {
        firsts_known.clear();
    }
    if woken {
        db.wake_workers().await;
    }
    if recent_jobs.len() > 100_000 {
        recent_jobs.retain(|_, w| *w == window);
    }
    recent_jobs.extend(follow_up.into_keys().map(|c| (c, window)));
    Ok(outcomes)
}

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
use crate::db::repo::jobs::{self, JobType, Trigger};
use crate::db::repo::signals;
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
    /// The (first) connection it was routed to.
    pub connection: Option<(TenantId, ConnectionId)>,
    /// `accepted` (handled event) or `ignored` (event not handled).
    pub outcome: &'static str,
    /// The Signals, for every connection it was routed to.
    pub signals: Vec<Signal>,
    /// Connections that get a follow-up incremental sync.
    pub follow_up: Vec<(TenantId, ConnectionId)>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Its delivery id was seen before: nothing stored.
    Duplicate,
}

/// The writer could not store a batch (the caller answers 503; the provider retries).
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
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (deliveries, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let count = deliveries.len();
        match write(&db, deliveries, &mut recent_jobs).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = count, "cannot store webhook deliveries");
                for reply in replies {
                    let _ = reply.send(Err(WriteError));
                }
            }
        }
    }
}

async fn write(
    db: &Db,
    deliveries: Vec<Delivery>,
    recent_jobs: &mut HashMap<ConnectionId, i64>,
) -> Result<Vec<Stored>, crate::db::StoreError> {
    // A delivery id repeated inside the batch: the first one counts.
    let mut seen = HashSet::new();
    let mut outcomes: Vec<Stored> = deliveries
        .iter()
        .map(|d| match &d.delivery_id {
            Some(id) if !seen.insert((d.provider.as_str(), id.as_str())) => Stored::Duplicate,
            _ => Stored::New,
        })
        .collect();
    let (indices, rows): (Vec<usize>, Vec<NewDelivery<'_>>) = deliveries
        .iter()
        .enumerate()
        .filter(|(i, _)| outcomes[*i] == Stored::New)
        .filter_map(|(i, d)| {
            let row = NewDelivery {
                provider: &d.provider,
                delivery_id: d.delivery_id.as_deref()?,
                tenant_id: d.connection.map(|c| c.0),
                connection_id: d.connection.map(|c| c.1),
                received_at: d.received_at,
                outcome: d.outcome,
            };
            Some((i, row))
        })
        .unzip();
    let txn = db.begin_write().await?;
    let fresh = deliveries::record(&txn, &rows).await?;
    drop(rows);
    for (i, is_new) in indices.into_iter().zip(fresh) {
        if !is_new {
            outcomes[i] = Stored::Duplicate;
        }
    }
    let window = Utc::now().timestamp().div_euclid(JOB_WINDOW_SECONDS);
    let mut to_insert: Vec<Signal> = Vec::new();
    let mut follow_up: HashMap<ConnectionId, (TenantId, String)> = HashMap::new();
    for (d, outcome) in deliveries.into_iter().zip(&outcomes) {
        if *outcome == Stored::Duplicate {
            continue;
        }
        to_insert.extend(d.signals);
        for (tenant, connection) in d.follow_up {
            if recent_jobs.get(&connection) != Some(&window) {
                follow_up.insert(connection, (tenant, d.provider.clone()));
            }
        }
    }
    signals::insert(&txn, &to_insert).await?;
    for (connection, (tenant, provider)) in &follow_up {
        jobs::enqueue_keyed(
            &txn,
            *tenant,
            *connection,
            provider,
            JobType::Incremental,
            Trigger::Webhook,
            &format!("webhook:{connection}:{window}"),
            Utc::now(),
        )
        .await?;
    }
    txn.commit().await?;
    if recent_jobs.len() > 100_000 {
        recent_jobs.retain(|_, w| *w == window);
    }
    recent_jobs.extend(follow_up.into_keys().map(|c| (c, window)));
    Ok(outcomes)
}

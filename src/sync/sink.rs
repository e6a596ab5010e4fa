//! A run's Signals on their way to storage. A writer task streams them, in
//! batches, into a write transaction that it commits together with the run's
//! latest position at least every [`COMMIT_AFTER_MS`] milliseconds, and at
//! once whenever it has nothing more to write (the run is waiting for the
//! provider): no transaction is held across a wait for the network, so SQLite
//! stays writable for everyone else during a sync, and a crash, a shutdown or
//! a lost lease resumes from the last commit, re-fetching at most the pages of
//! the last fraction of a second. Every commit checks the lease. The
//! checkpoint proper is not the sink's: it is saved with the job's success,
//! after the run completes.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::db::repo::queue as store;
use crate::db::repo::signals;
use crate::db::{Db, StoreError};
use crate::domain::{Ambient, Signal, TenantId};
use crate::engine::poll::SignalSink;

/// Longest a write transaction stays open, in milliseconds.
pub const COMMIT_AFTER_MS: u64 = 150;
/// Signals handed to the writer at a time (one statement each).
const BATCH: usize = 100;
/// Batches on their way to the writer at most (bounds memory; absorbs a commit).
const IN_FLIGHT: usize = 8;

/// What the run hands the writer, in order.
enum Message {
    /// Signals to store (their statements built by the run, so the writer
    /// only waits for the database), and whose they are.
    Batch(signals::Prepared, HashSet<TenantId>),
    /// Where the run is, once everything before it is stored.
    Position(String),
}

/// Why a run's sink stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Another worker holds the job now.
    LeaseLost,
    /// A shutdown asked the run to stop; it committed where it was.
    Shutdown,
    /// Storage failed.
    Store(String),
}

/// What the writer committed.
#[derive(Debug, Default)]
struct Committed {
    signals: u64,
    position: Option<String>,
}

struct Writer {
    messages: tokio::sync::mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<(Committed, Result<(), Stop>)>,
}

/// The sink of one run of a job.
pub struct CommitSink {
    db: Db,
    job: Uuid,
    worker: String,
    ambient: Ambient,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    buffer: Vec<Signal>,
    writer: Option<Writer>,
    committed: Committed,
    stopped: Option<Stop>,
}

/// The open transaction of the writer.
struct Open {
    txn: sea_orm::DatabaseTransaction,
    since: DateTime<Utc>,
    signals: u64,
    /// Whose Signals it stores (announced after the commit).
    tenants: HashSet<TenantId>,
}

impl Open {
    /// When it must be committed.
    fn deadline(&self) -> DateTime<Utc> {
        self.since + chrono::Duration::milliseconds(COMMIT_AFTER_MS as i64)
    }
}

impl CommitSink {
    /// A sink committing for `job` while `worker` holds its lease; a run
    /// stops at its next page boundary once `stop` turns true.
    pub fn new(
        db: &Db,
        job: Uuid,
        worker: &str,
        ambient: &Ambient,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        CommitSink {
            db: db.clone(),
            job,
            worker: worker.to_owned(),
            ambient: ambient.clone(),
            stop,
            buffer: Vec::new(),
            writer: None,
            committed: Committed::default(),
            stopped: None,
        }
    }

    /// The last position committed (where a new run of the job resumes).
    pub fn last_position(&self) -> Option<&str> {
        self.committed.position.as_deref()
    }

    fn start_writer(&self) -> Writer {
        let (messages, mut rx) = tokio::sync::mpsc::channel::<Message>(IN_FLIGHT);
        let (db, job, worker, ambient) = (
            self.db.clone(),
            self.job,
            self.worker.clone(),
            self.ambient.clone(),
        );
        let task = tokio::spawn(async move {
            let mut committed = Committed::default();
            let mut open: Option<Open> = None;
            let mut position: Option<String> = None;
            let result: Result<(), Stop> = async {
                loop {
                    // With a transaction open: the next message, but no later
                    // than its deadline; with nothing waiting, commit now.
                    let message = match &open {
                        None => rx.recv().await,
                        Some(o) => match rx.try_recv() {
                            Ok(m) => Some(m),
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                                let left = (o.deadline() - ambient.now())
                                    .to_std()
                                    .unwrap_or(Duration::ZERO);
                                // Idle: commit rather than hold the lock while
                                // the run waits; but let a burst of pages share
                                // one commit.
                                let wait = left.min(Duration::from_millis(5));
                                tokio::select! {
                                    m = rx.recv() => m,
                                    () = ambient.sleep(wait) => {
                                        let o = open.take().expect("open");
                                        commit(&db, &job, &worker, o, position.take(), &mut committed).await?;
                                        continue;
                                    }
                                }
                            }
                        },
                    };
                    let Some(message) = message else {
                        if let Some(o) = open.take() {
                            commit(&db, &job, &worker, o, position.take(), &mut committed).await?;
                        } else if position.is_some() {
                            let o = begin(&db, &ambient).await?;
                            commit(&db, &job, &worker, o, position.take(), &mut committed).await?;
                        }
                        return Ok(());
                    };
                    if open.is_none() {
                        open = Some(begin(&db, &ambient).await?);
                    }
                    let o = open.as_mut().expect("opened above");
                    match message {
                        Message::Batch(batch, tenants) => {
                            o.tenants.extend(tenants);
                            o.signals += signals::insert_prepared(&o.txn, batch)
                                .await
                                .map_err(store)?;
                        }
                        Message::Position(p) => position = Some(p),
                    }
                    if ambient.now() >= o.deadline() {
                        let o = open.take().expect("open");
                        commit(&db, &job, &worker, o, position.take(), &mut committed).await?;
                    }
                }
            }
            .await;
            (committed, result)
        });
        Writer { messages, task }
    }

    async fn send(&mut self, message: Message) -> Result<(), String> {
        if self.writer.is_none() {
            self.writer = Some(self.start_writer());
        }
        let writer = self.writer.as_ref().expect("started above");
        if writer.messages.send(message).await.is_err() {
            // The writer stopped: it says why.
            let stop = self
                .drain()
                .await
                .err()
                .unwrap_or(Stop::Store("the signal writer stopped".into()));
            return Err(self.stop_with(stop));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffer);
        let tenants = batch.iter().map(|s| s.tenant_id).collect();
        let prepared = signals::prepare(self.db.backend(), batch);
        self.send(Message::Batch(prepared, tenants)).await
    }

    /// Waits until everything handed to the writer is committed.
    async fn drain(&mut self) -> Result<(), Stop> {
        let Some(Writer { messages, task }) = self.writer.take() else {
            return Ok(());
        };
        drop(messages);
        let (committed, result) = task.await.unwrap_or_else(|e| {
            (
                Committed::default(),
                Err(Stop::Store(format!("the signal writer failed: {e}"))),
            )
        });
        self.committed.signals += committed.signals;
        if committed.position.is_some() {
            self.committed.position = committed.position;
        }
        result
    }

    fn stop_with(&mut self, stop: Stop) -> String {
        let message = match &stop {
            Stop::LeaseLost => "the lease was lost; another worker owns the job".to_owned(),
            Stop::Shutdown => "stopped by a shutdown".to_owned(),
            Stop::Store(e) => e.clone(),
        };
        self.stopped.get_or_insert(stop);
        message
    }

    /// The run completed: waits until everything is committed; the Signals
    /// its commits stored as new.
    pub async fn finish(mut self) -> Result<u64, Stop> {
        if let Err(e) = self.flush().await {
            return Err(self.stopped.clone().unwrap_or(Stop::Store(e)));
        }
        self.drain().await?;
        Ok(self.committed.signals)
    }

    /// The run failed: what was committed stays (the job resumes from it).
    /// Returns the Signals the commits stored, why the sink stopped the run
    /// (if it did), and the last position committed.
    pub async fn abandon(mut self) -> (u64, Option<Stop>, Option<String>) {
        self.buffer.clear();
        if let Err(stop) = self.drain().await {
            self.stopped.get_or_insert(stop);
        }
        (
            self.committed.signals,
            self.stopped,
            self.committed.position,
        )
    }
}

fn store(e: StoreError) -> Stop {
    Stop::Store(e.to_string())
}

async fn begin(db: &Db, ambient: &Ambient) -> Result<Open, Stop> {
    Ok(Open {
        txn: db
            .begin_write()
            .await
            .map_err(|e| Stop::Store(e.to_string()))?,
        since: ambient.now(),
        signals: 0,
        tenants: HashSet::new(),
    })
}

/// Commits the Signals of `open` with `position` (when there is one), if
/// `worker` still holds the job's lease; announces new ones.
async fn commit(
    db: &Db,
    job: &Uuid,
    worker: &str,
    open: Open,
    position: Option<String>,
    committed: &mut Committed,
) -> Result<(), Stop> {
    let held = store::commit_progress(&open.txn, *job, worker, position.as_deref(), open.signals)
        .await
        .map_err(store)?;
    if !held {
        let _ = open.txn.rollback().await;
        return Err(Stop::LeaseLost);
    }
    open.txn
        .commit()
        .await
        .map_err(|e| Stop::Store(e.to_string()))?;
    if open.signals > 0 {
        db.announce_signals(&open.tenants);
    }
    committed.signals += open.signals;
    if position.is_some() {
        committed.position = position;
    }
    Ok(())
}

#[async_trait::async_trait]
impl SignalSink for CommitSink {
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String> {
        crate::observe::freshness("poll", &signals);
        self.buffer.extend(signals);
        if self.buffer.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn progress(&mut self, position: Value) -> Result<(), String> {
        self.flush().await?;
        self.send(Message::Position(position.to_string())).await?;
        if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
            // Commit where the run is, then stop.
            if let Err(stop) = self.drain().await {
                return Err(self.stop_with(stop));
            }
            return Err(self.stop_with(Stop::Shutdown));
        }
        Ok(())
    }
}

//! A run's Signals on their way to storage. They are buffered, then committed
//! in short transactions together with the run's position (every
//! [`COMMIT_PAGES`] pages, [`COMMIT_SIGNALS`] Signals or [`COMMIT_SECONDS`]),
//! by a writer task, so the next pages are fetched while earlier ones are
//! written. No transaction is open while the run waits for the provider, so
//! SQLite stays writable for everyone else during a sync, and a crash, a
//! shutdown or a lost lease resumes from the last commit. Every commit checks
//! the lease. The checkpoint proper is not the sink's: it is saved with the
//! job's success, after the run completes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::db::Db;
use crate::db::repo::queue as store;
use crate::db::repo::signals;
use crate::domain::{Ambient, Signal};
use crate::engine::poll::SignalSink;

/// Commit at the latest after this many pages...
pub const COMMIT_PAGES: u32 = 10;
/// ...or this many buffered Signals...
pub const COMMIT_SIGNALS: usize = 1_000;
/// ...or this long since the last commit.
pub const COMMIT_SECONDS: i64 = 2;
/// Buffered Signals at most (a page boundary may be far off): beyond, they are
/// committed without a new position.
const MAX_BUFFER: usize = 5_000;
/// Chunks on their way to the writer at most (bounds memory).
const IN_FLIGHT: usize = 2;

/// A chunk of a run to commit.
struct Chunk {
    signals: Vec<Signal>,
    position: Option<String>,
}

/// Why the writer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Another worker holds the job now.
    LeaseLost,
    /// A shutdown asked the run to stop; it committed where it was.
    Shutdown,
    /// Storage failed.
    Store(String),
}

struct Writer {
    chunks: tokio::sync::mpsc::Sender<Chunk>,
    task: tokio::task::JoinHandle<Result<u64, Stop>>,
}

/// What a finished run's sink leaves for the job's final transaction.
#[derive(Debug)]
pub struct Rest {
    /// Signals not committed yet (they go with the checkpoint).
    pub signals: Vec<Signal>,
    /// Signals the sink's commits stored as new.
    pub committed: u64,
}

/// The sink of one run of a job.
pub struct CommitSink {
    db: Db,
    job: Uuid,
    worker: String,
    ambient: Ambient,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    buffer: Vec<Signal>,
    pages: u32,
    since: DateTime<Utc>,
    writer: Option<Writer>,
    committed: u64,
    last_position: Option<String>,
    stopped: Option<Stop>,
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
            since: ambient.now(),
            ambient: ambient.clone(),
            stop,
            buffer: Vec::new(),
            pages: 0,
            writer: None,
            committed: 0,
            last_position: None,
            stopped: None,
        }
    }

    /// Why the run was stopped by its sink, if it was.
    pub fn stopped(&self) -> Option<&Stop> {
        self.stopped.as_ref()
    }

    /// The last position committed (where a new run of the job resumes).
    pub fn last_position(&self) -> Option<&str> {
        self.last_position.as_deref()
    }

    fn start_writer(&self) -> Writer {
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<Chunk>(IN_FLIGHT);
        let (db, job, worker) = (self.db.clone(), self.job, self.worker.clone());
        let task = tokio::spawn(async move {
            let store_error = |e: crate::db::StoreError| Stop::Store(e.to_string());
            let db_error = |e: sea_orm::DbErr| Stop::Store(e.to_string());
            let mut inserted = 0;
            while let Some(chunk) = rx.recv().await {
                let txn = db.begin_write().await.map_err(db_error)?;
                let new = signals::insert(&txn, &chunk.signals)
                    .await
                    .map_err(store_error)?;
                let held =
                    store::commit_progress(&txn, job, &worker, chunk.position.as_deref(), new)
                        .await
                        .map_err(store_error)?;
                if !held {
                    let _ = txn.rollback().await;
                    return Err(Stop::LeaseLost);
                }
                txn.commit().await.map_err(db_error)?;
                inserted += new;
            }
            Ok(inserted)
        });
        Writer { chunks, task }
    }

    /// Hands what is buffered (and the position it reaches) to the writer.
    async fn commit(&mut self, position: Option<String>) -> Result<(), String> {
        let chunk = Chunk {
            signals: std::mem::take(&mut self.buffer),
            position: position.clone(),
        };
        if self.writer.is_none() {
            self.writer = Some(self.start_writer());
        }
        let writer = self.writer.as_ref().expect("started above");
        if writer.chunks.send(chunk).await.is_err() {
            // The writer stopped: it says why.
            let stop = self
                .drain()
                .await
                .err()
                .unwrap_or(Stop::Store("the signal writer stopped".into()));
            return Err(self.stop_with(stop));
        }
        if position.is_some() {
            self.last_position = position;
        }
        self.pages = 0;
        self.since = self.ambient.now();
        Ok(())
    }

    /// Waits until everything handed to the writer is committed.
    async fn drain(&mut self) -> Result<(), Stop> {
        let Some(Writer { chunks, task }) = self.writer.take() else {
            return Ok(());
        };
        drop(chunks);
        match task.await {
            Ok(Ok(inserted)) => {
                self.committed += inserted;
                Ok(())
            }
            Ok(Err(stop)) => Err(stop),
            Err(e) => Err(Stop::Store(format!("the signal writer failed: {e}"))),
        }
    }

    fn stop_with(&mut self, stop: Stop) -> String {
        let message = match &stop {
            Stop::LeaseLost => "the lease was lost; another worker owns the job".to_owned(),
            Stop::Shutdown => "stopped by a shutdown".to_owned(),
            Stop::Store(e) => e.clone(),
        };
        self.stopped = Some(stop);
        message
    }

    /// The run completed: waits for the commits under way and hands back what
    /// is left for the job's final transaction.
    pub async fn finish(mut self) -> Result<Rest, Stop> {
        self.drain().await?;
        Ok(Rest {
            signals: std::mem::take(&mut self.buffer),
            committed: self.committed,
        })
    }

    /// The run failed: what was committed stays (the job resumes from it);
    /// the rest is dropped. Returns the Signals the commits stored.
    pub async fn abandon(mut self) -> (u64, Option<Stop>) {
        self.buffer.clear();
        if let Err(stop) = self.drain().await
            && self.stopped.is_none()
        {
            self.stopped = Some(stop);
        }
        (self.committed, self.stopped)
    }
}

#[async_trait::async_trait]
impl SignalSink for CommitSink {
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String> {
        self.buffer.extend(signals);
        if self.buffer.len() >= MAX_BUFFER {
            self.commit(None).await?;
        }
        Ok(())
    }

    async fn progress(&mut self, position: Value) -> Result<(), String> {
        self.pages += 1;
        let text = position.to_string();
        if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
            // Commit where the run is, then stop.
            self.commit(Some(text)).await?;
            if let Err(stop) = self.drain().await {
                return Err(self.stop_with(stop));
            }
            return Err(self.stop_with(Stop::Shutdown));
        }
        let due = self.pages >= COMMIT_PAGES
            || self.buffer.len() >= COMMIT_SIGNALS
            || self.ambient.now() - self.since >= chrono::Duration::seconds(COMMIT_SECONDS);
        if due {
            self.commit(Some(text)).await?;
        }
        Ok(())
    }
}

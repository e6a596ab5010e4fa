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
//!
//! On PostgreSQL the database's work on a run's Signals, not the run's own,
//! bounds a sync (benches/peer.sh under perf), so the writer stores them on
//! [`PG_LANES`] connections at once: each Signal goes to the lane its id picks
//! (so two lanes never insert the same Signal and never wait for each other's
//! row locks), and a commit commits the other lanes' transactions, each with
//! its own count and lease check, before its own with the position. A crash
//! between the two leaves Signals stored past the committed position: the
//! resumed run fetches them again and skips them (the id is the dedupe key),
//! so each is stored and counted once.

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
/// Write lanes (connections) of a run on PostgreSQL; SQLite has one writer.
pub const PG_LANES: usize = 2;

/// What the run hands the writer, in order.
enum Message {
    /// Signals to store on a lane (their statements built by the run, so the
    /// writer only waits for the database), and whose they are.
    Batch(usize, signals::Prepared, HashSet<TenantId>),
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

/// What the writer asks a lane beyond its own.
enum LaneOp {
    /// Store these in the lane's transaction (begun on the first).
    Store(signals::Prepared),
    /// Commit the lane's transaction; answers how many new Signals it stored.
    Commit(tokio::sync::oneshot::Sender<Result<u64, Stop>>),
}

/// A lane of the writer beyond its own: a task storing its share of the run's
/// Signals in a transaction of its own connection.
struct Lane {
    ops: tokio::sync::mpsc::Sender<LaneOp>,
    task: tokio::task::JoinHandle<()>,
}

/// The sink of one run of a job.
pub struct CommitSink {
    db: Db,
    job: Uuid,
    worker: String,
    ambient: Ambient,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Signals not yet handed to the writer, by lane.
    buffers: Vec<Vec<Signal>>,
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
            buffers: (0..lanes(db)).map(|_| Vec::new()).collect(),
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
        let lanes: Vec<Lane> = (1..self.buffers.len())
            .map(|_| start_lane(&self.db, self.job, &self.worker))
            .collect();
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
                                        commit(&db, &job, &worker, &lanes, o, position.take(), &mut committed).await?;
                                        continue;
                                    }
                                }
                            }
                        },
                    };
                    let Some(message) = message else {
                        if let Some(o) = open.take() {
                            commit(&db, &job, &worker, &lanes, o, position.take(), &mut committed).await?;
                        } else if position.is_some() {
                            let o = begin(&db, &ambient).await?;
                            commit(&db, &job, &worker, &lanes, o, position.take(), &mut committed).await?;
                        }
                        return Ok(());
                    };
                    if open.is_none() {
                        open = Some(begin(&db, &ambient).await?);
                    }
                    let o = open.as_mut().expect("opened above");
                    match message {
                        Message::Batch(0, batch, tenants) => {
                            o.tenants.extend(tenants);
                            o.signals += signals::insert_prepared(&o.txn, batch)
                                .await
                                .map_err(store)?;
                        }
                        Message::Batch(lane, batch, tenants) => {
                            o.tenants.extend(tenants);
                            lanes[lane - 1]
                                .ops
                                .send(LaneOp::Store(batch))
                                .await
                                .map_err(|_| lane_stopped())?;
                        }
                        Message::Position(p) => position = Some(p),
                    }
                    if ambient.now() >= o.deadline() {
                        let o = open.take().expect("open");
                        commit(&db, &job, &worker, &lanes, o, position.take(), &mut committed).await?;
                    }
                }
            }
            .await;
            // The lanes roll back what they still hold.
            for lane in lanes {
                drop(lane.ops);
                let _ = lane.task.await;
            }
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

    /// Hands the writer what `lane` holds.
    async fn flush(&mut self, lane: usize) -> Result<(), String> {
        if self.buffers[lane].is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffers[lane]);
        let tenants = batch.iter().map(|s| s.tenant_id).collect();
        let prepared = signals::prepare(self.db.backend(), batch);
        self.send(Message::Batch(lane, prepared, tenants)).await
    }

    /// Hands the writer everything held.
    async fn flush_all(&mut self) -> Result<(), String> {
        for lane in 0..self.buffers.len() {
            self.flush(lane).await?;
        }
        Ok(())
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
        if let Err(e) = self.flush_all().await {
            return Err(self.stopped.clone().unwrap_or(Stop::Store(e)));
        }
        self.drain().await?;
        Ok(self.committed.signals)
    }

    /// The run failed: what was committed stays (the job resumes from it).
    /// Returns the Signals the commits stored, why the sink stopped the run
    /// (if it did), and the last position committed.
    pub async fn abandon(mut self) -> (u64, Option<Stop>, Option<String>) {
        self.buffers.iter_mut().for_each(Vec::clear);
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

/// Commits the other `lanes`, then the Signals of `open` with `position`
/// (when there is one), each if `worker` still holds the job's lease;
/// announces new ones.
async fn commit(
    db: &Db,
    job: &Uuid,
    worker: &str,
    lanes: &[Lane],
    open: Open,
    position: Option<String>,
    committed: &mut Committed,
) -> Result<(), Stop> {
    let mut by_lanes = 0;
    let mut lanes_result = Ok(());
    for lane in lanes {
        match lane.commit().await {
            Ok(n) => by_lanes += n,
            Err(stop) => {
                lanes_result = Err(stop);
                break;
            }
        }
    }
    committed.signals += by_lanes;
    let result = match lanes_result {
        Ok(()) => commit_txn(open.txn, job, worker, position.as_deref(), open.signals).await,
        Err(stop) => {
            let _ = open.txn.rollback().await;
            Err(stop)
        }
    };
    let mine = if result.is_ok() { open.signals } else { 0 };
    if by_lanes + mine > 0 {
        db.announce_signals(&open.tenants);
    }
    result?;
    committed.signals += open.signals;
    if position.is_some() {
        committed.position = position;
    }
    Ok(())
}

/// Commits `txn` with its `signals` new ones counted and `position` (when
/// there is one) recorded, if `worker` still holds the job's lease.
async fn commit_txn(
    txn: sea_orm::DatabaseTransaction,
    job: &Uuid,
    worker: &str,
    position: Option<&str>,
    signals: u64,
) -> Result<(), Stop> {
    let held = store::commit_progress(&txn, *job, worker, position, signals)
        .await
        .map_err(store)?;
    if !held {
        let _ = txn.rollback().await;
        return Err(Stop::LeaseLost);
    }
    txn.commit().await.map_err(|e| Stop::Store(e.to_string()))
}

/// How many lanes a run writes on.
fn lanes(db: &Db) -> usize {
    if db.backend() == sea_orm::DbBackend::Postgres {
        PG_LANES
    } else {
        1
    }
}

/// The lane of a Signal: picked by its id (whose last bytes are a hash), so a
/// Signal a run meets twice goes to the same lane both times.
fn lane_of(signal: &Signal, lanes: usize) -> usize {
    usize::from(signal.id.as_bytes()[15]) % lanes
}

fn lane_stopped() -> Stop {
    Stop::Store("a signal writer lane stopped".into())
}

impl Lane {
    /// Commits what the lane stored since its last commit; how many were new.
    async fn commit(&self) -> Result<u64, Stop> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ops
            .send(LaneOp::Commit(reply))
            .await
            .map_err(|_| lane_stopped())?;
        answer.await.map_err(|_| lane_stopped())?
    }
}

/// Starts a lane storing Signals for `job` while `worker` holds its lease.
/// After a failure it drops what it is sent and answers the next commit
/// with the failure.
fn start_lane(db: &Db, job: Uuid, worker: &str) -> Lane {
    let (ops, mut rx) = tokio::sync::mpsc::channel::<LaneOp>(IN_FLIGHT / 2);
    let (db, worker) = (db.clone(), worker.to_owned());
    let task = tokio::spawn(async move {
        let mut open: Option<(sea_orm::DatabaseTransaction, u64)> = None;
        let mut failed: Option<Stop> = None;
        while let Some(op) = rx.recv().await {
            match op {
                LaneOp::Store(_) if failed.is_some() => {}
                LaneOp::Store(batch) => {
                    if open.is_none() {
                        match db.begin_write().await {
                            Ok(txn) => open = Some((txn, 0)),
                            Err(e) => {
                                failed = Some(Stop::Store(e.to_string()));
                                continue;
                            }
                        }
                    }
                    let (txn, stored) = open.as_mut().expect("begun above");
                    match signals::insert_prepared(txn, batch).await {
                        Ok(n) => *stored += n,
                        Err(e) => {
                            failed = Some(store(e));
                            if let Some((txn, _)) = open.take() {
                                let _ = txn.rollback().await;
                            }
                        }
                    }
                }
                LaneOp::Commit(reply) => {
                    let result = match (failed.take(), open.take()) {
                        (Some(stop), _) => Err(stop),
                        (None, None) => Ok(0),
                        (None, Some((txn, n))) => {
                            commit_txn(txn, &job, &worker, None, n).await.map(|()| n)
                        }
                    };
                    let _ = reply.send(result);
                }
            }
        }
        if let Some((txn, _)) = open.take() {
            let _ = txn.rollback().await;
        }
    });
    Lane { ops, task }
}

#[async_trait::async_trait]
impl SignalSink for CommitSink {
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String> {
        crate::observe::freshness("poll", &signals);
        let lanes = self.buffers.len();
        for signal in signals {
            self.buffers[lane_of(&signal, lanes)].push(signal);
        }
        for lane in 0..lanes {
            if self.buffers[lane].len() >= BATCH {
                self.flush(lane).await?;
            }
        }
        Ok(())
    }

    async fn progress(&mut self, position: Value) -> Result<(), String> {
        self.flush_all().await?;
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

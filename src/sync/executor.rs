//! The executor: claims a due job, runs the provider's `Connector::sync`, and
//! commits the run's Signals, its new checkpoints and the job's success in ONE
//! transaction, only while it still holds the lease. A failed run
//! commits nothing: the checkpoint never moves on failure. `try_execute_next`
//! runs exactly one job, so tests step the queue instead of sleeping.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::queue::{self, QueueSettings};
use super::tokens::{self, TokenError};
use crate::connector::{ConnectionContext, ConnectorError, SyncMode};
use crate::db::entities::sync_job;
use crate::db::repo::jobs::{JobState, JobType};
use crate::db::repo::{connections, cursors, signals};
use crate::db::{Db, StoreError};
use crate::domain::{ConnectionId, Signal, TenantId};
use crate::engine::http::HttpError;
use crate::engine::oauth::OAuthError;
use crate::engine::poll::{PollError, SignalSink};
use crate::services::Services;

/// Signals buffered before they are written into the run's transaction (one
/// statement each; bigger batches measured slower and used more memory).
const FLUSH_AT: usize = 100;

/// How an executor behaves.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// This worker's name in leases.
    pub worker_id: String,
    /// Queue behaviour.
    pub queue: QueueSettings,
    /// Jobs run at once by `run_workers`.
    pub concurrency: usize,
    /// Idle wait between queue polls.
    pub idle: std::time::Duration,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            worker_id: format!("worker-{}", Uuid::now_v7()),
            queue: QueueSettings::default(),
            concurrency: 4,
            idle: std::time::Duration::from_secs(1),
        }
    }
}

/// What one execution did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// The job.
    pub job_id: Uuid,
    /// Its state afterwards (`queued` again when rate-limited).
    pub state: JobState,
    /// Signals newly stored.
    pub signals: u64,
    /// The error, when it did not succeed.
    pub error: Option<String>,
}

/// Runs jobs.
pub struct Executor {
    services: Arc<Services>,
    settings: ExecutorSettings,
}

enum Outcome {
    Succeeded {
        signals: u64,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    RateLimited {
        error: String,
        retry_after: std::time::Duration,
    },
    LeaseLost,
}

/// Batches in flight between the run and its writer (bounds memory).
const IN_FLIGHT: usize = 2;

/// Writes a run's Signals into one transaction, on a writer task so the next
/// pages are fetched and mapped while earlier ones are written. The
/// transaction is opened at the first write and handed back by `finish`; if the
/// run fails or is dropped, the writer ends and its transaction rolls back.
struct TxnSink {
    db: Db,
    buffer: Vec<Signal>,
    writer: Option<Writer>,
}

struct Writer {
    batches: tokio::sync::mpsc::Sender<Vec<Signal>>,
    task: tokio::task::JoinHandle<Result<(DatabaseTransaction, u64), String>>,
}

/// What the writer stored.
struct Written {
    txn: Option<DatabaseTransaction>,
    inserted: u64,
}

impl TxnSink {
    fn new(db: &Db) -> Self {
        TxnSink {
            db: db.clone(),
            buffer: Vec::new(),
            writer: None,
        }
    }

    fn start_writer(&self) -> Writer {
        let (batches, mut rx) = tokio::sync::mpsc::channel::<Vec<Signal>>(IN_FLIGHT);
        let db = self.db.clone();
        let task = tokio::spawn(async move {
            let txn = db.begin_write().await.map_err(|e| e.to_string())?;
            let mut inserted = 0;
            while let Some(batch) = rx.recv().await {
                inserted += signals::insert(&txn, &batch)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok((txn, inserted))
        });
        Writer { batches, task }
    }

    async fn send(&mut self) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffer);
        if self.writer.is_none() {
            self.writer = Some(self.start_writer());
        }
        let writer = self.writer.as_mut().expect("started above");
        if writer.batches.send(batch).await.is_err() {
            // The writer stopped early: it failed; its error says why.
            let writer = self.writer.take().expect("present");
            return Err(match writer.task.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => "the signal writer stopped".into(),
                Err(e) => format!("the signal writer failed: {e}"),
            });
        }
        Ok(())
    }

    /// Writes what is buffered and waits for the writer: the run's transaction
    /// (none when nothing was written) and how many Signals were new.
    async fn finish(&mut self) -> Result<Written, String> {
        self.send().await?;
        let Some(Writer { batches, task }) = self.writer.take() else {
            return Ok(Written {
                txn: None,
                inserted: 0,
            });
        };
        drop(batches);
        let (txn, inserted) = task
            .await
            .map_err(|e| format!("the signal writer failed: {e}"))??;
        Ok(Written {
            txn: Some(txn),
            inserted,
        })
    }

    /// Drops what was written: the writer ends and its transaction rolls back.
    async fn abandon(&mut self) {
        self.buffer.clear();
        if let Some(Writer { batches, task }) = self.writer.take() {
            drop(batches);
            if let Ok(Ok((txn, _))) = task.await
                && let Err(e) = txn.rollback().await
            {
                tracing::warn!(error = %e, "rolling back a failed run");
            }
        }
    }
}

#[async_trait::async_trait]
impl SignalSink for TxnSink {
    async fn write(&mut self, signals: Vec<Signal>) -> Result<(), String> {
        self.buffer.extend(signals);
        if self.buffer.len() >= FLUSH_AT {
            self.send().await?;
        }
        Ok(())
    }
}

/// Aborts the heartbeat when the job's future ends or is dropped (a crash or an
/// aborted task).
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn retryable(e: &ConnectorError) -> bool {
    match e {
        ConnectorError::Poll(PollError::Http(HttpError::Transport { .. }) | PollError::Sink(_))
        | ConnectorError::OAuth(OAuthError::Http(HttpError::Transport { .. })) => true,
        ConnectorError::Poll(PollError::Http(HttpError::Status { status, .. }))
        | ConnectorError::OAuth(OAuthError::Http(HttpError::Status { status, .. })) => {
            *status >= 500
        }
        _ => false,
    }
}

impl Executor {
    /// An executor over the node's services.
    pub fn new(services: Arc<Services>, settings: ExecutorSettings) -> Self {
        Executor { services, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &ExecutorSettings {
        &self.settings
    }

    /// Claims and runs one due job; `None` when nothing is due.
    pub async fn try_execute_next(&self) -> Result<Option<JobReport>, StoreError> {
        let db = &self.services.db;
        let worker = &self.settings.worker_id;
        let Some(job) = queue::claim(db, worker, Utc::now(), &self.settings.queue).await? else {
            return Ok(None);
        };
        let heartbeat = {
            let db = db.clone();
            let worker = worker.clone();
            let settings = self.settings.queue.clone();
            let job_id = job.id;
            let every = (settings.lease / 3)
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(10));
            Heartbeat(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match queue::heartbeat(&db, job_id, &worker, Utc::now(), &settings).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }))
        };
        let started = Instant::now();
        let outcome = self.run(&job).await;
        drop(heartbeat);
        let report = self.finish(&job, outcome).await?;
        metrics::counter!("sync_jobs_total", "provider" => job.provider_id.clone(), "state" => report.state.as_str())
            .increment(1);
        metrics::histogram!("sync_job_duration_seconds", "provider" => job.provider_id.clone())
            .record(started.elapsed().as_secs_f64());
        Ok(Some(report))
    }

    async fn finish(
        &self,
        job: &sync_job::Model,
        outcome: Result<Outcome, StoreError>,
    ) -> Result<JobReport, StoreError> {
        let db = &self.services.db;
        let worker = &self.settings.worker_id;
        let tenant = TenantId::from_uuid(job.tenant_id);
        let connection = ConnectionId::from_uuid(job.connection_id);
        let now = Utc::now();
        let outcome = match outcome {
            Ok(o) => o,
            // A storage error while running: retry later.
            Err(e) => Outcome::Failed {
                error: e.to_string(),
                retryable: true,
            },
        };
        let report = |state, signals, error| JobReport {
            job_id: job.id,
            state,
            signals,
            error,
        };
        Ok(match outcome {
            Outcome::Succeeded { signals } => {
                connections::record_health(db, tenant, connection, Ok(()), false).await?;
                metrics::counter!("signals_ingested_total", "provider" => job.provider_id.clone(), "source" => "poll")
                    .increment(signals);
                report(JobState::Succeeded, signals, None)
            }
            Outcome::Failed { error, retryable } => {
                tracing::warn!(job = %job.id, provider = %job.provider_id, connection = %connection, error = %error, "sync failed");
                let state = queue::fail(
                    db,
                    job,
                    worker,
                    &error,
                    retryable,
                    now,
                    &self.settings.queue,
                )
                .await?;
                connections::record_health(db, tenant, connection, Err(&error), false).await?;
                report(state.unwrap_or(JobState::Running), 0, Some(error))
            }
            Outcome::RateLimited { error, retry_after } => {
                metrics::counter!("rate_limit_hits_total", "provider" => job.provider_id.clone())
                    .increment(1);
                let run_after = now
                    + chrono::Duration::from_std(retry_after)
                        .unwrap_or(chrono::Duration::seconds(60));
                queue::reschedule_rate_limited(db, job.id, worker, run_after, &error).await?;
                report(JobState::Queued, 0, Some(error))
            }
            Outcome::LeaseLost => report(
                JobState::Running,
                0,
                Some("the lease was lost; another worker owns the job".into()),
            ),
        })
    }

    async fn run(&self, job: &sync_job::Model) -> Result<Outcome, StoreError> {
        let services = &self.services;
        let db = &services.db;
        let tenant = TenantId::from_uuid(job.tenant_id);
        let connection_id = ConnectionId::from_uuid(job.connection_id);
        let permanent = |error: String| {
            Ok(Outcome::Failed {
                error,
                retryable: false,
            })
        };
        let Some(row) = connections::row(db, tenant, connection_id).await? else {
            return permanent("the connection no longer exists".into());
        };
        let Some(entry) = services.registry.get(&job.provider_id) else {
            return permanent(format!("provider `{}` is not registered", job.provider_id));
        };
        let connector = entry.connector.as_ref();
        if !connector.polls() {
            return permanent(format!("provider `{}` does not poll", job.provider_id));
        }
        if !row.enabled {
            return permanent("the connection is disabled".into());
        }
        let previous = cursors::load(db, tenant, connection_id).await?;
        queue::set_cursor_before(db, job.id, cursors::describe(&previous)).await?;
        let mode = match JobType::parse(&job.job_type) {
            Some(JobType::Full) => SyncMode::Full,
            _ => SyncMode::Incremental,
        };
        let oauth = connector.oauth().is_some();

        let mut refreshed = false;
        loop {
            let now = Utc::now();
            let credentials =
                match tokens::credentials(services, connector, &row, refreshed, now).await {
                    Ok(c) => c,
                    Err(e) => {
                        return Ok(Outcome::Failed {
                            retryable: matches!(e, TokenError::Refresh(_) | TokenError::Store(_)),
                            error: e.to_string(),
                        });
                    }
                };
            let ctx = ConnectionContext {
                http: &services.http,
                credentials: &credentials,
                tenant_id: tenant,
                connection_id,
                config: &row.config,
                now,
            };
            let mut sink = TxnSink::new(db);
            let synced = connector.sync(&ctx, mode, &previous, &mut sink).await;
            if synced.is_err() {
                sink.abandon().await;
            }
            match synced {
                Ok(outcome) => {
                    let written = match sink.finish().await {
                        Ok(w) => w,
                        Err(e) => {
                            sink.abandon().await;
                            return Ok(Outcome::Failed {
                                error: format!("cannot store signals: {e}"),
                                retryable: true,
                            });
                        }
                    };
                    let txn = match written.txn {
                        Some(t) => t,
                        None => db.begin_write().await?,
                    };
                    cursors::save(&txn, tenant, connection_id, &outcome.checkpoints, now).await?;
                    let held = queue::succeed(
                        &txn,
                        job.id,
                        &self.settings.worker_id,
                        cursors::describe(&outcome.checkpoints),
                        written.inserted,
                        now,
                    )
                    .await?;
                    if !held {
                        txn.rollback().await?;
                        return Ok(Outcome::LeaseLost);
                    }
                    txn.commit().await?;
                    return Ok(Outcome::Succeeded {
                        signals: written.inserted,
                    });
                }
                Err(ConnectorError::Poll(PollError::Http(HttpError::Status {
                    status: 401,
                    ..
                }))) if oauth && !refreshed => {
                    // Once: the token may have been revoked or rotated early.
                    refreshed = true;
                    continue;
                }
                Err(ConnectorError::Poll(PollError::Http(HttpError::RateLimited {
                    host,
                    retry_after,
                }))) => {
                    return Ok(Outcome::RateLimited {
                        error: format!("rate limited by {host}"),
                        retry_after,
                    });
                }
                Err(e) => {
                    return Ok(Outcome::Failed {
                        retryable: retryable(&e),
                        error: e.to_string(),
                    });
                }
            }
        }
    }

    /// Runs `concurrency` worker loops until `shutdown` turns true.
    pub async fn run_workers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut handles = Vec::new();
        for _ in 0..self.settings.concurrency.max(1) {
            let executor = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            handles.push(tokio::spawn(async move {
                loop {
                    if *shutdown.borrow() {
                        break;
                    }
                    let idle = match executor.try_execute_next().await {
                        Ok(Some(_)) => false,
                        Ok(None) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "the job queue failed");
                            true
                        }
                    };
                    if idle {
                        tokio::select! {
                            _ = tokio::time::sleep(executor.settings.idle) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            }));
        }
        let _ = shutdown.changed().await;
        for h in handles {
            let _ = h.await;
        }
    }
}

//! The executor: claims a due job and runs it through the provider's
//! `Connector`. A sync (`Connector::sync`) commits the run's Signals, its new
//! checkpoints and the job's success in ONE transaction, only while it still
//! holds the lease; a failed run commits nothing: the checkpoint never moves on
//! failure. A lifecycle hook (`Connector::hook`) commits what it changed on the
//! connection with the job's success. Failures are classified by
//! `ConnectorError` alone, whatever the connector. `try_execute_next` runs
//! exactly one job, so tests step the queue instead of sleeping.

use std::sync::Arc;

use futures_util::FutureExt;
use tracing::Instrument;
use uuid::Uuid;

use super::open::{self, OpenError, Opened};
use super::queue::{self, QueueSettings};
use super::sink::{CommitSink, Stop};
use super::tokens::TokenError;
use crate::connector::{ConnectorError, Hook, SyncMode};
use crate::db::StoreError;
use crate::db::repo::connections::{self, DELETING, HookUpdate};
use crate::db::repo::jobs::{Job, JobState, JobType};
use crate::db::repo::queue as store;
use crate::db::repo::{cursors, providers};
use crate::domain::Scrubber;
use crate::services::Services;

/// Signals stored by one run after which SQLite's write-ahead log is
/// checkpointed and truncated.
pub const CHECKPOINT_WAL_AFTER: u64 = 10_000;

/// Reclaims (its worker stopped without finishing it) after which a job is
/// quarantined: failed for good instead of crashing worker after worker.
pub const MAX_RECLAIMS: i32 = 3;

/// How long a job whose provider this node does not know (but the database
/// does) waits before it is tried again, on any node.
pub const UNKNOWN_PROVIDER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long after its creation a job is still put back because its node
/// cannot run its provider; later it fails (no node of the deployment could).
pub const UNKNOWN_PROVIDER_PATIENCE: chrono::Duration = chrono::Duration::hours(1);

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
    /// What it ran.
    pub job_type: JobType,
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
    /// Put back without spending the attempt (its provider is not loaded on
    /// this node yet).
    Released {
        error: String,
        retry_after: std::time::Duration,
    },
    /// A shutdown stopped the run at a page boundary after a commit.
    Stopped,
    LeaseLost,
}

impl Outcome {
    fn scrubbed(self, scrubber: impl FnOnce() -> Scrubber) -> Outcome {
        match self {
            Outcome::Failed { .. } | Outcome::RateLimited { .. } => {}
            other => return other,
        }
        let scrubber = scrubber();
        match self {
            Outcome::Failed { error, retryable } => Outcome::Failed {
                error: scrubber.scrub(&error),
                retryable,
            },
            Outcome::RateLimited { error, retry_after } => Outcome::RateLimited {
                error: scrubber.scrub(&error),
                retry_after,
            },
            other => other,
        }
    }
}

/// The outcome of a failed connector call: rate limits wait without spending
/// an attempt; anything else is retried when it may pass.
fn failure(e: ConnectorError) -> Outcome {
    match e {
        ConnectorError::RateLimited { host, retry_after } => Outcome::RateLimited {
            error: format!("rate limited by {host}"),
            retry_after,
        },
        e => Outcome::Failed {
            retryable: e.is_retryable(),
            error: e.to_string(),
        },
    }
}

/// The outcome when no usable credentials could be had.
fn token_failure(e: TokenError) -> Outcome {
    Outcome::Failed {
        retryable: e.is_retryable(),
        error: e.to_string(),
    }
}

/// What a run its sink stopped comes to.
fn stopped_by(stop: Stop) -> Outcome {
    match stop {
        Stop::Shutdown => Outcome::Stopped,
        Stop::LeaseLost => Outcome::LeaseLost,
        Stop::Store(e) => Outcome::Failed {
            error: format!("cannot store signals: {e}"),
            retryable: true,
        },
    }
}

/// A sync attempt's end as its connection shows it (`last_sync_status` and
/// how long it ran) when it ended in `state`: hooks, and attempts put back
/// without an outcome (rate limited, stopped, the lease lost), leave the last
/// sync as it was.
fn sync_end(job: &Job, state: JobState, ms: i64) -> Option<(&'static str, i64)> {
    if !job.job_type.is_sync() {
        return None;
    }
    let status = match state {
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Retrying => "retrying",
        JobState::Queued | JobState::Running => return None,
    };
    Some((status, ms))
}

/// Aborts the heartbeat when the job's future ends or is dropped (a crash or an
/// aborted task).
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hook_of(job_type: JobType) -> Option<Hook> {
    match job_type {
        JobType::Setup => Some(Hook::Setup),
        JobType::Renew => Some(Hook::Renew),
        JobType::Teardown => Some(Hook::Teardown),
        JobType::Full | JobType::Incremental => None,
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
        self.try_execute_next_until(None).await
    }

    /// As [`Executor::try_execute_next`]; a running sync stops at its next
    /// page boundary (after committing there) once `stop` turns true.
    pub async fn try_execute_next_until(
        &self,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Option<JobReport>, StoreError> {
        let services = &self.services;
        let db = &services.db;
        let worker = &self.settings.worker_id;
        let started = services.ambient.now();
        let Some(job) = queue::claim(db, worker, started, &self.settings.queue).await? else {
            return Ok(None);
        };
        let lag = (started - job.run_after).num_milliseconds().max(0) as f64 / 1e3;
        metrics::histogram!("sync_job_lag_seconds", "provider" => job.provider.clone()).record(lag);
        // Every line logged while it runs carries the job's ids (a span at the
        // highest level, so a filter that lets any line through keeps it).
        let span = tracing::error_span!(
            "job",
            job_id = %job.id,
            tenant_id = %job.tenant_id,
            provider = %job.provider,
            connection_id = %job.connection_id,
            job_type = job.job_type.as_str(),
        );
        self.execute(job, stop, started)
            .instrument(span)
            .await
            .map(Some)
    }

    /// Runs a claimed job to its end and records it.
    async fn execute(
        &self,
        job: Job,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Result<JobReport, StoreError> {
        let services = &self.services;
        let db = &services.db;
        let worker = &self.settings.worker_id;
        let heartbeat = {
            let db = db.clone();
            let worker = worker.clone();
            let lease = self.settings.queue.lease;
            let ambient = services.ambient.clone();
            let job_id = job.id;
            let every = (lease / 3)
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(10));
            Heartbeat(tokio::spawn(async move {
                loop {
                    ambient.sleep(every).await;
                    match store::heartbeat(&db, job_id, &worker, ambient.now() + lease).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }))
        };
        // A panic in a connector or the engine fails this job (an attempt,
        // with the panic's message), never the worker or the process.
        let outcome = match std::panic::AssertUnwindSafe(self.run(&job, stop))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(job = %job.id, provider = %job.provider, panic = %message, "a job panicked");
                Ok(Outcome::Failed {
                    error: format!("the job panicked: {message}"),
                    retryable: true,
                })
            }
        };
        drop(heartbeat);
        let report = self.finish(&job, outcome, started).await?;
        metrics::counter!("sync_jobs_total", "provider" => job.provider.clone(), "state" => report.state.as_str())
            .increment(1);
        let seconds = (services.ambient.now() - started)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        metrics::histogram!("sync_job_duration_seconds", "provider" => job.provider.clone())
            .record(seconds.max(0.0));
        Ok(report)
    }

    async fn finish(
        &self,
        job: &Job,
        outcome: Result<Outcome, StoreError>,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Result<JobReport, StoreError> {
        let services = &self.services;
        let db = &services.db;
        let worker = &self.settings.worker_id;
        let tenant = job.tenant_id;
        let connection = job.connection_id;
        let now = services.ambient.now();
        let ran_ms = (now - started).num_milliseconds().max(0);
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
            job_type: job.job_type,
            state,
            signals,
            error,
        };
        Ok(match outcome {
            Outcome::Succeeded { signals } => {
                let sync = sync_end(job, JobState::Succeeded, ran_ms);
                connections::record_health(db, tenant, connection, Ok(()), false, sync).await?;
                if job.job_type.is_sync() {
                    metrics::counter!("signals_ingested_total", "provider" => job.provider.clone(), "source" => "poll")
                        .increment(signals);
                }
                report(JobState::Succeeded, signals, None)
            }
            Outcome::Failed { error, retryable } => {
                tracing::warn!(job = %job.id, job_type = job.job_type.as_str(), provider = %job.provider, connection = %connection, error = %error, "job failed");
                let retry_at = self
                    .settings
                    .queue
                    .retry_at(job, retryable, now, &services.ambient);
                let state = store::fail(db, job.id, worker, &error, retry_at, now).await?;
                if state == Some(JobState::Failed) && job.job_type == JobType::Teardown {
                    // A teardown that cannot run still ends the deletion (the
                    // scheduler's sweep finishes it if this node stops here).
                    connections::purge(db.conn(), tenant, connection).await?;
                }
                let sync = state.and_then(|s| sync_end(job, s, ran_ms));
                connections::record_health(db, tenant, connection, Err(&error), false, sync)
                    .await?;
                report(state.unwrap_or(JobState::Running), 0, Some(error))
            }
            Outcome::RateLimited { error, retry_after } => {
                metrics::counter!("rate_limit_hits_total", "provider" => job.provider.clone())
                    .increment(1);
                let run_after = now
                    + chrono::Duration::from_std(retry_after)
                        .unwrap_or(chrono::Duration::seconds(60));
                store::reschedule_rate_limited(db, job.id, worker, run_after, &error).await?;
                report(JobState::Queued, 0, Some(error))
            }
            Outcome::Released { error, retry_after } => {
                tracing::info!(job = %job.id, provider = %job.provider, "job released: its provider is not loaded on this node yet");
                let run_after = now + chrono::Duration::from_std(retry_after).unwrap_or_default();
                store::reschedule_rate_limited(db, job.id, worker, run_after, &error).await?;
                report(JobState::Queued, 0, Some(error))
            }
            Outcome::Stopped => {
                store::release_stopped(db, job.id, worker, now).await?;
                tracing::info!("job handed back: stopped by a shutdown; it resumes on any node");
                db.wake_workers().await;
                report(
                    JobState::Queued,
                    0,
                    Some("stopped by a shutdown; resumes from its last commit".into()),
                )
            }
            Outcome::LeaseLost => report(
                JobState::Running,
                0,
                Some("the lease was lost; another worker owns the job".into()),
            ),
        })
    }

    async fn run(
        &self,
        job: &Job,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Outcome, StoreError> {
        let permanent = |error: String| {
            Ok(Outcome::Failed {
                error,
                retryable: false,
            })
        };
        if job.reclaims > MAX_RECLAIMS {
            return permanent(format!(
                "quarantined: its worker stopped {} times without finishing it (a crash or a kill); the job is not run again",
                job.reclaims
            ));
        }
        let opened = match self.open(job).await {
            Ok(o) => o,
            Err(OpenError::Store(e)) => return Err(e),
            Err(OpenError::UnknownProvider(provider))
                if self.services.ambient.now() - job.created_at < UNKNOWN_PROVIDER_PATIENCE
                    && providers::get(&self.services.db, &provider)
                        .await?
                        .is_some() =>
            {
                // Registered on another node, and not (yet) loadable here.
                return Ok(Outcome::Released {
                    error: format!(
                        "provider `{provider}` is not loaded on this node yet; the job is tried again"
                    ),
                    retry_after: UNKNOWN_PROVIDER_RETRY,
                });
            }
            Err(OpenError::UnknownProvider(provider)) => {
                return permanent(format!(
                    "provider `{provider}` is not registered, or no node could run it within {} minutes of the job's creation",
                    UNKNOWN_PROVIDER_PATIENCE.num_minutes()
                ));
            }
            Err(e) => return permanent(e.to_string()),
        };
        let outcome = match hook_of(job.job_type) {
            Some(hook) => self.run_hook(job, &opened, hook).await,
            None => self.run_sync(job, &opened, stop).await,
        };
        // Nothing stored, returned or logged about the run repeats a secret.
        Ok(outcome?.scrubbed(|| opened.scrubber(&self.services)))
    }

    /// Opens the job's connection; when its provider is unknown here, this
    /// node first catches up with the stored providers (another node may have
    /// registered it a moment ago).
    async fn open(&self, job: &Job) -> Result<Opened, OpenError> {
        let services = &self.services;
        match open::open(services, job.tenant_id, job.connection_id).await {
            Err(OpenError::UnknownProvider(_)) => {
                crate::upkeep::providers::catch_up(&services.db, &services.registry).await?;
                open::open(services, job.tenant_id, job.connection_id).await
            }
            other => other,
        }
    }

    /// Runs a lifecycle hook and stores what it changed with the job's
    /// success; the teardown of a connection being deleted removes it in the
    /// same transaction. A hook the connection's state has overtaken does
    /// nothing.
    async fn run_hook(
        &self,
        job: &Job,
        opened: &Opened,
        hook: Hook,
    ) -> Result<Outcome, StoreError> {
        let services = &self.services;
        let worker = &self.settings.worker_id;
        let connection = &opened.stored.connection;
        let deleting = connection.status == DELETING;
        let overtaken = match hook {
            Hook::Setup | Hook::Renew => !connection.enabled,
            Hook::Teardown => connection.enabled && !deleting,
        };
        if overtaken {
            let now = services.ambient.now();
            if !store::succeed(services.db.conn(), job.id, worker, None, 0, now).await? {
                return Ok(Outcome::LeaseLost);
            }
            return Ok(Outcome::Succeeded { signals: 0 });
        }
        let mut refreshed = false;
        loop {
            let now = services.ambient.now();
            let credentials = match opened.credentials(services, refreshed, now).await {
                Ok(c) => c,
                Err(e) => return Ok(token_failure(e)),
            };
            let ctx = opened.context(services, &credentials, now, None);
            let outcome = match opened.connector.hook(hook, &ctx).await {
                Ok(o) => o,
                Err(ConnectorError::Unauthorized(_))
                    if opened.connector.capabilities().oauth.is_some() && !refreshed =>
                {
                    refreshed = true;
                    continue;
                }
                Err(e) => return Ok(failure(e)),
            };
            let update = HookUpdate {
                metadata: Some(&outcome.metadata),
                secrets: Some(&outcome.secrets),
                renew_at: if hook == Hook::Teardown {
                    None
                } else {
                    outcome.renew_at
                },
            };
            let finished = services.ambient.now();
            let txn = services.db.begin_write().await?;
            if deleting {
                if !store::succeed(&txn, job.id, worker, None, 0, finished).await? {
                    txn.rollback().await?;
                    return Ok(Outcome::LeaseLost);
                }
                connections::purge(&txn, job.tenant_id, job.connection_id).await?;
                txn.commit().await?;
                return Ok(Outcome::Succeeded { signals: 0 });
            }
            connections::apply_hook(
                &txn,
                &services.keys,
                job.tenant_id,
                job.connection_id,
                update,
                finished,
            )
            .await?;
            if !store::succeed(&txn, job.id, worker, None, 0, finished).await? {
                txn.rollback().await?;
                return Ok(Outcome::LeaseLost);
            }
            txn.commit().await?;
            return Ok(Outcome::Succeeded { signals: 0 });
        }
    }

    async fn run_sync(
        &self,
        job: &Job,
        opened: &Opened,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<Outcome, StoreError> {
        let services = &self.services;
        let db = &services.db;
        let worker = &self.settings.worker_id;
        let (tenant, connection_id) = (job.tenant_id, job.connection_id);
        let permanent = |error: String| {
            Ok(Outcome::Failed {
                error,
                retryable: false,
            })
        };
        let connector = opened.connector.as_ref();
        if connector.capabilities().polling.is_none() {
            return permanent(format!("provider `{}` does not poll", job.provider));
        }
        if !opened.stored.connection.enabled {
            return permanent("the connection is disabled".into());
        }
        let previous = cursors::load(db, tenant, connection_id).await?;
        store::set_cursor_before(db, job.id, cursors::describe(&previous)).await?;
        let mode = match job.job_type {
            JobType::Full => SyncMode::Full,
            _ => SyncMode::Incremental,
        };
        let oauth = connector.capabilities().oauth.is_some();
        // Where an interrupted run of this job committed last.
        let mut resume = job.progress.clone();
        let mut committed = 0;

        let mut refreshed = false;
        loop {
            let now = services.ambient.now();
            let credentials = match opened.credentials(services, refreshed, now).await {
                Ok(c) => c,
                Err(e) => return Ok(token_failure(e)),
            };
            let position: Option<serde_json::Value> =
                resume.as_deref().and_then(|p| serde_json::from_str(p).ok());
            let ctx = opened.context(services, &credentials, now, position.as_ref());
            let mut sink = CommitSink::new(db, job.id, worker, &services.ambient, stop.cloned());
            let synced = connector.sync(&ctx, mode, &previous, &mut sink).await;
            let outcome = match synced {
                Ok(outcome) => outcome,
                Err(e) => {
                    let (stored, stopped, position) = sink.abandon().await;
                    committed += stored;
                    self.note_first_signal(opened, committed).await?;
                    if position.is_some() {
                        resume = position;
                    }
                    if let Some(stop) = stopped {
                        return Ok(stopped_by(stop));
                    }
                    match e {
                        ConnectorError::Unauthorized(_) if oauth && !refreshed => {
                            // Once: the token may have been revoked or rotated early.
                            refreshed = true;
                            continue;
                        }
                        e => return Ok(failure(e)),
                    }
                }
            };
            match sink.finish().await {
                Ok(stored) => committed += stored,
                Err(stop) => return Ok(stopped_by(stop)),
            }
            self.note_first_signal(opened, committed).await?;
            // The checkpoint and the job's success, in one short transaction.
            let finished = services.ambient.now();
            let txn = db.begin_write().await?;
            cursors::save(&txn, tenant, connection_id, &outcome.checkpoints, finished).await?;
            let held = store::succeed(
                &txn,
                job.id,
                worker,
                cursors::describe(&outcome.checkpoints),
                0,
                finished,
            )
            .await?;
            if !held {
                txn.rollback().await?;
                return Ok(Outcome::LeaseLost);
            }
            txn.commit().await?;
            if committed >= CHECKPOINT_WAL_AFTER {
                db.checkpoint_wal().await;
            }
            return Ok(Outcome::Succeeded {
                signals: job.signals_emitted.max(0) as u64 + committed,
            });
        }
    }

    /// Once a connection's first Signals are stored: when, and how long after
    /// its creation (`time_to_first_signal_seconds`).
    async fn note_first_signal(&self, opened: &Opened, stored: u64) -> Result<(), StoreError> {
        let c = &opened.stored.connection;
        if stored == 0 || c.first_signal_at.is_some() {
            return Ok(());
        }
        let db = &self.services.db;
        if let Some(after) =
            connections::mark_first_signal(db.conn(), c.tenant_id, c.id, db.now()).await?
        {
            crate::observe::first_signal(&c.provider, after.num_milliseconds() as f64 / 1e3);
        }
        Ok(())
    }

    /// Runs `concurrency` worker loops until `shutdown` turns true.
    pub async fn run_workers(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut handles = Vec::new();
        // Other nodes' enqueues wake this node's idle workers too.
        let db = self.services.db.clone();
        handles.push(tokio::spawn({
            let shutdown = shutdown.clone();
            async move { db.relay_announcements(shutdown).await }
        }));
        for _ in 0..self.settings.concurrency.max(1) {
            let executor = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            let wakeups = executor.services.db.wakeups();
            handles.push(tokio::spawn(async move {
                loop {
                    if *shutdown.borrow() {
                        break;
                    }
                    // Listening before looking: an enqueue committed while
                    // this worker finds the queue empty still wakes it.
                    let woken = wakeups.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    let idle = match executor.try_execute_next_until(Some(&shutdown)).await {
                        Ok(Some(_)) => false,
                        Ok(None) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "the job queue failed");
                            true
                        }
                    };
                    if idle {
                        tokio::select! {
                            () = &mut woken => {}
                            _ = executor.services.ambient.sleep(executor.settings.idle) => {}
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

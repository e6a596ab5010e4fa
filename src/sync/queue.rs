//! The job queue's policy: how long a lease lasts, how many jobs a tenant runs
//! at once, how often a job is tried and how long it waits between tries. The
//! statements are `db::repo::queue`'s.

use chrono::{DateTime, Duration, Utc};

use crate::db::repo::jobs::Job;
use crate::db::repo::queue as store;
use crate::db::{Db, StoreError};
use crate::domain::{Ambient, Backoff};

/// How the queue behaves.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Running jobs per tenant at most.
    pub tenant_concurrency: u32,
    /// Attempts per job (the first included).
    pub max_attempts: i32,
    /// First retry delay (doubled per attempt, with jitter).
    pub initial_backoff: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            lease: Duration::seconds(60),
            tenant_concurrency: 4,
            max_attempts: 3,
            initial_backoff: Duration::seconds(30),
        }
    }
}

impl QueueSettings {
    /// When a job whose attempt failed at `now` is tried again: `None` when it
    /// may not be retried or has used its attempts.
    pub fn retry_at(
        &self,
        job: &Job,
        retryable: bool,
        now: DateTime<Utc>,
        ambient: &Ambient,
    ) -> Option<DateTime<Utc>> {
        if !retryable || job.attempt >= self.max_attempts {
            return None;
        }
        let backoff = Backoff::new(self.initial_backoff.to_std().unwrap_or_default());
        let wait = backoff.delay(u32::try_from(job.attempt).unwrap_or(1), ambient);
        Some(now + Duration::from_std(wait).unwrap_or(Duration::MAX))
    }
}

/// Claims the next due job for `worker` at `now`.
pub async fn claim(
    db: &Db,
    worker: &str,
    now: DateTime<Utc>,
    settings: &QueueSettings,
) -> Result<Option<Job>, StoreError> {
    store::claim(
        db,
        worker,
        now,
        now + settings.lease,
        settings.tenant_concurrency,
    )
    .await
}

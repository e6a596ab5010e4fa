//! What a sync job is: its type, what started it, and where it is. Stored as
//! text (`as_str` / `parse`) and shown by the API as the same words.

use serde::{Deserialize, Serialize};

/// What a job runs: a full backfill or an incremental sync, or one of the
/// connector's lifecycle hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// From the initial checkpoint.
    Full,
    /// From the last checkpoint.
    Incremental,
    /// The connector's `Setup` hook (after create or enable).
    Setup,
    /// The connector's `Renew` hook (before something expires).
    Renew,
    /// The connector's `Teardown` hook (on disable or delete).
    Teardown,
}

impl JobType {
    /// Whether the job syncs (rather than running a lifecycle hook).
    pub fn is_sync(self) -> bool {
        matches!(self, JobType::Full | JobType::Incremental)
    }
}

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The scheduler.
    Schedule,
    /// `POST /sync/{provider}`.
    Manual,
    /// A webhook delivery.
    Webhook,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Being run.
    Running,
    /// Done.
    Succeeded,
    /// Gave up.
    Failed,
    /// Waiting to be retried.
    Retrying,
}

text_enum!(JobType { Full => "full", Incremental => "incremental", Setup => "setup", Renew => "renew", Teardown => "teardown" });
text_enum!(Trigger { Schedule => "schedule", Manual => "manual", Webhook => "webhook" });
text_enum!(JobState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Retrying => "retrying" });

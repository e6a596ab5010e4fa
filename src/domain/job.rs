//! What a sync job is: its type, what started it, and where it is. Stored as
//! text (`as_str` / `parse`) and shown by the API as the same words.

use serde::{Deserialize, Serialize};

/// Full backfill or incremental sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// From the initial checkpoint.
    Full,
    /// From the last checkpoint.
    Incremental,
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

text_enum!(JobType { Full => "full", Incremental => "incremental" });
text_enum!(Trigger { Schedule => "schedule", Manual => "manual", Webhook => "webhook" });
text_enum!(JobState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Retrying => "retrying" });

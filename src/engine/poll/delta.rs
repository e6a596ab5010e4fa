//! Delta bookkeeping: where a partition starts (the stored checkpoint, or the
//! initial one of a full sync), what is sent for it (a timestamp one unit
//! early: windows overlap, dedupe absorbs the repeats, so same-second items are
//! never lost), what each page teaches about the next checkpoint, and the
//! checkpoint a finished run leaves (a timestamp never past the run's start).

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use super::{items, text};
use crate::descriptor::compile::{CompiledDelta, CompiledDescriptor, CompiledPolling};
use crate::descriptor::ingestion::TimestampFilterFormat;
use crate::domain::Signal;

/// The checkpoint of a first (full) sync.
pub(super) fn initial_checkpoint(polling: &CompiledPolling, now: DateTime<Utc>) -> Option<String> {
    if let Some(cp) = &polling.initial_checkpoint {
        return Some(cp.clone());
    }
    match (&polling.delta, polling.backfill_days) {
        (CompiledDelta::TimestampFilter { format, .. }, Some(days)) => {
            Some(format_time(now - Duration::days(i64::from(days)), *format))
        }
        _ => None,
    }
}

fn format_time(t: DateTime<Utc>, format: TimestampFilterFormat) -> String {
    match format {
        TimestampFilterFormat::Iso8601 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        TimestampFilterFormat::Unix => t.timestamp().to_string(),
        TimestampFilterFormat::UnixMs => t.timestamp_millis().to_string(),
    }
}

pub(super) fn parse_checkpoint_time(
    cp: &str,
    format: TimestampFilterFormat,
) -> Option<DateTime<Utc>> {
    match format {
        TimestampFilterFormat::Iso8601 => DateTime::parse_from_rfc3339(cp).ok().map(|t| t.to_utc()),
        TimestampFilterFormat::Unix => cp
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        TimestampFilterFormat::UnixMs => cp
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
    }
}

/// What is sent for a checkpoint: timestamps one unit early (overlap).
pub(super) fn sent_checkpoint(polling: &CompiledPolling, cp: &str) -> String {
    match &polling.delta {
        CompiledDelta::TimestampFilter { format, .. } => match parse_checkpoint_time(cp, *format) {
            Some(t) => {
                let unit = match format {
                    TimestampFilterFormat::UnixMs => Duration::milliseconds(1),
                    _ => Duration::seconds(1),
                };
                format_time(t - unit, *format)
            }
            None => cp.to_owned(),
        },
        _ => cp.to_owned(),
    }
}

/// The query parameter the checkpoint is sent in, if any.
pub(super) fn delta_param(delta: &CompiledDelta) -> Option<&str> {
    match delta {
        CompiledDelta::TimestampFilter { query_param, .. } => query_param.as_deref(),
        CompiledDelta::DeltaToken { token_param, .. } => token_param.as_deref(),
        CompiledDelta::Cursor { cursor_param, .. } => cursor_param.as_deref(),
        CompiledDelta::SinceId { id_param, .. } => id_param.as_deref(),
    }
}

/// What the pages of one partition's run say about its next checkpoint.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Progress {
    max_time: Option<DateTime<Utc>>,
    max_id: Option<String>,
    last_token: Option<String>,
    /// The run stopped at `maxPages` before its last page.
    #[serde(default)]
    truncated: bool,
}

impl Progress {
    /// The run stops at `maxPages`, before its last page.
    pub(super) fn truncated(&mut self) {
        self.truncated = true;
    }

    /// Takes in one page and the Signals mapped from it.
    pub(super) fn observe(
        &mut self,
        delta: &CompiledDelta,
        descriptor: &CompiledDescriptor,
        body: &Value,
        signals: &[Signal],
    ) {
        for s in signals {
            self.max_time = self.max_time.max(Some(s.occurred_at));
        }
        match delta {
            CompiledDelta::Cursor {
                cursor_path: path, ..
            }
            | CompiledDelta::DeltaToken {
                token_path: path, ..
            } => {
                if let Some(t) = path.first(body).and_then(text) {
                    self.last_token = Some(t);
                }
            }
            CompiledDelta::SinceId { id_path, .. } => {
                for item in items(descriptor, body) {
                    if let Some(id) = id_path.first(item).and_then(text) {
                        self.max_id = Some(match self.max_id.take() {
                            Some(m) if greater_id(&m, &id) => m,
                            _ => id,
                        });
                    }
                }
            }
            CompiledDelta::TimestampFilter { .. } => {}
        }
    }

    /// The checkpoint after the run, given the one it started from and the
    /// run's start.
    pub(super) fn checkpoint(
        self,
        delta: &CompiledDelta,
        started_from: Option<String>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        match delta {
            // Never back: a run that read only the overlap before its own
            // checkpoint (a descriptor shifting it back hours, a provider
            // ignoring the filter) keeps the checkpoint it started from.
            // Newest first, a cut run has not reached its checkpoint: what lies
            // between comes next run.
            CompiledDelta::TimestampFilter {
                newest_first: true, ..
            } if self.truncated => started_from,
            CompiledDelta::TimestampFilter { format, .. } => {
                let started = started_from
                    .as_deref()
                    .and_then(|cp| parse_checkpoint_time(cp, *format));
                match (self.max_time, started) {
                    (Some(t), Some(s)) if t.min(now) <= s => started_from,
                    (Some(t), _) => Some(format_time(t.min(now), *format)),
                    (None, _) => started_from,
                }
            }
            CompiledDelta::Cursor { .. } | CompiledDelta::DeltaToken { .. } => {
                self.last_token.or(started_from)
            }
            CompiledDelta::SinceId { .. } => match (started_from, self.max_id) {
                (Some(old), Some(new)) => Some(if greater_id(&old, &new) { old } else { new }),
                (old, new) => new.or(old),
            },
        }
    }
}

/// Whether id `a` is after id `b` (numerically when both are numbers).
fn greater_id(a: &str, b: &str) -> bool {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_overlap_by_one_unit() {
        let t = |s: &str| parse_checkpoint_time(s, TimestampFilterFormat::Iso8601).unwrap();
        assert_eq!(
            format_time(
                t("2024-01-01T00:00:00Z") - Duration::seconds(1),
                TimestampFilterFormat::Iso8601
            ),
            "2023-12-31T23:59:59Z"
        );
        assert_eq!(
            format_time(t("2024-01-01T00:00:00Z"), TimestampFilterFormat::Unix),
            "1704067200"
        );
        assert_eq!(
            format_time(t("2024-01-01T00:00:00Z"), TimestampFilterFormat::UnixMs),
            "1704067200000"
        );
        assert!(greater_id("100", "99") && !greater_id("99", "100") && greater_id("b", "a"));
    }

    #[test]
    fn a_timestamp_checkpoint_never_goes_back() {
        let delta = CompiledDelta::TimestampFilter {
            query_param: None,
            format: TimestampFilterFormat::Iso8601,
            newest_first: false,
        };
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let seen = |at: &str| Progress {
            max_time: Some(at.parse().unwrap()),
            ..Progress::default()
        };
        let from = Some("2026-12-01T10:00:00Z".to_owned());
        // Only the overlap before the checkpoint was read: it stays.
        assert_eq!(
            seen("2026-12-01T08:00:00Z").checkpoint(&delta, from.clone(), now),
            from
        );
        // Newer items move it on, never past the run's start.
        assert_eq!(
            seen("2026-12-01T11:00:00Z")
                .checkpoint(&delta, from.clone(), now)
                .as_deref(),
            Some("2026-12-01T11:00:00Z")
        );
        assert_eq!(
            seen("2027-01-01T00:00:00Z")
                .checkpoint(&delta, from.clone(), now)
                .as_deref(),
            Some("2026-12-01T12:00:00Z")
        );
        assert_eq!(
            Progress::default().checkpoint(&delta, from.clone(), now),
            from
        );
        assert_eq!(
            seen("2026-12-01T08:00:00Z")
                .checkpoint(&delta, None, now)
                .as_deref(),
            Some("2026-12-01T08:00:00Z")
        );
    }

    #[test]
    fn newest_first_a_cut_run_keeps_its_checkpoint() {
        let delta = CompiledDelta::TimestampFilter {
            query_param: None,
            format: TimestampFilterFormat::Iso8601,
            newest_first: true,
        };
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let from = Some("2026-12-01T10:00:00Z".to_owned());
        let mut progress = Progress {
            max_time: Some("2026-12-01T11:30:00Z".parse().unwrap()),
            ..Progress::default()
        };
        // Read to the end: the newest edit.
        assert_eq!(
            progress
                .clone()
                .checkpoint(&delta, from.clone(), now)
                .as_deref(),
            Some("2026-12-01T11:30:00Z")
        );
        // Cut by maxPages before reaching the old checkpoint: what lies between
        // is still unread, so the checkpoint stays.
        progress.truncated();
        assert_eq!(progress.checkpoint(&delta, from.clone(), now), from);
    }
}

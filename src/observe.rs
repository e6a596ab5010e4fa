//! The node's metrics catalogue: every metric's name and `# HELP` text, the
//! histogram buckets (durations render as Prometheus histograms, not
//! summaries), the series registered at zero at start-up so alerts and
//! dashboards see them before the first event, and the recording helpers the
//! engine and the gateway share. `api::metrics` installs the recorder and
//! serves `/metrics`.

use crate::connector::Connector;
use crate::domain::{JobState, Signal};
use crate::engine::webhook::verify::VerifyError;

/// Bucket bounds, in seconds, of every histogram: 5 ms to a week (job lag
/// and Signal freshness reach days; requests are milliseconds).
pub const SECONDS_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 21_600.0, 86_400.0, 259_200.0, 604_800.0,
];

/// Counters: name and help.
pub const COUNTERS: [(&str, &str); 14] = [
    (
        "http_requests_total",
        "API requests by method, route template and status.",
    ),
    (
        "sync_jobs_total",
        "Job attempts by provider and the state they ended in (succeeded, retrying, failed; queued: put back without an outcome).",
    ),
    (
        "signals_ingested_total",
        "Signals newly stored, by provider and source (poll, webhook).",
    ),
    (
        "rate_limit_hits_total",
        "Provider rate limits (429/503 with Retry-After) that rescheduled a job, by provider.",
    ),
    (
        "oauth_token_refreshes_total",
        "OAuth token refreshes by provider and outcome (ok, invalid_grant, error).",
    ),
    (
        "token_exchanges_total",
        "Signed-JWT token exchanges by provider and outcome.",
    ),
    (
        "webhook_requests_total",
        "Webhook requests by provider and outcome.",
    ),
    (
        "webhook_verification_failures_total",
        "Webhook deliveries refused by verification, by provider and reason.",
    ),
    (
        "webhook_previous_secret_used_total",
        "Deliveries verified by a replaced webhook secret inside its grace window, by provider.",
    ),
    (
        "health_checks_total",
        "Connection health checks by provider and outcome (healthy, unhealthy).",
    ),
    (
        "retention_pruned_total",
        "Rows pruned past their retention, by table.",
    ),
    (
        "registry_changes_total",
        "Runtime provider changes this node took in from the database, by change (loaded, removed, refused).",
    ),
    (
        "push_deliveries_total",
        "Push delivery attempts by outcome (delivered; retrying, failing, disabled: what the failed attempt led to).",
    ),
    (
        "push_signals_delivered_total",
        "Signals in push deliveries a subscriber took.",
    ),
];

/// Histograms: name and help.
pub const HISTOGRAMS: [(&str, &str); 6] = [
    (
        "http_request_duration_seconds",
        "API request durations by method and route template.",
    ),
    (
        "sync_job_duration_seconds",
        "Job run durations by provider.",
    ),
    (
        "sync_job_lag_seconds",
        "How late jobs start: claimed minus due (run_after), by provider.",
    ),
    (
        "signal_freshness_seconds",
        "Received minus occurred time of Signals handed to storage, by provider and path (poll: every mapped Signal, backfilled history and re-fetched ones included; webhook: newly stored ones).",
    ),
    (
        "time_to_first_signal_seconds",
        "From a connection's creation to its first stored Signal, by provider.",
    ),
    (
        "push_delivery_latency_seconds",
        "From a Signal's arrival to the subscriber taking the delivery that carried it (the oldest Signal of each delivery).",
    ),
];

/// Gauges: name and help.
pub const GAUGES: [(&str, &str); 2] = [
    (
        "sync_queue_depth",
        "Jobs in the queue by state (queued, retrying, running), across nodes; set by worker nodes.",
    ),
    (
        "push_subscriptions",
        "Push subscriptions by state (active, failing, disabled, paused: disabled by the API), across nodes; set by worker nodes.",
    ),
];

/// The queue states the depth gauge reports.
pub const QUEUE_STATES: [JobState; 3] = [JobState::Queued, JobState::Retrying, JobState::Running];

/// Gives every metric its help text (once the recorder is installed).
pub fn describe() {
    for (name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
    }
    for (name, help) in HISTOGRAMS {
        metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
    }
    for (name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
    }
}

/// Registers the node-wide series at zero.
pub fn zero_node() {
    for table in crate::db::repo::retention::Table::ALL {
        metrics::counter!("retention_pruned_total", "table" => table.as_str()).absolute(0);
    }
    for change in ["loaded", "removed", "refused"] {
        metrics::counter!("registry_changes_total", "change" => change).absolute(0);
    }
    for outcome in ["delivered", "retrying", "failing", "disabled"] {
        metrics::counter!("push_deliveries_total", "outcome" => outcome).absolute(0);
    }
    metrics::counter!("push_signals_delivered_total").absolute(0);
}

/// Registers a provider's series at zero (its jobs, Signals, webhooks,
/// health checks and token refreshes, by what it does).
pub fn zero_provider(connector: &dyn Connector) {
    let provider = connector.id().to_owned();
    let zero = |name: &'static str, labels: &[(&'static str, &'static str)]| {
        let mut all = vec![("provider", provider.clone())];
        all.extend(labels.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let labels: Vec<metrics::Label> = all
            .into_iter()
            .map(|(k, v)| metrics::Label::new(k, v))
            .collect();
        metrics::counter!(name, labels).increment(0);
    };
    let capabilities = connector.capabilities();
    if capabilities.polling.is_some() {
        for state in ["succeeded", "retrying", "failed"] {
            zero("sync_jobs_total", &[("state", state)]);
        }
        zero("signals_ingested_total", &[("source", "poll")]);
        zero("rate_limit_hits_total", &[]);
    }
    if connector.webhooks().is_some() {
        zero("signals_ingested_total", &[("source", "webhook")]);
        for outcome in ["accepted", "rejected", "duplicate"] {
            zero("webhook_requests_total", &[("outcome", outcome)]);
        }
        for reason in VerifyError::REASONS {
            zero("webhook_verification_failures_total", &[("reason", reason)]);
        }
    }
    if capabilities.oauth.is_some() {
        for outcome in ["ok", "invalid_grant", "error"] {
            zero("oauth_token_refreshes_total", &[("outcome", outcome)]);
        }
    }
    for outcome in ["healthy", "unhealthy"] {
        zero("health_checks_total", &[("outcome", outcome)]);
    }
}

/// Records the freshness (received minus occurred) of Signals stored by
/// `path` (`poll` or `webhook`); one histogram lookup per run of a provider.
pub fn freshness<'a>(path: &'static str, signals: impl IntoIterator<Item = &'a Signal>) {
    let mut current: Option<(&str, metrics::Histogram)> = None;
    for s in signals {
        let histogram = match &current {
            Some((provider, h)) if *provider == s.provider => h,
            _ => {
                let h = metrics::histogram!("signal_freshness_seconds", "provider" => s.provider.clone(), "path" => path);
                &current.insert((s.provider.as_str(), h)).1
            }
        };
        let ms = (s.received_at - s.occurred_at).num_milliseconds().max(0);
        histogram.record(ms as f64 / 1e3);
    }
}

/// Records a connection's time to its first Signal.
pub fn first_signal(provider: &str, seconds: f64) {
    metrics::histogram!("time_to_first_signal_seconds", "provider" => provider.to_owned())
        .record(seconds.max(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names an expression or document mentions.
    fn mentioned(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let bytes = text.as_bytes();
        let mut start = None;
        for (i, b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
            if b.is_ascii_lowercase() || *b == b'_' || (start.is_some() && b.is_ascii_digit()) {
                start.get_or_insert(i);
                continue;
            }
            if let Some(s) = start.take() {
                let word = &text[s..i];
                let base = word.strip_suffix("_bucket").unwrap_or(word);
                if ["_total", "_seconds", "_depth"]
                    .iter()
                    .any(|t| base.ends_with(t))
                {
                    names.insert(base.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn the_ops_documents_name_only_metrics_the_node_exports() {
        let known: Vec<&str> = COUNTERS
            .iter()
            .chain(&HISTOGRAMS)
            .chain(&GAUGES)
            .map(|(n, _)| *n)
            .collect();
        let alerts = include_str!("../docs/ops/alerts.yml");
        let dashboard = include_str!("../docs/ops/grafana-dashboard.json");
        use saphyr::LoadableYamlNode;
        let docs = saphyr::Yaml::load_from_str(alerts).expect("alerts.yml is YAML");
        assert_eq!(docs.len(), 1);
        serde_json::from_str::<serde_json::Value>(dashboard).expect("the dashboard is JSON");
        let names: std::collections::BTreeSet<String> = mentioned(alerts)
            .into_iter()
            .chain(mentioned(dashboard))
            .collect();
        assert!(names.len() >= 10, "{names:?}");
        for name in &names {
            assert!(known.contains(&name.as_str()), "`{name}` is not exported");
        }
    }

    #[test]
    fn every_histogram_is_in_seconds_with_increasing_buckets() {
        assert!(HISTOGRAMS.iter().all(|(n, _)| n.ends_with("_seconds")));
        assert!(SECONDS_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}

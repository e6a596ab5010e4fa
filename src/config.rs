//! Service configuration from the environment (and a `.env` file when present),
//! read once at start-up by the CLI; nothing below the CLI reads env vars.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong (never the value of a secret).
    pub reason: String,
}

/// The default database: an SQLite file under `data/`, created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/connectors.db?mode=rwc";

/// Everything `serve` and the other commands need from the environment.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `API_BIND_ADDR`.
    pub bind: SocketAddr,
    /// `POBLYSH_DESCRIPTORS_DIR`.
    pub descriptors_dir: PathBuf,
    /// `POBLYSH_ENV=production`.
    pub production: bool,
    /// `POBLYSH_CRYPTO_KEY`.
    pub crypto_key: Option<String>,
    /// `POBLYSH_CRYPTO_PREVIOUS_KEYS`.
    pub crypto_previous_keys: Option<String>,
    /// `POBLYSH_OPERATOR_TOKENS` (or `POBLYSH_OPERATOR_TOKEN`), parsed.
    pub operator_tokens: Vec<String>,
    /// `POBLYSH_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `POBLYSH_JOB_CONCURRENCY`: jobs run at once by this node.
    pub job_concurrency: usize,
    /// `POBLYSH_TENANT_JOB_CONCURRENCY`: running jobs per tenant, across nodes.
    pub tenant_job_concurrency: u32,
    /// Where development keys and tokens are kept (`data/`).
    pub data_dir: PathBuf,
    /// `POBLYSH_ALLOW_PRIVATE_NETWORKS`: outbound requests may reach private addresses.
    pub allow_private_networks: bool,
    /// `POBLYSH_WEBHOOK_RATE_LIMIT`: webhook requests per minute per connection
    /// (default 100; 0 turns the limit off).
    pub webhook_rate_limit: u32,
    /// `POBLYSH_SHUTDOWN_SECONDS`: how long a stopping node waits for its
    /// running jobs to reach a page boundary and commit (default 20).
    pub shutdown_seconds: u64,
    /// Provider app secrets: `POBLYSH_<PROVIDER>_CLIENT_ID`, `_CLIENT_SECRET`,
    /// `_WEBHOOK_SECRET`, by variable name.
    pub provider_secrets: BTreeMap<String, String>,
    /// Google's endpoints and push settings (the native Google connectors).
    pub google: GoogleConfig,
    /// Background upkeep and retention.
    pub ops: OpsConfig,
    /// Push delivery and the live stream.
    pub push: PushConfig,
}

/// How a node keeps itself and its data in shape: following other nodes'
/// provider changes, refreshing tokens and checking health in the background,
/// and pruning old data. Durations in whole seconds; `None`: turned off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// `POBLYSH_REGISTRY_POLL_SECONDS` (default 5): how often a node looks
    /// for runtime providers other nodes changed, besides PostgreSQL's
    /// announcements.
    pub registry_poll: std::time::Duration,
    /// `POBLYSH_UPKEEP_SECONDS` (default 60): how often the upkeep looks for
    /// tokens to refresh and health checks that are due.
    pub upkeep_every: std::time::Duration,
    /// `POBLYSH_TOKEN_REFRESH_AHEAD_SECONDS` (default 600): OAuth access
    /// tokens expiring within this are refreshed by the upkeep (jobs refresh
    /// 5 minutes ahead anyway).
    pub token_refresh_ahead: chrono::Duration,
    /// `POBLYSH_HEALTH_CHECK_SECONDS` (default 900; 0 turns it off): each
    /// enabled connection's health check runs this often.
    pub health_check_every: Option<chrono::Duration>,
    /// `POBLYSH_WEBHOOK_SECRET_GRACE_HOURS` (default 24): after a connection's
    /// webhook secret is replaced, the old one still verifies this long.
    pub webhook_secret_grace: chrono::Duration,
    /// `POBLYSH_SIGNAL_RETENTION_DAYS` (default 90; 0 keeps them forever):
    /// Signals received longer ago are pruned.
    pub signal_retention: Option<chrono::Duration>,
    /// `POBLYSH_JOB_RETENTION_DAYS` (default 30; 0 keeps them): finished jobs
    /// are pruned this long after they finished.
    pub job_retention: Option<chrono::Duration>,
    /// `POBLYSH_DELIVERY_RETENTION_DAYS` (default 7, at least 3: longer than
    /// any provider retries a delivery): webhook delivery ids kept for dedupe.
    pub delivery_retention: chrono::Duration,
    /// `POBLYSH_PRUNE_SECONDS` (default 300): how often pruning runs (on one
    /// node at a time).
    pub prune_every: std::time::Duration,
    /// `POBLYSH_JOB_LEASE_SECONDS` (default 60, at least 5): how long a job's
    /// claim lasts without a heartbeat (a third of it apart): after a node
    /// dies, its jobs are taken over this long after its last heartbeat.
    pub job_lease: chrono::Duration,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            registry_poll: std::time::Duration::from_secs(5),
            upkeep_every: std::time::Duration::from_secs(60),
            token_refresh_ahead: chrono::Duration::seconds(600),
            health_check_every: Some(chrono::Duration::seconds(900)),
            webhook_secret_grace: chrono::Duration::hours(24),
            signal_retention: Some(chrono::Duration::days(90)),
            job_retention: Some(chrono::Duration::days(30)),
            delivery_retention: chrono::Duration::days(7),
            prune_every: std::time::Duration::from_secs(300),
            job_lease: chrono::Duration::seconds(60),
        }
    }
}

/// The least webhook delivery ids are kept (Stripe-style senders retry for 3 days).
pub const MIN_DELIVERY_RETENTION_DAYS: u64 = 3;

impl OpsConfig {
    /// The settings from the environment (`get` reads a non-empty variable).
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |var, default, min, unit| setting(&get, var, default, min, unit);
        let secs = |n: u64| chrono::Duration::seconds(n as i64);
        let off_if_zero =
            |n: u64, unit: i64| (n > 0).then(|| chrono::Duration::seconds(n as i64 * unit));
        Ok(OpsConfig {
            registry_poll: std::time::Duration::from_secs(number(
                "POBLYSH_REGISTRY_POLL_SECONDS",
                5,
                1,
                1,
            )?),
            upkeep_every: std::time::Duration::from_secs(number(
                "POBLYSH_UPKEEP_SECONDS",
                60,
                1,
                1,
            )?),
            token_refresh_ahead: secs(number("POBLYSH_TOKEN_REFRESH_AHEAD_SECONDS", 600, 0, 1)?),
            health_check_every: off_if_zero(number("POBLYSH_HEALTH_CHECK_SECONDS", 900, 0, 1)?, 1),
            webhook_secret_grace: secs(
                number("POBLYSH_WEBHOOK_SECRET_GRACE_HOURS", 24, 0, 3600)? * 3600,
            ),
            signal_retention: off_if_zero(
                number("POBLYSH_SIGNAL_RETENTION_DAYS", 90, 0, 86_400)?,
                86_400,
            ),
            job_retention: off_if_zero(
                number("POBLYSH_JOB_RETENTION_DAYS", 30, 0, 86_400)?,
                86_400,
            ),
            delivery_retention: secs(
                number(
                    "POBLYSH_DELIVERY_RETENTION_DAYS",
                    7,
                    MIN_DELIVERY_RETENTION_DAYS,
                    86_400,
                )? * 86_400,
            ),
            prune_every: std::time::Duration::from_secs(number(
                "POBLYSH_PRUNE_SECONDS",
                300,
                1,
                1,
            )?),
            job_lease: secs(number("POBLYSH_JOB_LEASE_SECONDS", 60, 5, 1)?),
        })
    }
}

/// A whole-number setting `var` (`default` when unset), at least `min` and
/// at most ten years in its unit (`unit` seconds each).
fn setting(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    min: u64,
    unit: u64,
) -> Result<u64, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= min && *n <= 10 * 365 * 86_400 / unit)
            .ok_or_else(|| ConfigError {
                var,
                reason: if min == 0 {
                    "expected a whole number up to ten years (0 turns it off)".into()
                } else {
                    format!("expected a whole number, at least {min}, up to ten years")
                },
            }),
    }
}

/// Signals out: push delivery to subscriptions and the live stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// `POBLYSH_PUSH_BATCH_SIZE` (default 100, 1-1000): Signals per delivery at most.
    pub batch_size: u64,
    /// `POBLYSH_PUSH_BATCH_BYTES` (default 1048576, at least 4096): a
    /// delivery's body at most (a single larger Signal still goes alone).
    pub batch_bytes: usize,
    /// `POBLYSH_PUSH_TIMEOUT_SECONDS` (default 15): how long a subscriber has
    /// to answer a delivery.
    pub timeout: std::time::Duration,
    /// `POBLYSH_PUSH_RETRY_SCHEDULE` (default `5,300,1800,7200,18000,36000,36000`):
    /// seconds to wait after the 1st, 2nd, … failed attempt of a delivery;
    /// after the last the subscription is marked failing.
    pub retry_schedule: Vec<std::time::Duration>,
    /// `POBLYSH_PUSH_SECRET_GRACE_HOURS` (default 24): after a subscription's
    /// secret is rotated, the old one signs too this long.
    pub secret_grace: chrono::Duration,
    /// `POBLYSH_STREAM_HEARTBEAT_SECONDS` (default 15): a live stream with
    /// nothing to send sends a comment this often, so proxies keep it open.
    pub stream_heartbeat: std::time::Duration,
    /// `POBLYSH_STREAM_MAX_BACKLOG` (default 10000, at least 100): a stream
    /// resumed further behind than this many Signals is told to page
    /// `GET /signals?after=` instead.
    pub stream_max_backlog: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            batch_size: 100,
            batch_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(15),
            retry_schedule: crate::push::schedule::SCHEDULE.to_vec(),
            secret_grace: chrono::Duration::hours(24),
            stream_heartbeat: std::time::Duration::from_secs(15),
            stream_max_backlog: 10_000,
        }
    }
}

impl PushConfig {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |var, default, min, unit| setting(&get, var, default, min, unit);
        let batch_size = number("POBLYSH_PUSH_BATCH_SIZE", 100, 1, 1)?;
        if batch_size > 1000 {
            return Err(ConfigError {
                var: "POBLYSH_PUSH_BATCH_SIZE",
                reason: "expected a whole number from 1 to 1000".into(),
            });
        }
        let retry_schedule = match get("POBLYSH_PUSH_RETRY_SCHEDULE") {
            None => crate::push::schedule::SCHEDULE.to_vec(),
            Some(list) => {
                let steps: Option<Vec<_>> = list
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite() && *n >= 0.0 && *n <= 7.0 * 86_400.0)
                            .map(std::time::Duration::from_secs_f64)
                    })
                    .collect();
                steps
                    .filter(|s| !s.is_empty() && s.len() <= 50)
                    .ok_or_else(|| ConfigError {
                        var: "POBLYSH_PUSH_RETRY_SCHEDULE",
                        reason:
                            "expected 1-50 comma-separated waits in seconds, each at most a week"
                                .into(),
                    })?
            }
        };
        Ok(PushConfig {
            batch_size,
            batch_bytes: number("POBLYSH_PUSH_BATCH_BYTES", 1 << 20, 4096, 1)? as usize,
            timeout: std::time::Duration::from_secs(number(
                "POBLYSH_PUSH_TIMEOUT_SECONDS",
                15,
                1,
                1,
            )?),
            retry_schedule,
            secret_grace: chrono::Duration::hours(number(
                "POBLYSH_PUSH_SECRET_GRACE_HOURS",
                24,
                0,
                3600,
            )? as i64),
            stream_heartbeat: std::time::Duration::from_secs(number(
                "POBLYSH_STREAM_HEARTBEAT_SECONDS",
                15,
                1,
                1,
            )?),
            stream_max_backlog: number("POBLYSH_STREAM_MAX_BACKLOG", 10_000, 100, 1)?,
        })
    }
}

/// Where the Google connectors call Google, and who may push to them. Every
/// URL is configurable so tests (and proxies) can stand in for Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleConfig {
    /// `POBLYSH_GOOGLE_AUTHORIZE_URL`: the OAuth consent page.
    pub authorize_url: String,
    /// `POBLYSH_GOOGLE_TOKEN_URL`: the OAuth token endpoint.
    pub token_url: String,
    /// `POBLYSH_GOOGLE_GMAIL_URL`: the Gmail API's base URL.
    pub gmail_url: String,
    /// `POBLYSH_GOOGLE_API_URL`: `www.googleapis.com` (Drive, Calendar).
    pub api_url: String,
    /// `POBLYSH_GOOGLE_JWKS_URL`: the keys Google signs push tokens with.
    pub jwks_url: String,
    /// `POBLYSH_GOOGLE_PUSH_AUDIENCE`: the audience the Pub/Sub push
    /// subscription puts in its OIDC token. Unset: every Gmail push is refused.
    pub push_audience: Option<String>,
    /// `POBLYSH_GOOGLE_PUSH_SERVICE_ACCOUNT`: the service account the push
    /// subscription authenticates as. Unset: every Gmail push is refused.
    pub push_service_account: Option<String>,
    /// `POBLYSH_GMAIL_PUBSUB_TOPIC`: the topic `users.watch` publishes to
    /// (`projects/<project>/topics/<topic>`), unless a connection names its own.
    pub gmail_topic: Option<String>,
}

impl GoogleConfig {
    /// The settings from the environment (`get` reads a non-empty variable).
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = get(var).unwrap_or_else(|| default.to_owned());
            let value = value.trim().trim_end_matches('/').to_owned();
            match url::Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    Ok(value)
                }
                _ => Err(ConfigError {
                    var,
                    reason: "expected an absolute http(s) URL".into(),
                }),
            }
        };
        let text = |var: &str| get(var).map(|v| v.trim().to_owned());
        Ok(GoogleConfig {
            authorize_url: url(
                "POBLYSH_GOOGLE_AUTHORIZE_URL",
                "https://accounts.google.com/o/oauth2/v2/auth",
            )?,
            token_url: url(
                "POBLYSH_GOOGLE_TOKEN_URL",
                "https://oauth2.googleapis.com/token",
            )?,
            gmail_url: url("POBLYSH_GOOGLE_GMAIL_URL", "https://gmail.googleapis.com")?,
            api_url: url("POBLYSH_GOOGLE_API_URL", "https://www.googleapis.com")?,
            jwks_url: url(
                "POBLYSH_GOOGLE_JWKS_URL",
                "https://www.googleapis.com/oauth2/v3/certs",
            )?,
            push_audience: text("POBLYSH_GOOGLE_PUSH_AUDIENCE"),
            push_service_account: text("POBLYSH_GOOGLE_PUSH_SERVICE_ACCOUNT"),
            gmail_topic: text("POBLYSH_GMAIL_PUBSUB_TOPIC"),
        })
    }
}

/// Suffixes of the provider app-secret variables.
const PROVIDER_SECRET_SUFFIXES: [&str; 5] = [
    "_CLIENT_ID",
    "_CLIENT_SECRET",
    "_WEBHOOK_SECRET",
    "_APP_ID",
    "_PRIVATE_KEY",
];

/// The variable holding a provider's app-level secret: `POBLYSH_<PROVIDER>_<NAME>`,
/// the provider id upper-cased with `-` as `_`.
pub fn provider_var(provider: &str, name: &str) -> String {
    format!(
        "POBLYSH_{}_{name}",
        provider.to_ascii_uppercase().replace('-', "_")
    )
}

impl Config {
    /// A provider's app-level secret (`CLIENT_ID`, `CLIENT_SECRET`, `WEBHOOK_SECRET`).
    pub fn provider_secret(&self, provider: &str, name: &str) -> Option<&str> {
        self.provider_secrets
            .get(&provider_var(provider, name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A provider's app-level secret, from its own app when
    /// `POBLYSH_<PROVIDER>_CLIENT_ID` is set, else from the app it shares
    /// (`POBLYSH_GOOGLE_*` for the three Google connectors): a client id and
    /// secret always come from the same app, never one from each.
    pub fn app_secret(&self, provider: &str, shared_app: Option<&str>, name: &str) -> Option<&str> {
        let app = match shared_app {
            Some(shared) if self.provider_secret(provider, "CLIENT_ID").is_none() => shared,
            _ => provider,
        };
        self.provider_secret(app, name)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("bind", &self.bind)
            .field("descriptors_dir", &self.descriptors_dir)
            .field("production", &self.production)
            .field("crypto_key", &self.crypto_key.as_ref().map(|_| "<set>"))
            .field("operator_tokens", &self.operator_tokens.len())
            .field("public_url", &self.public_url)
            .field("job_concurrency", &self.job_concurrency)
            .field("allow_private_networks", &self.allow_private_networks)
            .field("webhook_rate_limit", &self.webhook_rate_limit)
            .field("shutdown_seconds", &self.shutdown_seconds)
            .field(
                "provider_secrets",
                &self.provider_secrets.keys().collect::<Vec<_>>(),
            )
            .field("google", &self.google)
            .field("ops", &self.ops)
            .finish_non_exhaustive()
    }
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// Reads the configuration from a variable lookup (the process environment in
    /// `main`, a map in tests) and the names of all variables (for provider secrets).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        names: impl IntoIterator<Item = String>,
    ) -> Result<Config, ConfigError> {
        let non_empty = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let bind = non_empty("API_BIND_ADDR")
            .unwrap_or_else(|| "0.0.0.0:8080".into())
            .parse()
            .map_err(|_| ConfigError {
                var: "API_BIND_ADDR",
                reason: "expected host:port, e.g. 0.0.0.0:8080".into(),
            })?;
        let job_concurrency = match non_empty("POBLYSH_JOB_CONCURRENCY") {
            None => 4,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError {
                    var: "POBLYSH_JOB_CONCURRENCY",
                    reason: "expected a positive integer".into(),
                })?,
        };
        let tenant_job_concurrency = match non_empty("POBLYSH_TENANT_JOB_CONCURRENCY") {
            None => 2,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError {
                    var: "POBLYSH_TENANT_JOB_CONCURRENCY",
                    reason: "expected a positive integer".into(),
                })?,
        };
        let webhook_rate_limit = match non_empty("POBLYSH_WEBHOOK_RATE_LIMIT") {
            None => 100,
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                var: "POBLYSH_WEBHOOK_RATE_LIMIT",
                reason: "expected requests per minute per connection (0 for no limit)".into(),
            })?,
        };
        let shutdown_seconds = match non_empty("POBLYSH_SHUTDOWN_SECONDS") {
            None => 20,
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                var: "POBLYSH_SHUTDOWN_SECONDS",
                reason: "expected whole seconds".into(),
            })?,
        };
        let operator_tokens = match (
            non_empty("POBLYSH_OPERATOR_TOKENS"),
            non_empty("POBLYSH_OPERATOR_TOKEN"),
        ) {
            (Some(list), _) => parse_tokens(&list)?,
            (None, Some(one)) => vec![one.trim().to_owned()],
            (None, None) => Vec::new(),
        };
        let production =
            non_empty("POBLYSH_ENV").is_some_and(|e| e.eq_ignore_ascii_case("production"));
        let allow_private_networks = match non_empty("POBLYSH_ALLOW_PRIVATE_NETWORKS")
            .as_deref()
            .map(str::trim)
        {
            None | Some("0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(_) => {
                return Err(ConfigError {
                    var: "POBLYSH_ALLOW_PRIVATE_NETWORKS",
                    reason: "expected true or false".into(),
                });
            }
        };
        let provider_secrets = names
            .into_iter()
            .filter(|n| {
                n.starts_with("POBLYSH_") && PROVIDER_SECRET_SUFFIXES.iter().any(|s| n.ends_with(s))
            })
            .filter_map(|n| get(&n).map(|v| (n, v)))
            .collect();
        Ok(Config {
            database_url: non_empty("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            bind,
            descriptors_dir: non_empty("POBLYSH_DESCRIPTORS_DIR")
                .map_or_else(|| PathBuf::from("descriptors"), PathBuf::from),
            production,
            crypto_key: non_empty("POBLYSH_CRYPTO_KEY"),
            crypto_previous_keys: non_empty("POBLYSH_CRYPTO_PREVIOUS_KEYS"),
            operator_tokens,
            public_url: non_empty("POBLYSH_PUBLIC_URL"),
            job_concurrency,
            tenant_job_concurrency,
            data_dir: PathBuf::from("data"),
            allow_private_networks,
            webhook_rate_limit,
            shutdown_seconds,
            provider_secrets,
            google: GoogleConfig::from_lookup(non_empty)?,
            ops: OpsConfig::from_lookup(non_empty)?,
            push: PushConfig::from_lookup(non_empty)?,
        })
    }

    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Config::from_lookup(
            |var| std::env::var(var).ok(),
            std::env::vars().map(|(k, _)| k),
        )
    }

    /// A configuration from a map, for tests.
    pub fn from_map(vars: &BTreeMap<&str, &str>) -> Result<Config, ConfigError> {
        Config::from_lookup(
            |var| vars.get(var).map(|v| (*v).to_owned()),
            vars.keys().map(|k| (*k).to_owned()),
        )
    }
}

/// `POBLYSH_OPERATOR_TOKENS`: a JSON array of strings, or comma-separated.
fn parse_tokens(list: &str) -> Result<Vec<String>, ConfigError> {
    let trimmed = list.trim();
    let tokens: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<String>>(trimmed).map_err(|_| ConfigError {
            var: "POBLYSH_OPERATOR_TOKENS",
            reason: "looks like a JSON array but is not an array of strings".into(),
        })?
    } else {
        trimmed.split(',').map(str::to_owned).collect()
    };
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError {
            var: "POBLYSH_OPERATOR_TOKENS",
            reason: "no token in the list".into(),
        });
    }
    if tokens.iter().any(|t| t.len() < 16) {
        return Err(ConfigError {
            var: "POBLYSH_OPERATOR_TOKENS",
            reason: "every token must be at least 16 characters".into(),
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_map(&pairs.iter().copied().collect())
    }

    #[test]
    fn defaults_need_nothing() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind.to_string(), "0.0.0.0:8080");
        assert!(!c.production && c.operator_tokens.is_empty());
        assert_eq!(c.ops, OpsConfig::default());
    }

    #[test]
    fn ops_settings_parse_and_zero_turns_off() {
        let c = config(&[
            ("POBLYSH_SIGNAL_RETENTION_DAYS", "0"),
            ("POBLYSH_HEALTH_CHECK_SECONDS", "0"),
            ("POBLYSH_JOB_RETENTION_DAYS", "2"),
            ("POBLYSH_WEBHOOK_SECRET_GRACE_HOURS", "1"),
        ])
        .unwrap();
        assert_eq!(c.ops.signal_retention, None);
        assert_eq!(c.ops.health_check_every, None);
        assert_eq!(c.ops.job_retention, Some(chrono::Duration::days(2)));
        assert_eq!(c.ops.webhook_secret_grace, chrono::Duration::hours(1));
        let e = config(&[("POBLYSH_DELIVERY_RETENTION_DAYS", "1")]).unwrap_err();
        assert_eq!(e.var, "POBLYSH_DELIVERY_RETENTION_DAYS");
        assert!(e.reason.contains("at least 3"), "{e}");
        let e = config(&[("POBLYSH_UPKEEP_SECONDS", "0")]).unwrap_err();
        assert_eq!(e.var, "POBLYSH_UPKEEP_SECONDS");
        // Ten years at most, in any unit: no date arithmetic can overflow.
        assert!(config(&[("POBLYSH_SIGNAL_RETENTION_DAYS", "3650")]).is_ok());
        let e = config(&[("POBLYSH_SIGNAL_RETENTION_DAYS", "300000000")]).unwrap_err();
        assert_eq!(e.var, "POBLYSH_SIGNAL_RETENTION_DAYS");
    }

    #[test]
    fn operator_tokens_take_precedence_and_parse_both_forms() {
        let long = "a-very-long-token-1";
        let c = config(&[
            (
                "POBLYSH_OPERATOR_TOKENS",
                "a-very-long-token-1, a-very-long-token-2",
            ),
            ("POBLYSH_OPERATOR_TOKEN", "fallback-token-value"),
        ])
        .unwrap();
        assert_eq!(c.operator_tokens, [long, "a-very-long-token-2"]);
        let c = config(&[("POBLYSH_OPERATOR_TOKENS", r#"["a-very-long-token-1"]"#)]).unwrap();
        assert_eq!(c.operator_tokens, [long]);
        let c = config(&[("POBLYSH_OPERATOR_TOKEN", "fallback-token-value")]).unwrap();
        assert_eq!(c.operator_tokens, ["fallback-token-value"]);
        assert!(config(&[("POBLYSH_OPERATOR_TOKENS", "short")]).is_err());
        assert!(config(&[("POBLYSH_OPERATOR_TOKENS", "[1, 2]")]).is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(
            config(&[("API_BIND_ADDR", "nope")]).unwrap_err().var,
            "API_BIND_ADDR"
        );
        assert_eq!(
            config(&[("POBLYSH_JOB_CONCURRENCY", "0")]).unwrap_err().var,
            "POBLYSH_JOB_CONCURRENCY"
        );
    }

    #[test]
    fn provider_secrets_by_provider_id() {
        let c = config(&[
            ("POBLYSH_GOOGLE_DRIVE_CLIENT_ID", "cid"),
            ("POBLYSH_GITHUB_WEBHOOK_SECRET", "whs"),
            ("OTHER_CLIENT_ID", "x"),
        ])
        .unwrap();
        assert_eq!(c.provider_secret("google_drive", "CLIENT_ID"), Some("cid"));
        assert_eq!(c.provider_secret("github", "WEBHOOK_SECRET"), Some("whs"));
        assert_eq!(c.provider_secret("github", "CLIENT_ID"), None);
        assert_eq!(
            provider_var("zoho-cliq", "CLIENT_SECRET"),
            "POBLYSH_ZOHO_CLIQ_CLIENT_SECRET"
        );
        assert!(!format!("{c:?}").contains("whs"));
        assert!(
            config(&[("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true")])
                .unwrap()
                .allow_private_networks
        );
        assert!(config(&[("POBLYSH_ALLOW_PRIVATE_NETWORKS", "maybe")]).is_err());
    }

    #[test]
    fn a_shared_app_backs_the_providers_own_variables() {
        let c = config(&[
            ("POBLYSH_GOOGLE_CLIENT_ID", "shared-id"),
            ("POBLYSH_GMAIL_CLIENT_ID", "gmail-id"),
        ])
        .unwrap();
        assert_eq!(
            c.app_secret("gmail", Some("google"), "CLIENT_ID"),
            Some("gmail-id")
        );
        assert_eq!(
            c.app_secret("google_drive", Some("google"), "CLIENT_ID"),
            Some("shared-id")
        );
        assert_eq!(c.app_secret("google_drive", None, "CLIENT_ID"), None);
        // Gmail's own id never pairs with the shared secret.
        let c = config(&[
            ("POBLYSH_GOOGLE_CLIENT_ID", "shared-id"),
            ("POBLYSH_GOOGLE_CLIENT_SECRET", "shared-secret"),
            ("POBLYSH_GMAIL_CLIENT_ID", "gmail-id"),
        ])
        .unwrap();
        assert_eq!(c.app_secret("gmail", Some("google"), "CLIENT_SECRET"), None);
        assert_eq!(
            c.app_secret("google_drive", Some("google"), "CLIENT_SECRET"),
            Some("shared-secret")
        );
    }

    #[test]
    fn google_urls_default_to_google_and_must_be_urls() {
        let c = config(&[]).unwrap();
        assert_eq!(c.google.gmail_url, "https://gmail.googleapis.com");
        assert_eq!(c.google.push_audience, None);
        let c = config(&[("POBLYSH_GOOGLE_GMAIL_URL", "http://127.0.0.1:9/ ")]).unwrap();
        assert_eq!(c.google.gmail_url, "http://127.0.0.1:9");
        assert_eq!(
            config(&[("POBLYSH_GOOGLE_JWKS_URL", "certs.json")])
                .unwrap_err()
                .var,
            "POBLYSH_GOOGLE_JWKS_URL"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:hunter2@localhost/db"),
            ("POBLYSH_CRYPTO_KEY", "c2VjcmV0"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }
}

//! Lifecycle hooks: what a connector does with the provider when a connection
//! starts, must be renewed, or stops (register, renew and stop a watch
//! channel). The service runs them as jobs, so they are retried like syncs and
//! their outcome shows on the connection (health, last error).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value};

/// A lifecycle moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// After the connection is created or enabled.
    Setup,
    /// When `renew_at` of the last outcome is due.
    Renew,
    /// When the connection is disabled or deleted.
    Teardown,
}

/// What a hook changed, for the service to store.
#[derive(Debug, Default)]
pub struct HookOutcome {
    /// Metadata keys to set on the connection (a `null` value removes the key):
    /// a channel id to route webhooks by, say.
    pub metadata: Map<String, Value>,
    /// Credential fields to set (`None` removes one), stored encrypted: a
    /// channel's verification token, say.
    pub secrets: BTreeMap<String, Option<SecretString>>,
    /// When `Hook::Renew` is due next; `None`: no renewal.
    pub renew_at: Option<DateTime<Utc>>,
}

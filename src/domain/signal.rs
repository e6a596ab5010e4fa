//! The normalized Signal every connector emits, and its dedupe key.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ids::{ConnectionId, TenantId};

/// Signal priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Critical.
    Critical,
    /// High.
    High,
    /// Medium.
    Medium,
    /// Low.
    Low,
}

text_enum!(Priority { Critical => "critical", High => "high", Medium => "medium", Low => "low" });

/// A normalized event from a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Time-ordered id (UUID v7).
    pub id: Uuid,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connection it came through.
    pub connection_id: ConnectionId,
    /// The connector id (`github`).
    pub provider: String,
    /// Action-first kind (`pr_merged`).
    pub kind: String,
    /// When it happened at the provider.
    pub occurred_at: DateTime<Utc>,
    /// When the service received it.
    pub received_at: DateTime<Utc>,
    /// The provider's id of the item.
    pub external_id: String,
    /// One line for people.
    pub summary: String,
    /// Priority, when a priority rule matched.
    pub priority: Option<Priority>,
    /// People involved.
    pub participants: Vec<String>,
    /// Tags or labels.
    pub tags: Vec<String>,
    /// Related items.
    pub related: Vec<String>,
    /// Web URL of the item.
    pub url: Option<String>,
    /// The webhook event type and the descriptor's `rawFields`.
    pub payload: Value,
}

impl Signal {
    /// The dedupe key of this signal (unique per tenant in storage).
    pub fn dedupe_key(&self) -> String {
        dedupe_key(
            self.connection_id,
            &self.provider,
            &self.kind,
            &self.external_id,
            self.occurred_at,
        )
    }
}

/// A stable hash (SHA-256, hex) of what makes two signals the same event: the
/// connection, provider, kind, external id and occurrence time. Stable across
/// releases: it is stored.
pub fn dedupe_key(
    connection: ConnectionId,
    provider: &str,
    kind: &str,
    external_id: &str,
    occurred_at: DateTime<Utc>,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        connection.to_string().as_str(),
        provider,
        kind,
        external_id,
        occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .as_str(),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn dedupe_key_is_stable_and_distinguishes_every_part() {
        let c = ConnectionId::from_uuid(Uuid::from_u128(1));
        let t = at("2024-01-01T00:00:00Z");
        let key = dedupe_key(c, "github", "pr_merged", "42", t);
        // Pinned: the key is stored, so it must never change.
        assert_eq!(
            key,
            "fe7615b80cfe44098e289d8ef8549332318b069b0dee4d65192480b91d07f630"
        );
        // The same instant written with another offset is the same key.
        assert_eq!(
            key,
            dedupe_key(
                c,
                "github",
                "pr_merged",
                "42",
                at("2024-01-01T01:00:00+01:00")
            )
        );
        assert_eq!(key.len(), 64);
        let others = [
            dedupe_key(
                ConnectionId::from_uuid(Uuid::from_u128(2)),
                "github",
                "pr_merged",
                "42",
                t,
            ),
            dedupe_key(c, "gitlab", "pr_merged", "42", t),
            dedupe_key(c, "github", "pr_closed", "42", t),
            dedupe_key(c, "github", "pr_merged", "43", t),
            dedupe_key(c, "github", "pr_merged", "42", at("2024-01-01T00:00:01Z")),
            // Length-prefixed parts: shifting text between parts changes the key.
            dedupe_key(c, "githubp", "r_merged", "42", t),
        ];
        for other in others {
            assert_ne!(key, other);
        }
    }
}

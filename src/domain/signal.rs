//! The normalized Signal every connector emits, its dedupe key, and the id
//! derived from both: occurrence time first, so ids sort the way Signals are
//! listed, and the same event always gets the same id.

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
    /// The event's id ([`signal_id`]): its occurrence time, then 64 bits of
    /// its dedupe hash. Constructors set it with [`Signal::with_derived_id`];
    /// storage derives it again, so a stored Signal always has it.
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
    /// The dedupe key of this signal.
    pub fn dedupe_key(&self) -> String {
        hex::encode(self.dedupe_digest())
    }

    /// The id this Signal is stored under ([`signal_id`]).
    pub fn derived_id(&self) -> Uuid {
        signal_id(self.occurred_at, &self.dedupe_digest())
    }

    /// This Signal with its [`derived_id`](Signal::derived_id) (call it once
    /// every field is final).
    pub fn with_derived_id(mut self) -> Signal {
        self.id = self.derived_id();
        self
    }

    fn dedupe_digest(&self) -> [u8; 32] {
        dedupe_digest(
            self.connection_id,
            &self.provider,
            &self.kind,
            &self.external_id,
            self.occurred_at,
        )
    }
}

/// A Signal's id: the occurrence time in microseconds since the epoch (its
/// sign bit flipped, so that the ids of times before 1970 sort before the
/// later ones), then the first 64 bits of the dedupe hash. Unique per event
/// (two events in one microsecond differ in the hash), stable across
/// releases (it is stored, and migration 13 computes the same in SQL), and
/// ordered by time: the primary key `(tenant_id, id)` is both the dedupe
/// constraint and the listing order.
pub fn signal_id(occurred_at: DateTime<Utc>, dedupe_digest: &[u8; 32]) -> Uuid {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&time_bits(occurred_at).to_be_bytes());
    bytes[8..].copy_from_slice(&dedupe_digest[..8]);
    Uuid::from_bytes(bytes)
}

/// The smallest id of a Signal that occurred at `t` (to the microsecond):
/// every Signal that occurred before `t` has a smaller id, every other one
/// an id at least this.
pub fn first_id_at(t: DateTime<Utc>) -> Uuid {
    Uuid::from_u64_pair(time_bits(t), 0)
}

/// The largest id of a Signal that occurred at `t` (to the microsecond).
pub fn last_id_at(t: DateTime<Utc>) -> Uuid {
    Uuid::from_u64_pair(time_bits(t), u64::MAX)
}

/// Whether `id` has the layout of [`signal_id`] for a Signal that occurred
/// at `t` (to the microsecond).
pub fn id_is_at(id: Uuid, t: DateTime<Utc>) -> bool {
    id.as_u64_pair().0 == time_bits(t)
}

/// `t` in microseconds, as an unsigned number in time order.
fn time_bits(t: DateTime<Utc>) -> u64 {
    (t.timestamp_micros() as u64) ^ (1 << 63)
}

/// A stable hash (SHA-256, hex) of what makes two signals the same event: the
/// connection, provider, kind, external id and occurrence time. Stable across
/// releases: the stored ids hold its first 64 bits.
pub fn dedupe_key(
    connection: ConnectionId,
    provider: &str,
    kind: &str,
    external_id: &str,
    occurred_at: DateTime<Utc>,
) -> String {
    hex::encode(dedupe_digest(
        connection,
        provider,
        kind,
        external_id,
        occurred_at,
    ))
}

/// The SHA-256 of [`dedupe_key`].
fn dedupe_digest(
    connection: ConnectionId,
    provider: &str,
    kind: &str,
    external_id: &str,
    occurred_at: DateTime<Utc>,
) -> [u8; 32] {
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
    hasher.finalize().into()
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

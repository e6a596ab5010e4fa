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
    /// its dedupe hash. Constructors set it with [`Signal::with_derived_id`]
    /// once every field is final; storage relies on it (checked in debug
    /// builds).
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
    let mut id = [0; 36];
    let mut time = [0; 27];
    let time_text;
    let time = match micros_rfc3339(occurred_at, &mut time) {
        Some(t) => t,
        None => {
            time_text = occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true);
            time_text.as_str()
        }
    };
    let mut hasher = Sha256::new();
    for part in [
        &*connection.as_uuid().hyphenated().encode_lower(&mut id),
        provider,
        kind,
        external_id,
        time,
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// `t.to_rfc3339_opts(SecondsFormat::Micros, true)` written into `buf`
/// (`2024-01-01T00:00:00.000000Z`) without allocating, for years 0–9999 and
/// no leap second; `None` otherwise.
fn micros_rfc3339(t: DateTime<Utc>, buf: &mut [u8; 27]) -> Option<&str> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (at..at + digits).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, nanos / 1000, 6);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        buf[at] = sep;
    }
    std::str::from_utf8(buf).ok()
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

    #[test]
    fn ids_are_the_time_then_the_hash_and_sort_by_time() {
        let c = ConnectionId::from_uuid(Uuid::from_u128(1));
        let signal = |external: &str, t: &str| {
            Signal {
                id: Uuid::nil(),
                tenant_id: TenantId::from_uuid(Uuid::from_u128(9)),
                connection_id: c,
                provider: "github".into(),
                kind: "pr_merged".into(),
                occurred_at: at(t),
                received_at: at(t),
                external_id: external.into(),
                summary: String::new(),
                priority: None,
                participants: vec![],
                tags: vec![],
                related: vec![],
                url: None,
                payload: Value::Null,
            }
            .with_derived_id()
        };
        let s = signal("42", "2024-01-01T00:00:00Z");
        // Pinned: ids are stored (and migration 13 computes the same in SQL).
        assert_eq!(s.id.to_string(), "80060dd7-1021-2000-fe76-15b80cfe4409");
        assert_eq!(&s.dedupe_key()[..16], "fe7615b80cfe4409");
        assert!(id_is_at(s.id, s.occurred_at));
        assert!(first_id_at(s.occurred_at) <= s.id && s.id <= last_id_at(s.occurred_at));
        // Ordered by time, across 1970 and to the microsecond; equal times by hash.
        let times = [
            "1901-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000001Z",
            "9999-12-31T23:59:59.999999Z",
        ];
        let ids: Vec<Uuid> = times.iter().map(|t| signal("1", t).id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(last_id_at(at(times[1])) < first_id_at(at(times[2])));
        let same = signal("43", "2024-01-01T00:00:00Z");
        assert_ne!(same.id, s.id);
        assert!(id_is_at(same.id, s.occurred_at));
        // The same event, however it is built, has the same id.
        assert_eq!(signal("42", "2024-01-01T01:00:00+01:00").id, s.id);
    }

    #[test]
    fn the_time_in_the_dedupe_hash_is_written_as_rfc3339_micros() {
        let mut buf = [0; 27];
        let mut t = at("0000-01-01T00:00:00Z");
        let end = at("9999-12-31T23:59:59.999999Z");
        // Steps that hit every digit position (a prime number of seconds and
        // nanoseconds).
        let step = chrono::Duration::seconds(7_777_777) + chrono::Duration::nanoseconds(123_457);
        while t < end {
            let want = t.to_rfc3339_opts(SecondsFormat::Micros, true);
            assert_eq!(micros_rfc3339(t, &mut buf), Some(want.as_str()));
            t += step;
        }
        assert_eq!(
            micros_rfc3339(end, &mut buf),
            Some("9999-12-31T23:59:59.999999Z")
        );
        let far = DateTime::from_timestamp(253_402_300_800, 0).unwrap();
        assert_eq!(micros_rfc3339(far, &mut buf), None);
        let before_year_zero = DateTime::from_timestamp(-62_167_219_201, 0).unwrap();
        assert_eq!(micros_rfc3339(before_year_zero, &mut buf), None);
    }
}

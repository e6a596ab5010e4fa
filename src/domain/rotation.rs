//! A replaced webhook secret, kept beside the new one for a grace window so
//! deliveries the provider signed (or retries) with the old one still verify
//! while the operator updates the provider's side; after the window only the
//! new one does. Stored with the connection's sealed credentials under
//! [`PREVIOUS_SECRET_FIELD`] as `<until, RFC 3339> <secret>`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

/// The credential key of the previous webhook secret and its end of grace.
pub const PREVIOUS_SECRET_FIELD: &str = "previousWebhookSecret";

/// Carries the grace of a secret over a change of credentials: when `after`
/// replaces `before`'s `field` with another value, the old value verifies
/// until `until`; when `after` removes it, nothing of it verifies any more
/// (a removal is a revocation); otherwise a previous secret `before` kept
/// stays as it was.
pub fn keep_previous(
    before: &BTreeMap<String, SecretString>,
    after: &mut BTreeMap<String, SecretString>,
    field: &str,
    until: DateTime<Utc>,
) {
    let old = before.get(field).map(ExposeSecret::expose_secret);
    let new = after.get(field).map(ExposeSecret::expose_secret);
    match (old, new) {
        (Some(old), Some(new)) if new != old && !old.is_empty() => {
            let kept = format!("{} {old}", until.to_rfc3339());
            after.insert(PREVIOUS_SECRET_FIELD.into(), SecretString::from(kept));
        }
        (Some(_), None) => {
            after.remove(PREVIOUS_SECRET_FIELD);
        }
        _ => match before.get(PREVIOUS_SECRET_FIELD) {
            Some(kept) => {
                after.insert(PREVIOUS_SECRET_FIELD.into(), kept.clone());
            }
            None => {
                after.remove(PREVIOUS_SECRET_FIELD);
            }
        },
    }
}

/// The previous webhook secret while its grace lasts at `now`.
pub fn previous_secret(
    fields: &BTreeMap<String, SecretString>,
    now: DateTime<Utc>,
) -> Option<SecretString> {
    let kept = fields.get(PREVIOUS_SECRET_FIELD)?.expose_secret();
    let (until, secret) = kept.split_once(' ')?;
    let until = DateTime::parse_from_rfc3339(until).ok()?;
    (now < until).then(|| SecretString::from(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
            .collect()
    }

    #[test]
    fn a_replaced_secret_verifies_until_its_grace_ends() {
        let t0: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        let until = t0 + chrono::Duration::hours(24);
        let before = fields(&[("webhookSecret", "old"), ("token", "t")]);
        let mut after = fields(&[("webhookSecret", "new"), ("token", "t")]);
        keep_previous(&before, &mut after, "webhookSecret", until);
        let previous = |at| previous_secret(&after, at).map(|s| s.expose_secret().to_owned());
        assert_eq!(previous(t0).as_deref(), Some("old"));
        assert_eq!(
            previous(until - chrono::Duration::seconds(1)).as_deref(),
            Some("old")
        );
        assert_eq!(previous(until), None);

        // Another change that leaves the secret alone keeps the grace as it was.
        let mut again = fields(&[("webhookSecret", "new"), ("token", "t2")]);
        keep_previous(
            &after,
            &mut again,
            "webhookSecret",
            until + chrono::Duration::hours(5),
        );
        assert_eq!(
            previous_secret(&again, t0)
                .map(|s| s.expose_secret().to_owned())
                .as_deref(),
            Some("old")
        );
        assert!(previous_secret(&again, until).is_none());

        // A removed secret is revoked, with the one it replaced.
        let mut removed = fields(&[("token", "t")]);
        keep_previous(&again, &mut removed, "webhookSecret", until);
        assert!(previous_secret(&removed, t0).is_none());

        // A secret set for the first time has nothing to keep.
        let mut first = fields(&[("webhookSecret", "new")]);
        keep_previous(&fields(&[]), &mut first, "webhookSecret", until);
        assert_eq!(previous_secret(&first, t0).map(|_| ()), None);
    }
}

//! Gmail's shapes, read: the Pub/Sub push body (`message.data`: base64 JSON
//! `{emailAddress, historyId}`) and a `users.messages.get` (`format=metadata`)
//! message mapped to Signals — `email_received`, or `email_sent` for a
//! message labelled `SENT`, plus `thread_started` for the first message of a
//! thread (Gmail gives a thread the id of its first message); participants
//! from `From`/`To`/`Cc`, the subject as summary, and mail from or to a
//! configured press domain tagged `press` with priority `high`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::values::{participants, summary};
use crate::domain::{Priority, Signal};
use crate::engine::mapping::{MapContext, finished};

/// The provider id.
pub const PROVIDER: &str = "gmail";
/// What a mailbox address escapes in the message URL's query.
const ACCOUNT_IN_QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// Why a push body was refused (the push answers 400: Pub/Sub would repeat it as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Gmail push: {0}")]
pub struct PushError(String);

/// What a Gmail push says: which mailbox changed, up to which history id,
/// and the Pub/Sub message id (for dedupe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The mailbox (`emailAddress`), lower-cased.
    pub email_address: String,
    /// The mailbox's history id at the change.
    pub history_id: u64,
    /// Pub/Sub's id of the message.
    pub message_id: String,
}

/// Reads a Pub/Sub push body carrying a Gmail notification.
pub fn parse_push(body: &[u8]) -> Result<Push, PushError> {
    #[derive(Deserialize)]
    struct Envelope {
        message: Message,
    }
    #[derive(Deserialize)]
    struct Message {
        data: String,
        #[serde(rename = "messageId", alias = "message_id")]
        message_id: String,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "emailAddress")]
        email_address: String,
        #[serde(rename = "historyId")]
        history_id: Value,
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| PushError(format!("body: {e}")))?;
    let m = envelope.message;
    let data = STANDARD
        .decode(m.data.trim())
        .or_else(|_| URL_SAFE.decode(m.data.trim()))
        .map_err(|_| PushError("`message.data` is not base64".into()))?;
    let data: Data =
        serde_json::from_slice(&data).map_err(|e| PushError(format!("`message.data`: {e}")))?;
    // Gmail sends the history id as a number; its API types it a uint64
    // string: either is read.
    let history_id = match &data.history_id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| PushError("`historyId` is not an unsigned integer".into()))?;
    if m.message_id.is_empty() || !data.email_address.contains('@') {
        return Err(PushError("no message id or mailbox".into()));
    }
    Ok(Push {
        email_address: data.email_address.trim().to_ascii_lowercase(),
        history_id,
        message_id: m.message_id,
    })
}

/// A message as `users.messages.get?format=metadata` returns it (the fields read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GmailMessage {
    /// Message id.
    pub id: String,
    /// Thread id (the id of the thread's first message).
    pub thread_id: String,
    /// Labels.
    #[serde(default)]
    pub label_ids: Vec<String>,
    /// Receipt time, milliseconds since the epoch (a string on the wire;
    /// a number is read too).
    #[serde(default)]
    pub internal_date: Option<Value>,
    /// The mailbox's history id when it was last changed.
    #[serde(default)]
    pub history_id: Option<String>,
    /// Headers.
    #[serde(default)]
    pub payload: Option<Part>,
}

/// The top MIME part (its headers).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Part {
    /// Headers, in message order.
    #[serde(default)]
    pub headers: Vec<Header>,
}

/// A header.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// Name, as sent (case varies: `Message-Id`, `Message-ID`).
    pub name: String,
    /// Value.
    pub value: String,
}

impl GmailMessage {
    fn header(&self, name: &str) -> Option<&str> {
        self.payload.as_ref().and_then(|p| {
            p.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str())
        })
    }

    /// When the message arrived: `internalDate`, else the `Date` header.
    fn occurred_at(&self) -> Option<DateTime<Utc>> {
        self.internal_date
            .as_ref()
            .and_then(super::values::number)
            .and_then(DateTime::from_timestamp_millis)
            .or_else(|| {
                let date = self.header("Date")?;
                // `Wed, 29 Apr 2026 10:16:44 -0700 (PDT)`: the comment goes.
                let date = date.split(" (").next().unwrap_or(date);
                DateTime::parse_from_rfc2822(date.trim())
                    .ok()
                    .map(|d| d.to_utc())
            })
    }
}

/// Per-connection mapping settings.
#[derive(Debug, Clone, Default)]
pub struct GmailMapping {
    /// The mailbox (for the message URL).
    pub account: String,
    /// Press domains (`pressDomains`), lower-cased, without `@`.
    pub press_domains: Vec<String>,
}

/// Labels of messages that are not mail received or sent: unsent drafts
/// (each saved version a new message), spam, and Chat messages.
pub const SKIPPED_LABELS: [&str; 3] = ["DRAFT", "SPAM", "CHAT"];

/// The Signals of one message (none for drafts, spam and chats, or without a
/// usable time).
pub fn message_signals(
    message: &GmailMessage,
    mapping: &GmailMapping,
    ctx: &MapContext,
) -> Vec<Signal> {
    if message
        .label_ids
        .iter()
        .any(|l| SKIPPED_LABELS.contains(&l.as_str()))
    {
        return Vec::new();
    }
    let Some(occurred_at) = message.occurred_at() else {
        return Vec::new();
    };
    let listed: Vec<String> = ["From", "To", "Cc"]
        .iter()
        .filter_map(|name| message.header(name))
        .flat_map(addresses)
        .collect();
    let participants = participants(listed.iter().map(String::as_str));
    let press = participants.iter().any(|a| {
        let domain = a.rsplit('@').next().unwrap_or_default();
        mapping.press_domains.iter().any(|d| {
            domain
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
        })
    });
    let mut tags: Vec<String> = message
        .label_ids
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .collect();
    if press {
        tags.push("press".into());
    }
    let summary = summary(message.header("Subject"), || "(no subject)".into());
    let sent = message.label_ids.iter().any(|l| l == "SENT");
    let payload = json!({
        "id": message.id,
        "threadId": message.thread_id,
        "labelIds": message.label_ids,
        "historyId": message.history_id,
        "from": message.header("From"),
        "to": message.header("To"),
        "cc": message.header("Cc"),
        "subject": message.header("Subject"),
        "date": message.header("Date"),
        "messageId": message.header("Message-Id"),
    });
    let url = format!(
        "https://mail.google.com/mail/?authuser={}#all/{}",
        percent_encoding::utf8_percent_encode(&mapping.account, ACCOUNT_IN_QUERY),
        message.id
    );
    let signal = |kind: &str| {
        finished(Signal {
            id: Uuid::nil(),
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            provider: PROVIDER.to_owned(),
            kind: kind.to_owned(),
            occurred_at,
            received_at: ctx.received_at,
            external_id: message.id.clone(),
            summary: summary.clone(),
            priority: press.then_some(Priority::High),
            participants: participants.clone(),
            tags: tags.clone(),
            related: vec![format!("thread:{}", message.thread_id)],
            url: Some(url.clone()),
            payload: payload.clone(),
        })
    };
    let mut out = vec![signal(if sent { "email_sent" } else { "email_received" })];
    if message.id == message.thread_id {
        out.push(signal("thread_started"));
    }
    out
}

/// The addresses of an address-list header (`"Doe, J" <j@x.com>, k@y.com`),
/// lower-cased: the part inside `<…>` where there is one, else the token.
pub fn addresses(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let bytes = header.as_bytes();
    let mut take = |token: &str| {
        let token = token.trim();
        let address = match (token.rfind('<'), token.rfind('>')) {
            (Some(open), Some(close)) if open < close => &token[open + 1..close],
            _ => token,
        };
        let address = address.trim().trim_matches(|c| c == '"' || c == '\'');
        if address.contains('@') && !address.contains(char::is_whitespace) {
            out.push(address.to_ascii_lowercase());
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                take(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    take(&header[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_are_read_with_quotes_and_angles() {
        assert_eq!(
            addresses(r#""Doe, Jane" <Jane@Example.com>, bob@x.org,  Team <team@y.io>"#),
            ["jane@example.com", "bob@x.org", "team@y.io"]
        );
        assert_eq!(addresses("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(addresses(""), Vec::<String>::new());
        assert_eq!(addresses("<a@b.c>"), ["a@b.c"]);
    }

    #[test]
    fn drafts_spam_and_chats_are_not_mail_and_a_numeric_date_is_read() {
        let ctx = MapContext {
            tenant_id: crate::domain::TenantId::from_uuid(Uuid::from_u128(1)),
            connection_id: crate::domain::ConnectionId::from_uuid(Uuid::from_u128(2)),
            received_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let message = |labels: Value, date: Value| -> GmailMessage {
            serde_json::from_value(json!({
                "id": "m1", "threadId": "m1", "labelIds": labels, "internalDate": date,
                "payload": {"headers": [{"name": "From", "value": "a@b.c"}]}
            }))
            .unwrap()
        };
        let mapping = GmailMapping::default();
        for label in SKIPPED_LABELS {
            let m = message(json!([label, "INBOX"]), json!("1777483004000"));
            assert!(message_signals(&m, &mapping, &ctx).is_empty(), "{label}");
        }
        let m = message(json!(["INBOX"]), json!(1_777_483_004_000_i64));
        let signals = message_signals(&m, &mapping, &ctx);
        assert_eq!(signals.len(), 2);
        assert_eq!(signals[0].occurred_at.timestamp_millis(), 1_777_483_004_000);
    }

    #[test]
    fn press_domains_match_the_domain_and_its_subdomains_only() {
        let message = |from: &str| -> GmailMessage {
            serde_json::from_value(json!({
                "id": "m2", "threadId": "m1", "labelIds": ["INBOX"], "internalDate": "1777483004000",
                "payload": {"headers": [{"name": "From", "value": from}, {"name": "Subject", "value": "Hi"}]}
            }))
            .unwrap()
        };
        let mapping = GmailMapping {
            account: "me@example.org".into(),
            press_domains: vec!["example.com".into()],
        };
        let ctx = MapContext {
            tenant_id: crate::domain::TenantId::from_uuid(Uuid::from_u128(1)),
            connection_id: crate::domain::ConnectionId::from_uuid(Uuid::from_u128(2)),
            received_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        for (from, press) in [
            ("Ed <ed@example.com>", true),
            ("ed@news.example.com", true),
            ("ed@badexample.com", false),
            ("ed@example.com.evil.net", false),
        ] {
            let signals = message_signals(&message(from), &mapping, &ctx);
            assert_eq!(signals.len(), 1, "not the first of its thread");
            let s = &signals[0];
            assert_eq!(s.tags.contains(&"press".to_owned()), press, "{from}");
            assert_eq!(s.priority == Some(Priority::High), press, "{from}");
        }
    }

    fn push(data: &str, id: &str) -> Vec<u8> {
        json!({"message": {"data": data, "messageId": id}, "subscription": "s"})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn push_bodies_that_are_not_gmail_notifications_are_refused() {
        let good = STANDARD.encode(r#"{"emailAddress":"A@B.com","historyId":"42"}"#);
        let read = parse_push(&push(&good, "7")).unwrap();
        assert_eq!(
            (read.email_address.as_str(), read.history_id),
            ("a@b.com", 42)
        );
        for (case, body) in [
            ("not json", b"nope".to_vec()),
            ("not base64", push("***", "7")),
            ("no message id", push(&good, "")),
            ("data not json", push(&STANDARD.encode("x"), "7")),
            (
                "history id negative",
                push(
                    &STANDARD.encode(r#"{"emailAddress":"a@b.c","historyId":-1}"#),
                    "7",
                ),
            ),
            (
                "no mailbox",
                push(
                    &STANDARD.encode(r#"{"emailAddress":"","historyId":1}"#),
                    "7",
                ),
            ),
        ] {
            assert!(parse_push(&body).is_err(), "{case}");
        }
    }
}

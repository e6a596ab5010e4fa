//! Google Calendar (`google_calendar`): an `events.watch` channel per
//! calendar in config `calendars` (default `primary`; see `watched`), and a
//! sync per calendar: `events.list` with the calendar's stored `syncToken`
//! through every page to the `nextSyncToken`; a first sync, or a token Google
//! no longer takes (410 Gone), reads the events updated in the last
//! `backfillDays` (`timeMin`, `singleEvents=true`) and starts over from that
//! page's token, never failing the job for it. Signals: `event_created`,
//! `event_updated`, `event_cancelled`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use super::api::{self, Api};
use super::channel::Opened;
use super::paging::{MAX_PAGES, Pager, Turn};
use super::values::{backfill_days, lenient, list, participants, path_segment, summary};
use super::watched::{Source, Watched};
use crate::connector::native::Native;
use crate::connector::{ConnectionContext, ConnectorError, SyncMode};
use crate::domain::{Checkpoints, Signal};
use crate::engine::mapping::{MapContext, finished};
use crate::engine::poll::{PollOutcome, SignalSink};

/// The provider id.
pub const PROVIDER: &str = "google_calendar";
/// Read-only access to calendars and events.
pub const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/calendar.readonly"];
/// Calendars watched per connection at most.
pub const MAX_CALENDARS: usize = 20;
/// An event updated this close to its creation was just created.
const CREATED_WITHIN: TimeDelta = TimeDelta::seconds(2);
/// The channel lifetime asked of Calendar, in seconds (`params.ttl`).
const TTL_SECONDS: &str = "604800";

/// The native slot's entry.
pub fn native() -> Native {
    Native::new(PROVIDER, |input| {
        Watched::new(input, |google| Calendar {
            api_url: google.api_url.clone(),
        })
    })
}

/// Calendar's API.
#[derive(Debug)]
pub struct Calendar {
    api_url: String,
}

/// One `events.list` page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// The events.
    #[serde(default, deserialize_with = "lenient")]
    pub items: Vec<Event>,
    /// The next page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// On the last page: where the next sync starts.
    #[serde(default)]
    pub next_sync_token: Option<String>,
}

/// An event (the mapped fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Id.
    pub id: String,
    /// `confirmed`, `tentative` or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Title.
    #[serde(default)]
    pub summary: Option<String>,
    /// Link in Google Calendar.
    #[serde(default)]
    pub html_link: Option<String>,
    /// Created.
    pub created: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated: Option<DateTime<Utc>>,
    /// Organizer.
    #[serde(default)]
    pub organizer: Option<Person>,
    /// Attendees.
    #[serde(default)]
    pub attendees: Vec<Person>,
    /// Start (`dateTime` or `date`), kept in the payload.
    #[serde(default)]
    pub start: Option<Value>,
    /// End, kept in the payload.
    #[serde(default)]
    pub end: Option<Value>,
}

/// An organizer or attendee.
#[derive(Debug, Deserialize)]
pub struct Person {
    /// Their address.
    #[serde(default)]
    pub email: Option<String>,
}

/// The Signal of one event of `calendar` (none without any time).
pub fn event_signal(event: &Event, calendar: &str, ctx: &MapContext) -> Option<Signal> {
    let cancelled = event.status.as_deref() == Some("cancelled");
    let (kind, occurred_at) = match (event.created, event.updated) {
        (_, Some(u)) if cancelled => ("event_cancelled", u),
        // A cancelled instance can come as a bare tombstone.
        (_, None) if cancelled => ("event_cancelled", ctx.received_at),
        (Some(c), Some(u)) if u - c <= CREATED_WITHIN => ("event_created", c),
        (_, Some(u)) => ("event_updated", u),
        (_, None) => return None,
    };
    let people = event.organizer.iter().chain(&event.attendees);
    let participants = participants(people.filter_map(|p| p.email.as_deref()));
    let summary = summary(event.summary.as_deref(), || "(no title)".into());
    Some(finished(Signal {
        id: Uuid::nil(),
        tenant_id: ctx.tenant_id,
        connection_id: ctx.connection_id,
        provider: PROVIDER.to_owned(),
        kind: kind.to_owned(),
        occurred_at,
        received_at: ctx.received_at,
        external_id: event.id.clone(),
        summary,
        priority: None,
        participants,
        tags: Vec::new(),
        related: vec![format!("calendar:{calendar}")],
        url: event.html_link.clone(),
        payload: json!({
            "id": event.id,
            "calendar": calendar,
            "status": event.status,
            "summary": event.summary,
            "start": event.start,
            "end": event.end,
            "created": event.created,
            "updated": event.updated,
        }),
    }))
}

impl Calendar {
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        let mut url = Url::parse(&format!("{}/calendar/v3/{path}", self.api_url))
            .map_err(|e| ConnectorError::Url(format!("Google Calendar URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// One calendar's events since `token`, into `sink`; its next sync
    /// token. Without a token, every event that ends after the start of the
    /// `backfillDays` window is read (`timeMin` bounds the end time) and those
    /// updated in the window become Signals: a meeting set up months ago is
    /// not news.
    async fn calendar(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        calendar: &str,
        token: Option<&str>,
        sink: &mut dyn SignalSink,
        outcome: &mut PollOutcome,
    ) -> Result<String, ConnectorError> {
        let map_ctx = MapContext {
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            received_at: ctx.now,
        };
        let since = match token {
            Some(_) => None,
            None => {
                let days = backfill_days(ctx.config)?;
                Some(ctx.now - TimeDelta::days(i64::from(days)))
            }
        };
        let time_min = since.map(|s| s.to_rfc3339());
        let path = format!("calendars/{}/events", path_segment(calendar));
        let mut pager = Pager::new(<Self as Source>::NAME);
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![("singleEvents", "true"), ("maxResults", "250")];
            match (token, &time_min) {
                (Some(t), _) => query.push(("syncToken", t)),
                (None, Some(min)) => query.push(("timeMin", min)),
                (None, None) => {}
            }
            if let Some(p) = &page_token {
                query.push(("pageToken", p));
            }
            let page: EventPage = api.get(self.url(&path, &query)?).await?;
            let signals: Vec<Signal> = page
                .items
                .iter()
                .filter(|e| since.is_none_or(|s| e.updated.is_some_and(|u| u >= s)))
                .filter_map(|e| event_signal(e, calendar, &map_ctx))
                .collect();
            pager.write(sink, outcome, signals).await?;
            match (page.next_page_token, page.next_sync_token) {
                (Some(next), _) if !next.is_empty() => match pager.next(sink, next).await? {
                    Turn::Next(next) => page_token = Some(next),
                    // A page token is no sync token: the run cannot end here.
                    Turn::Bound(_) => {
                        return Err(ConnectorError::Other {
                            message: format!(
                                "Google Calendar: `{calendar}` has more than {MAX_PAGES} pages of events to read"
                            ),
                            retryable: false,
                        });
                    }
                },
                (_, Some(next)) => return Ok(next),
                (_, None) => {
                    return Err(ConnectorError::Other {
                        message: format!(
                            "Google Calendar: a page of `{calendar}` had neither nextPageToken nor nextSyncToken"
                        ),
                        retryable: true,
                    });
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Source for Calendar {
    const NAME: &'static str = "Google Calendar";
    const SCOPES: &'static [&'static str] = &SCOPES;
    const EVENT: &'static str = "calendar.events";

    fn resources(&self, config: &Value) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut calendars = list(config, "calendars");
        calendars.retain(|c| seen.insert(c.clone()));
        calendars.truncate(MAX_CALENDARS);
        if calendars.is_empty() {
            calendars.push("primary".into());
        }
        calendars
    }

    async fn open(
        &self,
        api: &Api<'_>,
        resource: &str,
        body: &Value,
    ) -> Result<Opened, ConnectorError> {
        let mut body = body.clone();
        body["params"] = json!({ "ttl": TTL_SECONDS });
        let path = format!("calendars/{}/events/watch", path_segment(resource));
        api.post(self.url(&path, &[])?, &body).await
    }

    fn stop_url(&self) -> Result<Url, ConnectorError> {
        self.url("channels/stop", &[])
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        let mut outcome = PollOutcome::default();
        for calendar in self.resources(ctx.config) {
            let stored = match mode {
                SyncMode::Incremental => checkpoints.get(&calendar).cloned().flatten(),
                SyncMode::Full => None,
            };
            let next = match self
                .calendar(ctx, api, &calendar, stored.as_deref(), sink, &mut outcome)
                .await
            {
                // The token is no good any more: read the window again.
                Err(e) if stored.is_some() && api::is_status(&e, 410) => {
                    tracing::info!(connection = %ctx.connection_id, calendar, "Calendar sync token expired; resyncing");
                    self.calendar(ctx, api, &calendar, None, sink, &mut outcome)
                        .await?
                }
                other => other?,
            };
            outcome.checkpoints.insert(calendar, Some(next));
        }
        Ok(outcome)
    }

    async fn ping(&self, api: &Api<'_>) -> Result<(), ConnectorError> {
        let _: Value = api
            .get(self.url("users/me/calendarList", &[("maxResults", "1")])?)
            .await?;
        Ok(())
    }
}

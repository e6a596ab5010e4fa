//! Google Drive and Google Calendar end to end, through the one door, on an
//! injected clock, against fake Drive and Calendar APIs (wiremock). Shapes:
//! channels as the recorded `changes.watch` / `events.watch` answers (the
//! expiration a string of epoch ms), pings with the headers of the recorded
//! `sync` notification and the docs' change examples (bodies empty), Calendar
//! events as the recorded `events.list` items, Calendar's 410 as the docs'
//! `fullSyncRequired` body. Drive `changes.list` pages with files: no
//! recorded one exists (`provider-samples/SOURCES.md`); these follow the API
//! reference (`drive#changeList`, `drive#change` with `file`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use poblysh_connectors::db::repo::jobs::JobState;
use poblysh_connectors::domain::{Clock, ManualClock, TenantId};
use poblysh_connectors::sync::scheduler;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::sync::google::{self, PUBLIC_URL, connection, drain, query, ran, signals, t0};
use crate::sync::harness::{Backend, Node};

/// The channels the fake opened and stopped, in call order.
#[derive(Debug, Clone, Default)]
struct Channels {
    /// (path, channel id, token, resource id) of each watch call.
    opened: Vec<(String, String, String, String)>,
    /// (channel id, resource id) of each stop.
    stopped: Vec<(String, String)>,
    /// Every watch and stop, in order: ("watch", id) or ("stop", id).
    order: Vec<(&'static str, String)>,
}

/// A fake Drive and Calendar.
#[derive(Debug, Clone)]
struct Fake {
    clock: ManualClock,
    channels: Arc<Mutex<Channels>>,
    /// Drive's change log (`drive#change` objects); the page token is an index.
    changes: Arc<Mutex<Vec<Value>>>,
    /// Calendar events by calendar, in update order.
    events: Arc<Mutex<BTreeMap<String, Vec<Value>>>>,
    /// Calendar answers 410 to any sync token.
    tokens_gone: Arc<Mutex<bool>>,
    /// `changes.list` requests that named the `fields` the connector maps.
    fields_seen: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn new(clock: ManualClock) -> Self {
        Fake {
            clock,
            channels: Arc::default(),
            changes: Arc::default(),
            events: Arc::default(),
            tokens_gone: Arc::default(),
            fields_seen: Arc::default(),
        }
    }

    fn channels(&self) -> Channels {
        self.channels.lock().unwrap().clone()
    }

    fn file_change(
        &self,
        id: &str,
        name: &str,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
        trashed: bool,
    ) {
        self.changes.lock().unwrap().push(json!({
            "kind": "drive#change", "changeType": "file", "removed": false, "fileId": id,
            "time": modified.to_rfc3339(),
            "file": {"kind": "drive#file", "id": id, "name": name, "mimeType": "application/vnd.google-apps.document",
                     "trashed": trashed, "createdTime": created.to_rfc3339(), "modifiedTime": modified.to_rfc3339(),
                     "webViewLink": format!("https://docs.google.com/document/d/{id}/edit"),
                     "owners": [{"emailAddress": "Owner@Example.com"}],
                     "lastModifyingUser": {"emailAddress": "editor@example.com"}}
        }));
    }

    fn removal(&self, id: &str, at: DateTime<Utc>) {
        self.changes.lock().unwrap().push(json!({
            "kind": "drive#change", "changeType": "file", "removed": true, "fileId": id, "time": at.to_rfc3339()
        }));
    }

    /// An event, shaped as the recorded `events.list` items, that ends an
    /// hour after its last update.
    fn event(
        &self,
        calendar: &str,
        id: &str,
        status: &str,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
    ) {
        self.event_ending(
            calendar,
            id,
            status,
            created,
            updated,
            updated + Duration::hours(1),
        );
    }

    fn event_ending(
        &self,
        calendar: &str,
        id: &str,
        status: &str,
        created: DateTime<Utc>,
        updated: DateTime<Utc>,
        end: DateTime<Utc>,
    ) {
        self.events.lock().unwrap().entry(calendar.to_owned()).or_default().push(json!({
            "kind": "calendar#event", "etag": "\"3546602776806302\"", "id": id, "status": status,
            "htmlLink": format!("https://www.google.com/calendar/event?eid={id}"),
            "created": created.to_rfc3339(), "updated": updated.to_rfc3339(), "summary": format!("Event {id}"),
            "creator": {"email": "api@nango.dev", "self": true}, "organizer": {"email": "api@nango.dev", "self": true},
            "start": {"dateTime": "2026-03-13T07:00:00-03:00", "timeZone": "UTC"},
            "end": {"dateTime": end.to_rfc3339(), "timeZone": "UTC"},
            "attendees": [{"email": "Guest@Example.org", "responseStatus": "accepted"}],
            "iCalUID": format!("{id}@google.com"), "sequence": 0, "eventType": "default"
        }));
    }
}

/// Pages of two; the page token is the offset.
fn window<T: Clone>(items: &[T], from: usize) -> (Vec<T>, Option<usize>) {
    let to = (from + 2).min(items.len());
    (
        items[from.min(to)..to].to_vec(),
        (to < items.len()).then_some(to),
    )
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let authorized = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some("Bearer tok-ann");
        if !authorized {
            return ResponseTemplate::new(401);
        }
        let p = req.url.path().to_owned();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let method = req.method.as_str();
        if method == "POST" && p.ends_with("/watch") {
            let id = body["id"].as_str().unwrap().to_owned();
            assert_eq!(body["type"], "web_hook");
            let mut ch = self.channels.lock().unwrap();
            let resource = format!("7axk6UsP7NfD81YqDzjDL1t7Gqs-{}", ch.opened.len());
            ch.opened.push((
                p.clone(),
                id.clone(),
                body["token"].as_str().unwrap().to_owned(),
                resource.clone(),
            ));
            ch.order.push(("watch", id.clone()));
            assert_eq!(
                body["address"],
                if p.starts_with("/drive") {
                    format!("{PUBLIC_URL}/webhooks/google_drive")
                } else {
                    format!("{PUBLIC_URL}/webhooks/google_calendar")
                }
            );
            let expires = self.clock.now() + Duration::days(7);
            return ResponseTemplate::new(200).set_body_json(json!({
                "kind": "api#channel", "id": id, "resourceId": resource,
                "resourceUri": "https://www.googleapis.com/drive/v3/changes?alt=json&pageToken=671",
                "expiration": expires.timestamp_millis().to_string(),
            }));
        }
        if method == "POST" && p.ends_with("/channels/stop") {
            let mut ch = self.channels.lock().unwrap();
            let (id, resource) = (
                body["id"].as_str().unwrap().to_owned(),
                body["resourceId"].as_str().unwrap().to_owned(),
            );
            ch.order.push(("stop", id.clone()));
            ch.stopped.push((id, resource));
            return ResponseTemplate::new(204);
        }
        match p.as_str() {
            "/drive/v3/changes/startPageToken" => {
                let n = self.changes.lock().unwrap().len();
                ResponseTemplate::new(200).set_body_json(
                    json!({"kind": "drive#startPageToken", "startPageToken": n.to_string()}),
                )
            }
            "/drive/v3/changes" => {
                if let Some(f) = query(req, "fields") {
                    self.fields_seen.lock().unwrap().push(f);
                }
                let from: usize = query(req, "pageToken").unwrap().parse().unwrap();
                let changes = self.changes.lock().unwrap().clone();
                let (items, next) = window(&changes, from);
                let mut page = json!({"kind": "drive#changeList", "changes": items});
                match next {
                    Some(n) => page["nextPageToken"] = json!(n.to_string()),
                    None => page["newStartPageToken"] = json!(changes.len().to_string()),
                }
                ResponseTemplate::new(200).set_body_json(page)
            }
            "/calendar/v3/users/me/calendarList" => ResponseTemplate::new(200)
                .set_body_json(json!({"kind": "calendar#calendarList", "items": []})),
            p if p.starts_with("/calendar/v3/calendars/") && p.ends_with("/events") => {
                let calendar = p["/calendar/v3/calendars/".len()..p.len() - "/events".len()]
                    .replace("%40", "@");
                assert_eq!(query(req, "singleEvents").as_deref(), Some("true"));
                let events = self
                    .events
                    .lock()
                    .unwrap()
                    .get(&calendar)
                    .cloned()
                    .unwrap_or_default();
                // A sync token `s<n>` is the number of events seen; without
                // one, `timeMin` bounds the events' end time, as Calendar's does.
                let listed: Vec<Value> = match (query(req, "syncToken"), query(req, "timeMin")) {
                    (Some(_), _) if *self.tokens_gone.lock().unwrap() => {
                        return ResponseTemplate::new(410).set_body_json(json!({"error": {"errors": [{"domain": "calendar", "reason": "fullSyncRequired",
                            "message": "Sync token is no longer valid, a full sync is required.", "locationType": "parameter", "location": "syncToken"}],
                            "code": 410, "message": "Sync token is no longer valid, a full sync is required."}}));
                    }
                    (Some(t), _) => {
                        events[t.trim_start_matches('s').parse::<usize>().unwrap()..].to_vec()
                    }
                    (None, Some(min)) => {
                        let min: DateTime<Utc> = min.parse().unwrap();
                        let end = |e: &Value| {
                            e["end"]["dateTime"]
                                .as_str()
                                .unwrap()
                                .parse::<DateTime<Utc>>()
                                .unwrap()
                        };
                        events.iter().filter(|e| end(e) > min).cloned().collect()
                    }
                    (None, None) => panic!("events.list without syncToken or timeMin"),
                };
                let from = query(req, "pageToken").map_or(0, |t| t.parse::<usize>().unwrap());
                let (items, next) = window(&listed, from);
                let mut page = json!({"kind": "calendar#events", "summary": calendar, "timeZone": "America/Sao_Paulo", "items": items});
                match next {
                    Some(n) => page["nextPageToken"] = json!(n.to_string()),
                    None => page["nextSyncToken"] = json!(format!("s{}", events.len())),
                }
                ResponseTemplate::new(200).set_body_json(page)
            }
            _ => ResponseTemplate::new(404).set_body_string(format!("unexpected {method} {p}")),
        }
    }
}

struct Setup {
    node: Node,
    clock: ManualClock,
    fake: Fake,
    _server: wiremock::MockServer,
}

async fn setup(backend: Backend, provider: &str) -> Setup {
    let google::Google {
        node,
        clock,
        server,
    } = google::start(backend, provider, &[]).await;
    let fake = Fake::new(clock.clone());
    Mock::given(wiremock::matchers::path_regex("^/(drive|calendar)/v3/"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    Setup {
        node,
        clock,
        fake,
        _server: server,
    }
}

/// A ping as Google sends one: no body, the channel headers.
async fn ping(
    node: &Node,
    provider: &str,
    channel: &str,
    token: Option<&str>,
    state: &str,
    number: u64,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("/webhooks/{provider}"))
        .header("content-length", "0")
        .header(
            "user-agent",
            "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        )
        .header("x-goog-channel-id", channel)
        .header("x-goog-resource-id", "7axk6UsP7NfD81YqDzjDL1t7Gqs")
        .header("x-goog-resource-state", state)
        .header("x-goog-message-number", number.to_string())
        .header("x-goog-channel-expiration", "Wed, 08 Dec 2026 09:00:00 GMT");
    if let Some(t) = token {
        req = req.header("x-goog-channel-token", t);
    }
    let (status, _, body) = node
        .send(req.body(axum::body::Body::empty()).unwrap())
        .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn kinds(signals: &[(String, String)]) -> Vec<String> {
    signals.iter().map(|(k, i)| format!("{k}:{i}")).collect()
}

crate::on_both! {
    async fn a_drive_ping_on_the_channel_brings_every_change_to_its_tenant(backend) {
        let s = setup(backend, "google_drive").await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let (status, provider) = s.node.public("GET", "/providers/google_drive").await;
        assert_eq!((status, provider["kind"].as_str()), (200, Some("native")), "{provider}");
        let (id, consent) = google::connect(&s.node, "google_drive", tenant, "ann", json!({})).await;
        assert_eq!(consent["scope"], "https://www.googleapis.com/auth/drive.metadata.readonly");
        assert_eq!(drain(&s.node).await, ran(&["setup", "full"]));
        let ch = s.fake.channels();
        assert_eq!(ch.opened.len(), 1);
        let (_, channel, token, _) = ch.opened[0].clone();
        assert!(Uuid::parse_str(&channel).is_ok(), "{channel}");
        let c = connection(&s.node, tenant, id).await;
        assert_eq!(c.metadata["channels"], json!([channel]));
        assert_eq!(c.renew_at, Some(t0() + Duration::hours(126)), "three quarters of the week");
        let (_, shown) = s.node.api("GET", &format!("/connections/{id}"), Some(tenant), None).await;
        assert!(!shown.to_string().contains(&token), "{shown}");

        // `sync` (the channel opened): 200, nothing else.
        let (status, _) = ping(&s.node, "google_drive", &channel, Some(&token), "sync", 1).await;
        assert_eq!(status, 200);
        assert!(drain(&s.node).await.is_empty());

        // Five changes (three pages); a ping: one incremental sync reads them all.
        let t = t0() - Duration::minutes(10);
        s.fake.file_change("1a", "Plan", t, t, false);
        s.fake.file_change("1b", "Notes", t - Duration::days(3), t, false);
        s.fake.file_change("1c", "Draft", t - Duration::days(9), t + Duration::minutes(1), true);
        s.fake.removal("1d", t + Duration::minutes(2));
        s.fake.file_change("1e", "Budget", t + Duration::minutes(3), t + Duration::minutes(3), false);
        let (status, answer) = ping(&s.node, "google_drive", &channel, Some(&token), "change", 2).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")), "{answer}");
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        let got = signals(&s.node, tenant).await;
        assert_eq!(kinds(&got), ["file_created:1a", "file_created:1e", "file_deleted:1d", "file_edited:1b", "file_trashed:1c"]);
        assert!(s.fake.fields_seen.lock().unwrap().iter().all(|f| f.contains("changes(") && f.contains("newStartPageToken")));
        let (_, page) = s.node.api("GET", "/signals?limit=100&kind=file_edited", Some(tenant), None).await;
        let edited = &page["signals"][0];
        assert_eq!(edited["participants"], json!(["editor@example.com", "owner@example.com"]), "{edited}");
        assert_eq!(edited["url"], "https://docs.google.com/document/d/1b/edit");

        // The same ping again: a duplicate. Forged ones: 401, nothing stored or asked for.
        let (status, answer) = ping(&s.node, "google_drive", &channel, Some(&token), "change", 2).await;
        assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
        s.fake.file_change("1f", "Forged", t, t, false);
        let unknown = Uuid::now_v7().to_string();
        for (case, channel, token) in [
            ("wrong token", channel.as_str(), Some("245t1234tt83trrt333")),
            ("no token", channel.as_str(), None),
            ("unknown channel", unknown.as_str(), Some(token.as_str())),
        ] {
            let (status, answer) = ping(&s.node, "google_drive", channel, token, "change", 3).await;
            assert_eq!(status, 401, "{case}: {answer}");
        }
        assert!(drain(&s.node).await.is_empty(), "no sync was asked for");
        assert_eq!(signals(&s.node, tenant).await, got);
        // Another tenant sees nothing.
        assert!(signals(&s.node, TenantId::from_uuid(Uuid::now_v7())).await.is_empty());
    }
}

crate::on_both! {
    async fn a_drive_change_between_the_watch_and_the_first_sync_is_not_lost(backend) {
        let s = setup(backend, "google_drive").await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        google::connect(&s.node, "google_drive", tenant, "ann", json!({})).await;
        let executor = s.node.executor("w");
        let setup = executor.try_execute_next().await.unwrap().unwrap();
        assert_eq!(setup.job_type.as_str(), "setup");
        let t = t0() - Duration::minutes(1);
        s.fake.file_change("1z", "Between", t, t, false);
        // A full sync asked for later reads on from the stored token too.
        assert_eq!(drain(&s.node).await, ran(&["full"]));
        assert_eq!(kinds(&signals(&s.node, tenant).await), ["file_created:1z"]);
        let (_, body) = s.node.api("POST", "/sync/google_drive", Some(tenant), Some(json!({"mode": "full"}))).await;
        assert!(body["jobs"].is_array(), "{body}");
        s.fake.file_change("2z", "After", t, t, false);
        assert_eq!(drain(&s.node).await, ran(&["full"]));
        assert_eq!(kinds(&signals(&s.node, tenant).await), ["file_created:1z", "file_created:2z"]);
    }
}

crate::on_both! {
    async fn drive_channels_are_renewed_without_a_gap_and_stopped_on_delete(backend) {
        let s = setup(backend, "google_drive").await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let (id, _) = google::connect(&s.node, "google_drive", tenant, "ann", json!({})).await;
        drain(&s.node).await;
        let first = s.fake.channels().opened[0].clone();
        let secret = || async {
            let fields = poblysh_connectors::db::repo::connections::credentials(&s.node.services.db, &s.node.services.keys, tenant, id)
                .await.unwrap().unwrap();
            secrecy::ExposeSecret::expose_secret(&fields["channelSecret"]).to_owned()
        };
        let before = secret().await;
        assert_eq!(poblysh_connectors::connector::native::google::channel::channel_token(&before, &first.1), first.2);
        let due = t0() + Duration::hours(126);
        s.clock.set(due - Duration::seconds(1));
        scheduler::tick(&s.node.services, s.clock.now()).await.unwrap();
        assert!(drain(&s.node).await.iter().all(|(t, _)| t != "renew"));
        s.clock.set(due);
        scheduler::tick(&s.node.services, s.clock.now()).await.unwrap();
        let jobs = drain(&s.node).await;
        assert!(jobs.contains(&("renew".to_owned(), JobState::Succeeded)), "{jobs:?}");
        let ch = s.fake.channels();
        let second = ch.opened[1].clone();
        assert_eq!(ch.order, [("watch", first.1.clone()), ("watch", second.1.clone()), ("stop", first.1.clone())], "the new channel opens before the old one stops");
        assert_eq!(ch.stopped, [(first.1.clone(), first.3.clone())]);
        let c = connection(&s.node, tenant, id).await;
        assert_eq!(c.metadata["channels"], json!([second.1]));
        assert_eq!(c.renew_at, Some(due + Duration::hours(126)));
        // Both tokens come from the connection's one secret, kept across the
        // renewal (so the old channel's pings verified until it stopped).
        assert_eq!(secret().await, before);
        let (status, _) = ping(&s.node, "google_drive", &second.1, Some(&second.2), "change", 1).await;
        assert_eq!(status, 200);
        // The stopped channel's pings route nowhere any more.
        let (status, _) = ping(&s.node, "google_drive", &first.1, Some(&first.2), "change", 9).await;
        assert_eq!(status, 401);
        drain(&s.node).await;

        let (status, _) = s.node.api("DELETE", &format!("/connections/{id}"), Some(tenant), None).await;
        assert_eq!(status, 204);
        assert_eq!(drain(&s.node).await, ran(&["teardown"]));
        assert_eq!(s.fake.channels().stopped.last(), Some(&(second.1.clone(), second.3.clone())));
    }
}

crate::on_both! {
    async fn calendar_events_of_every_watched_calendar_and_a_full_resync_on_410(backend) {
        let s = setup(backend, "google_calendar").await;
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let day = Duration::days(1);
        // Before the connection: one event in the 7-day window, one older.
        s.fake.event("primary", "old0000000000000000000000", "confirmed", t0() - day * 20, t0() - day * 10);
        // A meeting set up long ago that is still to come: read (it ends after
        // the window opens), but not news.
        s.fake.event_ending("primary", "future00000000000000000000", "confirmed", t0() - day * 60, t0() - day * 60, t0() + day * 30);
        s.fake.event("primary", "ej8u9dfl8a44kfl7rif62oplhc", "confirmed", t0() - day * 2, t0() - day * 2);
        let (id, consent) = google::connect(&s.node, "google_calendar", tenant, "ann",
            json!({"calendars": ["primary", "team@example.com"], "backfillDays": "7"})).await;
        assert_eq!(consent["scope"], "https://www.googleapis.com/auth/calendar.readonly");
        assert_eq!(drain(&s.node).await, ran(&["setup", "full"]));
        let ch = s.fake.channels();
        assert_eq!(ch.opened.len(), 2, "a channel per calendar");
        assert!(ch.opened[1].0.contains("team%40example.com"), "{:?}", ch.opened[1]);
        assert_eq!(kinds(&signals(&s.node, tenant).await), ["event_created:ej8u9dfl8a44kfl7rif62oplhc"]);

        // Changes in both calendars (over pages); a ping on the team calendar's channel.
        let t = t0() - Duration::minutes(5);
        s.fake.event("primary", "k258drj6c938mkp1la1fuacip0", "confirmed", t, t);
        s.fake.event("primary", "vsg86mjjl42k34m6ttuavlbpuo", "confirmed", t - day, t);
        s.fake.event("team@example.com", "3jipb4nqt786pa7ma2heehi4ms", "cancelled", t - day, t);
        s.fake.event("team@example.com", "t1", "confirmed", t, t);
        s.fake.event("team@example.com", "t2", "tentative", t - day, t + Duration::minutes(1));
        let (_, team_channel, token, _) = ch.opened[1].clone();
        // `sync` and forged pings ask for nothing.
        let (status, _) = ping(&s.node, "google_calendar", &team_channel, Some(&token), "sync", 1).await;
        assert_eq!(status, 200);
        let (status, _) = ping(&s.node, "google_calendar", &team_channel, Some("398348u3tu83ut8uu38"), "exists", 9).await;
        assert_eq!(status, 401);
        let (status, _) = ping(&s.node, "google_calendar", &ch.opened[0].1, Some(&token), "exists", 9).await;
        assert_eq!(status, 401, "one channel's token does not open another");
        assert!(drain(&s.node).await.is_empty());
        let (status, _) = ping(&s.node, "google_calendar", &team_channel, Some(&token), "exists", 10).await;
        assert_eq!(status, 200);
        assert_eq!(drain(&s.node).await, ran(&["incremental"]));
        let got = kinds(&signals(&s.node, tenant).await);
        assert_eq!(got, ["event_cancelled:3jipb4nqt786pa7ma2heehi4ms", "event_created:ej8u9dfl8a44kfl7rif62oplhc",
            "event_created:k258drj6c938mkp1la1fuacip0", "event_created:t1", "event_updated:t2", "event_updated:vsg86mjjl42k34m6ttuavlbpuo"]);
        let (_, page) = s.node.api("GET", "/signals?limit=100&kind=event_cancelled", Some(tenant), None).await;
        let cancelled = &page["signals"][0];
        assert_eq!(cancelled["participants"], json!(["api@nango.dev", "guest@example.org"]), "{cancelled}");
        assert_eq!(cancelled["related"], json!(["calendar:team@example.com"]));

        // Google drops the sync tokens: 410 → the window again, and the job succeeds.
        *s.fake.tokens_gone.lock().unwrap() = true;
        s.fake.event("primary", "after410", "confirmed", t0(), t0());
        let (status, _) = s.node.api("POST", "/sync/google_calendar", Some(tenant), Some(json!({"connection_id": id.to_string()}))).await;
        assert!(status < 300);
        // The resync reads the window without a token; the fake takes tokens again after it.
        let jobs = drain(&s.node).await;
        assert_eq!(jobs, ran(&["incremental"]));
        assert!(kinds(&signals(&s.node, tenant).await).contains(&"event_created:after410".to_owned()));
        assert_eq!(signals(&s.node, tenant).await.len(), 7, "nothing twice");
    }
}

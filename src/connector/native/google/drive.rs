//! Google Drive (`google_drive`): a `changes.watch` channel (see `watched`),
//! and a sync that reads `changes.list` from the stored page token through
//! every `nextPageToken` to the `newStartPageToken`, with `fields` limited to
//! what is mapped. A first sync only takes the start page token
//! (`changes.getStartPageToken`): Drive's history begins at the connection.
//! Signals: `file_created`, `file_edited`, `file_trashed`, `file_deleted`.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;
use uuid::Uuid;

use super::api::Api;
use super::channel::Opened;
use super::paging::{Pager, Turn};
use super::values::{lenient, participants, summary};
use super::watched::{Source, Watched};
use crate::connector::native::Native;
use crate::connector::{ConnectionContext, ConnectorError, SyncMode};
use crate::domain::{Checkpoints, Signal};
use crate::engine::mapping::{MapContext, finished};
use crate::engine::poll::{PollOutcome, SignalSink};

/// The provider id.
pub const PROVIDER: &str = "google_drive";
/// File metadata only: names, times, people, links; never contents.
pub const SCOPES: [&str; 1] = ["https://www.googleapis.com/auth/drive.metadata.readonly"];
/// The fields of `changes.list` that are mapped.
pub const FIELDS: &str = "nextPageToken,newStartPageToken,changes(changeType,removed,fileId,time,\
    file(id,name,mimeType,trashed,createdTime,modifiedTime,webViewLink,\
    owners(emailAddress),lastModifyingUser(emailAddress)))";
/// A file whose last change is this close to its creation was just created.
const CREATED_WITHIN: TimeDelta = TimeDelta::seconds(2);

/// Metadata: the page token taken when the first channel opened.
pub const START_TOKEN: &str = "startPageToken";

fn checkpoint(token: String) -> Checkpoints {
    [(String::new(), Some(token))].into()
}

/// The native slot's entry.
pub fn native() -> Native {
    Native::new(PROVIDER, |input| {
        Watched::new(input, |google| Drive {
            api_url: google.api_url.clone(),
        })
    })
}

/// Drive's API.
#[derive(Debug)]
pub struct Drive {
    api_url: String,
}

impl Drive {
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ConnectorError> {
        let mut url = Url::parse(&format!("{}/drive/v3/{path}", self.api_url))
            .map_err(|e| ConnectorError::Url(format!("Google Drive URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    async fn start_token(&self, api: &Api<'_>) -> Result<String, ConnectorError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Start {
            start_page_token: String,
        }
        let start: Start = api
            .get(self.url("changes/startPageToken", &[("supportsAllDrives", "true")])?)
            .await?;
        Ok(start.start_page_token)
    }
}

/// One `changes.list` page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePage {
    /// The changes.
    #[serde(default, deserialize_with = "lenient")]
    pub changes: Vec<Change>,
    /// The next page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// On the last page: where the next sync starts.
    #[serde(default)]
    pub new_start_page_token: Option<String>,
}

/// One change.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `file` or `drive` (a shared drive itself changed: not mapped).
    #[serde(default)]
    pub change_type: Option<String>,
    /// The file is gone (deleted, or no longer shared with the user).
    #[serde(default)]
    pub removed: bool,
    /// The file.
    #[serde(default)]
    pub file_id: Option<String>,
    /// When it changed.
    pub time: Option<DateTime<Utc>>,
    /// The file as it is now (absent when removed).
    #[serde(default)]
    pub file: Option<File>,
}

/// A file's metadata (the mapped fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// MIME type.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// In the trash.
    #[serde(default)]
    pub trashed: bool,
    /// Created.
    pub created_time: Option<DateTime<Utc>>,
    /// Last modified.
    pub modified_time: Option<DateTime<Utc>>,
    /// Link to the file in Drive.
    #[serde(default)]
    pub web_view_link: Option<String>,
    /// Owners.
    #[serde(default)]
    pub owners: Vec<User>,
    /// Who changed it last.
    #[serde(default)]
    pub last_modifying_user: Option<User>,
}

/// A person.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Their address (absent for some accounts).
    #[serde(default)]
    pub email_address: Option<String>,
}

/// The Signal of one change (none for a shared drive's own changes, or a
/// change without a time).
pub fn change_signal(change: &Change, ctx: &MapContext) -> Option<Signal> {
    if change.change_type.as_deref() == Some("drive") {
        return None;
    }
    let file = change.file.as_ref();
    let id = file
        .map(|f| f.id.clone())
        .or_else(|| change.file_id.clone())?;
    let (kind, occurred_at) = match file {
        _ if change.removed => ("file_deleted", change.time?),
        None => return None,
        Some(f) if f.trashed => ("file_trashed", change.time?),
        Some(f) => match (f.created_time, f.modified_time) {
            (Some(c), Some(m)) if m - c <= CREATED_WITHIN => ("file_created", c),
            (_, Some(m)) => ("file_edited", m),
            (_, None) => ("file_edited", change.time?),
        },
    };
    let people = file
        .into_iter()
        .flat_map(|f| f.last_modifying_user.iter().chain(&f.owners));
    let participants = participants(people.filter_map(|u| u.email_address.as_deref()));
    let summary = summary(file.map(|f| f.name.as_str()), || format!("File {id}"));
    Some(finished(Signal {
        id: Uuid::nil(),
        tenant_id: ctx.tenant_id,
        connection_id: ctx.connection_id,
        provider: PROVIDER.to_owned(),
        kind: kind.to_owned(),
        occurred_at,
        received_at: ctx.received_at,
        external_id: id.clone(),
        summary,
        priority: None,
        participants,
        tags: file.and_then(|f| f.mime_type.clone()).into_iter().collect(),
        related: Vec::new(),
        url: file.and_then(|f| f.web_view_link.clone()),
        payload: json!({
            "fileId": id,
            "removed": change.removed,
            "time": change.time,
            "name": file.map(|f| &f.name),
            "mimeType": file.and_then(|f| f.mime_type.as_ref()),
            "trashed": file.map(|f| f.trashed),
            "createdTime": file.and_then(|f| f.created_time),
            "modifiedTime": file.and_then(|f| f.modified_time),
        }),
    }))
}

#[async_trait::async_trait]
impl Source for Drive {
    const NAME: &'static str = "Google Drive";
    const SCOPES: &'static [&'static str] = &SCOPES;
    const EVENT: &'static str = "drive.changes";

    fn resources(&self, _config: &Value) -> Vec<String> {
        vec!["changes".into()]
    }

    async fn open(
        &self,
        api: &Api<'_>,
        _resource: &str,
        body: &Value,
    ) -> Result<Opened, ConnectorError> {
        let token = self.start_token(api).await?;
        let url = self.url(
            "changes/watch",
            &[
                ("pageToken", token.as_str()),
                ("supportsAllDrives", "true"),
                ("includeItemsFromAllDrives", "true"),
            ],
        )?;
        api.post(url, body).await
    }

    fn stop_url(&self) -> Result<Url, ConnectorError> {
        self.url("channels/stop", &[])
    }

    async fn prepare(
        &self,
        api: &Api<'_>,
        metadata: &Value,
    ) -> Result<Map<String, Value>, ConnectorError> {
        // Where the connection's history starts: taken with its first
        // channel, so nothing between the watch and the first sync is missed.
        let mut out = Map::new();
        if metadata.get(START_TOKEN).and_then(Value::as_str).is_none() {
            out.insert(START_TOKEN.into(), json!(self.start_token(api).await?));
        }
        Ok(out)
    }

    async fn sync(
        &self,
        ctx: &ConnectionContext<'_>,
        api: &Api<'_>,
        _mode: SyncMode,
        checkpoints: &Checkpoints,
        sink: &mut dyn SignalSink,
    ) -> Result<PollOutcome, ConnectorError> {
        // Drive keeps no history before the connection: a full sync reads
        // from where the last one ended, as an incremental one does.
        let mut outcome = PollOutcome::default();
        let stored = checkpoints.get("").cloned().flatten().or_else(|| {
            ctx.metadata
                .get(START_TOKEN)
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let Some(mut token) = stored else {
            outcome.checkpoints = checkpoint(self.start_token(api).await?);
            return Ok(outcome);
        };
        let map_ctx = MapContext {
            tenant_id: ctx.tenant_id,
            connection_id: ctx.connection_id,
            received_at: ctx.now,
        };
        let mut pager = Pager::new(Self::NAME);
        loop {
            let url = self.url(
                "changes",
                &[
                    ("pageToken", token.as_str()),
                    ("pageSize", "1000"),
                    ("includeRemoved", "true"),
                    ("supportsAllDrives", "true"),
                    ("includeItemsFromAllDrives", "true"),
                    ("fields", FIELDS),
                ],
            )?;
            let page: ChangePage = api.get(url).await?;
            let signals: Vec<Signal> = page
                .changes
                .iter()
                .filter_map(|c| change_signal(c, &map_ctx))
                .collect();
            pager.write(sink, &mut outcome, signals).await?;
            match (page.next_page_token, page.new_start_page_token) {
                (Some(next), _) if !next.is_empty() => match pager.next(sink, next).await? {
                    Turn::Next(next) => token = next,
                    // A page token is a position: the next run goes on from it.
                    Turn::Bound(next) => {
                        outcome.checkpoints = checkpoint(next);
                        outcome.truncated = true;
                        return Ok(outcome);
                    }
                },
                (_, Some(start)) => {
                    outcome.checkpoints = checkpoint(start);
                    return Ok(outcome);
                }
                (_, None) => {
                    return Err(ConnectorError::Other {
                        message: "Google Drive: a changes page had neither nextPageToken nor newStartPageToken".into(),
                        retryable: true,
                    });
                }
            }
        }
    }

    async fn ping(&self, api: &Api<'_>) -> Result<(), ConnectorError> {
        self.start_token(api).await.map(|_| ())
    }
}

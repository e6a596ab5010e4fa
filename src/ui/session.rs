//! Dashboard sessions: the `tower-sessions` store over the database
//! (`db::repo::ui_sessions`, so every node sees every session), what a session
//! holds (its CSRF token, when the operator signed in and was last seen, the
//! tenant it acts for and the recent ones), and the extractor a page uses to
//! require a signed-in operator.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session};
use uuid::Uuid;

use crate::api::AppState;
use crate::db::Db;
use crate::db::repo::ui_sessions;
use crate::domain::TenantId;

/// A session ends after this long without a request the operator made.
pub const IDLE: Duration = Duration::minutes(30);
/// A session ends this long after signing in, however busy.
pub const ABSOLUTE: Duration = Duration::hours(12);
/// How many recently used tenants a session remembers.
pub const RECENT_TENANTS: usize = 5;
/// The session cookie's name.
pub const COOKIE: &str = "poblysh_session";
/// The key the session's data is stored under.
const KEY: &str = "ui";

/// The store: sessions in the database, keyed by a digest of their id.
#[derive(Debug, Clone)]
pub struct DbStore(pub Db);

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn to_chrono(t: time::OffsetDateTime) -> DateTime<Utc> {
    // Out of range only for a corrupt record: already expired then.
    Utc.timestamp_opt(t.unix_timestamp(), 0)
        .single()
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl SessionStore for DbStore {
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        ui_sessions::save(
            &self.0,
            &record.id.to_string(),
            &data,
            to_chrono(record.expiry_date),
        )
        .await
        .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some((data, expires)) = ui_sessions::load(&self.0, &id.to_string())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data).map_err(backend)?;
        let expiry_date =
            time::OffsetDateTime::from_unix_timestamp(expires.timestamp()).map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        ui_sessions::delete(&self.0, &id.to_string())
            .await
            .map_err(backend)
    }
}

/// The idle expiry the session layer sets on each save.
pub fn expiry() -> Expiry {
    Expiry::OnInactivity(time::Duration::seconds(IDLE.num_seconds()))
}

/// What a session holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Data {
    /// The token every state-changing request must carry.
    pub csrf: String,
    /// When the operator signed in (unix seconds); none before.
    pub signed_in_at: Option<i64>,
    /// When the operator last made a request (unix seconds).
    pub seen_at: i64,
    /// The tenant the dashboard acts for.
    pub tenant: Option<Uuid>,
    /// Recently used tenants, newest first.
    pub recent: Vec<Uuid>,
}

impl Data {
    /// Whether the operator is signed in at `now` (within both expiries).
    pub fn signed_in(&self, now: DateTime<Utc>) -> bool {
        let now = now.timestamp();
        self.signed_in_at.is_some_and(|at| {
            now - at < ABSOLUTE.num_seconds() && now - self.seen_at < IDLE.num_seconds()
        })
    }

    /// Acts for `tenant` from now on, remembering it first among the recent.
    pub fn choose(&mut self, tenant: Uuid) {
        self.tenant = Some(tenant);
        self.recent.retain(|t| *t != tenant);
        self.recent.insert(0, tenant);
        self.recent.truncate(RECENT_TENANTS);
    }
}

/// A new random CSRF token.
pub fn new_token(state: &AppState) -> String {
    state.0.ambient.token(32)
}

/// The session's data (an empty one for a new session).
pub async fn data(session: &Session) -> Data {
    session
        .get::<Data>(KEY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Stores the session's data.
pub async fn store(session: &Session, data: &Data) -> Result<(), Response> {
    session.insert(KEY, data).await.map_err(|e| {
        tracing::error!(error = %e, "cannot save a dashboard session");
        super::view::error_page(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "The session could not be saved; try again.",
        )
    })
}

/// Header a page's own refreshes send, so they do not count as the operator
/// being active.
pub const REFRESH_HEADER: &str = "x-poblysh-refresh";

/// A signed-in operator's request: its session and data. Pages without one
/// redirect to the sign-in page; fragments (refreshes) answer 401.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// Its data.
    pub data: Data,
}

impl SignedIn {
    /// The tenant it acts for, if one is chosen.
    pub fn tenant(&self) -> Option<TenantId> {
        self.data.tenant.map(TenantId::from_uuid)
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| Redirect::to("/ui/login").into_response())?;
        let mut data = data(&session).await;
        let now = state.0.ambient.now();
        if !data.signed_in(now) {
            if data.signed_in_at.is_some() {
                // Expired: nothing of it is kept.
                let _ = session.flush().await;
            }
            return Err(if parts.headers.contains_key(REFRESH_HEADER) {
                axum::http::StatusCode::UNAUTHORIZED.into_response()
            } else {
                Redirect::to("/ui/login").into_response()
            });
        }
        // Seen: extends the idle expiry (at most one write a minute).
        if !parts.headers.contains_key(REFRESH_HEADER) && now.timestamp() - data.seen_at >= 60 {
            data.seen_at = now.timestamp();
            store(&session, &data).await?;
        }
        Ok(SignedIn { session, data })
    }
}

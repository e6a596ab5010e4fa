//! Connections, tenant-scoped. Credentials are sealed with the key ring and bound
//! to (tenant, connection, field); they are opened only here (`credentials`,
//! `StoredConnection::open_*`), never carried in a `Connection`. A connection
//! being deleted (status `deleting`) is gone for its tenant but kept for the
//! runtime until its teardown has run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{Binding, KeyRing};
use crate::db::entities::connection::{ActiveModel, Column, Entity, Model};
use crate::db::{Db, StoreError, stored_time};
use crate::domain::TokenSet;
use crate::domain::{ConnectionId, TenantId};

/// The `credentials` field name in the AAD.
const CREDENTIALS: &str = "credentials";

/// The status of a connection being deleted: gone for its tenant, kept for the
/// runtime until its `Teardown` hook has run.
pub const DELETING: &str = "deleting";

/// Failures in a row from which a connection's health is `error` rather than
/// `degraded`.
pub const ERROR_AFTER_FAILURES: i32 = 3;

impl Connection {
    /// Its health: `healthy`; `degraded` (recent failures, fewer than
    /// [`ERROR_AFTER_FAILURES`] in a row); `error` (more, or it needs
    /// re-authorization, or is failing for good); `unknown` (never checked
    /// nor synced).
    pub fn health(&self) -> &'static str {
        if self.status != "active" {
            return "error";
        }
        match self.healthy {
            None => "unknown",
            Some(true) => "healthy",
            Some(false) if self.consecutive_failures >= ERROR_AFTER_FAILURES => "error",
            Some(false) => "degraded",
        }
    }
}

/// A connection as the rest of the service sees it: no secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Id.
    pub id: ConnectionId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Connector id.
    pub provider: String,
    /// Label.
    pub name: Option<String>,
    /// `active`, `needs_reauth`, `error`, or `deleting` (runtime views only).
    pub status: String,
    /// Whether syncing is enabled.
    pub enabled: bool,
    /// Config fields.
    pub config: Value,
    /// Metadata.
    pub metadata: Value,
    /// Last health result.
    pub healthy: Option<bool>,
    /// Failures in a row.
    pub consecutive_failures: i32,
    /// Last error.
    pub last_error: Option<String>,
    /// Last health check.
    pub last_health_check: Option<chrono::DateTime<Utc>>,
    /// When the connector's `Renew` hook is due.
    pub renew_at: Option<chrono::DateTime<Utc>>,
    /// The connection's last sync attempt, once one ended.
    pub last_sync: Option<LastSync>,
    /// When its first Signal was stored.
    pub first_signal_at: Option<chrono::DateTime<Utc>>,
    /// Created.
    pub created_at: chrono::DateTime<Utc>,
    /// Updated.
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<Model> for Connection {
    fn from(m: Model) -> Self {
        Connection {
            id: ConnectionId::from_uuid(m.id),
            tenant_id: TenantId::from_uuid(m.tenant_id),
            provider: m.provider_id,
            name: m.name,
            status: m.status,
            enabled: m.enabled,
            config: m.config,
            metadata: m.metadata,
            healthy: m.healthy,
            consecutive_failures: m.consecutive_failures,
            last_error: m.last_error,
            last_health_check: m.last_health_check,
            renew_at: m.renew_at,
            last_sync: match (m.last_sync_at, m.last_sync_status) {
                (Some(at), Some(status)) => Some(LastSync {
                    at,
                    status,
                    ms: m.last_sync_ms.unwrap_or(0),
                }),
                _ => None,
            },
            first_signal_at: m.first_signal_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// How a connection's last sync attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSync {
    /// When it ended.
    pub at: chrono::DateTime<Utc>,
    /// `succeeded`, `retrying` (it failed and is retried) or `failed`.
    pub status: String,
    /// How long it ran, in milliseconds.
    pub ms: i64,
}

/// A connection to create.
#[derive(Debug)]
pub struct NewConnection {
    /// Connector id.
    pub provider: String,
    /// Label.
    pub name: Option<String>,
    /// Config fields (already validated).
    pub config: Value,
    /// Credential fields (already validated).
    pub credentials: BTreeMap<String, SecretString>,
    /// OAuth tokens, for a connection created by the OAuth callback.
    pub tokens: Option<TokenSet>,
}

/// The AAD field name of the sealed access token.
pub const ACCESS_TOKEN: &str = "access_token";
/// The AAD field name of the sealed refresh token.
pub const REFRESH_TOKEN: &str = "refresh_token";

/// Seals a token set onto a connection row, keeping the old refresh token when
/// the provider sent none.
fn seal_tokens(
    keys: &KeyRing,
    row: &mut ActiveModel,
    tenant: TenantId,
    id: ConnectionId,
    set: &TokenSet,
) {
    use secrecy::ExposeSecret;
    let bind = |field| Binding {
        tenant,
        record: id,
        field,
    };
    row.access_token = Set(Some(keys.seal(
        set.access_token.expose_secret().as_bytes(),
        bind(ACCESS_TOKEN),
    )));
    if let Some(refresh) = &set.refresh_token {
        row.refresh_token = Set(Some(
            keys.seal(refresh.expose_secret().as_bytes(), bind(REFRESH_TOKEN)),
        ));
    }
    row.expires_at = Set(set.expires_at.map(stored_time));
}

/// Changes to a connection.
#[derive(Debug, Default)]
pub struct ConnectionPatch {
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New config (replaces the old one).
    pub config: Option<Value>,
    /// New label.
    pub name: Option<Option<String>>,
    /// Forget the stored access token (and its expiry): the next call gets a
    /// new one (an exchanged token for another installation, say).
    pub forget_access_token: bool,
}

fn binding(tenant: TenantId, id: ConnectionId) -> Binding<'static> {
    Binding {
        tenant,
        record: id,
        field: CREDENTIALS,
    }
}

fn seal_credentials(
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
    credentials: &BTreeMap<String, SecretString>,
) -> Option<Vec<u8>> {
    use secrecy::ExposeSecret;
    if credentials.is_empty() {
        return None;
    }
    let plain: BTreeMap<&str, &str> = credentials
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    let json = Zeroizing::new(serde_json::to_vec(&plain).expect("a map of strings serializes"));
    Some(keys.seal(&json, binding(tenant, id)))
}

/// Creates a connection.
pub async fn create(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    new: NewConnection,
) -> Result<Connection, StoreError> {
    let id = ConnectionId::from_uuid(Uuid::now_v7());
    let now = db.now();
    let metadata = new.tokens.as_ref().map_or_else(
        || Value::Object(Default::default()),
        |t| Value::Object(t.metadata.clone()),
    );
    let mut model = ActiveModel {
        id: Set(*id.as_uuid()),
        tenant_id: Set(*tenant.as_uuid()),
        provider_id: Set(new.provider),
        name: Set(new.name),
        status: Set("active".into()),
        enabled: Set(true),
        config: Set(new.config),
        credentials: Set(seal_credentials(keys, tenant, id, &new.credentials)),
        access_token: Set(None),
        refresh_token: Set(None),
        expires_at: Set(None),
        metadata: Set(metadata),
        last_health_check: Set(None),
        healthy: Set(None),
        consecutive_failures: Set(0),
        last_error: Set(None),
        renew_at: Set(None),
        last_sync_at: Set(None),
        last_sync_status: Set(None),
        last_sync_ms: Set(None),
        first_signal_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    if let Some(tokens) = &new.tokens {
        seal_tokens(keys, &mut model, tenant, id, tokens);
    }
    Ok(model.insert(db.conn()).await?.into())
}

/// The tenant's connections, newest first.
pub async fn list(db: &Db, tenant: TenantId) -> Result<Vec<Connection>, StoreError> {
    let rows = Entity::find()
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::Status.ne(DELETING))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .all(db.reads())
        .await?;
    Ok(rows.into_iter().map(Connection::from).collect())
}

/// The tenant's connections to one provider.
pub async fn list_for_provider(
    db: &Db,
    tenant: TenantId,
    provider: &str,
) -> Result<Vec<Connection>, StoreError> {
    let rows = Entity::find()
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::ProviderId.eq(provider))
        .filter(Column::Status.ne(DELETING))
        .order_by_asc(Column::CreatedAt)
        .all(db.conn())
        .await?;
    Ok(rows.into_iter().map(Connection::from).collect())
}

/// The row, whatever its status (the runtime's view).
async fn find(db: &Db, tenant: TenantId, id: ConnectionId) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(*id.as_uuid())
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .one(db.conn())
        .await?)
}

/// The row as its tenant sees it: a connection being deleted is gone.
async fn find_visible(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<Model>, StoreError> {
    Ok(find(db, tenant, id).await?.filter(|m| m.status != DELETING))
}

/// The stored row of one of the tenant's connections as it is (sealed secrets
/// included): for audits of what is at rest. The runtime reads [`stored`].
pub async fn row(db: &Db, tenant: TenantId, id: ConnectionId) -> Result<Option<Model>, StoreError> {
    find(db, tenant, id).await
}

/// A connection as the runtime reads it: its record, when its access token
/// expires, and its sealed secrets, which only the `open_*` functions open.
#[derive(Clone)]
pub struct StoredConnection {
    /// The connection.
    pub connection: Connection,
    /// When the access token expires, when known.
    pub expires_at: Option<chrono::DateTime<Utc>>,
    credentials: Option<Vec<u8>>,
    access_token: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
}

impl std::fmt::Debug for StoredConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredConnection")
            .field("connection", &self.connection)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl From<Model> for StoredConnection {
    fn from(mut m: Model) -> Self {
        let credentials = m.credentials.take();
        let access_token = m.access_token.take();
        let refresh_token = m.refresh_token.take();
        let expires_at = m.expires_at;
        StoredConnection {
            connection: Connection::from(m),
            expires_at,
            credentials,
            access_token,
            refresh_token,
        }
    }
}

impl StoredConnection {
    /// Whether it holds an access token that is still valid `ahead` from `now`
    /// (a token without an expiry stays valid).
    pub fn token_fresh(&self, now: chrono::DateTime<Utc>, ahead: chrono::Duration) -> bool {
        self.access_token.is_some() && self.expires_at.is_none_or(|e| e > now + ahead)
    }

    /// Whether `other` holds the same sealed access token (no one refreshed in between).
    pub fn same_access_token(&self, other: &StoredConnection) -> bool {
        self.access_token == other.access_token
    }

    fn binding(&self, field: &'static str) -> Binding<'static> {
        Binding {
            tenant: self.connection.tenant_id,
            record: self.connection.id,
            field,
        }
    }

    fn open_token(
        &self,
        keys: &KeyRing,
        field: &'static str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<SecretString>, StoreError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = Zeroizing::new(keys.open(sealed, self.binding(field))?);
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::Corrupt(format!("{field} is not text")))?;
        Ok(Some(SecretString::from(text)))
    }

    /// The credential fields, opened.
    pub fn open_credentials(
        &self,
        keys: &KeyRing,
    ) -> Result<BTreeMap<String, SecretString>, StoreError> {
        open_credentials(
            keys,
            self.connection.tenant_id,
            self.connection.id,
            self.credentials.as_deref(),
        )
    }

    /// The access token, opened.
    pub fn open_access_token(&self, keys: &KeyRing) -> Result<Option<SecretString>, StoreError> {
        self.open_token(keys, ACCESS_TOKEN, self.access_token.as_deref())
    }

    /// The refresh token, opened.
    pub fn open_refresh_token(&self, keys: &KeyRing) -> Result<Option<SecretString>, StoreError> {
        self.open_token(keys, REFRESH_TOKEN, self.refresh_token.as_deref())
    }
}

/// One of the tenant's connections, for the runtime.
pub async fn stored(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<StoredConnection>, StoreError> {
    Ok(find(db, tenant, id).await?.map(StoredConnection::from))
}

/// A connection held for an update that must happen once across workers and
/// nodes (a token refresh): locked (a transaction-scoped advisory lock on the
/// connection on PostgreSQL; an immediate write transaction on SQLite) until
/// the guard is finished. Dropped
/// unfinished, it rolls back.
pub struct Locked {
    txn: sea_orm::DatabaseTransaction,
    current: StoredConnection,
    model: Model,
}

impl std::fmt::Debug for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// The advisory lock key of a connection (its id folded to 64 bits: a
/// collision only makes two refreshes take turns).
fn advisory_key(id: ConnectionId) -> i64 {
    let (high, low) = id.as_uuid().as_u64_pair();
    (high ^ low) as i64
}

/// Waits for the connection's advisory lock in `txn` (PostgreSQL; held until
/// it ends): taken by [`lock`] and by whatever must not interleave with it
/// (marking the connection deleted, deleting it). Nothing on SQLite, where
/// a write transaction already excludes the others.
pub async fn hold<C: sea_orm::ConnectionTrait>(
    txn: &C,
    id: ConnectionId,
) -> Result<(), StoreError> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [advisory_key(id).into()],
        ))
        .await?;
    }
    Ok(())
}

/// Locks one of the tenant's connections; `None` when it no longer exists.
pub async fn lock(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<Locked>, StoreError> {
    let txn = if db.backend() == sea_orm::DbBackend::Postgres {
        // Read committed, whatever the server's default: the row is read
        // after the lock is granted, and must be what the last holder left.
        use sea_orm::TransactionTrait;
        db.conn()
            .begin_with_config(Some(sea_orm::IsolationLevel::ReadCommitted), None)
            .await?
    } else {
        db.begin_write().await?
    };
    // An advisory lock, not `FOR UPDATE`: a row lock gives the transaction
    // an id for as long as the refresh's HTTP call takes, holding back every
    // reader of arrival positions (push, streams) behind it; the advisory
    // lock takes none until the tokens are saved.
    hold(&txn, id).await?;
    let query = Entity::find_by_id(*id.as_uuid()).filter(Column::TenantId.eq(*tenant.as_uuid()));
    let Some(model) = query.one(&txn).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    Ok(Some(Locked {
        txn,
        current: StoredConnection::from(model.clone()),
        model,
    }))
}

impl Locked {
    /// The connection as it is now, under the lock.
    pub fn current(&self) -> &StoredConnection {
        &self.current
    }

    /// Stores a new token set (keeping the refresh token when the set has none)
    /// and releases the lock.
    pub async fn save_tokens(
        self,
        keys: &KeyRing,
        set: &TokenSet,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (
            self.current.connection.tenant_id,
            self.current.connection.id,
        );
        let mut active: ActiveModel = self.model.into();
        seal_tokens(keys, &mut active, tenant, id, set);
        active.updated_at = Set(stored_time(now));
        active.update(&self.txn).await?;
        self.txn.commit().await?;
        Ok(())
    }

    /// Marks the connection `needs_reauth` with `message` and releases the lock
    /// (a connection being deleted stays `deleting`: only its health changes).
    pub async fn needs_reauth(
        self,
        message: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let deleting = self.model.status == DELETING;
        let mut active: ActiveModel = self.model.into();
        if !deleting {
            active.status = Set("needs_reauth".into());
        }
        active.healthy = Set(Some(false));
        active.last_error = Set(Some(message.to_owned()));
        active.updated_at = Set(stored_time(now));
        active.update(&self.txn).await?;
        self.txn.commit().await?;
        Ok(())
    }

    /// Stores the token set of a new authorization and makes the connection
    /// active again (its failures forgotten), keeping its id, config,
    /// metadata and checkpoints; releases the lock.
    pub async fn reauthorized(
        self,
        keys: &KeyRing,
        set: &TokenSet,
        now: chrono::DateTime<Utc>,
    ) -> Result<Connection, StoreError> {
        let (tenant, id) = (
            self.current.connection.tenant_id,
            self.current.connection.id,
        );
        let mut active: ActiveModel = self.model.into();
        seal_tokens(keys, &mut active, tenant, id, set);
        active.status = Set("active".into());
        active.healthy = Set(None);
        active.consecutive_failures = Set(0);
        active.last_error = Set(None);
        active.updated_at = Set(stored_time(now));
        let model = active.update(&self.txn).await?;
        self.txn.commit().await?;
        Ok(model.into())
    }

    /// Releases the lock, changing nothing.
    pub async fn release(self) -> Result<(), StoreError> {
        self.txn.commit().await?;
        Ok(())
    }
}

/// Records the outcome of a job or health check: healthy resets the failure
/// count; a failure increments it and keeps the error. `checked` stamps the
/// health check's time; `sync` (a sync attempt's end: its status as in
/// [`LastSync`], and how many milliseconds it ran) stamps the last sync.
pub async fn record_health(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
    outcome: Result<(), &str>,
    checked: bool,
    sync: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    use sea_orm::ExprTrait;
    use sea_orm::sea_query::Expr;
    let now = db.now();
    let mut update = Entity::update_many()
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    update = match outcome {
        Ok(()) => update
            .col_expr(Column::Healthy, Expr::value(true))
            .col_expr(Column::ConsecutiveFailures, Expr::value(0))
            .col_expr(Column::LastError, Expr::value(Option::<String>::None)),
        Err(message) => update
            .col_expr(Column::Healthy, Expr::value(false))
            .col_expr(
                Column::ConsecutiveFailures,
                Expr::col(Column::ConsecutiveFailures).add(1),
            )
            .col_expr(Column::LastError, Expr::value(message)),
    };
    if checked {
        update = update.col_expr(Column::LastHealthCheck, Expr::value(now));
    }
    if let Some((status, ms)) = sync {
        update = update
            .col_expr(Column::LastSyncAt, Expr::value(now))
            .col_expr(Column::LastSyncStatus, Expr::value(status))
            .col_expr(Column::LastSyncMs, Expr::value(ms));
    }
    update.exec(db.conn()).await?;
    Ok(())
}

/// Enabled, active connections, across tenants, whose OAuth access token
/// expires before `before` and that hold a refresh token: what the upkeep
/// refreshes. A system read: ids, tenant and provider only.
pub async fn tokens_expiring(
    db: &Db,
    before: DateTime<Utc>,
) -> Result<Vec<(ConnectionId, TenantId, String)>, StoreError> {
    let rows: Vec<(Uuid, Uuid, String)> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::TenantId)
        .column(Column::ProviderId)
        .filter(Column::Enabled.eq(true))
        .filter(Column::Status.eq("active"))
        .filter(Column::RefreshToken.is_not_null())
        .filter(Column::ExpiresAt.lt(stored_time(before)))
        .order_by_asc(Column::ExpiresAt)
        .into_tuple()
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, tenant, provider)| {
            (
                ConnectionId::from_uuid(id),
                TenantId::from_uuid(tenant),
                provider,
            )
        })
        .collect())
}

/// Up to `limit` enabled, active connections, across tenants, whose health
/// was last checked at or before `due_before` (or never), the longest waiting first.
pub async fn health_due(
    db: &Db,
    due_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(ConnectionId, TenantId)>, StoreError> {
    use sea_orm::ExprTrait;
    use sea_orm::sea_query::{Expr, NullOrdering, Order};
    let rows: Vec<(Uuid, Uuid)> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::TenantId)
        .filter(Column::Enabled.eq(true))
        .filter(Column::Status.eq("active"))
        .filter(
            Column::LastHealthCheck
                .is_null()
                .or(Column::LastHealthCheck.lte(stored_time(due_before))),
        )
        .order_by_with_nulls(
            Expr::col(Column::LastHealthCheck),
            Order::Asc,
            NullOrdering::First,
        )
        .limit(limit)
        .into_tuple()
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, tenant)| (ConnectionId::from_uuid(id), TenantId::from_uuid(tenant)))
        .collect())
}

/// Takes the due health check of one of the tenant's connections for this
/// node (its `last_health_check` set to `now` if still at or before `due_before`):
/// false when another node took it first.
pub async fn claim_health_check(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
    due_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    use sea_orm::ExprTrait;
    use sea_orm::sea_query::Expr;
    let result = Entity::update_many()
        .col_expr(Column::LastHealthCheck, Expr::value(stored_time(now)))
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(
            Column::LastHealthCheck
                .is_null()
                .or(Column::LastHealthCheck.lte(stored_time(due_before))),
        )
        .exec(db.conn())
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records that the tenant's connection stored its first Signal at `at`
/// (once: later calls change nothing); how long after its creation, the
/// first time.
pub async fn mark_first_signal<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: ConnectionId,
    at: DateTime<Utc>,
) -> Result<Option<chrono::Duration>, StoreError> {
    use sea_orm::sea_query::Expr;
    let result = Entity::update_many()
        .col_expr(Column::FirstSignalAt, Expr::value(stored_time(at)))
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::FirstSignalAt.is_null())
        .exec(conn)
        .await?;
    if result.rows_affected != 1 {
        return Ok(None);
    }
    let created: Option<DateTime<Utc>> = Entity::find_by_id(*id.as_uuid())
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .select_only()
        .column(Column::CreatedAt)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(created.map(|c| at - c))
}

/// Every enabled connection created before `created_before`, across tenants:
/// what the scheduler needs (ids, tenant, provider). A system read: no
/// secrets, no config.
pub async fn schedulable(
    db: &Db,
    created_before: DateTime<Utc>,
) -> Result<Vec<(ConnectionId, TenantId, String)>, StoreError> {
    let rows = Entity::find()
        .filter(Column::Enabled.eq(true))
        .filter(Column::Status.eq("active"))
        .filter(Column::CreatedAt.lt(stored_time(created_before)))
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                ConnectionId::from_uuid(r.id),
                TenantId::from_uuid(r.tenant_id),
                r.provider_id,
            )
        })
        .collect())
}

/// A connection that can receive webhooks, with its own webhook secret (one of
/// its credentials) opened when it has one.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The connection.
    pub connection: Connection,
    /// Its own webhook secret.
    pub secret: Option<SecretString>,
    /// The secret it replaced, while its grace window lasts.
    pub previous: Option<SecretString>,
}

/// The enabled connections to `provider` that webhooks may reach: the tenant's
/// (`Some`), or every tenant's (`None`: a tenant-less delivery is routed by a
/// value in the request, the one cross-tenant read besides the scheduler's).
/// Oldest first; `secret_field` names the credential holding a connection's
/// own secret (and, within its grace window, the one it replaced). A row whose
/// credentials cannot be opened is left out (and logged) rather than failing
/// every tenant's delivery.
pub async fn webhook_targets(
    db: &Db,
    keys: &KeyRing,
    provider: &str,
    tenant: Option<TenantId>,
    secret_field: Option<&str>,
) -> Result<Vec<WebhookTarget>, StoreError> {
    let mut query = Entity::find()
        .filter(Column::ProviderId.eq(provider))
        .filter(Column::Enabled.eq(true));
    if let Some(t) = tenant {
        query = query.filter(Column::TenantId.eq(*t.as_uuid()));
    }
    let rows = query
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .all(db.conn())
        .await?;
    let now = db.now();
    Ok(rows
        .into_iter()
        .filter_map(|m| {
            let tenant = TenantId::from_uuid(m.tenant_id);
            let id = ConnectionId::from_uuid(m.id);
            let (secret, previous) = match secret_field {
                None => (None, None),
                Some(field) => {
                    match open_credentials(keys, tenant, id, m.credentials.as_deref()) {
                        Ok(mut credentials) => (
                            credentials.remove(field),
                            crate::domain::rotation::previous_secret(&credentials, now),
                        ),
                        Err(e) => {
                            tracing::error!(connection = %id, error = %e, "cannot open a connection's credentials; it gets no webhooks");
                            return None;
                        }
                    }
                }
            };
            Some(WebhookTarget {
                connection: Connection::from(m),
                secret,
                previous,
            })
        })
        .collect())
}

/// One of the tenant's connections.
pub async fn get(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<Connection>, StoreError> {
    Ok(find_visible(db, tenant, id).await?.map(Connection::from))
}

/// Applies `patch`; `None` when the tenant has no such connection.
pub async fn update(
    db: &Db,
    tenant: TenantId,
    id: ConnectionId,
    patch: ConnectionPatch,
) -> Result<Option<Connection>, StoreError> {
    let Some(model) = find_visible(db, tenant, id).await? else {
        return Ok(None);
    };
    let mut active: ActiveModel = model.into();
    if let Some(enabled) = patch.enabled {
        active.enabled = Set(enabled);
    }
    if let Some(config) = patch.config {
        active.config = Set(config);
    }
    if let Some(name) = patch.name {
        active.name = Set(name);
    }
    if patch.forget_access_token {
        active.access_token = Set(None);
        active.expires_at = Set(None);
    }
    active.updated_at = Set(db.now());
    Ok(Some(active.update(db.conn()).await?.into()))
}

/// Sets (or, with `None`, removes) credential fields of the tenant's
/// connection, re-sealed with the others; `None` when the tenant has no such
/// connection.
pub async fn set_credentials(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
    changes: &[(&str, Option<SecretString>)],
) -> Result<Option<()>, StoreError> {
    update_credentials(db, keys, tenant, id, |fields| {
        for (field, value) in changes {
            match value {
                Some(v) => fields.insert((*field).to_owned(), v.clone()),
                None => fields.remove(*field),
            };
        }
    })
    .await
}

/// Changes the credential fields of the tenant's connection with `change`,
/// under the row lock (so two changes never undo each other), and re-seals
/// them; what `change` returns, or `None` when the tenant has no such
/// connection (or it is being deleted).
pub async fn update_credentials<T>(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
    change: impl FnOnce(&mut BTreeMap<String, SecretString>) -> T,
) -> Result<Option<T>, StoreError> {
    let Some(locked) = lock(db, tenant, id).await? else {
        return Ok(None);
    };
    if locked.model.status == DELETING {
        locked.release().await?;
        return Ok(None);
    }
    let mut fields = open_credentials(keys, tenant, id, locked.model.credentials.as_deref())?;
    let out = change(&mut fields);
    let mut active: ActiveModel = locked.model.into();
    active.credentials = Set(seal_credentials(keys, tenant, id, &fields));
    active.updated_at = Set(db.now());
    active.update(&locked.txn).await?;
    locked.txn.commit().await?;
    Ok(Some(out))
}

/// Deletes a connection; false when the tenant has no such connection.
pub async fn delete(db: &Db, tenant: TenantId, id: ConnectionId) -> Result<bool, StoreError> {
    // Not in the middle of a token refresh (which would write it back).
    let txn = db.begin_write().await?;
    hold(&txn, id).await?;
    let result = Entity::delete_many()
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::Status.ne(DELETING))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected > 0)
}

/// Starts deleting a connection whose connector must stop something at the
/// provider first, in the caller's transaction (the one that enqueues the
/// teardown): it is disabled and gone for its tenant at once, and kept for the
/// runtime until [`purge`]. False when the tenant has no such connection.
pub async fn mark_deleting<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: ConnectionId,
    now: chrono::DateTime<Utc>,
) -> Result<bool, StoreError> {
    use sea_orm::sea_query::Expr;
    // Not in the middle of a token refresh (which would write its status back).
    hold(conn, id).await?;
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(DELETING))
        .col_expr(Column::Enabled, Expr::value(false))
        .col_expr(Column::UpdatedAt, Expr::value(stored_time(now)))
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::Status.ne(DELETING))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Removes a connection being deleted, once its teardown has run (in the
/// caller's transaction; its jobs go with it). False when it is not being deleted.
pub async fn purge<C: sea_orm::ConnectionTrait>(
    conn: &C,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<bool, StoreError> {
    let result = Entity::delete_many()
        .filter(Column::Id.eq(*id.as_uuid()))
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .filter(Column::Status.eq(DELETING))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Connections being deleted, across tenants (the scheduler's sweep: those
/// whose teardown has ended are removed).
pub async fn deleting(db: &Db) -> Result<Vec<(ConnectionId, TenantId)>, StoreError> {
    let rows = Entity::find()
        .filter(Column::Status.eq(DELETING))
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                ConnectionId::from_uuid(r.id),
                TenantId::from_uuid(r.tenant_id),
            )
        })
        .collect())
}

/// What a lifecycle hook changed on a connection.
#[derive(Debug, Default)]
pub struct HookUpdate<'a> {
    /// Metadata keys to set (`null` removes one).
    pub metadata: Option<&'a serde_json::Map<String, Value>>,
    /// Credential fields to set (`None` removes one), sealed.
    pub secrets: Option<&'a BTreeMap<String, Option<SecretString>>>,
    /// When the next renewal is due.
    pub renew_at: Option<chrono::DateTime<Utc>>,
}

/// Stores what a hook changed, in the caller's transaction (the one that also
/// marks its job done). Nothing when the connection is gone.
pub async fn apply_hook<C: sea_orm::ConnectionTrait>(
    conn: &C,
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
    update: HookUpdate<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(model) = Entity::find_by_id(*id.as_uuid())
        .filter(Column::TenantId.eq(*tenant.as_uuid()))
        .one(conn)
        .await?
    else {
        return Ok(());
    };
    let mut metadata = match &model.metadata {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let mut fields = open_credentials(keys, tenant, id, model.credentials.as_deref())?;
    let mut active: ActiveModel = model.into();
    if let Some(changes) = update.metadata {
        for (k, v) in changes {
            if v.is_null() {
                metadata.remove(k);
            } else {
                metadata.insert(k.clone(), v.clone());
            }
        }
        active.metadata = Set(Value::Object(metadata));
    }
    if let Some(secrets) = update.secrets {
        for (k, v) in secrets {
            match v {
                Some(v) => fields.insert(k.clone(), v.clone()),
                None => fields.remove(k),
            };
        }
        active.credentials = Set(seal_credentials(keys, tenant, id, &fields));
    }
    active.renew_at = Set(update.renew_at.map(stored_time));
    active.updated_at = Set(stored_time(now));
    active.update(conn).await?;
    Ok(())
}

/// Connections whose renewal is due at `now`, across tenants (the scheduler's
/// read): enabled, active, `renew_at` passed.
pub async fn due_for_renewal(
    db: &Db,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<(ConnectionId, TenantId, String, chrono::DateTime<Utc>)>, StoreError> {
    let rows = Entity::find()
        .filter(Column::Enabled.eq(true))
        .filter(Column::Status.eq("active"))
        .filter(Column::RenewAt.lte(stored_time(now)))
        .all(db.conn())
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                ConnectionId::from_uuid(r.id),
                TenantId::from_uuid(r.tenant_id),
                r.provider_id,
                r.renew_at?,
            ))
        })
        .collect())
}

/// The connection's credentials, opened.
pub async fn credentials(
    db: &Db,
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
) -> Result<Option<BTreeMap<String, SecretString>>, StoreError> {
    let Some(model) = find(db, tenant, id).await? else {
        return Ok(None);
    };
    open_credentials(keys, tenant, id, model.credentials.as_deref()).map(Some)
}

/// Opens a sealed credentials value.
fn open_credentials(
    keys: &KeyRing,
    tenant: TenantId,
    id: ConnectionId,
    sealed: Option<&[u8]>,
) -> Result<BTreeMap<String, SecretString>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(BTreeMap::new());
    };
    let plain = Zeroizing::new(keys.open(sealed, binding(tenant, id))?);
    let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
        .map_err(|_| StoreError::Corrupt("credentials are not a JSON object of strings".into()))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect())
}

//! Storage: the SeaORM connection (SQLite by default, PostgreSQL in production),
//! migrations, entities and the tenant-scoped repositories.
//!
//! Error types: `StoreError` for everything below the API.

pub mod arrived;
pub mod entities;
pub mod repo;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};

use crate::crypto::CryptoError;
use crate::domain::Ambient;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused the statement.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A sealed value could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A stored value is not what this version expects.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database location cannot be prepared.
    #[error("cannot prepare {path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// The database, and the node's clock and randomness that stamp and name what
/// it stores.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// The API's list reads: on a SQLite file, a pool of its own (`query_only`
    /// connections), so a read never waits for a slot behind the writers;
    /// otherwise the same pool as `conn`.
    reads: DatabaseConnection,
    ambient: Ambient,
    wakeups: std::sync::Arc<tokio::sync::Notify>,
    providers_changed: std::sync::Arc<tokio::sync::Notify>,
    /// Who waits for which tenant's new Signals; what to tell other nodes.
    arrived: std::sync::Arc<arrived::Arrived>,
    /// Whether a task of this node relays announcements already.
    relaying: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The PostgreSQL channel an enqueue is announced on.
const JOBS_CHANNEL: &str = "poblysh_jobs";
/// The PostgreSQL channel a change of the runtime providers is announced on.
const PROVIDERS_CHANNEL: &str = "poblysh_providers";
/// The PostgreSQL channel new Signals are announced on.
const SIGNALS_CHANNEL: &str = "poblysh_signals";
/// How often at most a node announces new Signals to the others (the
/// announcements of a burst of writes coalesce into one).
const SIGNALS_ANNOUNCE_EVERY: Duration = Duration::from_millis(10);

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`); for SQLite, creates
    /// the file's directory.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        let Some(path) = sqlite_file(url) else {
            let options = if url.starts_with("sqlite:") {
                // In memory: one database per connection, so one pool.
                sqlite_options(url, WRITE_POOL, false)
            } else {
                pool_options(url, 16)
            };
            let conn = Database::connect(options).await?;
            return Ok(Db::from_pools(conn.clone(), conn));
        };
        if let Some(dir) = Path::new(&path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        // The write pool first: it creates the file and turns on WAL.
        let conn = Database::connect(sqlite_options(url, WRITE_POOL, false)).await?;
        let reads = Database::connect(sqlite_options(url, READ_POOL, true)).await?;
        Ok(Db::from_pools(conn, reads))
    }

    fn from_pools(conn: DatabaseConnection, reads: DatabaseConnection) -> Db {
        Db {
            conn,
            reads,
            ambient: Ambient::system(),
            wakeups: std::sync::Arc::default(),
            providers_changed: std::sync::Arc::default(),
            arrived: std::sync::Arc::default(),
            relaying: std::sync::Arc::default(),
        }
    }

    /// The same database under another clock and randomness (tests, the app builder).
    #[must_use]
    pub fn with_ambient(mut self, ambient: Ambient) -> Self {
        self.ambient = ambient;
        self
    }

    /// The node's clock and randomness.
    pub fn ambient(&self) -> &Ambient {
        &self.ambient
    }

    /// Wakes the idle workers of this node, and (PostgreSQL) of every node
    /// listening: a job was enqueued and committed. Best effort: the workers'
    /// poll interval is the safety net.
    pub async fn wake_workers(&self) {
        self.wakeups.notify_waiters();
        self.announce(JOBS_CHANNEL, "").await;
    }

    /// What idle workers wait on (see [`Db::wake_workers`]).
    pub fn wakeups(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.wakeups)
    }

    /// Tells every node listening (PostgreSQL) that the runtime providers
    /// changed and were committed. Best effort: each node's periodic look at
    /// the providers table is the safety net.
    pub async fn announce_providers(&self) {
        self.announce(PROVIDERS_CHANNEL, "").await;
    }

    /// What a node's registry follower waits on: other nodes' announcements
    /// (see [`Db::announce_providers`]).
    pub fn providers_changed(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.providers_changed)
    }

    /// Signals of `tenants` were stored and committed: wakes this node's
    /// deliverers and streams of those tenants at once, and (PostgreSQL)
    /// tells the other nodes within `SIGNALS_ANNOUNCE_EVERY`, by the task
    /// relaying announcements. Never waits: it is on the ingestion path.
    pub fn announce_signals(&self, tenants: &std::collections::HashSet<crate::domain::TenantId>) {
        self.arrived.committed(tenants);
    }

    /// What a deliverer or a stream of `tenant` waits on (see
    /// [`Db::announce_signals`]).
    pub fn signals_arrived(
        &self,
        tenant: crate::domain::TenantId,
    ) -> std::sync::Arc<tokio::sync::Notify> {
        self.arrived.waiter(tenant)
    }

    /// Sends `payload` on `channel` (PostgreSQL; nothing elsewhere). Best
    /// effort: a failure is logged, the listeners' periodic looks cover it.
    async fn announce(&self, channel: &str, payload: &str) {
        if self.backend() == DbBackend::Postgres {
            use sea_orm::ConnectionTrait;
            let notify = sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [channel.into(), payload.into()],
            );
            if let Err(e) = self.conn.execute_raw(notify).await {
                tracing::debug!(error = %e, channel, "cannot announce a change");
            }
        }
    }

    /// On PostgreSQL, relays other nodes' announcements (jobs enqueued,
    /// providers changed) to this node until `shutdown` turns true
    /// (reconnecting after a failure; a reconnect counts as a provider change,
    /// as one may have been missed). Nothing to do on SQLite, or when another
    /// task of this node relays already.
    pub async fn relay_announcements(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use std::sync::atomic::Ordering;
        if self.backend() != DbBackend::Postgres || self.relaying.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.conn.get_postgres_connection_pool().clone();
        while !*shutdown.borrow() {
            tokio::select! {
                e = relay(&pool, &self.wakeups, &self.providers_changed, &self.arrived) => {
                    tracing::warn!(error = %e, "announcements interrupted; reconnecting");
                    let _ = tokio::time::timeout(Duration::from_secs(1), shutdown.changed()).await;
                    self.providers_changed.notify_one();
                    // Announcements may have been missed meanwhile.
                    self.arrived.wake_all();
                }
                () = self.announce_signals_to_others() => {}
                _ = shutdown.changed() => {}
            }
        }
        self.relaying.store(false, Ordering::Release);
    }

    /// Sends `SIGNALS_CHANNEL` for the Signals stored here, at most every
    /// `SIGNALS_ANNOUNCE_EVERY`, forever (a part of the relay).
    async fn announce_signals_to_others(&self) {
        loop {
            self.arrived.to_announce.notified().await;
            if let Some(payload) = self.arrived.take_announcement() {
                self.announce(SIGNALS_CHANNEL, &payload).await;
                self.ambient.sleep(SIGNALS_ANNOUNCE_EVERY).await;
            }
        }
    }

    /// On SQLite, folds the write-ahead log back into the database and
    /// truncates it (after a large write, so the `-wal` file does not stay the
    /// size of what was written). Best effort: readers may keep part of it.
    pub async fn checkpoint_wal(&self) {
        if self.backend() != DbBackend::Sqlite {
            return;
        }
        use sea_orm::ConnectionTrait;
        if let Err(e) = self
            .conn
            .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
    }

    /// Now, as stored (microseconds).
    pub fn now(&self) -> DateTime<Utc> {
        stored_time(self.ambient.now())
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if self.backend() == DbBackend::Sqlite {
            // On one connection, in one transaction: run statement by statement
            // across the pool, a migration leaves other connections with a
            // schema they loaded half-way, and SQLite checks an upsert's
            // conflict target against that stale schema without reloading it
            // ("ON CONFLICT clause does not match any … UNIQUE constraint").
            use sea_orm::TransactionTrait;
            let txn = self.conn.begin().await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await?;
            return Ok(());
        }
        Migrator::up(&self.conn, None).await?;
        Ok(())
    }

    /// The connection, for repositories.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The connection for the API's list reads (see the `reads` field).
    pub fn reads(&self) -> &DatabaseConnection {
        &self.reads
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Begins a write transaction: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers wait for each other instead of failing.
    pub async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        use sea_orm::TransactionTrait;
        let mode = (self.backend() == DbBackend::Sqlite)
            .then_some(sea_orm::SqliteTransactionMode::Immediate);
        self.conn
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: mode,
                ..Default::default()
            })
            .await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

/// Connections of a SQLite file's write pool (writes take turns on SQLite's
/// one write lock; reads outside transactions share it).
pub const WRITE_POOL: u32 = 4;
/// Connections of a SQLite file's read pool (the API's list reads).
pub const READ_POOL: u32 = 4;
/// How long a SQLite statement waits for the write lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of `size` connections that waits up to 10 s for a free one.
fn pool_options(url: &str, size: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(size);
    options
}

/// The options of a SQLite pool: WAL, 2 MiB of page cache per connection
/// (SQLite's default: sync runs commit in short transactions, on whichever
/// pooled connection is free, so a larger cache per connection only costs
/// memory), the busy timeout; `query_only` for the read pool.
fn sqlite_options(url: &str, size: u32, query_only: bool) -> ConnectOptions {
    let mut options = pool_options(url, size);
    options.map_sqlx_sqlite_opts(move |o| {
        let o = o
            .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
            .pragma("cache_size", "-2048")
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        if query_only {
            o.pragma("query_only", "ON")
        } else {
            o
        }
    });
    options
}

/// Relays `JOBS_CHANNEL` notifications to `wakeups`, `PROVIDERS_CHANNEL`
/// ones to `providers` and `SIGNALS_CHANNEL` ones to `signals` until the
/// listener fails.
async fn relay(
    pool: &sea_orm::sqlx::PgPool,
    wakeups: &tokio::sync::Notify,
    providers: &tokio::sync::Notify,
    signals: &arrived::Arrived,
) -> sea_orm::sqlx::Error {
    let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener
        .listen_all([JOBS_CHANNEL, PROVIDERS_CHANNEL, SIGNALS_CHANNEL])
        .await
    {
        return e;
    }
    loop {
        match listener.recv().await {
            Ok(n) if n.channel() == PROVIDERS_CHANNEL => providers.notify_one(),
            Ok(n) if n.channel() == SIGNALS_CHANNEL => signals.received(n.payload()),
            Ok(_) => wakeups.notify_waiters(),
            Err(e) => return e,
        }
    }
}

/// The file of an SQLite URL (`sqlite://data/x.db?mode=rwc` → `data/x.db`), or
/// `None` for other databases and in-memory SQLite.
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Timestamps are stored with microsecond precision, as PostgreSQL keeps them,
/// so both backends order and compare identically.
pub fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_file("sqlite://data/connectors.db?mode=rwc").as_deref(),
            Some("data/connectors.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}

//! The long-lived services every part of a running node shares: storage, the
//! key ring, the connector registry, the outbound HTTP client, the clock and
//! randomness, and the configuration. Built once by the app builder
//! (`crate::app`); the API and the workers hold it.

use crate::config::Config;
use crate::crypto::KeyRing;
use crate::db::Db;
use crate::domain::Ambient;
use crate::engine::http::HttpClient;
use crate::registry::Registry;

/// Shared services.
#[derive(Debug)]
pub struct Services {
    /// Storage.
    pub db: Db,
    /// Seals credentials and tokens.
    pub keys: KeyRing,
    /// The loaded connectors.
    pub registry: Registry,
    /// The outbound HTTP client.
    pub http: HttpClient,
    /// Configuration (provider app secrets, public URL).
    pub config: Config,
    /// The clock and randomness (the same the database and HTTP client use).
    pub ambient: Ambient,
    /// Turns true when the node stops: long-lived responses (live streams)
    /// end, so the server can finish.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

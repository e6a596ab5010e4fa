//! The long-lived services every part of a running node shares: storage, the
//! key ring, the connector registry, the outbound HTTP client and the
//! configuration. Built once at start-up; the API and the workers hold it.

use crate::config::Config;
use crate::crypto::KeyRing;
use crate::db::Db;
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
}

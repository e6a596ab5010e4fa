//! The native slot: connectors written in Rust, listed in ONE place
//! ([`all`]). Each is bound to its catalogue descriptor (`kind: native` in
//! `descriptors/`), which gives it its metadata, auth and credential/config
//! fields and, if it likes, a field mapping to reuse; the Rust side brings
//! what a descriptor cannot say. A `kind: native` descriptor with no entry
//! here is a `check` error; two entries with one id are an error when the
//! registry is built.

use std::sync::Arc;

pub mod google;

use super::Connector;
use crate::config::Config;
use crate::descriptor::compile::CompiledDescriptor;
use crate::domain::Ambient;
use crate::engine::http::HttpClient;

/// What a native connector is built from.
#[derive(Debug, Clone)]
pub struct NativeInput {
    /// Its compiled catalogue descriptor.
    pub descriptor: Arc<CompiledDescriptor>,
    /// The node's outbound client.
    pub http: HttpClient,
    /// The node's clock and randomness.
    pub ambient: Ambient,
    /// The service configuration (provider base URLs, app secrets).
    pub config: Config,
}

type Build = dyn Fn(NativeInput) -> Arc<dyn Connector> + Send + Sync;

/// A native connector: its id and how to build it.
#[derive(Clone)]
pub struct Native {
    id: String,
    build: Arc<Build>,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native").field("id", &self.id).finish()
    }
}

impl Native {
    /// A native connector `id`, built by `build` from its descriptor and the
    /// node's services.
    pub fn new(
        id: impl Into<String>,
        build: impl Fn(NativeInput) -> Arc<dyn Connector> + Send + Sync + 'static,
    ) -> Self {
        Native {
            id: id.into(),
            build: Arc::new(build),
        }
    }

    /// The provider id it implements.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Builds the connector.
    pub fn build(&self, input: NativeInput) -> Arc<dyn Connector> {
        (self.build)(input)
    }
}

/// Every native connector this build ships.
pub fn all() -> Vec<Native> {
    vec![
        google::gmail_connector::native(),
        google::drive::native(),
        google::calendar::native(),
    ]
}

/// The ids of `natives`.
pub fn ids(natives: &[Native]) -> Vec<&str> {
    natives.iter().map(Native::id).collect()
}

//! The provider registry: provider id → its `Connector`. Built-ins come from
//! `descriptors/` through the same loader as `check`; runtime descriptors are
//! registered over the API (and persisted). A `kind: generic` descriptor is run
//! by a `DescriptorConnector`; a `kind: native` one is bound to the native
//! connector of its id (`connector::native`). Readers get cheap `Arc` clones.
//! Each runtime provider's stored revision is remembered, so a node can tell
//! which rows of the providers table it has not caught up with
//! (`upkeep::providers`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::connector::native::{Native, NativeInput};
use crate::connector::{Connector, DescriptorConnector};
use crate::descriptor::compile::CompiledDescriptor;
use crate::descriptor::model::ConnectorKind;
use crate::domain::Ambient;
use crate::engine::http::HttpClient;

/// A registered connector.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What runs it, and everything known about it.
    pub connector: Arc<dyn Connector>,
    /// Shipped in `descriptors/` (read-only over the API).
    pub built_in: bool,
}

/// Why a connector cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A `kind: native` descriptor without a native connector of its id.
    #[error(
        "`{0}` is `kind: native` but this build has no native connector `{0}` (native connectors: {1})"
    )]
    NoNative(String, String),
    /// Two native connectors with one id.
    #[error("two native connectors have the id `{0}`")]
    DuplicateNative(String),
    /// A native connector that routes tenant-less webhooks it does not verify.
    #[error("native connector `{0}` routes webhooks it does not verify")]
    UnverifiedRouting(String),
}

/// What native connectors are built with.
#[derive(Debug, Clone)]
pub struct NativeEnv {
    /// The node's outbound client.
    pub http: HttpClient,
    /// The node's clock and randomness.
    pub ambient: Ambient,
    /// The service configuration.
    pub config: Config,
}

/// The connectors this process knows, by id.
#[derive(Debug)]
pub struct Registry {
    providers: RwLock<BTreeMap<String, Entry>>,
    /// Runtime provider id → the stored revision (`updated_at`) this node has
    /// taken in (registered, or refused and left out).
    revisions: std::sync::Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Held while the stored runtime providers and this registry are brought
    /// in step, so two such changes never interleave.
    changes: tokio::sync::Mutex<()>,
    natives: BTreeMap<String, Native>,
    env: NativeEnv,
}

impl Registry {
    /// An empty registry that binds `kind: native` descriptors to `natives`.
    pub fn new(natives: Vec<Native>, env: NativeEnv) -> Result<Self, RegistryError> {
        let mut by_id = BTreeMap::new();
        for n in natives {
            let id = n.id().to_owned();
            if by_id.insert(id.clone(), n).is_some() {
                return Err(RegistryError::DuplicateNative(id));
            }
        }
        Ok(Registry {
            providers: RwLock::default(),
            revisions: std::sync::Mutex::default(),
            changes: tokio::sync::Mutex::default(),
            natives: by_id,
            env,
        })
    }

    /// The ids of the native connectors it binds.
    pub fn native_ids(&self) -> Vec<&str> {
        self.natives.keys().map(String::as_str).collect()
    }

    /// The connector a compiled descriptor describes: the generic one, or the
    /// native one of its id.
    pub fn connector_for(
        &self,
        compiled: CompiledDescriptor,
    ) -> Result<Arc<dyn Connector>, RegistryError> {
        let compiled = Arc::new(compiled);
        match compiled.descriptor.kind {
            ConnectorKind::Generic => Ok(Arc::new(DescriptorConnector::new(compiled))),
            ConnectorKind::Native => {
                let id = compiled.id().to_owned();
                let native = self.natives.get(&id).ok_or_else(|| {
                    RegistryError::NoNative(id.clone(), {
                        let ids = self.native_ids().join(", ");
                        if ids.is_empty() { "none".into() } else { ids }
                    })
                })?;
                let connector = native.build(NativeInput {
                    descriptor: compiled,
                    http: self.env.http.clone(),
                    ambient: self.env.ambient.clone(),
                    config: self.env.config.clone(),
                });
                if let Some(w) = connector.webhooks()
                    && w.profile().routing.is_some()
                    && !w.profile().verified
                {
                    return Err(RegistryError::UnverifiedRouting(id));
                }
                Ok(connector)
            }
        }
    }

    /// Adds or replaces the connector a compiled descriptor describes.
    pub fn insert(
        &self,
        compiled: CompiledDescriptor,
        built_in: bool,
    ) -> Result<(), RegistryError> {
        let connector = self.connector_for(compiled)?;
        self.insert_connector(connector, built_in);
        Ok(())
    }

    /// Adds or replaces a connector (its metrics start at zero).
    pub fn insert_connector(&self, connector: Arc<dyn Connector>, built_in: bool) {
        crate::observe::zero_provider(connector.as_ref());
        let id = connector.id().to_owned();
        self.write().insert(
            id,
            Entry {
                connector,
                built_in,
            },
        );
    }

    /// Removes a connector.
    pub fn remove(&self, id: &str) -> Option<Entry> {
        self.write().remove(id)
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.read().get(id).cloned()
    }

    /// Every connector, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.read().values().cloned().collect()
    }

    /// The stored revision of runtime provider `id` this node has taken in.
    pub fn revision(&self, id: &str) -> Option<DateTime<Utc>> {
        self.revisions().get(id).copied()
    }

    /// Every runtime provider revision this node has taken in.
    pub fn revision_list(&self) -> Vec<(String, DateTime<Utc>)> {
        self.revisions()
            .iter()
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    }

    /// Records that stored revision `at` of runtime provider `id` was taken in
    /// (`None`: it is no longer stored).
    pub fn set_revision(&self, id: &str, at: Option<DateTime<Utc>>) {
        let mut revisions = self.revisions();
        match at {
            Some(at) => revisions.insert(id.to_owned(), at),
            None => revisions.remove(id),
        };
    }

    /// Hold while changing the stored runtime providers and this registry together.
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DateTime<Utc>>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connectors are registered.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no connector is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.providers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.providers.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::load::load_str;
    use crate::descriptor::source::Format;

    fn env() -> NativeEnv {
        NativeEnv {
            http: HttpClient::new(Default::default()),
            ambient: Ambient::system(),
            config: Config::from_map(&Default::default()).unwrap(),
        }
    }

    fn compiled(id: &str, kind: &str) -> CompiledDescriptor {
        let text = format!(
            "id: {id}\nname: T\ndescription: d\ncategory: custom\nicon: i\nkind: {kind}\nversion: 1.0.0\nauth: {{method: none}}\ningestion:\n  mode: webhook\n  eventTypes: [e]\n  eventTypePath: $.e\n  verification: none\nfieldMapping: {{itemsPath: $, idPath: $.id, timestampPath: $.t, summaryTemplate: x, signalTypeRules: [], defaultType: x}}\nhealthCheck: {{endpoint: 'https://x.example/h', method: GET, expectStatus: 200, timeoutMs: 10}}\n"
        );
        load_str("<test>", &text, Format::Yaml).unwrap_or_else(|d| panic!("{d:#?}"))
    }

    fn native(id: &str) -> Native {
        Native::new(id, |input| {
            Arc::new(DescriptorConnector::new(input.descriptor)) as Arc<dyn Connector>
        })
    }

    #[test]
    fn native_descriptors_bind_to_their_native_connector_only() {
        let registry = Registry::new(vec![native("n1")], env()).unwrap();
        registry.insert(compiled("n1", "native"), true).unwrap();
        registry.insert(compiled("g1", "generic"), true).unwrap();
        assert_eq!(
            registry.get("n1").unwrap().connector.catalogue().kind,
            ConnectorKind::Native
        );
        assert_eq!(
            registry.insert(compiled("n2", "native"), true),
            Err(RegistryError::NoNative("n2".into(), "n1".into()))
        );
        assert!(registry.get("n2").is_none());
        assert_eq!(registry.len(), 2);
    }

    /// A native whose webhooks are routed but not verified.
    #[derive(Debug)]
    struct Unverified {
        inner: DescriptorConnector,
        profile: crate::connector::WebhookProfile,
    }

    #[async_trait::async_trait]
    impl crate::connector::WebhookReceiver for Unverified {
        fn profile(&self) -> &crate::connector::WebhookProfile {
            &self.profile
        }
        async fn verify(
            &self,
            _: &crate::engine::webhook::WebhookRequest,
            _: Option<&secrecy::SecretString>,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), crate::engine::webhook::verify::VerifyError> {
            Ok(())
        }
        async fn map(
            &self,
            _: crate::engine::mapping::WebhookInput<'_>,
            _: &crate::engine::mapping::MapContext,
        ) -> Result<crate::engine::mapping::WebhookMapped, crate::connector::ConnectorError>
        {
            Err(self.inner.unsupported("webhooks"))
        }
    }

    #[async_trait::async_trait]
    impl Connector for Unverified {
        fn catalogue(&self) -> &crate::connector::Catalogue {
            self.inner.catalogue()
        }
        fn capabilities(&self) -> &crate::connector::Capabilities {
            self.inner.capabilities()
        }
        fn webhooks(&self) -> Option<&dyn crate::connector::WebhookReceiver> {
            Some(self)
        }
        async fn health_check(
            &self,
            ctx: &crate::connector::ConnectionContext<'_>,
        ) -> crate::engine::health::HealthResult {
            self.inner.health_check(ctx).await
        }
    }

    #[test]
    fn a_native_may_not_route_webhooks_it_does_not_verify() {
        let routed = Native::new("open", |input| {
            Arc::new(Unverified {
                inner: DescriptorConnector::new(input.descriptor),
                profile: crate::connector::WebhookProfile {
                    verified: false,
                    secret_field: None,
                    routing: Some(crate::connector::RoutingTarget::MetadataKey("team".into())),
                    json_body: true,
                    change_ping: false,
                    issued_token: None,
                    hands_over_secret: false,
                    connection_filter: None,
                },
            }) as Arc<dyn Connector>
        });
        let registry = Registry::new(vec![routed], env()).unwrap();
        assert_eq!(
            registry.insert(compiled("open", "native"), true),
            Err(RegistryError::UnverifiedRouting("open".into()))
        );
    }

    #[test]
    fn two_natives_with_one_id_are_refused() {
        let err =
            Registry::new(vec![native("dup"), native("x"), native("dup")], env()).unwrap_err();
        assert_eq!(err, RegistryError::DuplicateNative("dup".into()));
    }
}

//! The provider registry: provider id → its descriptor and its `Connector`.
//! Built-ins come from `descriptors/` through the same loader as `check`;
//! runtime descriptors are registered over the API (and persisted); a native
//! connector is registered with its own `Connector` next to its descriptor.
//! Readers get cheap `Arc` clones.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::connector::{Connector, DescriptorConnector};
use crate::descriptor::compile::CompiledDescriptor;

/// A registered connector.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The compiled descriptor (metadata, config and credential fields).
    pub compiled: Arc<CompiledDescriptor>,
    /// What runs it.
    pub connector: Arc<dyn Connector>,
    /// Shipped in `descriptors/` (read-only over the API).
    pub built_in: bool,
}

/// The connectors this process knows, by id.
#[derive(Debug, Default)]
pub struct Registry {
    providers: RwLock<BTreeMap<String, Entry>>,
}

impl Registry {
    /// A registry of built-in descriptors.
    pub fn with_builtins(descriptors: impl IntoIterator<Item = CompiledDescriptor>) -> Self {
        let registry = Registry::default();
        for d in descriptors {
            registry.insert(d, true);
        }
        registry
    }

    /// Adds or replaces a descriptor-driven connector.
    pub fn insert(&self, compiled: CompiledDescriptor, built_in: bool) {
        let compiled = Arc::new(compiled);
        let connector = Arc::new(DescriptorConnector::new(Arc::clone(&compiled)));
        self.insert_connector(compiled, connector, built_in);
    }

    /// Adds or replaces a connector run by `connector` (a native one).
    pub fn insert_connector(
        &self,
        compiled: Arc<CompiledDescriptor>,
        connector: Arc<dyn Connector>,
        built_in: bool,
    ) {
        let id = compiled.id().to_owned();
        let entry = Entry {
            compiled,
            connector,
            built_in,
        };
        self.write().insert(id, entry);
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

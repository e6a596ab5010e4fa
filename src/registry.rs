//! The provider registry: connector id → compiled descriptor, built from the
//! descriptors directory through the same loader as `check`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::descriptor::compile::CompiledDescriptor;
use crate::descriptor::load::Loaded;

/// The connectors this process knows, by id.
#[derive(Debug, Default)]
pub struct Registry {
    providers: BTreeMap<String, Arc<CompiledDescriptor>>,
}

impl Registry {
    /// A registry of loaded descriptors (ids are already unique: the loader checks).
    pub fn from_loaded(loaded: Vec<Loaded>) -> Self {
        Registry {
            providers: loaded
                .into_iter()
                .map(|l| (l.compiled.id().to_owned(), Arc::new(l.compiled)))
                .collect(),
        }
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<CompiledDescriptor>> {
        self.providers.get(id)
    }

    /// Every connector, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledDescriptor>> {
        self.providers.values()
    }

    /// How many connectors are registered.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether no connector is registered.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

//! The connections a provider's webhooks may reach, cached for a moment per
//! (provider, tenant): at thousands of deliveries a second the same few rows
//! would otherwise be read and decrypted for every request. Only the webhook
//! secret is kept, never the other credentials; a change to a connection
//! (disabled, deleted, new secret) is seen within the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::StoreError;
use crate::db::repo::connections::{self, WebhookTarget};
use crate::domain::TenantId;
use crate::services::Services;

type Key = (String, Option<TenantId>);
type Cache = HashMap<Key, (DateTime<Utc>, Arc<Vec<WebhookTarget>>)>;

/// The cache.
#[derive(Debug)]
pub struct Targets {
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl Targets {
    /// A cache keeping lists for `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Self {
        Targets {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The enabled connections to `provider` of `tenant` (or of every tenant),
    /// each with its own webhook secret (credential `secret_field`) if it has one.
    pub async fn get(
        &self,
        services: &Services,
        provider: &str,
        tenant: Option<TenantId>,
        secret_field: Option<&str>,
    ) -> Result<Arc<Vec<WebhookTarget>>, StoreError> {
        let key = (provider.to_owned(), tenant);
        let now = services.ambient.now();
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        if !self.ttl.is_zero()
            && let Some((at, list)) = self.lock().get(&key)
            && now - *at < ttl
        {
            return Ok(Arc::clone(list));
        }
        let list = Arc::new(
            connections::webhook_targets(
                &services.db,
                &services.keys,
                provider,
                tenant,
                secret_field,
            )
            .await?,
        );
        if !self.ttl.is_zero() {
            let mut cache = self.lock();
            if cache.len() > 256 {
                cache.retain(|_, (at, _)| now - *at < ttl);
            }
            cache.insert(key, (now, Arc::clone(&list)));
        }
        Ok(list)
    }

    /// Drops the cached lists of `provider` for `tenant` and for every tenant.
    pub fn forget(&self, provider: &str, tenant: TenantId) {
        let mut cache = self.lock();
        cache.remove(&(provider.to_owned(), Some(tenant)));
        cache.remove(&(provider.to_owned(), None));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

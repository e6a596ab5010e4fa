//! Keeps this node's registry in step with the runtime providers stored in the
//! database, so a descriptor registered, replaced or deleted over the API of
//! any node takes effect on every node: at start, whenever another node
//! announces a change (PostgreSQL `NOTIFY`), and on a short interval as the
//! safety net (any database). A stored descriptor this node cannot run (a
//! build without its native connector) is left out and logged once per revision.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db::repo::providers;
use crate::db::{Db, StoreError};
use crate::descriptor::load::Loader;
use crate::descriptor::source::Format;
use crate::registry::Registry;
use crate::services::Services;

/// What one catch-up changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Runtime providers registered or replaced.
    pub loaded: usize,
    /// Runtime providers removed (deleted, or a new revision left out).
    pub removed: usize,
    /// Stored revisions this node cannot run.
    pub refused: usize,
}

/// Brings `registry` in step with the stored runtime providers: loads new and
/// changed revisions, removes deleted ones. Built-ins are left alone (a stored
/// runtime row whose id a built-in of this node holds is shadowed by it).
pub async fn catch_up(db: &Db, registry: &Registry) -> Result<CatchUp, StoreError> {
    let _changes = registry.lock_changes().await;
    let stored: BTreeMap<String, _> = providers::runtime_revisions(db)
        .await?
        .into_iter()
        .collect();
    let mut report = CatchUp::default();
    for (id, _) in registry.revision_list() {
        if stored.contains_key(&id) {
            continue;
        }
        registry.set_revision(&id, None);
        if registry.get(&id).is_some_and(|e| !e.built_in) {
            registry.remove(&id);
            report.removed += 1;
            tracing::info!(provider = %id, "runtime provider removed");
        }
    }
    let natives = registry.native_ids();
    let loader = Loader::with_natives(&natives);
    for (id, revision) in stored {
        if registry.revision(&id) == Some(revision) {
            continue;
        }
        if registry.get(&id).is_some_and(|e| e.built_in) {
            registry.set_revision(&id, Some(revision));
            continue;
        }
        // Deleted since it was listed: the next catch-up removes it.
        let Some(row) = providers::get(db, &id).await? else {
            continue;
        };
        let label = format!("<stored provider {id}>");
        let loaded = loader
            .load_str(&label, &row.descriptor.to_string(), Format::Json)
            .map_err(|d| d.first().map(ToString::to_string).unwrap_or_default())
            .and_then(|c| registry.connector_for(c).map_err(|e| e.to_string()));
        registry.set_revision(&id, Some(row.updated_at));
        match loaded {
            Ok(connector) => {
                registry.insert_connector(connector, false);
                report.loaded += 1;
                tracing::info!(provider = %id, "runtime provider loaded");
            }
            Err(first) => {
                if registry.remove(&id).is_some() {
                    report.removed += 1;
                }
                report.refused += 1;
                tracing::warn!(provider = %id, first = %first, "a stored runtime provider does not pass `check` on this node; left out");
            }
        }
    }
    for (change, n) in [
        ("loaded", report.loaded),
        ("removed", report.removed),
        ("refused", report.refused),
    ] {
        metrics::counter!("registry_changes_total", "change" => change).increment(n as u64);
    }
    Ok(report)
}

/// Catches up at once when another node announces a change, and every
/// `every` regardless, until `shutdown` turns true.
pub async fn follow(
    services: Arc<Services>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let changed = services.db.providers_changed();
    tokio::spawn({
        let db = services.db.clone();
        let shutdown = shutdown.clone();
        async move { db.relay_announcements(shutdown).await }
    });
    loop {
        tokio::select! {
            () = changed.notified() => {}
            () = services.ambient.sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = catch_up(&services.db, &services.registry).await {
            tracing::warn!(error = %e, "cannot read the stored providers");
        }
    }
}

//! Repositories. Every function that reads or writes tenant data takes a
//! `TenantId` and filters by it; `keys::reencrypt_all` and `retention` (pruning)
//! are the documented cross-tenant maintenance operations.

pub mod arrivals;
pub mod connections;
pub mod cursor;
pub mod cursors;
pub mod deliveries;
pub mod jobs;
pub mod keys;
pub mod leases;
pub mod oauth_states;
pub mod providers;
pub mod queue;
pub mod retention;
pub mod signals;
pub mod stats;
pub mod subscriptions;
pub mod tenants;
pub mod ui_sessions;

/// `statement` with `$n` placeholders as the backend writes them (`?n` on
/// SQLite: numbered too, so one value may be used twice).
pub(crate) fn sql(backend: sea_orm::DbBackend, statement: &str) -> String {
    match backend {
        sea_orm::DbBackend::Postgres => statement.to_owned(),
        _ => statement.replace('$', "?"),
    }
}

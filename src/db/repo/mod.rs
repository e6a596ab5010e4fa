//! Repositories. Every function that reads or writes tenant data takes a
//! `TenantId` and filters by it; `keys::reencrypt_all` is the one documented
//! cross-tenant maintenance operation.

pub mod connections;
pub mod cursor;
pub mod cursors;
pub mod deliveries;
pub mod jobs;
pub mod keys;
pub mod oauth_states;
pub mod providers;
pub mod queue;
pub mod signals;
pub mod stats;
pub mod ui_sessions;

//! The sync engine end to end, in process: the executor and scheduler over a
//! real database (SQLite and PostgreSQL), provider APIs mocked with wiremock.

pub mod fake;
pub mod harness;

mod auth;
mod catalogue;
mod datadog;
mod deltas;
mod faults;
mod github_app;
mod gmail;
mod google;
mod google_watch;
pub mod monitoring;
mod native;
mod native_slot;
mod nodes;
mod notion;
pub mod oauth;
mod partitions;
mod plans;
mod queue;
mod resume;
mod retention;
mod shipped;
mod signal_ids;
mod slack;
mod store;
mod upkeep;
mod wakeups;
mod zoho_mail;

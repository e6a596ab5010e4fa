//! API integration tests: the real server, spawned on a free port, against
//! SQLite and PostgreSQL (`on_both_backends!` runs each scenario on both).

pub mod harness;

mod auth_and_isolation;
mod connections;
mod encryption;
mod failover;
mod hostile;
mod migrations;
mod nodes;
mod observability;
mod openapi;
mod pagination;
mod providers;
mod readme;
mod runbooks;
mod shutdown;
mod webhooks;

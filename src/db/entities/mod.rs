//! SeaORM entities, one per table (DESIGN.md §4). Storage shapes only: the API
//! has its own DTOs, and tenant data is read through `db::repo`.

pub mod connection;
pub mod oauth_state;
pub mod provider;
pub mod signal;
pub mod subscription;
pub mod sync_cursor;
pub mod sync_job;
pub mod ui_session;
pub mod webhook_delivery;

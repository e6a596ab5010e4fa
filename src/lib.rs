//! Poblysh Connectors: a descriptor-driven connector runtime that turns activity in
//! SaaS tools into normalized Signals.
//!
//! Error types: `thiserror` enums in the library (each layer its own), `anyhow`
//! only in the CLI glue (`cli`, `main`).

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod connector;
pub mod crypto;
pub mod db;
pub mod descriptor;
pub mod domain;
pub mod engine;
pub mod gateway;
pub mod observe;
pub mod push;
pub mod registry;
pub mod services;
pub mod sync;
pub mod ui;
pub mod upkeep;

//! Route handlers, one module per resource.

pub mod connections;
pub mod health;
pub mod jobs;
pub mod oauth;
pub mod providers;
pub mod signals;
pub mod subscriptions;
pub mod tenants;
pub mod webhooks;

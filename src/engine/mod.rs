//! The runtime engine over compiled descriptors: mapping (pure), outbound HTTP,
//! request auth, OAuth, health checks, webhook verification and handshakes,
//! and the polling loop. Nothing here reads the environment, the clock or
//! randomness on its own: the caller passes in what varies (time, client,
//! credentials, policy), and the HTTP client carries the node's `Ambient`
//! (`clippy.toml` holds the rule).

pub mod auth;
pub mod condition;
pub mod health;
pub mod http;
pub mod jwt_exchange;
pub mod mapping;
pub mod oauth;
pub mod poll;
pub mod timestamp;
pub mod webhook;

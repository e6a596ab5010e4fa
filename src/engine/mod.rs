//! The runtime engine over compiled descriptors: mapping (pure), outbound HTTP,
//! request auth, OAuth and the polling loop. Nothing here reads the environment
//! or the clock on its own: the caller passes in what varies (time, client,
//! credentials, policy).

pub mod auth;
pub mod condition;
pub mod health;
pub mod http;
pub mod mapping;
pub mod oauth;
pub mod poll;
pub mod timestamp;
pub mod webhook;

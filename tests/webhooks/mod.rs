//! The webhook gateway end to end, in process over a real database (SQLite
//! and PostgreSQL): signature vectors through the shipped descriptors, real
//! provider samples posted over the router, replays, limits and handshakes.

mod deliveries;
pub(crate) mod google_push_token;
mod isolation;
mod limits;
mod rotation;
pub mod support;
mod vectors;

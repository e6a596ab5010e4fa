//! The webhook gateway end to end, in process over a real database (SQLite
//! and PostgreSQL): signature vectors through the shipped descriptors, real
//! provider samples posted over the router, replays, limits and handshakes.

#[path = "../api/pg.rs"]
mod pg;

#[path = "../sync/harness.rs"]
#[allow(dead_code)]
mod harness;

mod deliveries;
mod isolation;
mod limits;
mod support;
mod vectors;

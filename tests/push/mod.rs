//! Signals out: push delivery to subscribers (`delivery`), the subscriptions
//! API (`subscriptions`), the live stream (`stream`) and arrival positions
//! under concurrent writers (`arrivals`), against the real server.

mod arrivals;
mod delivery;
mod stream;
mod subscriptions;
pub mod support;

//! Signals out: subscriptions pushed signed batches of Signals in arrival
//! order (`deliver`), signed as Standard Webhooks (`signing`), retried on a
//! schedule (`schedule`).

pub mod deliver;
pub mod schedule;
pub mod signing;

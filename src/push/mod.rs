//! Signals out (issue 17, being built): subscriptions pushed signed batches
//! of Signals. So far: Standard Webhooks signing (`signing`) and the retry
//! schedule of a failed delivery (`schedule`).

pub mod schedule;
pub mod signing;

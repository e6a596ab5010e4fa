//! Signals out (issue 17, being built): subscriptions pushed signed batches
//! of Signals. So far: Standard Webhooks signing (`signing`).

pub mod signing;

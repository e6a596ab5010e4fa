//! Poblysh Connectors: a descriptor-driven connector runtime that turns activity in
//! SaaS tools into normalized Signals.

pub mod descriptor;

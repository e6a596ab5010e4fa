//! Domain types shared by every layer: newtype ids and the normalized `Signal`.

mod ids;
mod signal;

pub use ids::{ConnectionId, TenantId};
pub use signal::{Signal, dedupe_key};

//! The descriptor language: plain data types (serde + schemars), the source
//! reader with positions, the JSON Schema, diagnostics, the compile step and the
//! one load pipeline shared by `check`, the server and runtime registration.

pub mod auth;
pub mod ingestion;
pub mod mapping;
pub mod model;
pub mod webhook;

pub use auth::*;
pub use ingestion::*;
pub use mapping::*;
pub use model::*;
pub use webhook::*;
pub mod compile;
pub mod diagnostic;
pub mod docs;
pub mod load;
pub mod schema;
pub mod source;

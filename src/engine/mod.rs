//! The runtime engine: pure functions over compiled descriptors. No I/O, no
//! clock, no environment: the caller passes in what varies (`MapContext`).

pub mod condition;
pub mod mapping;
pub mod timestamp;

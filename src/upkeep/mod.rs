//! A node's background upkeep, beside the API and the job workers: following
//! the runtime providers other nodes register (`providers`).

pub mod providers;

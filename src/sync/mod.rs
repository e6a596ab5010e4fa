//! The sync engine: the durable job queue, the executor that runs jobs (polling
//! through the engine, committing signals and checkpoints together), the
//! scheduler, and OAuth token upkeep.

pub mod executor;
pub mod lifecycle;
pub mod open;
pub mod queue;
pub mod scheduler;
pub mod sink;
pub mod tokens;

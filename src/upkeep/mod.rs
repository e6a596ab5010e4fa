//! A node's background upkeep, beside the API and the job workers: following
//! the runtime providers other nodes register (`providers`, every node),
//! keeping connections' tokens and health fresh (`connections`) and pruning
//! data past its retention (`retention`), on worker nodes.

pub mod connections;
pub mod providers;
pub mod retention;

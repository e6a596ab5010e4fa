//! A node's background upkeep, beside the API and the job workers: following
//! the runtime providers other nodes register (`providers`, every node), and
//! keeping connections' tokens and health fresh (`connections`, worker nodes).

pub mod connections;
pub mod providers;

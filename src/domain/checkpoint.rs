//! Sync checkpoints: where a connection's next incremental run starts, one per
//! partition (a repository, a calendar), `""` when the connector is not
//! partitioned.

use std::collections::BTreeMap;

/// Checkpoints by partition (`""` when the connector is not partitioned).
pub type Checkpoints = BTreeMap<String, Option<String>>;

/// The partition key of an unpartitioned connector.
pub const NO_PARTITION: &str = "";

//! End-to-end tooling for Cairn. `cairn-bench` (src/bin) is an S3 load generator that works against
//! any S3 endpoint; [`stats`] holds its latency bookkeeping; [`fleet`] launches real processes
//! (`cairn-fleet up/down`); [`sim`] is the deterministic partition-scaling simulation behind
//! `cairn-scale-sim`.

pub mod fleet;
pub mod sim;
pub mod stats;

//! The messages of the placement role: what gateways report of the load they served (sampled
//! keys, partition rates and sizes, load handed over with a split) to the leaders that decide
//! splits, merges and leaderships. The Raft layer carries them (`POST /internal/v1/index/
//! read-load`) and tells observers; what they mean is the index's partition policy.

use std::sync::Arc;

use crate::store::GroupId;

/// Told the reads another gateway served (sampled keys with weights), on the leader.
pub type ReadObserver = Arc<dyn Fn(&ReadReport) + Send + Sync>;

/// Told that this gateway handed its leadership of a group to another gateway: (group, the
/// new leader).
pub type HandOverObserver = Arc<dyn Fn(GroupId, u64) + Send + Sync>;

/// Reads a gateway served and writes it proposed since its last report, sent to the leaders of
/// the groups owning their keys, so that each leader's load figures (which drive the splits it
/// decides) cover every gateway's requests, not just its own; and, to the meta leader, what a
/// group leader measured of its partitions (the meta leader decides merges and weighs
/// leaderships without a replica of every group).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReadReport {
    /// Sampled index keys and the reads each stands for.
    pub samples: Vec<(String, f64)>,
    /// Sampled load keys of committed write batches and the writes each stands for (absent
    /// from gateways of earlier versions, whose writes the leader counted as they applied).
    #[serde(default)]
    pub writes: Vec<(String, f64)>,
    /// What the reporting gateway measured of the partitions whose groups it leads (sent to
    /// the meta leader every few seconds; absent from gateways of earlier versions).
    #[serde(default, rename = "sizes")]
    pub partitions: Vec<PartitionSummary>,
    /// The load of partitions the reporting gateway just split off and chose this one to lead
    /// (absent from gateways of earlier versions).
    #[serde(default)]
    pub handovers: Vec<LoadHandover>,
}

impl ReadReport {
    /// Whether the report carries nothing.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
            && self.writes.is_empty()
            && self.partitions.is_empty()
            && self.handovers.is_empty()
    }
}

/// A partition's load as measured by the gateway that split it off, for its new leader.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadHandover {
    /// The partition's id.
    pub partition: u64,
    /// Its epoch (the load of another range is dropped).
    pub epoch: u64,
    /// Reads per second (decayed) when handed over.
    pub reads_per_second: f64,
    /// Writes per second (decayed) when handed over.
    pub writes_per_second: f64,
    /// Sampled requests, oldest first: key (base64), weight, whether a write.
    pub sample: Vec<(String, f64, bool)>,
}

/// A partition's approximate size on disk and its load, as its group's leader measured them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionSummary {
    /// The partition's id.
    pub partition: u64,
    /// The partition's epoch the size was measured at (a report of an older range is stale).
    pub epoch: u64,
    /// Approximate bytes on disk.
    pub bytes: u64,
    /// Reads per second (decayed) on the leader, the other gateways' reports included
    /// (absent from gateways of earlier versions, which reported only sizes).
    #[serde(default)]
    pub reads_per_second: f64,
    /// Writes per second (decayed), likewise.
    #[serde(default)]
    pub writes_per_second: f64,
}

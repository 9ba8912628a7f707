//! A replica's digest, partition by partition, at one applied position (`GET
//! /admin/v1/index/digest`): compare the answers of two gateways that report the same
//! `applied_index` to check that their replicas are identical.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::engine::EngineError;
use super::partition::PartitionMap;
use super::{IndexError, keys, rebalance};
use crate::consensus::Consensus;
use crate::consensus::digest::{self, RangeDigest};
use crate::consensus::ranges::KeyRanges;

/// One replica's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDigest {
    /// The gateway holding the replica.
    pub gateway: u64,
    /// The log index the replica had applied (the digest is of exactly that state).
    pub applied_index: Option<u64>,
    /// The version of the partition map in that state.
    pub map_version: u64,
    /// Each partition's records, in key order.
    pub partitions: Vec<PartitionDigest>,
}

/// One partition's records on one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDigest {
    /// Partition id.
    pub id: u64,
    /// Entries and their MD5.
    #[serde(flatten)]
    pub digest: RangeDigest,
}

/// The digest of this gateway's replica, taken after a read barrier (so it covers at least
/// everything acknowledged before the call), on a blocking thread: it reads the whole index.
pub async fn replica_digest(consensus: Arc<Consensus>) -> Result<ReplicaDigest, IndexError> {
    let unavailable = |e: crate::consensus::ConsensusError| EngineError::Unavailable(e.to_string());
    consensus.read_barrier().await.map_err(unavailable)?;
    let gateway = consensus.id();
    let task = tokio::task::spawn_blocking(move || {
        consensus
            .with_view(|snap, applied_index| -> Result<ReplicaDigest, IndexError> {
                let record = snap
                    .get(keys::meta(rebalance::MAP_KEY))
                    .map_err(EngineError::from)?;
                let map: PartitionMap = rebalance::decode_map(record)?;
                let partitions = map
                    .partitions
                    .iter()
                    .map(|p| {
                        let ranges = KeyRanges::new(p.key_ranges());
                        let digest = digest::of(snap, &ranges).map_err(EngineError::from)?;
                        Ok(PartitionDigest { id: p.id.0, digest })
                    })
                    .collect::<Result<_, IndexError>>()?;
                Ok(ReplicaDigest {
                    gateway,
                    applied_index,
                    map_version: map.version,
                    partitions,
                })
            })
            .map_err(unavailable)?
    });
    task.await.map_err(|e| IndexError::Task(e.to_string()))?
}

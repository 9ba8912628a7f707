//! A replica's digest, group by group, each at the log index it had applied (`GET
//! /admin/v1/index/digest`): compare the answers of two gateways that report the same applied
//! index for a group to check that their replicas of it are identical.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::partition::PartitionMap;
use super::{IndexError, keys, rebalance};
use cairn_kv::EngineError;
use cairn_raft::digest::{self, RangeDigest};
use cairn_raft::{Consensus, ConsensusError};

/// How long a digest waits for one group's read barrier.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// One replica's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDigest {
    /// The gateway holding the replica.
    pub gateway: u64,
    /// The version of the partition map in that state.
    pub map_version: u64,
    /// Each group's records, in group order.
    pub groups: Vec<GroupDigest>,
}

/// One group's records on one replica, at the log index it had applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDigest {
    /// The group.
    pub group: u64,
    /// The log index the replica had applied (the digest is of exactly that state).
    pub applied_index: Option<u64>,
    /// Entries and their MD5.
    #[serde(flatten)]
    pub digest: RangeDigest,
}

/// The digest of this gateway's replica, taken after every group's read barrier (so it covers
/// at least everything acknowledged before the call; a group that stopped running here meanwhile
/// is left out), on a blocking thread: it reads the whole index.
pub async fn replica_digest(consensus: Arc<Consensus>) -> Result<ReplicaDigest, IndexError> {
    let groups = tokio::time::timeout(BARRIER_WAIT, consensus.host().groups())
        .await
        .map_err(|_| {
            ConsensusError::Lagging(format!(
                "the list of groups running here was not readable within {BARRIER_WAIT:?}"
            ))
        })?;
    for group in groups {
        // Bounded, and the answer names the group: a replica that cannot catch up is said, not
        // left for the caller's timeout to guess at.
        let barrier = tokio::time::timeout(BARRIER_WAIT, consensus.read_barrier_of(group));
        let passed = barrier.await.unwrap_or_else(|_| {
            Err(ConsensusError::Lagging(format!(
                "group {group}: its read barrier did not pass within {BARRIER_WAIT:?}"
            )))
        });
        match passed {
            Ok(()) => {}
            // Absorbed by a merge (or moved away) meanwhile: the view below leaves it out.
            Err(_) if !consensus.host().runs(group) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let gateway = consensus.id();
    let task = tokio::task::spawn_blocking(move || {
        consensus
            .with_view(|snap, groups| -> Result<ReplicaDigest, IndexError> {
                let record = snap
                    .get(keys::meta(rebalance::MAP_KEY))
                    .map_err(EngineError::from)?;
                let map: PartitionMap = rebalance::decode_map(record)?;
                let groups = groups
                    .iter()
                    .map(|(group, applied_index, ranges)| {
                        let digest = digest::of(snap, ranges).map_err(EngineError::from)?;
                        Ok(GroupDigest {
                            group: *group,
                            applied_index: *applied_index,
                            digest,
                        })
                    })
                    .collect::<Result<_, IndexError>>()?;
                Ok(ReplicaDigest {
                    gateway,
                    map_version: map.version,
                    groups,
                })
            })
            .map_err(IndexError::from)?
    });
    task.await.map_err(|e| IndexError::Task(e.to_string()))?
}

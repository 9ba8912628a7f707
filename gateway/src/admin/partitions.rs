//! The replicated index's partitions: load, splits and merges, retiring gateways, digests.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{AdminError, AdminResult, AdminState};

/// Reply of `GET /admin/v1/partitions`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Partitions {
    /// The partition map.
    #[serde(flatten)]
    pub map: crate::index::partition::PartitionMap,
    /// This gateway's view of the Raft group that replicates the index (absent when the
    /// gateway keeps its index alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<cairn_raft::ReplicationStatus>,
    /// Each partition's measured load and size, as this gateway sees it (writes: the whole
    /// group's, counted as applied; reads: this gateway's, and on the leader every gateway's).
    #[serde(default)]
    pub load: Vec<PartitionLoad>,
}

/// One partition's load in `GET /admin/v1/partitions`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLoad {
    /// Partition id.
    pub id: u64,
    /// Reads per second (decayed).
    pub reads_per_second: f64,
    /// Committed writes per second (decayed).
    pub writes_per_second: f64,
    /// Requests in the key sample a split key is chosen from.
    pub sampled_keys: usize,
    /// Approximate bytes on disk (flushed data only).
    pub approximate_bytes: u64,
    /// The Raft group serving the partition (its own once split off; absent on a gateway
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// The gateway leading that group (absent on a gateway alone, which serves every partition
    /// itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// The gateways voting in that group.
    #[serde(default)]
    pub replicas: Vec<u64>,
}

pub(super) async fn partitions(State(state): State<Arc<AdminState>>) -> AdminResult<Partitions> {
    // The committed map, not a cached one, so a split through another gateway shows at once;
    // without a reachable leader, the map as last read (the replication status says why).
    let refresh = state.index.refresh_partition_map();
    let replication = state.index.consensus().map(|c| c.status());
    let map = match tokio::time::timeout(std::time::Duration::from_secs(1), refresh).await {
        Ok(Ok(map)) => map,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "partition map not refreshed");
            state.index.partition_map()
        }
        Err(_) => state.index.partition_map(),
    };
    // Each partition is served by the group owning its first key (its own, once split off).
    let groups: Vec<_> = replication
        .as_ref()
        .map(|r| r.groups.iter().chain(&r.remote_groups).cloned().collect())
        .unwrap_or_default();
    let served_by = |p: &crate::index::partition::Partition| {
        let consensus = state.index.consensus()?;
        let group = consensus
            .route(&p.start, &crate::index::keys::after(&p.start))
            .single()?;
        groups.iter().find(|g| g.group == group).cloned()
    };
    let load = state
        .index
        .partition_stats()
        .into_iter()
        .map(|s| {
            let group = map.get(s.id).and_then(&served_by);
            PartitionLoad {
                id: s.id.0,
                reads_per_second: s.reads_per_second,
                writes_per_second: s.writes_per_second,
                sampled_keys: s.sampled_keys,
                approximate_bytes: s.approximate_bytes,
                group: group.as_ref().map(|g| g.group),
                leader: group.as_ref().and_then(|g| g.leader),
                replicas: group.map(|g| g.voters).unwrap_or_default(),
            }
        })
        .collect();
    Ok(axum::Json(Partitions {
        map,
        replication,
        load,
    }))
}

/// Body of `POST /admin/v1/partitions/{id}/split`: the first object key of the right half.
#[derive(Debug, Serialize, Deserialize)]
pub struct SplitRequest {
    /// Bucket of the split key.
    pub bucket: String,
    /// Object key where the right half starts.
    pub key: String,
}

pub(super) async fn split_partition(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<u64>,
    axum::Json(req): axum::Json<SplitRequest>,
) -> AdminResult<crate::index::partition::PartitionMap> {
    let at = crate::index::keys::object(&req.bucket, &req.key);
    let change = state
        .index
        .split_partition(crate::index::partition::PartitionId(id), at)
        .await?;
    crate::rebalancer::record(&state.metrics, &change);
    Ok(axum::Json(state.index.partition_map()))
}

/// Which gateways to drain of their index votes before they are removed.
#[derive(Debug, serde::Deserialize)]
pub(super) struct RetiringRequest {
    /// Gateway ids (`[]` cancels a drain).
    ids: std::collections::BTreeSet<u64>,
}

/// `PUT /admin/v1/index/retiring`: the listed gateways hand their votes and the leadership to
/// the others (the operator calls it, and waits for `voters` and `leader` to exclude them,
/// before it shrinks the gateway StatefulSet). Answers this gateway's replication status.
pub(super) async fn put_retiring(
    State(state): State<Arc<AdminState>>,
    axum::Json(req): axum::Json<RetiringRequest>,
) -> AdminResult<cairn_raft::ReplicationStatus> {
    let Some(consensus) = state.index.consensus() else {
        return Err(AdminError(
            StatusCode::CONFLICT,
            "NotReplicated",
            "this gateway keeps its index alone (no --peer): there are no votes to move".into(),
        ));
    };
    match consensus.retire(req.ids).await {
        Ok(status) => Ok(axum::Json(status)),
        Err(e) => Err(AdminError(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        )),
    }
}

/// `GET /admin/v1/index/digest`: this gateway's replica, partition by partition (entries and
/// MD5) at the applied index it reports; replicas at the same index must agree.
pub(super) async fn index_digest(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<crate::index::digest::ReplicaDigest> {
    let Some(consensus) = state.index.consensus() else {
        return Err(AdminError(
            StatusCode::CONFLICT,
            "NotReplicated",
            "this gateway keeps its index alone (no --peer): there is no replica to compare".into(),
        ));
    };
    let digest = crate::index::digest::replica_digest(consensus.clone()).await?;
    Ok(axum::Json(digest))
}

pub(super) async fn merge_partition(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> AdminResult<crate::index::partition::PartitionMap> {
    let change = state
        .index
        .merge_partitions(crate::index::partition::PartitionId(id))
        .await?;
    crate::rebalancer::record(&state.metrics, &change);
    Ok(axum::Json(state.index.partition_map()))
}

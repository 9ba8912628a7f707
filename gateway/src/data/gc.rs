//! The garbage collector: a named background worker that deletes the shards of blobs no index
//! entry references any more (overwritten, deleted, aborted, or written by an upload that never
//! committed) once their garbage record is due. A blob becomes garbage only in the same atomic
//! batch that drops its last reference, so the collector never deletes data still referenced.

use std::sync::Arc;
use std::time::Duration;

use cairn_storage_node::client::ClientError;
use cairn_storage_node::ids::ShardIndex;

use super::nodes::NodeRegistry;
use crate::index::records::GarbageRecord;
use crate::index::{Index, now_ms};
use crate::metrics::GatewayMetrics;

/// Records handled per round.
const BATCH: usize = 256;
/// Garbage records looked at per index call.
const SCAN_PAGE: usize = 10_000;
/// A blob whose shards could not all be deleted is retried this much later.
const RETRY_MS: u64 = 60_000;
/// A shard delete not answered in this time counts as failed (retried later): a hung node must
/// not stall the collector, whose rounds handle one blob after the other.
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// The collector.
pub struct GarbageCollector {
    index: Index,
    nodes: NodeRegistry,
    metrics: Arc<GatewayMetrics>,
    interval: Duration,
}

impl GarbageCollector {
    /// A collector running a round every `interval`.
    pub fn new(
        index: Index,
        nodes: NodeRegistry,
        metrics: Arc<GatewayMetrics>,
        interval: Duration,
    ) -> Self {
        Self {
            index,
            nodes,
            metrics,
            interval,
        }
    }

    /// Runs rounds until `shutdown` turns true.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            // With a replicated index each group's leader works that group's part of the queue.
            for scope in self.index.garbage_scopes() {
                match self.round(scope).await {
                    Ok(n) if n > 0 => tracing::debug!(blobs = n, "garbage collected"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "garbage collection round failed"),
                }
            }
            if let Ok(len) = self.index.garbage_len(100_000).await {
                self.metrics.gc_queue.set(len as i64);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Collects every due blob of `scope` (a part of the queue, as
    /// [`Index::garbage_scopes`] lists them); returns how many were freed. Garbage records sit
    /// with their objects (so each partition owns its own), not in due order: a round walks the
    /// whole scope, [`SCAN_PAGE`] records per index call.
    pub async fn round(
        &self,
        scope: (Vec<u8>, Vec<u8>),
    ) -> Result<usize, crate::index::IndexError> {
        let mut freed = 0;
        let mut from = None;
        loop {
            let page = self
                .index
                .due_garbage_in(
                    scope.clone(),
                    now_ms() as u64,
                    BATCH,
                    from.take(),
                    SCAN_PAGE,
                )
                .await?;
            let mut done = Vec::new();
            for (key, rec) in page.due {
                if self.delete_shards(&rec).await {
                    done.push(key);
                    freed += 1;
                    self.metrics.gc_blobs_freed.inc();
                } else {
                    self.index
                        .retry_garbage_later(key, rec, now_ms() as u64 + RETRY_MS)
                        .await?;
                }
            }
            if !done.is_empty() {
                self.index.remove_garbage(done).await?;
            }
            match page.next {
                Some(next) => from = Some(next),
                None => return Ok(freed),
            }
        }
    }

    /// Deletes every shard of the blob; `true` when none is left anywhere reachable.
    async fn delete_shards(&self, rec: &GarbageRecord) -> bool {
        let blob = &rec.blob;
        let deletes = blob.placement.iter().enumerate().map(|(i, entry)| {
            let client = self.nodes.client_for(&entry.node, &entry.endpoint);
            // A node known to be down is not waited for: its shard is deleted on a later try.
            let up = self.nodes.is_node_up(&entry.node);
            async move {
                if !up {
                    tracing::debug!(object = %blob.object_id, index = i, node = %entry.node, "shard holder is down; will retry");
                    return false;
                }
                let deleted = tokio::time::timeout(
                    DELETE_TIMEOUT,
                    client.delete_shard(blob.object_id, ShardIndex(i as u8)),
                )
                .await;
                match deleted {
                    Ok(Ok(_)) => true,
                    Ok(Err(ClientError::Api { status: 404, .. })) => true,
                    Ok(Err(e)) => {
                        tracing::debug!(object = %blob.object_id, index = i, error = %e, "shard delete failed; will retry");
                        false
                    }
                    Err(_) => {
                        tracing::debug!(object = %blob.object_id, index = i, "shard delete timed out; will retry");
                        false
                    }
                }
            }
        });
        let results = futures_util::future::join_all(deletes).await;
        let ok = results.iter().all(|&r| r);
        if ok {
            tracing::debug!(object = %blob.object_id, reason = %rec.reason, "blob freed");
        }
        ok
    }
}

//! Streaming erasure-coded writes: the body is cut into stripes as it arrives, each stripe is
//! encoded and its k+m blocks are sent to the shard holders over k+m concurrent streaming PUTs.
//! Memory is bounded by one stripe being filled plus two blocks queued per shard.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cairn_storage_node::codec::Codec;
use cairn_storage_node::format::PlacementEntry;
use cairn_storage_node::ids::ObjectId;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::nodes::NodeRegistry;
use super::placement;
use super::{DataError, DataOptions};
use crate::index::records::StoredBlob;
use crate::metrics::GatewayMetrics;

/// Plans and writes blobs.
#[derive(Clone)]
pub struct BlobWriter {
    nodes: NodeRegistry,
    options: DataOptions,
    metrics: Arc<GatewayMetrics>,
}

/// A shard stream that accepts nothing for this long is given up (a stalled node must not stall
/// the whole write); the write still succeeds if the quorum holds.
const SHARD_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// A fresh random object id.
pub fn new_object_id() -> ObjectId {
    ObjectId::from_bytes(rand::random())
}

impl BlobWriter {
    /// A writer placing on `nodes` with `options`.
    pub fn new(nodes: NodeRegistry, options: DataOptions, metrics: Arc<GatewayMetrics>) -> Self {
        Self {
            nodes,
            options,
            metrics,
        }
    }

    /// The encoding options.
    pub fn options(&self) -> DataOptions {
        self.options
    }

    /// Chooses the id and placement of a new blob of `length` bytes.
    pub fn plan(&self, length: u64) -> Result<StoredBlob, DataError> {
        let object_id = new_object_id();
        let candidates = self.nodes.candidates();
        let total = self.options.profile.total_shards();
        let p = placement::place(&object_id, &candidates, total)?;
        if p.zone_degraded {
            tracing::warn!(%object_id, "a zone has no usable node: shards placed in the remaining zones");
        }
        let configs = self.nodes.configs();
        Ok(StoredBlob {
            object_id,
            profile: self.options.profile,
            stripe_size: self.options.stripe_size,
            length,
            placement: p
                .nodes
                .iter()
                .map(|&i| PlacementEntry {
                    node: configs[i].id.clone(),
                    endpoint: configs[i].endpoint.clone(),
                })
                .collect(),
        })
    }

    /// Streams `body` (exactly `blob.length` bytes) into the blob's shards; `observe` sees every
    /// body chunk in order (for MD5 and checksums). Returns once at least the write quorum of shards
    /// is durable; fails, leaving only garbage behind, otherwise.
    pub async fn write<S, E>(
        &self,
        blob: &StoredBlob,
        mut body: S,
        mut observe: impl FnMut(&[u8]),
    ) -> Result<usize, DataError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let n = blob.profile.total_shards();
        let mut senders = Vec::with_capacity(n);
        let mut uploads = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
            senders.push(Some(tx));
            let spec = blob.shard_spec(i);
            let entry = &blob.placement[i];
            let client = self.nodes.client_for(&entry.node, &entry.endpoint);
            let nodes = self.nodes.clone();
            uploads.push(tokio::spawn(async move {
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let r = client
                    .put_shard(&spec, reqwest::Body::wrap_stream(stream))
                    .await;
                if let Err(e) = &r {
                    if matches!(e, cairn_storage_node::client::ClientError::Transport { .. }) {
                        nodes.mark_down(&spec.placement[usize::from(spec.shard_index.0)].node);
                    }
                    tracing::warn!(object = %spec.object_id, index = %spec.shard_index, error = %e, "shard write failed");
                }
                r.is_ok()
            }));
        }
        let outcome = self.pump(blob, &mut body, &mut observe, &mut senders).await;
        if let Err(e) = &outcome {
            // Abort every shard stream so no node stores a partial shard.
            for tx in senders.iter().flatten() {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        }
        drop(senders);
        let mut stored = 0;
        for u in uploads {
            if u.await.unwrap_or(false) {
                stored += 1;
            }
        }
        outcome?;
        self.metrics.shards_written.inc_by(stored as u64);
        if stored < self.options.write_quorum.min(n) {
            return Err(DataError::WriteQuorum {
                object: blob.object_id,
                stored,
                needed: self.options.write_quorum,
            });
        }
        if stored < n {
            self.metrics.degraded_writes.inc();
            tracing::warn!(object = %blob.object_id, stored, total = n, "degraded write: missing shards will be rebuilt by the scrubbers");
        }
        Ok(stored)
    }

    /// Reads the body stripe by stripe and feeds the shard streams.
    async fn pump<S, E>(
        &self,
        blob: &StoredBlob,
        body: &mut S,
        observe: &mut impl FnMut(&[u8]),
        senders: &mut [Option<mpsc::Sender<Result<Bytes, std::io::Error>>>],
    ) -> Result<(), DataError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let stripe = blob.stripe_size as usize;
        let mut codec = Codec::new(blob.profile);
        let mut buf = BytesMut::with_capacity(stripe);
        let mut got = 0u64;
        let mut body_done = false;
        while !body_done || !buf.is_empty() {
            while buf.len() < stripe && !body_done {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        got += chunk.len() as u64;
                        if got > blob.length {
                            return Err(DataError::LengthMismatch {
                                expected: blob.length,
                                got,
                            });
                        }
                        observe(&chunk);
                        buf.extend_from_slice(&chunk);
                    }
                    Some(Err(e)) => return Err(DataError::Body(e.to_string())),
                    None => body_done = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min(stripe);
            let data = buf.split_to(take);
            let shards = codec.encode_stripe(&data)?;
            for (i, shard) in shards.into_iter().enumerate() {
                if let Some(tx) = &senders[i] {
                    let sent = tokio::time::timeout(SHARD_STALL, tx.send(Ok(Bytes::from(shard))));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        // That shard's PUT failed or stalled; the others go on without it.
                        senders[i] = None;
                    }
                }
            }
        }
        if got != blob.length {
            return Err(DataError::LengthMismatch {
                expected: blob.length,
                got,
            });
        }
        Ok(())
    }
}

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
use crate::integrity::StripeDigests;
use crate::metrics::GatewayMetrics;

/// Plans and writes blobs.
#[derive(Clone)]
pub struct BlobWriter {
    nodes: NodeRegistry,
    options: DataOptions,
    metrics: Arc<GatewayMetrics>,
    /// Place every shard in this zone (a single-zone storage class); `None`: spread over zones.
    zone: Option<String>,
}

/// A shard stream that accepts nothing for this long, or a shard not acknowledged this long after
/// the whole body was handed over, is given up (a stalled or hung node must not stall the whole
/// write); the write still succeeds if the quorum holds.
const SHARD_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Distinct nodes a new blob must be spread over: k.
fn min_nodes(options: &DataOptions) -> usize {
    options.profile.data_shards()
}

/// Whether the shards that became durable (`durable[i]` for shard i) acknowledge the write. Shards
/// on one node fail together, so counting shards is not enough once placement had to put several
/// on one node: the durable shards must number at least the write quorum, span at least k nodes,
/// and, when the quorum asks for slack beyond k, still number k after losing the node that holds
/// most of them.
fn quorum_met(blob: &StoredBlob, durable: &[bool], options: &DataOptions) -> bool {
    let k = blob.profile.data_shards();
    let quorum = options.write_quorum.min(durable.len());
    let mut per_node: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, _) in durable.iter().enumerate().filter(|(_, d)| **d) {
        *per_node.entry(blob.placement[i].node.as_str()).or_default() += 1;
    }
    let stored: usize = per_node.values().sum();
    let busiest = per_node.values().copied().max().unwrap_or(0);
    stored >= quorum
        && per_node.len() >= min_nodes(options)
        && (quorum <= k || stored - busiest >= k)
}

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
            zone: None,
        }
    }

    /// The same writer placing every shard in `zone` (`None`: spread over every zone).
    pub fn in_zone(mut self, zone: Option<String>) -> Self {
        self.zone = zone;
        self
    }

    /// The encoding options.
    pub fn options(&self) -> DataOptions {
        self.options
    }

    /// Chooses the id and placement of a new blob of `length` bytes. Refuses when fewer than k
    /// nodes are usable: placement would pile every new blob onto the survivors (all k+m shards on
    /// a single node, at worst), and in a fleet of k+m nodes that is more nodes down than the m
    /// the profile tolerates. The client gets a 503 instead.
    pub fn plan(&self, length: u64) -> Result<StoredBlob, DataError> {
        let object_id = new_object_id();
        // Positions (in one view of the registry) of the nodes this writer may use.
        let all = self.nodes.placement_view();
        let allowed: Vec<usize> = (0..all.len())
            .filter(|&i| self.zone.as_ref().is_none_or(|z| &all[i].0.zone == z))
            .collect();
        let candidates: Vec<_> = allowed.iter().map(|&i| all[i].0.clone()).collect();
        let total = self.options.profile.total_shards();
        let needed = min_nodes(&self.options);
        let usable = candidates.iter().filter(|c| c.usable).count();
        if usable < needed {
            return Err(placement::PlacementError::TooFewNodes { usable, needed }.into());
        }
        let p = placement::place(&object_id, &candidates, total)?;
        if p.zone_degraded {
            tracing::warn!(%object_id, "a zone has no usable node: shards placed in the remaining zones");
        }
        Ok(StoredBlob {
            object_id,
            profile: self.options.profile,
            stripe_size: self.options.stripe_size,
            length,
            placement: p
                .nodes
                .iter()
                .map(|&i| PlacementEntry {
                    node: all[allowed[i]].1.id.clone(),
                    endpoint: all[allowed[i]].1.endpoint.clone(),
                })
                .collect(),
            stripe_digests: Default::default(),
        })
    }

    /// Streams `body` (exactly `blob.length` bytes) into the blob's shards; `observe` sees every
    /// body chunk in order (for MD5 and checksums). Returns, once at least the write quorum of
    /// shards is durable, the digest of every stripe written, for the blob's index entry; fails,
    /// leaving only garbage behind, otherwise.
    pub async fn write<S, E>(
        &self,
        blob: &StoredBlob,
        mut body: S,
        mut observe: impl FnMut(&[u8]),
    ) -> Result<StripeDigests, DataError>
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
                    if super::nodes::unreachable(e) {
                        nodes.mark_down(&spec.placement[usize::from(spec.shard_index.0)].node);
                    }
                    tracing::warn!(object = %spec.object_id, index = %spec.shard_index, error = %e, "shard write failed");
                }
                r.is_ok()
            }));
        }
        let mut digests = StripeDigests::default();
        let outcome = self
            .pump(
                blob,
                &mut body,
                &mut observe,
                &mut senders,
                &uploads,
                &mut digests,
            )
            .await;
        drop(senders);
        if outcome.is_err() {
            // Abort every shard upload: each node sees its request break off and stores nothing.
            // (Not by sending an error down the streams: a stalled one would block that send.)
            for u in &uploads {
                u.abort();
            }
        }
        // Every byte is handed over; a node that has not acknowledged its shard SHARD_STALL later
        // is given up (a hung node must not hang the write) and the quorum decides.
        let deadline = tokio::time::Instant::now() + SHARD_STALL;
        let mut durable = vec![false; n];
        for (i, mut u) in uploads.into_iter().enumerate() {
            match tokio::time::timeout_at(deadline, &mut u).await {
                Ok(r) => durable[i] = r.unwrap_or(false),
                Err(_) => {
                    u.abort();
                    self.nodes.mark_down(&blob.placement[i].node);
                    tracing::warn!(object = %blob.object_id, index = i, "shard write not acknowledged in time; given up");
                }
            }
        }
        outcome?;
        let stored = durable.iter().filter(|&&d| d).count();
        self.metrics.shards_written.inc_by(stored as u64);
        if !quorum_met(blob, &durable, &self.options) {
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
        Ok(digests)
    }

    /// Reads the body stripe by stripe and feeds the shard streams.
    async fn pump<S, E>(
        &self,
        blob: &StoredBlob,
        body: &mut S,
        observe: &mut impl FnMut(&[u8]),
        senders: &mut [Option<mpsc::Sender<Result<Bytes, std::io::Error>>>],
        uploads: &[tokio::task::JoinHandle<bool>],
        digests: &mut StripeDigests,
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
            digests.push_stripe(&data);
            let shards = codec.encode_stripe(&data)?;
            for (i, shard) in shards.into_iter().enumerate() {
                if let Some(tx) = &senders[i] {
                    let sent = tokio::time::timeout(SHARD_STALL, tx.send(Ok(Bytes::from(shard))));
                    match sent.await {
                        Ok(Ok(())) => {}
                        // That shard's PUT failed; the others go on without it.
                        Ok(Err(_)) => senders[i] = None,
                        Err(_) => {
                            // Stalled: give it up now (its request is cancelled) and go on.
                            senders[i] = None;
                            uploads[i].abort();
                            self.nodes.mark_down(&blob.placement[i].node);
                            tracing::warn!(object = %blob.object_id, index = i, "shard write stalled; given up");
                        }
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

#[cfg(test)]
mod tests {
    use cairn_storage_node::codec::ErasureProfile;

    use super::*;

    fn blob(nodes: &[&str]) -> StoredBlob {
        StoredBlob {
            object_id: new_object_id(),
            profile: ErasureProfile::new(4, 2).unwrap(),
            stripe_size: 1 << 20,
            length: 5 << 20,
            placement: nodes
                .iter()
                .map(|n| PlacementEntry {
                    node: n.parse().unwrap(),
                    endpoint: format!("http://{n}:1"),
                })
                .collect(),
            stripe_digests: Default::default(),
        }
    }

    fn met(nodes: &[&str], durable: &[bool]) -> bool {
        let b = blob(nodes);
        quorum_met(&b, durable, &DataOptions::new(b.profile, b.stripe_size))
    }

    #[test]
    fn quorum_counts_nodes_not_just_shards() {
        let six = ["n1", "n2", "n3", "n4", "n5", "n6"];
        assert!(met(&six, &[true; 6]));
        assert!(met(&six, &[true, true, true, true, true, false]));
        assert!(!met(&six, &[true, true, true, true, false, false]));
        // Two nodes down, shards doubled on two survivors: losing either leaves four.
        let four = ["n1", "n1", "n2", "n2", "n3", "n4"];
        assert!(met(&four, &[true; 6]));
        assert!(!met(&four, &[true, true, true, true, true, false]));
        // Three nodes (2+2+2) or fewer: not spread over k nodes.
        assert!(!met(&["n1", "n1", "n2", "n2", "n3", "n3"], &[true; 6]));
        assert!(!met(&["n1", "n1", "n1", "n2", "n2", "n2"], &[true; 6]));
        assert!(!met(&["n1"; 6], &[true; 6]));
        // Five nodes, one holding two shards. Five durable shards are enough when one of the
        // doubled node's failed, not when a single's did: losing the doubled node would then
        // leave three.
        let five = ["n1", "n1", "n2", "n3", "n4", "n5"];
        assert!(met(&five, &[true; 6]));
        assert!(met(&five, &[true, false, true, true, true, true]));
        assert!(!met(&five, &[true, true, true, true, true, false]));
    }
}

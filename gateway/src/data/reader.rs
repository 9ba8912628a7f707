//! Streaming reads of erasure-coded blobs. The happy path reads the k data shards in parallel and
//! concatenates their blocks (no decoding); a shard that is missing, corrupt (its node aborts the
//! stream), slow or unreachable is replaced by another shard from the same stripe on, and the
//! stripe is reconstructed. Only the stripes covering the requested range are fetched. Fewer than k
//! readable shards for a stripe is an error, never wrong bytes. Every stripe is checked against
//! the digest the gateway recorded when it wrote the blob ([`crate::integrity`]): a stripe that
//! does not match is rebuilt from a set of shards that gives the recorded data, and the shards
//! that lied are not read again; when no set does, the read fails.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cairn_storage_node::client::ClientError;
use cairn_storage_node::codec::Codec;
use cairn_storage_node::format::Geometry;
use cairn_storage_node::ids::ShardIndex;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::DataError;
use super::nodes::{NodeRegistry, unreachable};
use crate::index::records::StoredBlob;
use crate::integrity::Check;
use crate::metrics::GatewayMetrics;

/// A block that takes longer than this to arrive counts as a failed shard.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(20);

type ShardStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// A shard whose stream broke off mid-read (its node found a corrupt block and aborted, or the
/// connection dropped) is opened again from a later stripe at most this many times per read: the
/// rest of the shard is usually fine, and it may be needed when another shard fails further on.
const MAX_REOPENS: u32 = 3;

/// Why a shard could not be opened or read.
enum ShardFailure {
    /// The transfer broke off (the node aborts a read at a corrupt block, even before the
    /// response headers are complete; a dropped connection): the shard may be readable again
    /// from the next stripe on.
    Broken(String),
    /// The shard is missing, its header is corrupt, its node is unreachable or too slow: not
    /// asked again in this read.
    Gone(String),
}

impl std::fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardFailure::Broken(e) | ShardFailure::Gone(e) => f.write_str(e),
        }
    }
}

/// Which shards not open now may be opened, from which stripe on.
struct ShardHealth {
    /// The first stripe each shard may be read from: the stripe after the failure for a transfer
    /// that broke off (a corrupt block aborts the node's stream; the shard's later blocks are
    /// usually good, and may be needed when another shard fails further on), never for a shard
    /// that is gone.
    usable_from: Vec<u64>,
    /// Breaks per shard in this read.
    breaks: Vec<u32>,
}

impl ShardHealth {
    fn new(n: usize, first: u64) -> Self {
        Self {
            usable_from: vec![first; n],
            breaks: vec![0; n],
        }
    }

    /// Records that shard `i` failed at `stripe`, and logs it.
    fn failed(&mut self, blob: &StoredBlob, i: usize, stripe: u64, e: ShardFailure, what: &str) {
        tracing::warn!(object = %blob.object_id, index = i, stripe, error = %e, "{what}");
        self.usable_from[i] = match e {
            ShardFailure::Broken(_) if self.breaks[i] < MAX_REOPENS => {
                self.breaks[i] += 1;
                stripe + 1
            }
            _ => u64::MAX,
        };
    }

    fn usable(&self, i: usize, stripe: u64) -> bool {
        self.usable_from[i] <= stripe
    }
}

/// One shard being read sequentially from its holder.
struct Source {
    stream: cairn_transport::stall::StallGuard<ShardStream>,
    buf: BytesMut,
}

impl Source {
    /// Exactly the next `n` bytes of the shard.
    async fn read_exact(&mut self, n: usize) -> Result<Bytes, ShardFailure> {
        while self.buf.len() < n {
            match self.stream.next().await {
                Some(Err(_)) => return Err(ShardFailure::Gone("no block arrived in time".into())),
                None => return Err(ShardFailure::Broken("shard stream ended early".into())),
                Some(Ok(Err(e))) => return Err(ShardFailure::Broken(e.to_string())),
                Some(Ok(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }
}

/// Reads blobs.
#[derive(Clone)]
pub struct BlobReader {
    nodes: NodeRegistry,
    metrics: Arc<GatewayMetrics>,
}

impl BlobReader {
    /// A reader using `nodes`.
    pub fn new(nodes: NodeRegistry, metrics: Arc<GatewayMetrics>) -> Self {
        Self { nodes, metrics }
    }

    /// Streams bytes `range` of `blob`. Stripes are fetched ahead by a task, at most two stripes
    /// ahead of the consumer; dropping the stream stops it.
    pub fn read(
        &self,
        blob: &StoredBlob,
        range: Range<u64>,
    ) -> impl Stream<Item = Result<Bytes, DataError>> + Send + Sync + 'static {
        let (tx, rx) = mpsc::channel(2);
        let job = ReadJob {
            reader: self.clone(),
            blob: blob.clone(),
            range,
        };
        tokio::spawn(job.run(tx));
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }
}

struct ReadJob {
    reader: BlobReader,
    blob: StoredBlob,
    range: Range<u64>,
}

impl ReadJob {
    fn geometry(&self) -> Geometry {
        Geometry {
            data_shards: self.blob.profile.data_shards(),
            stripe_size: u64::from(self.blob.stripe_size),
            object_length: self.blob.length,
        }
    }

    async fn open(&self, index: usize, first: u64, end_block: u64) -> Result<Source, ShardFailure> {
        let g = self.geometry();
        let start = g.block_offset(first);
        let end = g.block_offset(end_block - 1) + g.block_len(end_block - 1);
        let entry = &self.blob.placement[index];
        let client = self.reader.nodes.client_for(&entry.node, &entry.endpoint);
        let opened = tokio::time::timeout(
            BLOCK_TIMEOUT,
            client.get_shard(
                self.blob.object_id,
                ShardIndex(index as u8),
                Some((start, end)),
            ),
        )
        .await;
        match opened {
            Ok(Ok(stream)) => Ok(Source {
                stream: cairn_transport::stall::stall_guard(Box::pin(stream), BLOCK_TIMEOUT),
                buf: BytesMut::new(),
            }),
            Ok(Err(e)) if unreachable(&e) => {
                self.reader.nodes.mark_down(&entry.node);
                Err(ShardFailure::Gone(e.to_string()))
            }
            Ok(Err(e @ ClientError::Transport { .. })) => Err(ShardFailure::Broken(e.to_string())),
            Ok(Err(e)) => Err(ShardFailure::Gone(e.to_string())),
            Err(_) => {
                // Connected but silent: as good as down until a probe says otherwise.
                self.reader.nodes.mark_down(&entry.node);
                Err(ShardFailure::Gone("timed out opening the shard".into()))
            }
        }
    }

    async fn run(self, tx: mpsc::Sender<Result<Bytes, DataError>>) {
        if self.range.start >= self.range.end {
            return;
        }
        let g = self.geometry();
        let k = self.blob.profile.data_shards();
        let n = self.blob.profile.total_shards();
        let first = self.range.start / g.stripe_size;
        let end_block = (self.range.end - 1) / g.stripe_size + 1;
        let mut sources: Vec<Option<Source>> = (0..n).map(|_| None).collect();
        let mut health = ShardHealth::new(n, first);
        let mut codec = Codec::new(self.blob.profile);
        let mut degraded = false;
        // Open the data shards first: the happy path needs no decoding. A data shard on a node
        // known to be down is not waited for; the loop below replaces it (with shards on nodes
        // believed up first, and down ones only as a last resort).
        let up = |i: usize| self.reader.nodes.is_node_up(&self.blob.placement[i].node);
        let first_opens: Vec<usize> = (0..k).filter(|&i| up(i)).collect();
        let opens = first_opens.iter().map(|&i| self.open(i, first, end_block));
        for (&i, r) in first_opens
            .iter()
            .zip(futures_util::future::join_all(opens).await)
        {
            match r {
                Ok(s) => sources[i] = Some(s),
                Err(e) => health.failed(&self.blob, i, first, e, "data shard unavailable"),
            }
        }

        for b in first..end_block {
            let block_len = g.block_len(b) as usize;
            let mut blocks: Vec<Option<Vec<u8>>> = vec![None; n];
            loop {
                // Every open source without block b yet reads it, in parallel. Open sources are
                // always positioned at the current stripe.
                let pending: Vec<usize> = (0..n)
                    .filter(|&i| blocks[i].is_none() && sources[i].is_some())
                    .collect();
                let reads = pending.into_iter().map(|i| {
                    let mut s = sources[i].take().expect("pending source is open");
                    async move {
                        let r = s.read_exact(block_len).await;
                        (i, s, r)
                    }
                });
                for (i, s, r) in futures_util::future::join_all(reads).await {
                    match r {
                        Ok(block) => {
                            blocks[i] = Some(block.to_vec());
                            sources[i] = Some(s);
                        }
                        Err(e) => health.failed(
                            &self.blob,
                            i,
                            b,
                            e,
                            "shard read failed; switching to another shard",
                        ),
                    }
                }
                let have = blocks.iter().filter(|x| x.is_some()).count();
                if have >= k {
                    break;
                }
                // Open replacements from stripe b on, as many as are still missing: shards on
                // nodes believed up before those on nodes marked down, then by index (data shards
                // first: fewer missing data shards, less decoding).
                let mut candidates: Vec<usize> = (0..n)
                    .filter(|&i| sources[i].is_none() && blocks[i].is_none() && health.usable(i, b))
                    .collect();
                candidates.sort_by_key(|&i| !up(i));
                candidates.truncate(k - have);
                if candidates.is_empty() {
                    let _ = tx
                        .send(Err(DataError::Unavailable {
                            object: self.blob.object_id,
                            stripe: b,
                            available: have,
                            needed: k,
                        }))
                        .await;
                    return;
                }
                degraded = true;
                let opens = candidates.iter().map(|&i| self.open(i, b, end_block));
                for (&i, r) in candidates
                    .iter()
                    .zip(futures_util::future::join_all(opens).await)
                {
                    match r {
                        Ok(s) => sources[i] = Some(s),
                        Err(e) => health.failed(&self.blob, i, b, e, "shard unavailable"),
                    }
                }
            }
            let data_len = g.stripe_data_len(b) as usize;
            let mut stripe = if blocks[..k].iter().all(|x| x.is_some()) {
                let mut out = Vec::with_capacity(k * block_len);
                for blk in blocks[..k].iter().flatten() {
                    out.extend_from_slice(blk);
                }
                out.truncate(data_len);
                out
            } else {
                self.reader.metrics.reconstructions.inc();
                // Use exactly the blocks we have; decode needs any k.
                let mut have = blocks.clone();
                match codec.decode_stripe(&mut have, data_len) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(DataError::Codec(e))).await;
                        return;
                    }
                }
            };
            if self.blob.stripe_digests.check(b, &stripe) == Check::Mismatch {
                self.reader.metrics.integrity_failures.inc();
                degraded = true;
                tracing::error!(object = %self.blob.object_id, stripe = b, "stripe does not match the digest recorded at write time; finding the shards that lie");
                // Every other shard's block of this stripe, then a set of k that gives the data.
                for i in 0..n {
                    if blocks[i].is_some() || !health.usable(i, b) {
                        continue;
                    }
                    let opened = match sources[i].take() {
                        Some(s) => Ok(s),
                        None => self.open(i, b, end_block).await,
                    };
                    let read = match opened {
                        Ok(mut s) => s.read_exact(block_len).await.map(|blk| (s, blk)),
                        Err(e) => Err(e),
                    };
                    match read {
                        Ok((s, blk)) => {
                            blocks[i] = Some(blk.to_vec());
                            sources[i] = Some(s);
                        }
                        Err(e) => health.failed(&self.blob, i, b, e, "shard unavailable"),
                    }
                }
                match recover_stripe(&mut codec, &blocks, k, data_len, |d| {
                    self.blob.stripe_digests.check(b, d) == Check::Match
                }) {
                    Some((data, liars)) => {
                        for i in liars {
                            sources[i] = None;
                            health.failed(
                                &self.blob,
                                i,
                                b,
                                ShardFailure::Gone("returned bytes that do not match".into()),
                                "shard returned wrong bytes; not read again",
                            );
                        }
                        stripe = data;
                    }
                    None => {
                        let _ = tx
                            .send(Err(DataError::Integrity {
                                object: self.blob.object_id,
                                stripe: b,
                            }))
                            .await;
                        return;
                    }
                }
            }
            let stripe_start = b * g.stripe_size;
            let from = self.range.start.max(stripe_start) - stripe_start;
            let to = self.range.end.min(stripe_start + data_len as u64) - stripe_start;
            let mut chunk = Bytes::from(stripe);
            chunk.advance(from as usize);
            chunk.truncate((to - from) as usize);
            if tx.send(Ok(chunk)).await.is_err() {
                return; // the client went away
            }
        }
        if degraded {
            self.reader.metrics.degraded_reads.inc();
        }
    }
}

/// Most sets of k shards tried to find a stripe's recorded data.
const MAX_RECOVERY_ATTEMPTS: usize = 256;

/// Finds k of the `blocks` present that decode to data `good` accepts: sets leaving out one
/// shard first, then two, and so on. Returns the data and the shards whose blocks differ from
/// what that data encodes to (they lied), or `None` when no set within the attempts does.
fn recover_stripe(
    codec: &mut Codec,
    blocks: &[Option<Vec<u8>>],
    k: usize,
    data_len: usize,
    good: impl Fn(&[u8]) -> bool,
) -> Option<(Vec<u8>, Vec<usize>)> {
    let available: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i].is_some()).collect();
    if available.len() < k {
        return None;
    }
    let mut attempts = 0;
    for leave_out in 1..=available.len() - k {
        for excluded in combinations(available.len(), leave_out) {
            attempts += 1;
            if attempts > MAX_RECOVERY_ATTEMPTS {
                return None;
            }
            let chosen: Vec<usize> = available
                .iter()
                .enumerate()
                .filter(|(pos, _)| !excluded.contains(pos))
                .map(|(_, &i)| i)
                .take(k)
                .collect();
            let mut subset: Vec<Option<Vec<u8>>> = vec![None; blocks.len()];
            for &i in &chosen {
                subset[i] = blocks[i].clone();
            }
            let Ok(data) = codec.decode_stripe(&mut subset, data_len) else {
                continue;
            };
            if !good(&data) {
                continue;
            }
            let Ok(encoded) = codec.encode_stripe(&data) else {
                continue;
            };
            let liars = available
                .iter()
                .copied()
                .filter(|&i| blocks[i].as_deref() != Some(encoded[i].as_slice()))
                .collect();
            return Some((data, liars));
        }
    }
    None
}

/// Every set of `r` positions out of `0..n`, in lexicographic order.
fn combinations(n: usize, r: usize) -> impl Iterator<Item = Vec<usize>> {
    let mut next = (r <= n).then(|| (0..r).collect::<Vec<usize>>());
    std::iter::from_fn(move || {
        let current = next.take()?;
        let mut c = current.clone();
        // Advance to the next combination, if any.
        let mut i = r;
        while i > 0 {
            i -= 1;
            if c[i] < n - r + i {
                c[i] += 1;
                for j in i + 1..r {
                    c[j] = c[j - 1] + 1;
                }
                next = Some(c);
                break;
            }
        }
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use cairn_storage_node::codec::ErasureProfile;

    use super::*;

    #[test]
    fn combinations_are_all_there_once() {
        let all: Vec<Vec<usize>> = combinations(5, 2).collect();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0], vec![0, 1]);
        assert_eq!(all[9], vec![3, 4]);
        assert_eq!(combinations(3, 3).count(), 1);
        assert_eq!(combinations(2, 3).count(), 0);
    }

    #[test]
    fn a_stripe_is_recovered_around_lying_shards_or_not_at_all() {
        let profile = ErasureProfile::new(4, 2).unwrap();
        let mut codec = Codec::new(profile);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let digest = crate::integrity::digest(&data);
        let good = |d: &[u8]| crate::integrity::digest(d) == digest;
        let encoded: Vec<Option<Vec<u8>>> = codec
            .encode_stripe(&data)
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        // One data shard and one parity shard lie: found, and named.
        let mut forged = encoded.clone();
        forged[1].as_mut().unwrap()[5] ^= 1;
        forged[4].as_mut().unwrap()[0] ^= 1;
        let (got, liars) = recover_stripe(&mut codec, &forged, 4, data.len(), good).unwrap();
        assert_eq!(got, data);
        assert_eq!(liars, vec![1, 4]);
        // Three liars of six: no four honest shards, so nothing is returned.
        forged[2].as_mut().unwrap()[9] ^= 1;
        assert!(recover_stripe(&mut codec, &forged, 4, data.len(), good).is_none());
        // Too few shards at all.
        let mut few = encoded.clone();
        few[0] = None;
        few[1] = None;
        few[2] = None;
        assert!(recover_stripe(&mut codec, &few, 4, data.len(), good).is_none());
    }
}

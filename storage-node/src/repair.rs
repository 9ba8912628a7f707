//! Peer repair: rebuilds one shard of an object, block by block, from healthy shards held by the
//! peers its placement names. A peer is reached at the endpoint the fleet's registry gives for
//! its id ([`PeerDirectory`]), never at one a shard header carries; a node not registered is
//! not asked.
//!
//! Each block of the target shard is its share of one stripe. To rebuild it we fetch that block
//! from k other shards (every byte a peer sends was checked against its block checksum by that
//! peer), reconstruct the stripe and keep the target's block. Sources are chosen per block, so a
//! shard corrupt in block 3 still serves block 4; a source that does not hold the shard or cannot
//! be reached is dropped for the rest of the rebuild. Blocks are produced as a stream so a shard of
//! any size is rebuilt in a few blocks of memory, and the consumer (the local store, or a PUT to
//! the peer) writes atomically: a rebuild that fails half-way leaves nothing behind.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;

use cairn_transport::FleetClient;

use crate::client::{ClientError, NodeClient};
use crate::codec::{Codec, CodecError};
use crate::format::ShardSpec;
use crate::ids::{ObjectId, ShardIndex};
use crate::peers::PeerDirectory;
use crate::store::{ShardFile, StoreError};

/// Why a shard could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Fewer than k healthy shards of some stripe could be read: the data cannot be recovered.
    #[error(
        "stripe {block} of {object}: only {available} healthy shards readable, {needed} needed"
    )]
    NotEnoughShards {
        object: ObjectId,
        block: u64,
        available: usize,
        needed: usize,
    },
    /// The rebuilt block differs from the checksum the damaged shard recorded for it.
    #[error("rebuilt block {block} of {object}.{index} does not match its recorded checksum")]
    ChecksumMismatch {
        object: ObjectId,
        index: ShardIndex,
        block: u64,
    },
    /// The codec refused the stripe.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Reading the local copy failed.
    #[error("local shard: {0}")]
    Store(#[from] StoreError),
    /// Writing the rebuilt shard to its holder failed.
    #[error("writing rebuilt shard: {0}")]
    Write(String),
}

impl RepairError {
    /// `true` when the data itself is beyond repair (as opposed to a failed write or I/O error).
    pub fn is_unrepairable(&self) -> bool {
        matches!(
            self,
            RepairError::NotEnoughShards { .. } | RepairError::ChecksumMismatch { .. }
        )
    }
}

/// The damaged local copy of the shard being rebuilt: blocks that still verify are taken from it,
/// the others are rebuilt and must match the checksums its header recorded.
pub struct LocalCopy {
    /// The open shard, header verified.
    pub file: Arc<ShardFile>,
    /// Blocks that failed their checksum.
    pub bad_blocks: BTreeSet<u64>,
}

/// Rebuilds shards from peers; cheap to clone (shares the HTTP connection pool).
#[derive(Clone)]
pub struct Repairer {
    fleet: FleetClient,
    peers: PeerDirectory,
}

/// Per-rebuild bookkeeping of which sources are worth asking.
struct SourceState {
    /// Shard indexes whose holder lacks the shard or is unreachable: never asked again.
    gone: Vec<bool>,
}

/// One shard being rebuilt, carried from block to block by the output stream.
struct Rebuild {
    next_block: u64,
    sources: SourceState,
    codec: Codec,
    repairer: Repairer,
    spec: ShardSpec,
    local: Option<LocalCopy>,
    cause: Arc<Mutex<Option<RepairError>>>,
}

impl Rebuild {
    /// Block `b` of the target: the local copy's if it verifies, otherwise rebuilt from peers.
    async fn block(&mut self, b: u64) -> Result<Vec<u8>, RepairError> {
        if let Some(local) = &self.local
            && !local.bad_blocks.contains(&b)
        {
            return read_local(local.file.clone(), b).await;
        }
        let block = self
            .repairer
            .rebuild_block(&self.spec, b, &mut self.sources, &mut self.codec)
            .await?;
        // With the damaged copy's header at hand, a rebuilt block must match the checksum
        // recorded when the shard was first written: a wrong reconstruction never replaces it.
        if let Some(local) = &self.local
            && local.file.header().block_checksums[b as usize] != crc32c::crc32c(&block)
        {
            return Err(RepairError::ChecksumMismatch {
                object: self.spec.object_id,
                index: self.spec.shard_index,
                block: b,
            });
        }
        Ok(block)
    }
}

impl Repairer {
    /// A repairer calling the nodes of `peers` with `fleet`.
    pub fn new(fleet: FleetClient, peers: PeerDirectory) -> Self {
        Self { fleet, peers }
    }

    /// A client for the holder of shard `index` of `spec`'s object, if that node is registered.
    pub fn holder(&self, spec: &ShardSpec, index: usize) -> Option<NodeClient> {
        let node = &spec.placement[index].node;
        match self.peers.endpoint(node) {
            Some(endpoint) => Some(NodeClient::new(self.fleet.clone(), node.clone(), endpoint)),
            None => {
                tracing::debug!(%node, "not a registered storage node: not asked");
                None
            }
        }
    }

    /// Streams the payload of shard `spec.shard_index`, rebuilt from peers (and from `local`'s good
    /// blocks if given). On failure the stream ends with an I/O error and the cause is left in
    /// the returned slot, so a consumer that sees only `io::Error` can still report it exactly.
    pub fn rebuild(
        &self,
        spec: ShardSpec,
        local: Option<LocalCopy>,
    ) -> (
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        Arc<Mutex<Option<RepairError>>>,
    ) {
        let cause = Arc::new(Mutex::new(None));
        let job = Rebuild {
            next_block: 0,
            sources: SourceState {
                gone: vec![false; spec.profile.total_shards()],
            },
            codec: Codec::new(spec.profile),
            repairer: self.clone(),
            spec,
            local,
            cause: cause.clone(),
        };
        let stream = futures_util::stream::unfold(Some(job), |job| async move {
            let mut job = job?;
            let b = job.next_block;
            if b >= job.spec.geometry().block_count() {
                return None;
            }
            match job.block(b).await {
                Ok(block) => {
                    job.next_block += 1;
                    Some((Ok(Bytes::from(block)), Some(job)))
                }
                Err(e) => {
                    let msg = e.to_string();
                    *job.cause.lock().expect("repair cause lock") = Some(e);
                    Some((Err(std::io::Error::other(msg)), None))
                }
            }
        });
        (stream, cause)
    }

    /// Fetches block `b` from k other shards and reconstructs the target's block.
    async fn rebuild_block(
        &self,
        spec: &ShardSpec,
        b: u64,
        sources: &mut SourceState,
        codec: &mut Codec,
    ) -> Result<Vec<u8>, RepairError> {
        let g = spec.geometry();
        let (off, len) = (g.block_offset(b), g.block_len(b));
        let target = usize::from(spec.shard_index.0);
        let k = spec.profile.data_shards();
        let n = spec.profile.total_shards();
        let mut stripe: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut have = 0;
        // Asked in index order (data shards first); each index at most once per block.
        let usable: Vec<usize> = (0..n)
            .filter(|&i| i != target && !sources.gone[i])
            .collect();
        let mut candidates = usable.into_iter();
        while have < k {
            let batch: Vec<usize> = candidates.by_ref().take(k - have).collect();
            if batch.is_empty() {
                return Err(RepairError::NotEnoughShards {
                    object: spec.object_id,
                    block: b,
                    available: have,
                    needed: k,
                });
            }
            let fetches = batch.iter().map(|&i| {
                let client = self.holder(spec, i);
                async move {
                    match client {
                        Some(c) => Some(
                            c.get_shard_bytes(
                                spec.object_id,
                                ShardIndex(i as u8),
                                Some((off, off + len)),
                            )
                            .await,
                        ),
                        None => None,
                    }
                }
            });
            let results = futures_util::future::join_all(fetches).await;
            for (i, r) in batch.into_iter().zip(results) {
                let Some(r) = r else {
                    sources.gone[i] = true;
                    continue;
                };
                match r {
                    Ok(bytes) if bytes.len() as u64 == len => {
                        stripe[i] = Some(bytes);
                        have += 1;
                    }
                    Ok(bytes) => {
                        tracing::warn!(object = %spec.object_id, index = i, got = bytes.len(), len, "peer returned a block of the wrong length");
                        sources.gone[i] = true;
                    }
                    Err(e) => {
                        // A missing shard or a dead peer will not do better on the next block;
                        // a corrupt block (mid-stream abort or 500) might.
                        // A source that sent too much or not in time is not asked again either.
                        let permanent = matches!(&e, ClientError::Api { status: 404, .. })
                            || matches!(&e, ClientError::BadResponse { .. })
                            || matches!(&e, ClientError::Transport { source, .. } if source.is_connect() || source.is_timeout());
                        if permanent {
                            sources.gone[i] = true;
                        }
                        tracing::debug!(object = %spec.object_id, index = i, block = b, error = %e, "repair source unusable");
                    }
                }
            }
        }
        codec.reconstruct(&mut stripe)?;
        Ok(stripe[target].take().expect("reconstruct fills every slot"))
    }
}

async fn read_local(file: Arc<ShardFile>, b: u64) -> Result<Vec<u8>, RepairError> {
    tokio::task::spawn_blocking(move || file.read_block(b))
        .await
        .map_err(|e| RepairError::Write(format!("local read task: {e}")))?
        .map_err(RepairError::from)
}

/// Recovers the [`RepairError`] behind a failed write of a rebuild stream, if it was the cause.
pub fn take_cause(slot: &Mutex<Option<RepairError>>) -> Option<RepairError> {
    slot.lock().expect("repair cause lock").take()
}

//! The data path: placement of shards, the storage-node registry (and its registration in the
//! index), streaming erasure-coded writes and
//! reads, and the garbage collector that frees unreferenced shards.

pub mod gc;
pub mod nodes;
pub mod placement;
pub mod reader;
pub mod registration;
pub mod writer;

use cairn_storage_node::codec::{CodecError, ErasureProfile};
use cairn_storage_node::ids::ObjectId;

/// Why a data-path operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No storage node can take a shard.
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    /// Fewer shards than the write quorum became durable.
    #[error("only {stored} of {needed} required shards of {object} were stored")]
    WriteQuorum {
        object: ObjectId,
        stored: usize,
        needed: usize,
    },
    /// Fewer than k shards of a stripe could be read.
    #[error("stripe {stripe} of {object}: {available} shards readable, {needed} needed")]
    Unavailable {
        object: ObjectId,
        stripe: u64,
        available: usize,
        needed: usize,
    },
    /// The request body failed (client went away, bad chunk signature...).
    #[error("request body: {0}")]
    Body(String),
    /// The body was not as long as announced.
    #[error("body of {got} bytes, {expected} announced")]
    LengthMismatch { expected: u64, got: u64 },
    /// The codec refused a stripe.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No k shards of a stripe give the data recorded when it was written: the shards read
    /// back are wrong, and nothing of that stripe is returned.
    #[error("stripe {stripe} of {object}: no set of shards gives the data recorded at write time")]
    Integrity { object: ObjectId, stripe: u64 },
}

/// How new data is encoded.
#[derive(Debug, Clone, Copy)]
pub struct DataOptions {
    /// Erasure profile of new blobs.
    pub profile: ErasureProfile,
    /// Object bytes per stripe.
    pub stripe_size: u32,
    /// Shards that must be durable before a write is acknowledged (k ..= k+m).
    pub write_quorum: usize,
}

impl DataOptions {
    /// RS(k,m) with a write quorum of k+1 (one shard of slack beyond what decoding needs), capped
    /// at k+m.
    pub fn new(profile: ErasureProfile, stripe_size: u32) -> Self {
        Self {
            profile,
            stripe_size,
            write_quorum: (profile.data_shards() + 1).min(profile.total_shards()),
        }
    }
}

//! Cairn storage node: the erasure-coding codec, the on-disk shard format and the durable shard store.
//!
//! The gateway depends on this crate for the codec, the shard format and the typed client of the
//! node's API; the scrubber and peer repair run inside each node.

pub mod api;
pub mod client;
pub mod codec;
pub mod config;
pub mod format;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod repair;
pub mod scrubber;
pub mod server;
pub mod store;

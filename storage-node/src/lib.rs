//! Cairn storage node: the erasure-coding codec, the on-disk shard format and the durable shard store.
//!
//! The gateway depends on this crate for the codec and (later) the typed client of the node's API.

pub mod client;
pub mod codec;
pub mod config;
pub mod format;
pub mod ids;
pub mod metrics;
pub mod server;
pub mod store;

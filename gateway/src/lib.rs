//! Cairn gateway: the S3 API (s3s) over a RocksDB metadata index and erasure-coded storage nodes.
//!
//! Layers, each knowing only the one below: `s3` (operations) → `index` (metadata) and `data`
//! (placement, streaming erasure-coded reads and writes, garbage collection) → the storage-node
//! client. `gateway` wires a process together; `dev` runs a whole fleet in one process.

pub mod admin;
pub mod bucket_config;
pub mod config;
pub mod credentials;
pub mod data;
pub mod dev;
pub mod gateway;
pub mod index;
pub mod integrity;
pub mod lifecycle;
pub mod metrics;
pub mod rebalancer;
pub mod s3;
pub mod seal;
pub mod server;
pub mod storage_class;
pub mod tls;

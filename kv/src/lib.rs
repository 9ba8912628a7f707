//! The ordered key-value engine under Cairn's metadata index, and nothing of what the keys mean.
//!
//! [`KvEngine`] is the trait the layers above write through (atomic, durable batches; range
//! scans); [`RocksEngine`] is the one on disk and [`MemEngine`] the one in tests and models.
//! [`KeyRanges`] are the byte ranges a replicated group owns. The replicated layer
//! (`cairn-raft`) and the index (`cairn-gateway`'s `index`) build on this crate; it imports
//! neither.

mod engine;
mod ranges;

pub use engine::{
    EngineError, Entries, KvEngine, MemEngine, RAFT_COLUMN_FAMILIES, RocksEngine, WriteOp, b64,
    rocks_batch,
};
pub use ranges::{ABOVE_EVERY_KEY, Entry, KeyRanges};

/// The first key after `key` (`key` followed by a zero byte).
pub fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The first key after every key starting with `prefix`; `None` if there is none (`prefix`
/// is all 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! The storage engine under the index, behind a small trait so that range logic, listing and (later)
//! partition splits run against an in-memory engine in tests. RocksDB is one implementation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A replicated write was refused because something it read changed before it committed
    /// (another gateway wrote first); the operation is recomputed.
    #[error("a concurrent write changed what this write read")]
    Conflict,
    /// The replicated index could not commit or confirm a read (no leader reachable).
    #[error("replicated index unavailable: {0}")]
    Unavailable(String),
}

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One mutation of an atomic batch (serialisable: replicated batches travel in Raft entries).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(
        #[serde(with = "crate::index::engine::b64")] Vec<u8>,
        #[serde(with = "crate::index::engine::b64")] Vec<u8>,
    ),
    /// Remove `key`.
    Delete(#[serde(with = "crate::index::engine::b64")] Vec<u8>),
}

/// Byte strings as base64 in JSON (a third of the size of serde's array of numbers).
pub mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises `bytes` as a base64 string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Parses a base64 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A RocksDB batch of `ops`.
pub fn rocks_batch(ops: Vec<WriteOp>) -> rocksdb::WriteBatch {
    let mut batch = rocksdb::WriteBatch::default();
    for op in ops {
        match op {
            WriteOp::Put(k, v) => batch.put(k, v),
            WriteOp::Delete(k) => batch.delete(k),
        }
    }
    batch
}

/// An ordered key-value store with atomic, durable batches.
pub trait KvEngine: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// Applies every op or none; returns only once the batch is durable (WAL fsynced).
    fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError>;
    /// Up to `limit` entries with `start <= key < end`, in byte order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, EngineError>;
    /// Approximate bytes on disk (for metrics).
    fn approximate_size(&self) -> u64;
    /// Approximate bytes of the entries with `start <= key < end` (for size-based splits).
    fn approximate_range_size(&self, start: &[u8], end: &[u8]) -> u64;
}

/// Column families besides the default one (which holds the index): the Raft log and the Raft
/// state (vote, applied position, membership) of the replicated index.
pub const RAFT_COLUMN_FAMILIES: [&str; 2] = ["raft_log", "raft_state"];

/// RocksDB with synced writes.
pub struct RocksEngine {
    db: Arc<rocksdb::DB>,
}

impl RocksEngine {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Index entries are small; a modest block cache and parallelism fit the gateway's budget.
        opts.increase_parallelism(2);
        let cfs = std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).chain(RAFT_COLUMN_FAMILIES);
        let db = rocksdb::DB::open_cf(&opts, path, cfs)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database (the replicated index keeps its Raft log in the same one).
    pub fn db(&self) -> Arc<rocksdb::DB> {
        self.db.clone()
    }

    /// Whether the index holds any entry.
    pub fn holds_entries(&self) -> bool {
        self.db
            .iterator(rocksdb::IteratorMode::Start)
            .next()
            .is_some()
    }

    /// Whether this index has been a replica of a replicated group (it holds Raft state).
    pub fn holds_raft_state(&self) -> bool {
        RAFT_COLUMN_FAMILIES.iter().any(|name| {
            self.db.cf_handle(name).is_some_and(|cf| {
                self.db
                    .iterator_cf(cf, rocksdb::IteratorMode::Start)
                    .next()
                    .is_some()
            })
        })
    }
}

impl KvEngine for RocksEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get(key)?)
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let batch = rocks_batch(ops);
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, EngineError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let iter = self.db.iterator_opt(
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
            ro,
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn approximate_size(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Flushed data only: RocksDB's estimate leaves out the memtable.
    fn approximate_range_size(&self, start: &[u8], end: &[u8]) -> u64 {
        self.db
            .get_approximate_sizes(&[rocksdb::Range::new(start, end)])
            .first()
            .copied()
            .unwrap_or(0)
    }
}

/// An in-memory engine for tests and models.
#[derive(Default)]
pub struct MemEngine {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl KvEngine for MemEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.map.lock().expect("mem engine lock").get(key).cloned())
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let mut map = self.map.lock().expect("mem engine lock");
        for op in ops {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let map = self.map.lock().expect("mem engine lock");
        Ok(map
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn approximate_size(&self) -> u64 {
        let map = self.map.lock().expect("mem engine lock");
        map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    fn approximate_range_size(&self, start: &[u8], end: &[u8]) -> u64 {
        if start >= end {
            return 0;
        }
        let map = self.map.lock().expect("mem engine lock");
        map.range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(e: &dyn KvEngine) {
        e.write(vec![
            WriteOp::Put(b"a".to_vec(), b"1".to_vec()),
            WriteOp::Put(b"b".to_vec(), b"2".to_vec()),
            WriteOp::Put(b"c".to_vec(), b"3".to_vec()),
        ])
        .unwrap();
        e.write(vec![WriteOp::Delete(b"b".to_vec())]).unwrap();
        assert_eq!(e.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(b"b").unwrap(), None);
        let all = e.scan(b"a", b"z", 10).unwrap();
        assert_eq!(
            all,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        assert_eq!(e.scan(b"b", b"c", 10).unwrap(), vec![]);
        assert_eq!(e.scan(b"a", b"z", 1).unwrap().len(), 1);
    }

    #[test]
    fn mem_engine_semantics() {
        exercise(&MemEngine::default());
    }

    #[test]
    fn rocks_engine_semantics_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = RocksEngine::open(dir.path()).unwrap();
            exercise(&e);
        }
        let e = RocksEngine::open(dir.path()).unwrap();
        assert_eq!(e.get(b"c").unwrap(), Some(b"3".to_vec()));
    }
}

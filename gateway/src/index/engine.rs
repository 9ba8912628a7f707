//! The storage engine under the index, behind a small trait so that range logic, listing and (later)
//! partition splits run against an in-memory engine in tests. RocksDB is one implementation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
}

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One mutation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
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
}

/// RocksDB with synced writes.
pub struct RocksEngine {
    db: rocksdb::DB,
}

impl RocksEngine {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        // Index entries are small; a modest block cache and parallelism fit the gateway's budget.
        opts.increase_parallelism(2);
        let db = rocksdb::DB::open(&opts, path)?;
        Ok(Self { db })
    }
}

impl KvEngine for RocksEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get(key)?)
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let mut batch = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put(k, v) => batch.put(k, v),
                WriteOp::Delete(k) => batch.delete(k),
            }
        }
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

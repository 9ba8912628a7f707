//! The storage engine under the index, behind a small trait so that range logic, listing and
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
    /// A replicated write's keys belong to another group than the one it was computed for (a
    /// split moved them); the operation is recomputed.
    #[error("the write's keys moved to another index group")]
    Moved,
    /// The replicated index could not commit or confirm a read (no leader reachable).
    #[error("replicated index unavailable: {0}")]
    Unavailable(String),
    /// The database was written with another key layout (an older Cairn); reading it with
    /// this one would misread records, so the gateway refuses to start on it.
    #[error(
        "the index uses key layout {found}, this gateway reads layout {wanted}; \
         start it on an empty --data-dir and copy the objects over with any S3 client"
    )]
    Layout {
        /// The layout the database records (1: written before layouts were recorded).
        found: u32,
        /// The layout the caller reads.
        wanted: u32,
    },
}

/// Column family holding the key layout version (kept out of the index and the Raft state, which
/// snapshots replace).
const LAYOUT_CF: &str = "layout";
const LAYOUT_KEY: &[u8] = b"version";

/// Key-value pairs returned by a scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One mutation of an atomic batch (serialisable: replicated batches travel in Raft entries).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(
        #[serde(with = "crate::engine::b64")] Vec<u8>,
        #[serde(with = "crate::engine::b64")] Vec<u8>,
    ),
    /// Remove `key`.
    Delete(#[serde(with = "crate::engine::b64")] Vec<u8>),
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
pub trait KvEngine: Send + Sync {
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
    /// Opens (creating if needed) the database at `path`, whose keys are laid out as version
    /// `layout` of its user's key schema: a new database records it, one of another layout is
    /// refused ([`EngineError::Layout`]) rather than misread.
    pub fn open(path: &Path, layout: u32) -> Result<Self, EngineError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Index entries are small; a modest block cache and parallelism fit the gateway's budget.
        opts.increase_parallelism(2);
        let cfs = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, LAYOUT_CF]
            .into_iter()
            .chain(RAFT_COLUMN_FAMILIES);
        let db = rocksdb::DB::open_cf(&opts, path, cfs)?;
        let engine = Self { db: Arc::new(db) };
        engine.check_layout(layout)?;
        Ok(engine)
    }

    /// Records `wanted` in a new database; refuses one written with another layout.
    fn check_layout(&self, wanted: u32) -> Result<(), EngineError> {
        let cf = self
            .db
            .cf_handle(LAYOUT_CF)
            .expect("layout column family opened above");
        let found = match self.db.get_cf(cf, LAYOUT_KEY)? {
            Some(v) => v.as_slice().try_into().map(u32::from_be_bytes).unwrap_or(0),
            None if self.holds_entries() || self.holds_raft_state() => 1,
            None => {
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .put_cf_opt(cf, LAYOUT_KEY, wanted.to_be_bytes(), &wo)?;
                return Ok(());
            }
        };
        if found == wanted {
            Ok(())
        } else {
            Err(EngineError::Layout { found, wanted })
        }
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

    const LAYOUT: u32 = 2;

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
            let e = RocksEngine::open(dir.path(), LAYOUT).unwrap();
            exercise(&e);
        }
        let e = RocksEngine::open(dir.path(), LAYOUT).unwrap();
        assert_eq!(e.get(b"c").unwrap(), Some(b"3".to_vec()));
    }

    #[test]
    fn an_index_of_another_key_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            // An index written before layouts were recorded: entries, no version.
            let db = rocksdb::DB::open_default(dir.path()).unwrap();
            db.put(b"Bold", b"{}").unwrap();
        }
        match RocksEngine::open(dir.path(), LAYOUT) {
            Err(EngineError::Layout { found: 1, wanted }) => assert_eq!(wanted, LAYOUT),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("an index of layout 1 was opened"),
        }
        // A new database records the layout and reopens.
        let fresh = tempfile::tempdir().unwrap();
        drop(RocksEngine::open(fresh.path(), LAYOUT).unwrap());
        RocksEngine::open(fresh.path(), LAYOUT).unwrap();
        // ... and refuses to be read as another.
        assert!(matches!(
            RocksEngine::open(fresh.path(), LAYOUT + 1),
            Err(EngineError::Layout { found: LAYOUT, .. })
        ));
    }
}

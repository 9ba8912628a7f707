//! Raft storage of the replicated index in the gateway's RocksDB: the log and the Raft state in
//! their own column families, the state machine *is* the index (the default column family).
//!
//! Durability: a log append is synced before Raft counts it, so a committed entry is on disk on
//! a majority before any S3 response. Applying an entry writes the index keys and the applied
//! position in one atomic batch without its own sync: after a crash the index is a consistent
//! prefix of the log, and Raft re-applies the rest from the (synced) log. A snapshot syncs the
//! WAL before it counts, because Raft then purges the entries it covers. Snapshots are the whole
//! index in one blob (in memory while built and sent): fine for indexes of some hundred MB,
//! to be streamed for larger ones.

// openraft's storage traits fix the error type (`StorageError`, over 200 bytes); the helpers
// here return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use super::TypeConfig;
use super::proposal::Outcome;
use crate::index::engine::{KvEngine, RocksEngine, rocks_batch};

type NodeId = u64;
type StoreError = StorageError<NodeId>;
/// The last applied log id and the membership it established.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

const LOG_CF: &str = "raft_log";
const STATE_CF: &str = "raft_state";
const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged";
const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT: &[u8] = b"snapshot";

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StoreError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("column family opened by RocksEngine::open")
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn read_state<T: serde::de::DeserializeOwned>(
    db: &DB,
    key: &[u8],
    subject: ErrorSubject<NodeId>,
) -> Result<Option<T>, StoreError> {
    match db
        .get_cf(cf(db, STATE_CF), key)
        .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
    {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io_error(subject, ErrorVerb::Read, e)),
        None => Ok(None),
    }
}

fn parse_snapshot_state<T: serde::de::DeserializeOwned>(
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
}

fn encode_state<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("raft state serialises")
}

/// The Raft log (and vote) in RocksDB. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    /// The log in `engine`'s database.
    pub fn new(engine: &RocksEngine) -> Self {
        Self { db: engine.db() }
    }

    fn last_entry(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        let mut it = self
            .db
            .iterator_cf(cf(&self.db, LOG_CF), rocksdb::IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (_, v) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry<TypeConfig> = serde_json::from_slice(&v)
                    .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, LOG_CF),
            rocksdb::IteratorMode::From(&start.to_be_bytes(), rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0xff; 8]));
            if !range.contains(&index) {
                break;
            }
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| io_error(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?,
            );
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged: Option<LogId<NodeId>> =
            read_state(&self.db, LAST_PURGED, ErrorSubject::Logs)?;
        let last = self.last_entry()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(cf(&self.db, STATE_CF), VOTE, encode_state(vote), &synced())
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StoreError> {
        read_state(&self.db, VOTE, ErrorSubject::Vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let log = cf(&self.db, LOG_CF);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(log, entry.log_id.index.to_be_bytes(), encode_state(&entry));
        }
        let written = self.db.write_opt(batch, &synced());
        let result = written
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(result);
        written.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        // Entries from `log_id.index` on conflict with the leader's log and go.
        let log = cf(&self.db, LOG_CF);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(log, u64::MAX.to_be_bytes());
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, STATE_CF), LAST_PURGED, encode_state(&log_id));
        batch.delete_range_cf(
            cf(&self.db, LOG_CF),
            0u64.to_be_bytes(),
            (log_id.index + 1).to_be_bytes(),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// A snapshot as stored: its metadata and every index key-value pair.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta<NodeId, BasicNode>,
    entries: Vec<(String, String)>,
}

/// Told the load key of every applied write batch (see `index::partition::load_key`), so that
/// every replica, the leader included, counts the whole group's writes per partition.
pub type ApplyObserver = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Told the reads another gateway served (sampled keys with weights), on the leader.
pub type ReadObserver = Arc<dyn Fn(&ReadReport) + Send + Sync>;

/// Reads a gateway served since its last report, sent to the leader so that the leader's load
/// figures (which drive splits) cover every gateway's reads, not just its own.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReadReport {
    /// Sampled index keys and the reads each stands for.
    pub samples: Vec<(String, f64)>,
}

/// The index as a Raft state machine. Cloning shares the database.
#[derive(Clone)]
pub struct StateMachine {
    engine: Arc<RocksEngine>,
    db: Arc<DB>,
    observer: Arc<std::sync::OnceLock<ApplyObserver>>,
}

impl StateMachine {
    /// The state machine over `engine` (the index itself); `observer` is set once the index
    /// exists.
    pub fn new(
        engine: Arc<RocksEngine>,
        observer: Arc<std::sync::OnceLock<ApplyObserver>>,
    ) -> Self {
        let db = engine.db();
        Self {
            engine,
            db,
            observer,
        }
    }

    fn applied(&self) -> Result<AppliedState, StoreError> {
        let applied = read_state(&self.db, APPLIED, ErrorSubject::StateMachine)?;
        let membership =
            read_state(&self.db, MEMBERSHIP, ErrorSubject::StateMachine)?.unwrap_or_default();
        Ok((applied, membership))
    }

    fn write(&self, batch: WriteBatch, subject: ErrorSubject<NodeId>) -> Result<(), StoreError> {
        // Not synced: see the module documentation.
        self.db
            .write(batch)
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StoreError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        // Raft purges the log this snapshot covers: what was applied without a sync must be on
        // disk first.
        self.db
            .flush_wal(true)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        // The iterator reads a consistent view; the applied position is read from the same one.
        let snap = self.db.snapshot();
        let read = |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
            snap.get_cf(cf(&self.db, STATE_CF), key)
                .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
        };
        let last_log_id: Option<LogId<NodeId>> = parse_snapshot_state(read(APPLIED)?)?;
        let last_membership: StoredMembership<NodeId, BasicNode> =
            parse_snapshot_state(read(MEMBERSHIP)?)?.unwrap_or_default();
        let mut entries = Vec::new();
        for item in snap.iterator(rocksdb::IteratorMode::Start) {
            let (k, v) =
                item.map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
            entries.push((b64.encode(k), b64.encode(v)));
        }
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id: format!(
                "{}-{}",
                last_log_id.map(|l| l.index).unwrap_or(0),
                crate::index::now_ms()
            ),
        };
        let body = encode_state(&SnapshotBody {
            meta: meta.clone(),
            entries,
        });
        self.db
            .put_cf(cf(&self.db, STATE_CF), SNAPSHOT, &body)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(body)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, StoreError> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            let subject = ErrorSubject::Apply(entry.log_id);
            // Each entry is its own batch: the next entry's checks must see this one's writes.
            let (mut batch, outcome) = match entry.payload {
                EntryPayload::Normal(proposal) => {
                    let holds = proposal
                        .holds(self.engine.as_ref() as &dyn KvEngine)
                        .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?;
                    if holds {
                        if let Some(observe) = self.observer.get()
                            && let Some(key) = crate::index::partition::load_key(&proposal.ops)
                        {
                            observe(key);
                        }
                        (rocks_batch(proposal.ops), Outcome::Applied)
                    } else {
                        (WriteBatch::default(), Outcome::Conflict)
                    }
                }
                EntryPayload::Membership(m) => {
                    let mut batch = WriteBatch::default();
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    batch.put_cf(cf(&self.db, STATE_CF), MEMBERSHIP, encode_state(&stored));
                    (batch, Outcome::Applied)
                }
                EntryPayload::Blank => (WriteBatch::default(), Outcome::Applied),
            };
            batch.put_cf(
                cf(&self.db, STATE_CF),
                APPLIED,
                encode_state(&Some(entry.log_id)),
            );
            self.write(batch, subject)?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StoreError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let bytes = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?;
        // Replace the whole index with the snapshot's in one batch.
        let mut batch = WriteBatch::default();
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?;
            batch.delete(k);
        }
        for (k, v) in body.entries {
            let decode = |s: &str| {
                b64.decode(s)
                    .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))
            };
            batch.put(decode(&k)?, decode(&v)?);
        }
        let state = cf(&self.db, STATE_CF);
        batch.put_cf(state, APPLIED, encode_state(&meta.last_log_id));
        batch.put_cf(state, MEMBERSHIP, encode_state(&meta.last_membership));
        batch.put_cf(state, SNAPSHOT, &bytes);
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let Some(bytes) = self
            .db
            .get_cf(cf(&self.db, STATE_CF), SNAPSHOT)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let body: SnapshotBody = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: body.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

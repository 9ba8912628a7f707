//! Raft storage of the replicated index in the gateway's RocksDB: the log and the Raft state in
//! their own column families, the state machine *is* the index (the default column family).
//!
//! Every log and state key starts with its Raft group's id (u64 BE, [`GroupKeys`]), so several
//! groups share the column families: the meta group [`INDEX_GROUP`] and a group per object
//! partition (`docs/multi-raft.md`).
//!
//! Durability: a log append is synced before Raft counts it, so a committed entry is on disk on
//! a majority before any S3 response (the appends of all groups share their syncs:
//! [`super::log_sync`]). Applying an entry writes the index keys and the applied
//! position in one atomic batch without its own sync: after a crash the index is a consistent
//! prefix of the log, and Raft re-applies the rest from the (synced) log. A snapshot syncs the
//! WAL before it counts, because Raft then purges the entries it covers. Snapshots are files,
//! streamed from a consistent view of the index and installed in batches ([`super::snapshot`]).

// openraft's storage traits fix the error type (`StorageError`, over 200 bytes); the helpers
// here return it too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
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
use super::command::{Absorb, Command, Split};
use super::log_sync::LogSync;
use super::proposal::{Outcome, Proposal};
use super::schema::KeySchema;
use super::snapshot::{self, StoredSnapshot};
use cairn_kv::{EngineError, Entries, KeyRanges, KvEngine, RocksEngine, rocks_batch};

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
const INSTALLING: &[u8] = b"installing";
/// The key ranges the group owns, once a split changed them (absent: the ranges it opened with).
const RANGES: &[u8] = b"ranges";
/// How a group born of a split is to be initialized ([`Birth`]), written with its ranges.
const BORN: &[u8] = b"born";
/// The log index of the group's freeze, while it is frozen (a merge under way).
const FROZEN: &[u8] = b"frozen";
/// Every state record of a group (what forgetting a group removes).
const STATE_NAMES: [&[u8]; 9] = [
    VOTE,
    LAST_PURGED,
    APPLIED,
    MEMBERSHIP,
    SNAPSHOT,
    INSTALLING,
    RANGES,
    BORN,
    FROZEN,
];
/// How long applying an absorb waits, by default, for this replica's copy of the absorbed group
/// to make progress towards its freeze before giving up (see [`StateMachine::set_absorb_wait`]).
const ABSORB_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A Raft group's id.
pub type GroupId = u64;

/// The group holding the whole index today.
pub const INDEX_GROUP: GroupId = 1;

/// Where one group's log entries and Raft state live: every key starts with the group id.
#[derive(Debug, Clone)]
pub struct GroupKeys {
    group: GroupId,
}

impl GroupKeys {
    /// The keys of `group`.
    pub fn new(group: GroupId) -> Self {
        Self { group }
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    fn prefix(&self) -> [u8; 8] {
        self.group.to_be_bytes()
    }

    /// The log key of entry `index`.
    fn log(&self, index: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.prefix());
        k[8..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The entry index of log key `k`, if it is one of this group's.
    fn log_index(&self, k: &[u8]) -> Option<u64> {
        let rest = k.strip_prefix(&self.prefix()[..])?;
        Some(u64::from_be_bytes(rest.try_into().ok()?))
    }

    /// The key of state record `name`.
    fn state(&self, name: &[u8]) -> Vec<u8> {
        [&self.prefix()[..], name].concat()
    }

    /// The state keys a snapshot install writes.
    pub fn snapshot_keys(&self) -> snapshot::StateKeys {
        snapshot::StateKeys {
            applied: self.state(APPLIED),
            membership: self.state(MEMBERSHIP),
            snapshot: self.state(SNAPSHOT),
            installing: self.state(INSTALLING),
            ranges: self.state(RANGES),
            frozen: self.state(FROZEN),
        }
    }

    /// What the names of this group's snapshot files start with after their kind.
    fn file_tag(&self) -> String {
        format!("g{}-", self.group)
    }
}

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

fn snapshot_error(e: impl std::fmt::Display) -> StoreError {
    io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}

/// The log index `group` has applied, as `snap` (of `db`) holds it.
pub fn applied_in(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    group: GroupId,
) -> Result<Option<u64>, String> {
    let key = GroupKeys::new(group).state(APPLIED);
    let bytes = snap
        .get_cf(cf(db, STATE_CF), key)
        .map_err(|e| e.to_string())?;
    let applied: Option<LogId<NodeId>> = match bytes {
        Some(b) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(applied.map(|l| l.index))
}

/// The key ranges `group` owns as `snap` (of `db`) holds them (`None`: it never persisted any,
/// so it owns the ranges it opens with).
pub fn ranges_in(
    db: &DB,
    snap: &rocksdb::Snapshot<'_>,
    group: GroupId,
) -> Result<Option<KeyRanges>, String> {
    let key = GroupKeys::new(group).state(RANGES);
    let bytes = snap
        .get_cf(cf(db, STATE_CF), key)
        .map_err(|e| e.to_string())?;
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .transpose()
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

/// One group's Raft log (and vote) in RocksDB. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    keys: GroupKeys,
    /// Syncs appends, with those of the database's other groups.
    sync: LogSync,
}

impl LogStore {
    /// The log of `group` in `engine`'s database, its appends made durable by `sync` (the
    /// database's).
    pub fn new(engine: &RocksEngine, group: GroupId, sync: LogSync) -> Self {
        Self {
            db: engine.db(),
            keys: GroupKeys::new(group),
            sync,
        }
    }

    fn last_entry(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        let last = self.keys.log(u64::MAX);
        let mut it = self.db.iterator_cf(
            cf(&self.db, LOG_CF),
            rocksdb::IteratorMode::From(&last, rocksdb::Direction::Reverse),
        );
        match it.next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                if self.keys.log_index(&k).is_none() {
                    // The last entry of a group with a smaller id: this group's log is empty.
                    return Ok(None);
                }
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
            rocksdb::IteratorMode::From(&self.keys.log(start), rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let Some(index) = self.keys.log_index(&k) else {
                break;
            };
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
            read_state(&self.db, &self.keys.state(LAST_PURGED), ErrorSubject::Logs)?;
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
            .put_cf_opt(
                cf(&self.db, STATE_CF),
                self.keys.state(VOTE),
                encode_state(vote),
                &synced(),
            )
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StoreError> {
        read_state(&self.db, &self.keys.state(VOTE), ErrorSubject::Vote)
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
            batch.put_cf(log, self.keys.log(entry.log_id.index), encode_state(&entry));
        }
        // Written now, so the entries are readable at once (replication reads them); durable
        // once the shared sync after this write is done, which is when Raft may count them.
        match self.db.write(batch) {
            Ok(()) => {
                self.sync.when_durable(callback);
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        // Entries from `log_id.index` on conflict with the leader's log and go.
        let log = cf(&self.db, LOG_CF);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, self.keys.log(log_id.index), self.keys.log(u64::MAX));
        batch.delete_cf(log, self.keys.log(u64::MAX));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, STATE_CF),
            self.keys.state(LAST_PURGED),
            encode_state(&log_id),
        );
        batch.delete_range_cf(
            cf(&self.db, LOG_CF),
            self.keys.log(0),
            self.keys.log(log_id.index + 1),
        );
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

/// How a group born of a split starts: its first members are the parent's at the split, and
/// `leader` (if chosen) initializes it. Persisted with the split, so a replica that stops before
/// it started the group starts it when it opens again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Birth {
    /// The parent group's membership at the split.
    pub membership: openraft::Membership<NodeId, BasicNode>,
    /// The replica meant to initialize and lead the group.
    pub leader: Option<NodeId>,
}

impl Birth {
    /// The voters to initialize the group with (learners are added afterwards).
    pub fn voters(&self) -> BTreeMap<NodeId, BasicNode> {
        self.membership
            .voter_ids()
            .filter_map(|id| self.membership.get_node(&id).map(|n| (id, n.clone())))
            .collect()
    }
}

/// A group born of a split this replica applied: the host starts its replica over the same
/// engine, owning `ranges`, as `birth` says.
#[derive(Debug, Clone)]
pub struct SplitEvent {
    /// The new group.
    pub new_group: GroupId,
    /// The key ranges it owns.
    pub ranges: KeyRanges,
    /// How it is initialized.
    pub birth: Birth,
}

/// A group whose replica this engine holds beyond the one it opens with: the ranges it owns
/// and, for a group born of a split, how it is initialized.
#[derive(Debug, Clone)]
pub struct Hosted {
    /// The group.
    pub group: GroupId,
    /// The key ranges it owns (as last persisted).
    pub ranges: KeyRanges,
    /// Set for a group born of a split.
    pub birth: Option<Birth>,
}

/// Records (synced) that `group` owns `ranges` on `engine`: a group created from a snapshot is
/// known before the snapshot installs, so a restart in between reopens it.
pub fn persist_ranges(
    engine: &RocksEngine,
    group: GroupId,
    ranges: &KeyRanges,
) -> Result<(), rocksdb::Error> {
    let db = engine.db();
    let key = GroupKeys::new(group).state(RANGES);
    db.put_cf_opt(cf(&db, STATE_CF), key, encode_state(ranges), &synced())
}

/// Every group of `engine` that persisted its own key ranges (split, born of a split, or given
/// ranges by a snapshot), in id order: what a host restarts besides the group it opens with.
pub fn hosted_groups(engine: &RocksEngine) -> Result<Vec<Hosted>, rocksdb::Error> {
    let db = engine.db();
    let state = cf(&db, STATE_CF);
    let mut hosted = Vec::new();
    for item in db.iterator_cf(state, rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        let (Some(id), Some(RANGES)) = (k.get(..8), k.get(8..)) else {
            continue;
        };
        let group = GroupId::from_be_bytes(id.try_into().expect("8 bytes"));
        let Ok(ranges) = serde_json::from_slice::<KeyRanges>(&v) else {
            tracing::warn!(
                group,
                "unreadable key ranges in the raft state; group skipped"
            );
            continue;
        };
        let birth = db
            .get_cf(state, GroupKeys::new(group).state(BORN))?
            .and_then(|b| serde_json::from_slice(&b).ok());
        hosted.push(Hosted {
            group,
            ranges,
            birth,
        });
    }
    Ok(hosted)
}

/// Told of every split this replica applies, right after the parent's range shrank.
pub type SplitObserver = Arc<dyn Fn(SplitEvent) + Send + Sync>;

/// Told of every group this replica's group absorbs (a merge), before the absorbing group takes
/// its ranges: the absorbed group is to stop here and be forgotten.
pub type AbsorbObserver = Arc<dyn Fn(GroupId) + Send + Sync>;
/// Told the group this replica's group could not absorb: its copy here never reached the freeze
/// (the absorbing group stops here; see [`StateMachine::observe_absorb_failures`]).
pub type AbsorbFailureObserver = Arc<dyn Fn(GroupId) + Send + Sync>;

/// Deletes every log entry and state record of `group` from `engine` (not the index keys, which
/// another group owns by then) and its snapshot files: what remains of a group absorbed by a
/// merge, once its Raft has stopped.
pub fn forget_group(engine: &RocksEngine, group: GroupId) -> Result<(), rocksdb::Error> {
    let db = engine.db();
    let keys = GroupKeys::new(group);
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(cf(&db, LOG_CF), keys.log(0), keys.log(u64::MAX));
    batch.delete_cf(cf(&db, LOG_CF), keys.log(u64::MAX));
    for name in STATE_NAMES {
        batch.delete_cf(cf(&db, STATE_CF), keys.state(name));
    }
    db.write_opt(batch, &synced())?;
    snapshot::remove_others(&snapshot::dir_of(db.path()), &keys.file_tag(), "");
    Ok(())
}

/// The index as a Raft state machine (of one group). Cloning shares the database.
#[derive(Clone)]
pub struct StateMachine {
    engine: Arc<RocksEngine>,
    db: Arc<DB>,
    keys: GroupKeys,
    /// What the model above says of its keys (where a split cuts, what it copies).
    schema: Arc<dyn KeySchema>,
    /// The ranges the group was opened with (what it owns until a split or an install says
    /// otherwise; those persist theirs).
    initial: KeyRanges,
    /// The index keys this group owns now: a batch outside them is `Moved`, its snapshots carry
    /// them and installs replace them.
    ranges: Arc<std::sync::RwLock<KeyRanges>>,
    splits: Arc<std::sync::OnceLock<SplitObserver>>,
    absorbs: Arc<std::sync::OnceLock<AbsorbObserver>>,
    absorb_failures: Arc<std::sync::OnceLock<AbsorbFailureObserver>>,
    /// How long an absorb waits for this replica's frozen copy of the absorbed group.
    absorb_wait: Arc<std::sync::OnceLock<std::time::Duration>>,
    /// The log index of the group's freeze while it is frozen (every batch and split is then
    /// `Moved`).
    frozen: Arc<std::sync::RwLock<Option<u64>>>,
    /// Snapshot files (next to the index).
    snapshot_dir: std::path::PathBuf,
    /// The file the snapshot being received is written to (Raft receives one at a time).
    receiving: Arc<std::sync::Mutex<Option<std::path::PathBuf>>>,
}

impl StateMachine {
    /// The state machine of `group` over `engine` (the index itself), owning every key (the one
    /// group of a gateway alone). Finishes a snapshot install a crash interrupted.
    pub fn open(
        engine: Arc<RocksEngine>,
        schema: Arc<dyn KeySchema>,
        group: GroupId,
    ) -> Result<Self, snapshot::SnapshotError> {
        Self::open_owning(engine, schema, group, KeyRanges::everything())
    }

    /// The state machine of `group` owning the keys of `ranges` only: its snapshots carry them
    /// and installing one replaces them, so groups sharing `engine` leave each other's keys alone.
    pub fn open_owning(
        engine: Arc<RocksEngine>,
        schema: Arc<dyn KeySchema>,
        group: GroupId,
        ranges: KeyRanges,
    ) -> Result<Self, snapshot::SnapshotError> {
        let db = engine.db();
        let snapshot_dir = snapshot::dir_of(db.path());
        std::fs::create_dir_all(&snapshot_dir).map_err(|source| snapshot::SnapshotError::Io {
            path: snapshot_dir.clone(),
            source,
        })?;
        let keys = GroupKeys::new(group);
        let persisted = db
            .get_cf(cf(&db, STATE_CF), keys.state(RANGES))?
            .and_then(|b| serde_json::from_slice::<KeyRanges>(&b).ok());
        let frozen = db
            .get_cf(cf(&db, STATE_CF), keys.state(FROZEN))?
            .and_then(|b| serde_json::from_slice::<u64>(&b).ok());
        let sm = Self {
            engine,
            db,
            keys,
            schema,
            ranges: Arc::new(std::sync::RwLock::new(
                persisted.unwrap_or_else(|| ranges.clone()),
            )),
            initial: ranges,
            splits: Arc::default(),
            absorbs: Arc::default(),
            absorb_failures: Arc::default(),
            absorb_wait: Arc::default(),
            frozen: Arc::new(std::sync::RwLock::new(frozen)),
            snapshot_dir,
            receiving: Arc::default(),
        };
        let interrupted = sm
            .db
            .get_cf(cf(&sm.db, STATE_CF), sm.keys.state(INSTALLING))?
            .and_then(|b| serde_json::from_slice::<StoredSnapshot>(&b).ok());
        if let Some(stored) = interrupted {
            tracing::warn!(snapshot = %stored.meta.snapshot_id, "finishing an interrupted snapshot install");
            let path = sm.snapshot_dir.join(&stored.file);
            let keys = sm.keys.snapshot_keys();
            let (owned, state) = snapshot::install(
                &sm.db,
                cf(&sm.db, STATE_CF),
                &keys,
                &sm.ranges(),
                &stored,
                &path,
            )?;
            sm.set_ranges(owned);
            sm.set_frozen(state.frozen);
        }
        Ok(sm)
    }

    /// Has `observer` told of every split this replica applies from now on (once).
    pub fn observe_splits(&self, observer: SplitObserver) {
        let _ = self.splits.set(observer);
    }

    /// Has `observer` told of every group this replica's group absorbs from now on (once).
    pub fn observe_absorbs(&self, observer: AbsorbObserver) {
        let _ = self.absorbs.set(observer);
    }

    /// Has `observer` told of a group this replica's group fails to absorb (once). The group
    /// then stops here: the observer's job is to forget both groups, so this replica gets the
    /// merged state again from the absorbing group's leader.
    pub fn observe_absorb_failures(&self, observer: AbsorbFailureObserver) {
        let _ = self.absorb_failures.set(observer);
    }

    /// How long an absorb waits for this replica's copy of the absorbed group to apply anything
    /// more, while it is short of the freeze (once; default a minute). A copy that keeps
    /// applying is waited for however long it takes; one that stands still that long has
    /// nothing to catch up from (the group's other replicas absorbed and forgot it).
    pub fn set_absorb_wait(&self, wait: std::time::Duration) {
        let _ = self.absorb_wait.set(wait);
    }

    /// The log index of the group's freeze, if it is frozen (a merge under way).
    pub fn frozen(&self) -> Option<u64> {
        *self.frozen.read().unwrap_or_else(|e| e.into_inner())
    }

    fn set_frozen(&self, at: Option<u64>) {
        *self.frozen.write().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// The key ranges the group owns now.
    pub fn ranges(&self) -> KeyRanges {
        self.ranges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the group owns `key` now.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.ranges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Runs `f` on the key ranges the group owns now (without copying them).
    pub fn with_ranges<T>(&self, f: impl FnOnce(&KeyRanges) -> T) -> T {
        f(&self.ranges.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set_ranges(&self, ranges: KeyRanges) {
        *self.ranges.write().unwrap_or_else(|e| e.into_inner()) = ranges;
    }

    /// The ranges `snap` says the group owned at its applied position.
    fn ranges_in(&self, snap: &rocksdb::Snapshot<'_>) -> Result<KeyRanges, StoreError> {
        let bytes = snap
            .get_cf(cf(&self.db, STATE_CF), self.keys.state(RANGES))
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(parse_snapshot_state(bytes)?.unwrap_or_else(|| self.initial.clone()))
    }

    /// Removes snapshot files other than `keep` (older snapshots, finished transfers).
    fn remove_other_snapshots(&self, keep: &str) {
        snapshot::remove_others(&self.snapshot_dir, &self.keys.file_tag(), keep);
    }

    fn applied(&self) -> Result<AppliedState, StoreError> {
        let applied = read_state(
            &self.db,
            &self.keys.state(APPLIED),
            ErrorSubject::StateMachine,
        )?;
        let membership = read_state(
            &self.db,
            &self.keys.state(MEMBERSHIP),
            ErrorSubject::StateMachine,
        )?
        .unwrap_or_default();
        Ok((applied, membership))
    }

    /// The writes and outcomes of an entry's guarded batches (one, or coalesced:
    /// [`super::command::Batches`]): each batch as if alone, in order, except that one reading
    /// what an earlier one wrote is a `Conflict`, so every check runs against the engine as it
    /// is. A frozen group takes none (its records wait for the neighbour absorbing it), nor
    /// does a group that no longer owns a batch's keys (it split since the batch was computed).
    fn batches_batch(
        &self,
        batches: Vec<Proposal>,
        frozen: bool,
        subject: &ErrorSubject<NodeId>,
    ) -> Result<(WriteBatch, Vec<Outcome>), StoreError> {
        let owned = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let mut written = std::collections::BTreeSet::new();
        let mut ops = Vec::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        for proposal in batches {
            let outcome = if frozen || !proposal.within(&owned) {
                Outcome::Moved
            } else if proposal.reads_any(&written)
                || !proposal
                    .holds(self.engine.as_ref() as &dyn KvEngine)
                    .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
            {
                Outcome::Conflict
            } else {
                written.extend(proposal.written_keys().map(<[u8]>::to_vec));
                ops.extend(proposal.ops);
                Outcome::Applied
            };
            outcomes.push(outcome);
        }
        Ok((rocks_batch(ops), outcomes))
    }

    fn write(&self, batch: WriteBatch, subject: ErrorSubject<NodeId>) -> Result<(), StoreError> {
        // Not synced: see the module documentation.
        self.db
            .write(batch)
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }
    /// Adds to `batch` what the schema says a split at `split_at` copies into the new half
    /// (the index: the deletion fences of the bucket it cuts, so both halves stay fenced; see
    /// `Index::delete_bucket`), read from this group's keys only.
    fn split_copies(&self, split_at: &[u8], batch: &mut WriteBatch) -> Result<(), StoreError> {
        let owned = self.ranges();
        let scan = |start: &[u8], end: &[u8]| -> Result<Entries, EngineError> {
            let mut found = self.engine.scan(start, end, usize::MAX)?;
            found.retain(|(k, _)| owned.contains(k));
            Ok(found)
        };
        let copies = self
            .schema
            .split_copies(split_at, &scan)
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        for (key, value) in copies {
            batch.put(key, value);
        }
        Ok(())
    }

    /// The state written by applying `absorb`, the ranges this group owns then and the group it
    /// absorbs; `None` for an absorb that changes nothing (this group is frozen itself, or owns
    /// some of those ranges already: the absorb was applied). Waits until this replica's copy of
    /// the absorbed group has applied its freeze, whose records are then final and already in
    /// the shared engine; past the absorb wait it fails, which stops this group on this replica
    /// (a copy that never reaches the freeze would leave the merged group without those records)
    /// and tells the absorb-failure observer.
    async fn absorb_batch(
        &self,
        absorb: Absorb,
    ) -> Result<Option<(WriteBatch, KeyRanges, GroupId)>, StoreError> {
        let Absorb {
            absorb: right,
            frozen_at,
            ranges,
        } = absorb;
        let own = self.ranges();
        let group = self.keys.group();
        if self.frozen().is_some() || right == group || ranges.is_empty() || own.overlaps(&ranges) {
            return Ok(None);
        }
        let right_keys = GroupKeys::new(right);
        let wait = self.absorb_wait.get().copied().unwrap_or(ABSORB_WAIT);
        let (mut seen, mut progressed) = (None, std::time::Instant::now());
        loop {
            let subject = ErrorSubject::StateMachine;
            let applied: Option<LogId<NodeId>> =
                read_state(&self.db, &right_keys.state(APPLIED), subject.clone())?;
            let frozen: Option<u64> = read_state(&self.db, &right_keys.state(FROZEN), subject)?;
            if frozen == Some(frozen_at) && applied.is_some_and(|l| l.index >= frozen_at) {
                break;
            }
            let at = applied.map(|l| l.index);
            if at != seen {
                (seen, progressed) = (at, std::time::Instant::now());
            }
            if progressed.elapsed() > wait {
                tracing::error!(
                    group,
                    absorbed = right,
                    frozen_at,
                    applied = ?seen,
                    stalled_for = ?wait,
                    "this replica's copy of the absorbed group stopped short of its freeze; the group stops here and is rebuilt from a snapshot"
                );
                if let Some(failed) = self.absorb_failures.get() {
                    failed(right);
                }
                return Err(io_error(
                    ErrorSubject::StateMachine,
                    ErrorVerb::Read,
                    format!("group {right} did not reach its freeze at {frozen_at} here"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let union = own.union(&ranges);
        let state = cf(&self.db, STATE_CF);
        let mut batch = WriteBatch::default();
        batch.put_cf(state, self.keys.state(RANGES), encode_state(&union));
        // The absorbed group is not reopened after a restart.
        for name in [RANGES, BORN, FROZEN] {
            batch.delete_cf(state, right_keys.state(name));
        }
        Ok(Some((batch, union, right)))
    }

    /// The state written by applying `split`, the ranges this group keeps and the group it
    /// creates; `None` for a split that would leave either side empty (proposed twice, or at a
    /// route this group no longer owns) or of a frozen group, which changes nothing.
    fn split_batch(
        &self,
        split: Split,
    ) -> Result<Option<(WriteBatch, KeyRanges, SplitEvent)>, StoreError> {
        let Split {
            split_at,
            new_group,
            leader,
        } = split;
        let from_route = KeyRanges::new(self.schema.ranges_from_route(&split_at));
        let (kept, handed) = self.ranges().split_off(&from_route);
        let frozen = self.frozen().is_some();
        if frozen || kept.is_empty() || handed.is_empty() || new_group == self.keys.group() {
            return Ok(None);
        }
        let birth = Birth {
            membership: self.applied()?.1.membership().clone(),
            leader,
        };
        // Both groups' ranges in one batch with the applied position: after a crash the child
        // is known exactly when the parent has shrunk.
        let state = cf(&self.db, STATE_CF);
        let child = GroupKeys::new(new_group);
        let mut batch = WriteBatch::default();
        self.split_copies(&split_at, &mut batch)?;
        batch.put_cf(state, self.keys.state(RANGES), encode_state(&kept));
        batch.put_cf(state, child.state(RANGES), encode_state(&handed));
        batch.put_cf(state, child.state(BORN), encode_state(&birth));
        let born = SplitEvent {
            new_group,
            ranges: handed,
            birth,
        };
        Ok(Some((batch, kept, born)))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StoreError> {
        // Raft purges the log this snapshot covers: what was applied without a sync must be on
        // disk first.
        self.db.flush_wal(true).map_err(snapshot_error)?;
        // The iterator reads a consistent view; the applied position is read from the same one.
        let snap = self.db.snapshot();
        let read = |name: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
            snap.get_cf(cf(&self.db, STATE_CF), self.keys.state(name))
                .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
        };
        let last_log_id: Option<LogId<NodeId>> = parse_snapshot_state(read(APPLIED)?)?;
        let last_membership: StoredMembership<NodeId, BasicNode> =
            parse_snapshot_state(read(MEMBERSHIP)?)?.unwrap_or_default();
        let index = last_log_id.map(|l| l.index).unwrap_or(0);
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id: format!("{index}-{}", cairn_kv::now_ms()),
        };
        let file = format!("snapshot-{}{}.bin", self.keys.file_tag(), meta.snapshot_id);
        let tmp = self.snapshot_dir.join(format!("building-{file}"));
        let path = self.snapshot_dir.join(&file);
        let ranges = self.ranges_in(&snap)?;
        let state = snapshot::GroupState {
            frozen: parse_snapshot_state(read(FROZEN)?)?,
        };
        let entries =
            snapshot::write(&snap, &ranges, &state, &meta, &tmp).map_err(snapshot_error)?;
        std::fs::rename(&tmp, &path).map_err(snapshot_error)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            file: file.clone(),
        };
        self.db
            .put_cf_opt(
                cf(&self.db, STATE_CF),
                self.keys.state(SNAPSHOT),
                encode_state(&stored),
                &synced(),
            )
            .map_err(snapshot_error)?;
        self.remove_other_snapshots(&file);
        tracing::info!(snapshot = %meta.snapshot_id, entries, "index snapshot built");
        let data = tokio::fs::File::open(&path).await.map_err(snapshot_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, StoreError> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StoreError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            let subject = ErrorSubject::Apply(entry.log_id);
            // Each entry is its own batch: the next entry's checks must see this one's writes.
            let mut split_off = None;
            let mut absorbed = None;
            let mut frozen_now = None;
            let frozen = self.frozen();
            let state = cf(&self.db, STATE_CF);
            let (mut batch, outcome) = match entry.payload {
                // A frozen group takes no writes: its records wait for the neighbour absorbing it.
                // One batch is applied as an entry of one batch.
                EntryPayload::Normal(Command::Batch(proposal)) => {
                    self.batches_batch(vec![proposal], frozen.is_some(), &subject)?
                }
                EntryPayload::Normal(Command::Batches(b)) => {
                    self.batches_batch(b.batches, frozen.is_some(), &subject)?
                }
                EntryPayload::Normal(Command::Freeze(f)) if f.freeze == self.keys.group() => {
                    let mut batch = WriteBatch::default();
                    if frozen.is_none() {
                        let at = entry.log_id.index;
                        batch.put_cf(state, self.keys.state(FROZEN), encode_state(&at));
                        frozen_now = Some(Some(at));
                    }
                    (batch, vec![Outcome::Applied])
                }
                EntryPayload::Normal(Command::Thaw(t)) if t.thaw == self.keys.group() => {
                    let mut batch = WriteBatch::default();
                    batch.delete_cf(state, self.keys.state(FROZEN));
                    frozen_now = Some(None);
                    (batch, vec![Outcome::Applied])
                }
                EntryPayload::Normal(Command::Freeze(_) | Command::Thaw(_)) => {
                    (WriteBatch::default(), vec![Outcome::Moved])
                }
                EntryPayload::Normal(Command::Absorb(absorb)) => {
                    match self.absorb_batch(absorb).await? {
                        Some((batch, union, right)) => {
                            absorbed = Some((union, right));
                            (batch, vec![Outcome::Applied])
                        }
                        None => (WriteBatch::default(), vec![Outcome::Moved]),
                    }
                }
                EntryPayload::Normal(Command::Split(split)) => match self.split_batch(split)? {
                    Some((batch, kept, born)) => {
                        split_off = Some((kept, born));
                        (batch, vec![Outcome::Applied])
                    }
                    None => (WriteBatch::default(), vec![Outcome::Moved]),
                },
                EntryPayload::Membership(m) => {
                    let mut batch = WriteBatch::default();
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    batch.put_cf(
                        cf(&self.db, STATE_CF),
                        self.keys.state(MEMBERSHIP),
                        encode_state(&stored),
                    );
                    (batch, vec![Outcome::Applied])
                }
                EntryPayload::Blank => (WriteBatch::default(), vec![Outcome::Applied]),
            };
            batch.put_cf(
                cf(&self.db, STATE_CF),
                self.keys.state(APPLIED),
                encode_state(&Some(entry.log_id)),
            );
            self.write(batch, subject)?;
            if let Some(at) = frozen_now {
                tracing::info!(group = self.keys.group(), frozen_at = ?at, "index group frozen or thawed");
                self.set_frozen(at);
            }
            if let Some((union, right)) = absorbed {
                // The absorbed group leaves the routing before this one takes its keys: a
                // moment owned by nobody (operations wait), never by both.
                if let Some(observe) = self.absorbs.get() {
                    observe(right);
                }
                self.set_ranges(union);
                tracing::info!(
                    group = self.keys.group(),
                    absorbed = right,
                    "index groups merged"
                );
            }
            if let Some((kept, born)) = split_off {
                tracing::info!(group = ?self.keys, new_group = born.new_group, "index group split");
                self.set_ranges(kept);
                if let Some(observe) = self.splits.get() {
                    observe(born);
                }
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StoreError> {
        let path = self.snapshot_dir.join(format!(
            "receiving-{}{}.bin",
            self.keys.file_tag(),
            cairn_kv::now_ms()
        ));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snapshot_error)?;
        *self.receiving.lock().expect("receiving lock") = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut received: Box<tokio::fs::File>,
    ) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let fail = |e: &dyn std::fmt::Display| io_error(subject.clone(), ErrorVerb::Write, e);
        // The received file gets the snapshot's name; the install (and a restart finishing it)
        // reads it from there.
        let file = format!("snapshot-{}{}.bin", self.keys.file_tag(), meta.snapshot_id);
        let path = self.snapshot_dir.join(&file);
        received.flush().await.map_err(|e| fail(&e))?;
        received.sync_all().await.map_err(|e| fail(&e))?;
        let receiving = self.receiving.lock().expect("receiving lock").take();
        let receiving = receiving.ok_or_else(|| fail(&"no snapshot is being received"))?;
        if is_same_file(&received, &receiving).await {
            // The usual case: Raft wrote the chunks into the file it was given.
            drop(received);
            std::fs::rename(&receiving, &path).map_err(|e| fail(&e))?;
        } else {
            // Raft's contract is the handle's contents, and a caller may swap the handle (the
            // openraft storage suite hands over the leader's file): copy what it holds.
            use tokio::io::AsyncSeekExt;
            received
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| fail(&e))?;
            let mut out = tokio::fs::File::create(&path).await.map_err(|e| fail(&e))?;
            tokio::io::copy(&mut *received, &mut out)
                .await
                .map_err(|e| fail(&e))?;
            out.sync_all().await.map_err(|e| fail(&e))?;
            let _ = std::fs::remove_file(&receiving);
        }
        // The install's marker names this file: the rename must be durable before it.
        std::fs::File::open(&self.snapshot_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(&e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            file: file.clone(),
        };
        let (owned, state) = snapshot::install(
            &self.db,
            cf(&self.db, STATE_CF),
            &self.keys.snapshot_keys(),
            &self.ranges(),
            &stored,
            &path,
        )
        .map_err(|e| fail(&e))?;
        self.set_ranges(owned);
        self.set_frozen(state.frozen);
        self.remove_other_snapshots(&file);
        tracing::info!(snapshot = %meta.snapshot_id, "index snapshot installed");
        Ok(())
    }

    /// The snapshot recorded last. Openraft builds snapshots in a task of its own, beside
    /// this: a build records its new file and then deletes the old one, so a file gone between
    /// reading the record and opening it means the record moved on, and it is read again.
    /// (Answering `None` there would stop the group: a leader that must send a snapshot and
    /// finds none quits on a storage error.)
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let mut missing: Option<String> = None;
        loop {
            let Some(bytes) = self
                .db
                .get_cf(cf(&self.db, STATE_CF), self.keys.state(SNAPSHOT))
                .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
            else {
                return Ok(None);
            };
            // A snapshot recorded in an older format (one JSON blob) is not offered; Raft builds
            // a new one when it needs one.
            let Ok(stored) = serde_json::from_slice::<StoredSnapshot>(&bytes) else {
                return Ok(None);
            };
            match tokio::fs::File::open(self.snapshot_dir.join(&stored.file)).await {
                Ok(data) => {
                    return Ok(Some(Snapshot {
                        meta: stored.meta,
                        snapshot: Box::new(data),
                    }));
                }
                // Gone, and still the one recorded: there is no snapshot.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if missing.as_deref() == Some(stored.file.as_str()) {
                        return Ok(None);
                    }
                    missing = Some(stored.file);
                }
                Err(e) => return Err(io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
            }
        }
    }
}

/// Whether `file` is the file at `path` (same device and inode).
async fn is_same_file(file: &tokio::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh stores of [`INDEX_GROUP`] in a database that also holds other groups' log entries
    /// and state, on both sides of it in key order. Those records are not JSON: a store that
    /// read one of them would fail the suite.
    struct NextToOtherGroups;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for NextToOtherGroups
    {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StoreError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let engine = Arc::new(
                RocksEngine::open(&dir.path().join("index"), crate::schema::test_keys::LAYOUT)
                    .expect("open"),
            );
            let db = engine.db();
            for group in [0, INDEX_GROUP + 1, u64::MAX] {
                let keys = GroupKeys::new(group);
                for index in [0, 3, u64::MAX] {
                    db.put_cf(cf(&db, LOG_CF), keys.log(index), b"other group")
                        .expect("put");
                }
                for name in [VOTE, LAST_PURGED, APPLIED, MEMBERSHIP, SNAPSHOT, INSTALLING] {
                    db.put_cf(cf(&db, STATE_CF), keys.state(name), b"other group")
                        .expect("put");
                }
            }
            let sync = LogSync::start(&db, Default::default()).expect("log sync thread");
            let log = LogStore::new(&engine, INDEX_GROUP, sync);
            let sm = StateMachine::open(engine, Arc::new(crate::schema::FlatSchema), INDEX_GROUP)
                .map_err(snapshot_error)?;
            Ok((dir, log, sm))
        }
    }

    /// A snapshot asked for while a newer one replaces it is always found: a build records its
    /// new file before deleting the old one, and a reader that finds the old file gone reads the
    /// record again. (Openraft builds beside the reads, and a leader that must send a snapshot
    /// and is told there is none stops the group.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_is_found_while_a_newer_one_replaces_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(
            RocksEngine::open(&dir.path().join("index"), crate::schema::test_keys::LAYOUT)
                .expect("open"),
        );
        let mut sm = StateMachine::open(engine, Arc::new(crate::schema::FlatSchema), INDEX_GROUP)
            .expect("open");
        sm.build_snapshot().await.expect("the first snapshot");
        for round in 0..100 {
            // Snapshot files are named by the millisecond: a new name each round.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let mut builder = sm.clone();
            let build = tokio::spawn(async move { builder.build_snapshot().await.map(|_| ()) });
            while !build.is_finished() {
                let found = sm.get_current_snapshot().await.expect("read");
                assert!(
                    found.is_some(),
                    "round {round}: no snapshot while one was built"
                );
            }
            build.await.expect("build task").expect("build");
        }
    }

    /// An absorb waits for this replica's copy of the absorbed group to reach its freeze while
    /// the copy keeps applying, past the absorb wait in all; a copy that stands still for the
    /// absorb wait fails it.
    #[tokio::test]
    async fn an_absorb_waits_for_a_copy_that_keeps_applying_and_gives_up_on_one_that_stands_still()
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(
            RocksEngine::open(&dir.path().join("index"), crate::schema::test_keys::LAYOUT)
                .expect("open"),
        );
        let db = engine.db();
        let (left, right) = (INDEX_GROUP + 1, INDEX_GROUP + 2);
        let sm = StateMachine::open_owning(
            engine,
            Arc::new(crate::schema::FlatSchema),
            left,
            KeyRanges::span(b"a", b"m"),
        )
        .expect("open");
        let wait = std::time::Duration::from_millis(300);
        sm.set_absorb_wait(wait);
        let state = |name: &[u8], value: Vec<u8>| {
            db.put_cf(cf(&db, STATE_CF), GroupKeys::new(right).state(name), value)
                .expect("put")
        };
        let absorb = |frozen_at| Absorb {
            absorb: right,
            frozen_at,
            ranges: KeyRanges::span(b"m", b"z"),
        };

        // Applies one entry every 100 ms, reaching the freeze at 10 after about a second.
        state(APPLIED, encode_state(&openraft::testing::log_id(1, 1, 1)));
        let catching_up = {
            let db = db.clone();
            tokio::spawn(async move {
                for index in 2..=10 {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    let keys = GroupKeys::new(right);
                    let mut batch = WriteBatch::default();
                    let applied = encode_state(&openraft::testing::log_id(1, 1, index));
                    batch.put_cf(cf(&db, STATE_CF), keys.state(APPLIED), applied);
                    if index == 10 {
                        batch.put_cf(cf(&db, STATE_CF), keys.state(FROZEN), encode_state(&10u64));
                    }
                    db.write(batch).expect("write");
                }
            })
        };
        let started = std::time::Instant::now();
        let absorbed = sm.absorb_batch(absorb(10)).await.expect("absorbed");
        assert!(
            started.elapsed() > wait,
            "the copy took longer than the wait"
        );
        let (_, union, group) = absorbed.expect("an absorb that changes the ranges");
        assert_eq!((union, group), (KeyRanges::span(b"a", b"z"), right));
        catching_up.await.expect("catching up");

        // A copy short of a later freeze that applies nothing more.
        let started = std::time::Instant::now();
        assert!(sm.absorb_batch(absorb(20)).await.is_err());
        assert!(started.elapsed() >= wait);
    }

    #[tokio::test]
    async fn coalesced_batches_apply_in_order_and_one_reading_what_an_earlier_one_wrote_conflicts()
    {
        use super::super::command::Batches;
        use super::super::proposal::ReadCheck;
        use crate::schema::test_keys::{self as keys, Tables};
        use cairn_kv::WriteOp;
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Arc::new(
            RocksEngine::open(&dir.path().join("index"), crate::schema::test_keys::LAYOUT)
                .expect("open"),
        );
        // The group owns bucket b's keys from "m" on.
        let owned = KeyRanges::new(keys::table_ranges(b"Ob\0m", None));
        let mut sm = StateMachine::open_owning(engine.clone(), Arc::new(Tables), 2, owned)
            .expect("state machine");
        let key = |k: &str| keys::object("b", k);
        let put = |k: &str, v: &str| WriteOp::Put(key(k), v.as_bytes().to_vec());
        let absent = |k: &str| ReadCheck::get(&key(k), None);
        engine.write(vec![put("mz", "0")]).expect("write");
        let batch = |checks: Vec<ReadCheck>, ops: Vec<WriteOp>| Proposal { checks, ops };
        let batches = vec![
            // Applied: "ma" absent.
            batch(vec![absent("ma")], vec![put("ma", "1")]),
            // Applied: a blind write.
            batch(vec![], vec![put("mb", "1")]),
            // Conflict: reads "ma", which the first batch wrote.
            batch(vec![absent("ma")], vec![put("mc", "1")]),
            // Conflict: "mz" is there.
            batch(vec![absent("mz")], vec![put("md", "1")]),
            // Moved: "a" is not the group's.
            batch(vec![], vec![put("a", "1")]),
            // Applied: a later blind write of "ma" wins.
            batch(vec![], vec![put("ma", "2")]),
        ];
        let entry = |index: u64, command: Command| Entry::<TypeConfig> {
            log_id: openraft::testing::log_id(1, 1, index),
            payload: EntryPayload::Normal(command),
        };
        let out = sm
            .apply([
                entry(1, Command::Batches(Batches { batches })),
                entry(2, Command::Batch(batch(vec![absent("mc")], vec![]))),
            ])
            .await
            .expect("apply");
        use Outcome::*;
        assert_eq!(
            out,
            vec![
                vec![Applied, Applied, Conflict, Conflict, Moved, Applied],
                vec![Applied]
            ]
        );
        let get = |k: &str| engine.get(&key(k)).expect("get");
        assert_eq!(get("ma").as_deref(), Some(&b"2"[..]));
        assert_eq!(get("mb").as_deref(), Some(&b"1"[..]));
        assert_eq!((get("mc"), get("md"), get("a")), (None, None, None));
        assert_eq!(sm.applied().expect("applied").0.map(|l| l.index), Some(2));
    }

    #[test]
    fn openraft_storage_suite_passes_next_to_other_groups() {
        openraft::testing::Suite::test_all(NextToOtherGroups).expect("storage suite");
    }
}

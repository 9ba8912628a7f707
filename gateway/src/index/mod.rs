//! The metadata index: buckets (with their versioning state and configuration documents), access
//! keys, object versions, multipart state and the garbage queue, over an ordered [`KvEngine`]
//! (RocksDB in production).
//!
//! The S3 layer talks only to [`Index`]; it never sees keys or the engine. Every mutation is one
//! atomic, synced batch: an overwrite frees the old blobs (garbage records) in the same batch that
//! installs the new entry, and a commit removes the *intent* records that protect the new blob's
//! shards from being leaked by a crash. Mutations are deterministic: the time and the randomness
//! they need come from the caller ([`Stamp`], record fields), so a replicated index can apply the
//! same mutation on every replica. The keyspace is cut into partitions ([`partition`]) whose
//! load is measured here (reads as served, writes as applied) and which split and merge by it
//! ([`rebalance`]); every partition is in the one replicated group.

pub mod digest;
mod fences;
pub mod keys;
mod lifecycle;
pub mod list;
mod objects;
pub mod partition;
mod rebalance;
pub mod records;
pub mod schema;
mod storage_nodes;
mod tagging;
mod txn;
pub mod version;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock};

use cairn_kv::{EngineError, KvEngine, WriteOp};
pub use lifecycle::CurrentEntry;
pub use objects::{Deleted, Written};
use partition::PartitionMap;
use partition::load::Access;
use partition::policy::{LoadBook, SplitPolicy};
pub use rebalance::{Rebalanced, SplitReason};
use records::{
    AccessKeyRecord, BucketRecord, GarbageRecord, ObjectRecord, PartRecord, RecordError,
    StoredBlob, UploadRecord, Versioning,
};
pub use storage_nodes::NodeRegistration;
pub use tagging::Tagged;
pub use version::{Stamp, VersionId, VersionRef};

use crate::bucket_config::lifecycle::LifecycleConfiguration;
use crate::bucket_config::replication::ReplicationConfiguration;
use cairn_raft::Consensus;
use txn::Txn;

/// Names of the configuration documents (`keys::config`).
const LIFECYCLE: &str = "lifecycle";
const REPLICATION: &str = "replication";

/// What a replication destination's sealed secret is bound to: its bucket and access key id.
fn replication_context(bucket: &str, access_key_id: &str) -> String {
    format!("replication/{bucket}/{access_key_id}")
}
const LIFECYCLE_PROGRESS: &str = "lifecycle-progress";

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A stored record is unreadable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// No such bucket.
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    /// The bucket exists (owned by `owner`).
    #[error("bucket {name} already exists")]
    BucketExists { name: String, owner: String },
    /// The bucket still holds objects or uploads.
    #[error("bucket {0} is not empty")]
    BucketNotEmpty(String),
    /// Another deletion of the bucket took over (or this one was given up) before it finished.
    #[error("a conflicting deletion of bucket {0} is under way")]
    DeletionAborted(String),
    /// No such multipart upload.
    #[error("upload {0} does not exist")]
    NoSuchUpload(String),
    /// A write condition (If-Match / If-None-Match) did not hold at commit time.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The upload took so long that its intent record came due and the garbage collector may
    /// already have deleted its shards: committing it would point at lost data.
    #[error("the upload outlived its timeout; its data may have been collected")]
    IntentExpired,
    /// Versioning cannot be turned off once it was enabled or suspended.
    #[error("versioning of bucket {0} cannot be turned off")]
    VersioningIrreversible(String),
    /// Replication needs versioning enabled on the bucket.
    #[error("versioning must be enabled on bucket {0} to replicate it")]
    ReplicationNeedsVersioning(String),
    /// Versioning cannot be suspended while the bucket has a replication configuration.
    #[error("bucket {0} has a replication configuration; its versioning cannot be suspended")]
    ReplicationBlocksSuspend(String),
    /// A version-id marker names no version of its key.
    #[error("the version-id marker names no version")]
    UnknownVersionMarker,
    /// The replicated layer could not do what was asked (no leader, the group is not here).
    #[error(transparent)]
    Consensus(#[from] cairn_raft::ConsensusError),
    /// A split or merge does not fit the partition map (it changed, or the request is wrong).
    #[error(transparent)]
    Partition(#[from] partition::MapError),
    /// The blocking task running the operation failed.
    #[error("index task failed: {0}")]
    Task(String),
    /// A sealed secret could not be opened (see [`crate::seal`]).
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

/// Counts of a bucket's contents (a scan, for the admin API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketUsage {
    /// Current objects (delete markers not counted).
    pub objects: u64,
    /// Bytes of current objects.
    pub bytes: u64,
    /// Noncurrent versions that are objects.
    pub noncurrent_versions: u64,
    /// Bytes of noncurrent versions.
    pub noncurrent_bytes: u64,
    /// Delete markers, current or not.
    pub delete_markers: u64,
    /// Versions (current and noncurrent) per storage class.
    pub classes: std::collections::BTreeMap<String, ClassUsage>,
}

/// What one storage class holds of a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassUsage {
    /// Versions (current and noncurrent).
    pub versions: u64,
    /// Object bytes.
    pub bytes: u64,
    /// Bytes stored for them: erasure-coded shards on the nodes plus inline bytes in the index.
    pub stored_bytes: u64,
}

/// Condition a write must meet when it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Always write.
    None,
    /// Only if the key has no current object (`If-None-Match: *`).
    IfAbsent,
    /// Only if the current object's ETag is this one (`If-Match`).
    IfEtag(String),
}

/// Timing of the garbage queue.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Freed blobs wait this long before their shards are deleted, so that reads already under
    /// way when an object was overwritten or deleted can finish.
    pub gc_delay_ms: u64,
    /// An upload's intent record (its blob's shards, if the upload never commits) becomes due
    /// this long after the upload began.
    pub intent_ttl_ms: u64,
    /// When partitions split and merge.
    pub split: SplitPolicy,
    /// Failpoint for crash tests (`--failpoint-merge-crash-file`).
    pub merge_crash_file: Option<std::path::PathBuf>,
    /// Seals access-key secrets in the index; `None` keeps them plain (tests).
    pub seal: Option<Arc<crate::seal::Sealer>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            gc_delay_ms: 10 * 60 * 1000,
            intent_ttl_ms: 6 * 60 * 60 * 1000,
            split: SplitPolicy::default(),
            merge_crash_file: None,
            seal: None,
        }
    }
}

/// The whole garbage queue's key range (a table of its own).
fn garbage_queue() -> (Vec<u8>, Vec<u8>) {
    (vec![keys::tag::GARBAGE], vec![keys::tag::GARBAGE + 1])
}

/// Garbage records due for collection, and where the scan stopped.
#[derive(Debug, Clone, Default)]
pub struct DueGarbage {
    /// Due records (key, record).
    pub due: Vec<(Vec<u8>, GarbageRecord)>,
    /// Where to go on next time (`None`: the queue's end was reached).
    pub next: Option<Vec<u8>>,
}

/// Handle to the garbage record protecting a blob under upload; removed at commit. Serialisable,
/// so a background task can note what it has in flight and clean up after a crash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent(Vec<u8>);

/// Current time in Unix milliseconds.
pub use cairn_kv::now_ms;

const LOCK_STRIPES: usize = 64;

/// How often an operation is recomputed after its replicated write lost a race.
const CONFLICT_RETRIES: usize = 16;

/// How long an operation whose keys keep moving (a split's new group starting, a merge under
/// way) is rerouted before it gives up (a merge is undone after 5 s).
const MOVED_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every operation shares.
struct Shared {
    engine: Arc<dyn KvEngine>,
    /// The replicated index this gateway is a replica of (`None`: a gateway alone).
    consensus: Option<Arc<Consensus>>,
    /// The partition map as last read, with each partition's measured load.
    book: Mutex<LoadBook>,
    /// Reads to report to the leaders of the groups owning their keys (replicated).
    read_outbox: Mutex<partition::load::ReadOutbox>,
    /// Writes to report likewise, sampled the same way: a write is counted by the gateway
    /// that proposed it, so a leader hears of every write to its partitions whoever proposed it.
    write_outbox: Mutex<partition::load::ReadOutbox>,
    /// When (load clock) the figures of the partitions led here are next reported to the meta
    /// leader.
    sizes_reported_ms: std::sync::atomic::AtomicU64,
    /// Origin of the load clock.
    clock: std::time::Instant,
    options: IndexOptions,
    /// Serialises read-check-write of one object key (striped by hash).
    key_locks: Vec<Mutex<()>>,
    /// Object writes hold it shared; bucket creation and deletion exclusively, so a bucket is never
    /// deleted under a write that checked it exists.
    bucket_lock: RwLock<()>,
}

/// One operation's context: the shared state, and the engine as the operation sees it.
struct Inner<'a> {
    shared: &'a Shared,
    engine: Txn<'a>,
}

impl Deref for Inner<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        self.shared
    }
}

/// The index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Shared>,
}

impl Shared {
    /// Milliseconds on the load clock.
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The partition map and loads.
    fn book(&self) -> std::sync::MutexGuard<'_, LoadBook> {
        self.book.lock().expect("load book")
    }

    /// Counts one request for index key `key` against its partition.
    fn count(&self, key: &[u8], kind: Access) {
        let now = self.now_ms();
        self.book().record(key, kind, now, 1.0);
        if self.consensus.is_some() {
            let outbox = match kind {
                Access::Read => &self.read_outbox,
                Access::Write => &self.write_outbox,
            };
            outbox.lock().expect("load outbox").record(key);
        }
    }
}

impl Inner<'_> {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, IndexError> {
        match self.engine.get(key)? {
            Some(bytes) => Ok(Some(records::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn scan_all<T: serde::de::DeserializeOwned>(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, IndexError> {
        self.engine
            .scan(start, end, limit)?
            .into_iter()
            .map(|(k, v)| Ok((k, records::decode(&v)?)))
            .collect()
    }

    fn key_lock(&self, bucket: &str, key: &str) -> std::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        self.key_locks[h.finish() as usize % LOCK_STRIPES]
            .lock()
            .expect("key lock")
    }

    fn require_bucket(&self, bucket: &str) -> Result<(), IndexError> {
        match self.engine.get(&keys::bucket(bucket))? {
            Some(_) => Ok(()),
            None => Err(IndexError::NoSuchBucket(bucket.to_string())),
        }
    }

    /// Garbage records freeing `blobs` (of `key` in `bucket`) the GC delay after `now_ms`.
    fn free(
        &self,
        (bucket, key): (&str, &str),
        blobs: &[&StoredBlob],
        reason: &str,
        now_ms: i64,
    ) -> Vec<WriteOp> {
        let due = now_ms.max(0) as u64 + self.options.gc_delay_ms;
        blobs
            .iter()
            .map(|b| {
                WriteOp::Put(
                    keys::garbage(bucket, key, due, b.object_id.as_bytes()),
                    records::encode(&GarbageRecord {
                        blob: (*b).clone(),
                        reason: reason.to_string(),
                    }),
                )
            })
            .collect()
    }

    /// Deletes of the intent records of blobs being committed; `IntentExpired` if one is gone
    /// (collected), so a commit never refers to shards that may have been deleted.
    fn consume_intents(&self, intents: &[Intent]) -> Result<Vec<WriteOp>, IndexError> {
        intents
            .iter()
            .map(|t| match self.engine.get(&t.0)? {
                Some(_) => Ok(WriteOp::Delete(t.0.clone())),
                None => Err(IndexError::IntentExpired),
            })
            .collect()
    }

    fn check(
        &self,
        current: Option<&ObjectRecord>,
        cond: &WriteCondition,
    ) -> Result<(), IndexError> {
        let live = current.filter(|r| !r.delete_marker);
        let ok = match cond {
            WriteCondition::None => true,
            WriteCondition::IfAbsent => live.is_none(),
            WriteCondition::IfEtag(etag) => live.is_some_and(|r| &r.etag == etag),
        };
        if ok {
            Ok(())
        } else {
            Err(IndexError::PreconditionFailed)
        }
    }
}

impl Index {
    /// An index over `engine`, kept by this gateway alone.
    pub fn new(engine: Arc<dyn KvEngine>, options: IndexOptions) -> Self {
        Self::build(engine, None, options)
    }

    /// An index replicated through `consensus` (whose state machine is `engine`).
    pub fn replicated(
        engine: Arc<dyn KvEngine>,
        consensus: Arc<Consensus>,
        options: IndexOptions,
    ) -> Self {
        Self::build(engine, Some(consensus), options)
    }

    fn build(
        engine: Arc<dyn KvEngine>,
        consensus: Option<Arc<Consensus>>,
        options: IndexOptions,
    ) -> Self {
        let map = rebalance::stored_map(engine.as_ref()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "partition map unreadable; starting from the initial map");
            PartitionMap::initial()
        });
        let inner = Arc::new(Shared {
            engine,
            consensus,
            book: Mutex::new(LoadBook::new(options.split.clone(), map, 0)),
            read_outbox: Mutex::default(),
            write_outbox: Mutex::default(),
            sizes_reported_ms: std::sync::atomic::AtomicU64::new(0),
            clock: std::time::Instant::now(),
            options,
            key_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            bucket_lock: RwLock::new(()),
        });
        if let Some(c) = &inner.consensus {
            let shared = Arc::downgrade(&inner);
            c.observe_reported_reads(Arc::new(move |report| {
                if let Some(shared) = shared.upgrade() {
                    rebalance::count_reported_load(&shared, report);
                }
            }));
            // A leadership handed to another gateway takes the load measured here with it.
            let shared = Arc::downgrade(&inner);
            c.observe_hand_overs(Arc::new(move |group, to| {
                if let Some(inner) = shared.upgrade() {
                    tokio::spawn(
                        async move { Index { inner }.hand_over_group_load(group, to).await },
                    );
                }
            }));
        }
        Self { inner }
    }

    /// The partition map as this gateway last read it.
    pub fn partition_map(&self) -> PartitionMap {
        self.inner.book().map().clone()
    }

    /// Approximate bytes of the index on disk.
    pub fn approximate_size(&self) -> u64 {
        self.inner.engine.approximate_size()
    }

    /// The replicated index this gateway belongs to, if any.
    pub fn consensus(&self) -> Option<&Arc<Consensus>> {
        self.inner.consensus.as_ref()
    }

    /// Whether this gateway runs `bucket`'s lifecycle: always alone; replicated, when it leads
    /// the group owning the bucket's first object key. Runs spread over the group leaders, and a
    /// bucket that fits in one group is walked on that group's own replica (a bigger one reads
    /// its other groups through their replicas). A gateway running no group that owns the key
    /// leaves it to that group's leader.
    pub fn runs_lifecycle_of(&self, bucket: &str) -> bool {
        let Some(c) = self.consensus() else {
            return true;
        };
        c.leads_owner_of(&keys::objects_of(bucket))
    }

    /// Whether this gateway runs the fleet-wide background work (stuck bucket deletions, the
    /// partition map's merges): always alone, only as the meta leader when replicated. (Splits
    /// are decided by each partition's group leader.)
    pub fn runs_background_work(&self) -> bool {
        self.inner.consensus.as_ref().is_none_or(|c| c.is_leader())
    }

    /// Runs one operation on a blocking thread. Replicated, its reads wait for the read
    /// barriers of the groups they touch, and it runs again if its write lost a race (up to
    /// [`CONFLICT_RETRIES`] times) or its keys moved to another group (for up to [`MOVED_WAIT`]).
    async fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&Inner<'_>) -> Result<T, IndexError> + Send + Sync + 'static,
    ) -> Result<T, IndexError> {
        let f = Arc::new(f);
        let (mut attempt, mut moved, started) = (0, 0u32, std::time::Instant::now());
        loop {
            let (shared, f) = (self.inner.clone(), f.clone());
            let result = tokio::task::spawn_blocking(move || {
                let on_write = |key: &[u8]| shared.count(key, Access::Write);
                let inner = Inner {
                    shared: &shared,
                    engine: Txn::new(
                        shared.engine.as_ref(),
                        shared.consensus.as_deref(),
                        &on_write,
                    ),
                };
                f(&inner)
            })
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?;
            match result {
                Err(IndexError::Engine(EngineError::Conflict)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "index write lost a race; recomputing");
                }
                Err(IndexError::Engine(EngineError::Moved)) if started.elapsed() < MOVED_WAIT => {
                    moved += 1;
                    tracing::debug!(
                        moved,
                        "index write's keys moved to another group; rerouting"
                    );
                    // The group owning them now may take a moment to start here, or a merge to
                    // finish (the group is frozen until its neighbour absorbs it).
                    let pause = 10 * u64::from(moved.min(10));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                other => return other,
            }
        }
    }

    // ---- buckets ----

    /// Creates a bucket; `BucketExists` (with its owner) if the name is taken.
    pub async fn create_bucket(&self, rec: BucketRecord) -> Result<(), IndexError> {
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let key = keys::bucket(&rec.name);
            if let Some(existing) = i.get::<BucketRecord>(&key)? {
                return Err(IndexError::BucketExists {
                    name: rec.name.clone(),
                    owner: existing.owner,
                });
            }
            i.engine
                .write(vec![WriteOp::Put(key, records::encode(&rec))])?;
            Ok(())
        })
        .await
    }

    /// The bucket, if it exists.
    pub async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, IndexError> {
        let key = keys::bucket(name);
        self.run(move |i| i.get(&key)).await
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>, IndexError> {
        self.run(|i| {
            Ok(
                i.scan_all(&[keys::tag::BUCKET], &keys::buckets_end(), usize::MAX)?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect(),
            )
        })
        .await
    }

    /// What a bucket holds; a scan of its versions, for the admin API.
    pub async fn bucket_usage(&self, name: &str) -> Result<BucketUsage, IndexError> {
        let name = name.to_string();
        self.run(move |i| {
            i.require_bucket(&name)?;
            let mut u = BucketUsage::default();
            for (prefix, current) in [
                (keys::objects_of(&name), true),
                (keys::versions_of(&name), false),
            ] {
                let end = keys::prefix_end(&prefix).expect("tagged prefix");
                let mut pos = prefix;
                loop {
                    let batch = i.scan_all::<ObjectRecord>(&pos, &end, 1000)?;
                    let Some((last, _)) = batch.last() else {
                        break;
                    };
                    pos = keys::after(last);
                    for (_, r) in &batch {
                        if !r.delete_marker {
                            let c = u.classes.entry(r.storage_class.clone()).or_default();
                            c.versions += 1;
                            c.bytes += r.size;
                            c.stored_bytes += r.data.stored_bytes();
                        }
                        match (r.delete_marker, current) {
                            (true, _) => u.delete_markers += 1,
                            (false, true) => {
                                u.objects += 1;
                                u.bytes += r.size;
                            }
                            (false, false) => {
                                u.noncurrent_versions += 1;
                                u.noncurrent_bytes += r.size;
                            }
                        }
                    }
                }
            }
            Ok(u)
        })
        .await
    }

    /// Sets (or with `None` removes) the storage class of writes that name none.
    pub async fn set_default_storage_class(
        &self,
        bucket: &str,
        class: Option<String>,
    ) -> Result<(), IndexError> {
        self.update_bucket(bucket, move |b| b.default_storage_class = class.clone())
            .await
    }

    /// Sets (or with `None` removes) the bucket's quota.
    pub async fn set_quota(
        &self,
        bucket: &str,
        quota: Option<records::Quota>,
    ) -> Result<(), IndexError> {
        self.update_bucket(bucket, move |b| b.quota = quota).await
    }

    /// Rewrites the bucket's record with `change` applied (nothing if it changes nothing), under
    /// the exclusive bucket lock.
    async fn update_bucket(
        &self,
        bucket: &str,
        change: impl Fn(&mut BucketRecord) + Send + Sync + 'static,
    ) -> Result<(), IndexError> {
        let bucket = bucket.to_string();
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let old = i.bucket_record(&bucket)?;
            let mut b = old.clone();
            change(&mut b);
            if b != old {
                i.engine.write(vec![WriteOp::Put(
                    keys::bucket(&bucket),
                    records::encode(&b),
                )])?;
            }
            Ok(())
        })
        .await
    }

    /// Sets the versioning state (`Enabled` or `Suspended`; never back to `Unversioned`).
    pub async fn set_versioning(&self, bucket: &str, state: Versioning) -> Result<(), IndexError> {
        let bucket = bucket.to_string();
        self.run(move |i| {
            // Exclusive: every write commits under the state it read.
            let _g = i.bucket_lock.write().expect("bucket lock");
            let mut b = i.bucket_record(&bucket)?;
            if state == Versioning::Unversioned {
                if b.versioning == Versioning::Unversioned {
                    return Ok(());
                }
                return Err(IndexError::VersioningIrreversible(bucket.clone()));
            }
            if state == Versioning::Suspended
                && i.engine.get(&keys::config(&bucket, REPLICATION))?.is_some()
            {
                return Err(IndexError::ReplicationBlocksSuspend(bucket.clone()));
            }
            if b.versioning != state {
                b.versioning = state;
                i.engine.write(vec![WriteOp::Put(
                    keys::bucket(&bucket),
                    records::encode(&b),
                )])?;
            }
            Ok(())
        })
        .await
    }

    // ---- bucket configuration documents ----

    async fn put_config<T>(
        &self,
        bucket: &str,
        name: &'static str,
        doc: &T,
    ) -> Result<(), IndexError>
    where
        T: serde::Serialize + Sync,
    {
        let (bucket, key, value) = (
            bucket.to_string(),
            keys::config(bucket, name),
            records::encode(doc),
        );
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let mut b = i.bucket_record(&bucket)?;
            if name == REPLICATION && b.versioning != Versioning::Enabled {
                return Err(IndexError::ReplicationNeedsVersioning(bucket.clone()));
            }
            let mut ops = vec![WriteOp::Put(key.clone(), value.clone())];
            if name == LIFECYCLE && !b.lifecycle {
                b.lifecycle = true;
                ops.push(WriteOp::Put(keys::bucket(&bucket), records::encode(&b)));
            }
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    async fn get_config<T>(&self, bucket: &str, name: &str) -> Result<Option<T>, IndexError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let (bucket, key) = (bucket.to_string(), keys::config(bucket, name));
        self.run(move |i| {
            i.require_bucket(&bucket)?;
            i.get(&key)
        })
        .await
    }

    async fn delete_config(&self, bucket: &str, name: &'static str) -> Result<bool, IndexError> {
        let (bucket, key) = (bucket.to_string(), keys::config(bucket, name));
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let mut b = i.bucket_record(&bucket)?;
            let existed = i.engine.get(&key)?.is_some();
            let mut ops = Vec::new();
            if existed {
                ops.push(WriteOp::Delete(key.clone()));
            }
            if name == LIFECYCLE && b.lifecycle {
                b.lifecycle = false;
                ops.push(WriteOp::Put(keys::bucket(&bucket), records::encode(&b)));
            }
            if !ops.is_empty() {
                i.engine.write(ops)?;
            }
            Ok(existed)
        })
        .await
    }

    /// Stores a bucket's (validated) lifecycle configuration, replacing any previous one.
    pub async fn put_lifecycle(
        &self,
        bucket: &str,
        cfg: &LifecycleConfiguration,
    ) -> Result<(), IndexError> {
        self.put_config(bucket, LIFECYCLE, cfg).await
    }

    /// A bucket's lifecycle configuration, if it has one.
    pub async fn get_lifecycle(
        &self,
        bucket: &str,
    ) -> Result<Option<LifecycleConfiguration>, IndexError> {
        self.get_config(bucket, LIFECYCLE).await
    }

    /// Removes a bucket's lifecycle configuration; `false` if it had none.
    pub async fn delete_lifecycle(&self, bucket: &str) -> Result<bool, IndexError> {
        self.delete_config(bucket, LIFECYCLE).await
    }

    /// Stores a bucket's (validated) replication configuration; the bucket's versioning must be
    /// enabled.
    pub async fn put_replication(
        &self,
        bucket: &str,
        cfg: &ReplicationConfiguration,
    ) -> Result<(), IndexError> {
        let cfg = match &self.inner.options.seal {
            Some(sealer) => cfg.clone().map_secrets(|id, secret| {
                Ok::<_, IndexError>(sealer.seal(secret, &replication_context(bucket, id)))
            })?,
            None => cfg.clone(),
        };
        self.put_config(bucket, REPLICATION, &cfg).await
    }

    /// A bucket's replication configuration, if it has one (destination secrets opened).
    pub async fn get_replication(
        &self,
        bucket: &str,
    ) -> Result<Option<ReplicationConfiguration>, IndexError> {
        let cfg: Option<ReplicationConfiguration> = self.get_config(bucket, REPLICATION).await?;
        match (cfg, &self.inner.options.seal) {
            (Some(c), Some(sealer)) => Ok(Some(c.map_secrets(|id, secret| {
                Ok::<_, IndexError>(sealer.open(secret, &replication_context(bucket, id))?)
            })?)),
            (cfg, _) => Ok(cfg),
        }
    }

    /// Removes a bucket's replication configuration; `false` if it had none.
    pub async fn delete_replication(&self, bucket: &str) -> Result<bool, IndexError> {
        self.delete_config(bucket, REPLICATION).await
    }

    // ---- intents and garbage ----

    /// Records that `blob`'s shards are about to be written for `key` in `bucket`: if the
    /// upload never commits, the garbage collector deletes them once the intent is due.
    pub async fn record_intent(
        &self,
        bucket: &str,
        key: &str,
        blob: &StoredBlob,
        now_ms: i64,
    ) -> Result<Intent, IndexError> {
        let intent = self.intent_for(bucket, key, blob, now_ms);
        self.record_intent_as(&intent, blob).await?;
        Ok(intent)
    }

    /// The intent that [`Index::record_intent`] at `now_ms` would record for `blob`, without
    /// recording it (a task can note it before the record exists). It lives with the object, so
    /// the commit that consumes it is one partition's batch.
    pub fn intent_for(&self, bucket: &str, key: &str, blob: &StoredBlob, now_ms: i64) -> Intent {
        let due = now_ms.max(0) as u64 + self.inner.options.intent_ttl_ms;
        Intent(keys::garbage(bucket, key, due, blob.object_id.as_bytes()))
    }

    /// Records `intent` (from [`Index::intent_for`]) for `blob`.
    pub async fn record_intent_as(
        &self,
        intent: &Intent,
        blob: &StoredBlob,
    ) -> Result<(), IndexError> {
        let (key, blob) = (intent.0.clone(), blob.clone());
        self.run(move |i| {
            let rec = GarbageRecord {
                blob: blob.clone(),
                reason: "intent".into(),
            };
            i.engine
                .write(vec![WriteOp::Put(key.clone(), records::encode(&rec))])?;
            Ok(())
        })
        .await
    }

    /// Turns an intent into garbage due now (an upload that failed and will not commit).
    pub async fn abandon(
        &self,
        intent: Intent,
        blob: &StoredBlob,
        now_ms: i64,
    ) -> Result<(), IndexError> {
        let blob = blob.clone();
        self.run(move |i| {
            // No intent: the upload committed after all (its answer was lost on the way back),
            // or the collector already took the blob. Either way the blob is not ours to free.
            if i.engine.get(&intent.0)?.is_none() {
                return Ok(());
            }
            let mut ops = vec![WriteOp::Delete(intent.0.clone())];
            let rec = GarbageRecord {
                blob: blob.clone(),
                reason: "failed-upload".into(),
            };
            ops.push(WriteOp::Put(
                keys::garbage_due_at(&intent.0, now_ms.max(0) as u64),
                records::encode(&rec),
            ));
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    /// The parts of the garbage queue this gateway collects, as key ranges. Alone: all of it.
    /// Replicated: the parts owned by the groups it leads. Garbage records sit with their
    /// objects, so each group's leader frees its own group's blobs from its own replica, and
    /// no gateway has to read the whole fleet's queue through other gateways.
    pub fn garbage_scopes(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let queue = garbage_queue();
        let Some(c) = self.consensus() else {
            return vec![queue];
        };
        let queue = cairn_kv::KeyRanges::span(&queue.0, &queue.1);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (group, owned) in c.host().directory() {
            if c.is_leader_of(group) {
                let (mine, _) = queue.partition_by(&owned);
                out.extend(mine.iter().map(|(s, e)| (s.to_vec(), e.to_vec())));
            }
        }
        out.sort();
        out
    }

    /// Up to `limit` garbage records due by `now`, found by scanning at most `scan_cap` records
    /// from `from` on (records sit with their objects, not in due order); also returns where the
    /// next call should go on (`None`: the scan reached the end of the queue).
    pub async fn due_garbage(
        &self,
        now: u64,
        limit: usize,
        from: Option<Vec<u8>>,
        scan_cap: usize,
    ) -> Result<DueGarbage, IndexError> {
        self.due_garbage_in(garbage_queue(), now, limit, from, scan_cap)
            .await
    }

    /// As [`Index::due_garbage`], for the records in `scope` (a part of the queue, as
    /// [`Index::garbage_scopes`] lists them); `None` as the next position: the scope's end.
    pub async fn due_garbage_in(
        &self,
        scope: (Vec<u8>, Vec<u8>),
        now: u64,
        limit: usize,
        from: Option<Vec<u8>>,
        scan_cap: usize,
    ) -> Result<DueGarbage, IndexError> {
        self.run(move |i| {
            let (start, end) = &scope;
            let mut pos = from.clone().unwrap_or_else(|| start.clone());
            let (mut due, mut scanned) = (Vec::new(), 0);
            while due.len() < limit && scanned < scan_cap {
                let page = i.scan_all::<GarbageRecord>(&pos, end, 1000)?;
                let Some((last, _)) = page.last() else {
                    return Ok(DueGarbage { due, next: None });
                };
                pos = keys::after(last);
                scanned += page.len();
                due.extend(
                    page.into_iter()
                        .filter(|(k, _)| keys::garbage_due(k).is_some_and(|d| d <= now)),
                );
            }
            Ok(DueGarbage {
                due,
                next: Some(pos),
            })
        })
        .await
    }

    /// Number of garbage records (due or not) this gateway collects ([`Index::garbage_scopes`]),
    /// up to `cap`.
    pub async fn garbage_len(&self, cap: usize) -> Result<usize, IndexError> {
        let scopes = self.garbage_scopes();
        self.run(move |i| {
            let mut n = 0;
            for (start, end) in &scopes {
                n += i.engine.scan(start, end, cap - n)?.len();
                if n >= cap {
                    break;
                }
            }
            Ok(n)
        })
        .await
    }

    /// Removes collected garbage records.
    pub async fn remove_garbage(&self, keys: Vec<Vec<u8>>) -> Result<(), IndexError> {
        self.run(move |i| {
            i.engine
                .write(keys.iter().cloned().map(WriteOp::Delete).collect())?;
            Ok(())
        })
        .await
    }

    /// Moves a garbage record to a later due time (its deletion failed; retry then).
    pub async fn retry_garbage_later(
        &self,
        key: Vec<u8>,
        rec: GarbageRecord,
        due_ms: u64,
    ) -> Result<(), IndexError> {
        self.run(move |i| {
            let new_key = keys::garbage_due_at(&key, due_ms);
            i.engine.write(vec![
                WriteOp::Delete(key.clone()),
                WriteOp::Put(new_key, records::encode(&rec)),
            ])?;
            Ok(())
        })
        .await
    }

    // ---- multipart ----

    /// Records a new multipart upload.
    pub async fn create_upload(&self, rec: UploadRecord) -> Result<(), IndexError> {
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let b = i.bucket_record(&rec.bucket)?;
            i.check_fences(&b, &rec.key)?;
            let key = keys::upload(&rec.bucket, &rec.key, &rec.upload_id);
            i.engine
                .write(vec![WriteOp::Put(key, records::encode(&rec))])?;
            Ok(())
        })
        .await
    }

    /// The upload, if it is still in progress.
    pub async fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<UploadRecord>, IndexError> {
        let k = keys::upload(bucket, key, upload_id);
        self.run(move |i| i.get(&k)).await
    }

    /// Stores a part of an in-progress upload (replacing and freeing an earlier one with the same
    /// number) and removes the part blob's intent.
    pub async fn put_part(
        &self,
        upload: &UploadRecord,
        part: PartRecord,
        intents: Vec<Intent>,
    ) -> Result<(), IndexError> {
        let now = part.last_modified_ms;
        let upload = upload.clone();
        self.run(move |i| {
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id.clone()));
            }
            let pkey = keys::part(
                &upload.bucket,
                &upload.key,
                &upload.upload_id,
                part.part_number,
            );
            let mut ops = Vec::new();
            if let Some(old) = i.get::<PartRecord>(&pkey)? {
                ops.extend(i.free(
                    (&upload.bucket, &upload.key),
                    &old.blob.stored().into_iter().collect::<Vec<_>>(),
                    "part-overwrite",
                    now,
                ));
            }
            ops.push(WriteOp::Put(pkey, records::encode(&part)));
            ops.extend(i.consume_intents(&intents)?);
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    /// Parts of an upload with numbers greater than `after`, up to `limit`.
    pub async fn list_parts(
        &self,
        upload: &UploadRecord,
        after: u32,
        limit: usize,
    ) -> Result<Vec<PartRecord>, IndexError> {
        let u = upload.clone();
        self.run(move |i| {
            let prefix = keys::parts_of(&u.bucket, &u.key, &u.upload_id);
            let start = keys::part(&u.bucket, &u.key, &u.upload_id, after.saturating_add(1));
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            if after == u32::MAX {
                return Ok(Vec::new());
            }
            Ok(i.scan_all(&start, &end, limit)?
                .into_iter()
                .map(|(_, p)| p)
                .collect())
        })
        .await
    }

    /// Completes an upload: makes `rec` (whose parts are a subset of the uploaded ones) the current
    /// version if `cond` holds, as [`Index::put_object`] does, frees the parts it does not use, and
    /// removes the upload — one durable batch.
    pub async fn complete_upload(
        &self,
        upload: &UploadRecord,
        rec: ObjectRecord,
        cond: WriteCondition,
        stamp: Stamp,
    ) -> Result<Written, IndexError> {
        let upload = upload.clone();
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id.clone()));
            }
            let b = i.bucket_record(&upload.bucket)?;
            let old: Option<ObjectRecord> = i.get(&keys::object(&upload.bucket, &upload.key))?;
            i.check(old.as_ref(), &cond)?;
            let used: BTreeSet<_> = rec
                .data
                .stored_blobs()
                .iter()
                .map(|b| b.object_id)
                .collect();
            let prefix = keys::parts_of(&upload.bucket, &upload.key, &upload.upload_id);
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            let parts = i.scan_all::<PartRecord>(&prefix, &end, usize::MAX)?;
            let mut ops = vec![WriteOp::Delete(ukey)];
            let mut unused = Vec::new();
            for (pkey, part) in &parts {
                ops.push(WriteOp::Delete(pkey.clone()));
                if let Some(b) = part.blob.stored()
                    && !used.contains(&b.object_id)
                {
                    unused.push(b);
                }
            }
            ops.extend(i.free(
                (&upload.bucket, &upload.key),
                &unused,
                "unused-part",
                stamp.now_ms,
            ));
            let mut rec = rec.clone();
            i.install(&b, &upload.key, old.as_ref(), &mut rec, stamp, &mut ops)?;
            i.engine.write(ops)?;
            Ok(Written {
                version_id: rec.version_id,
                versioning: b.versioning,
                previous: old,
            })
        })
        .await
    }

    /// Aborts an upload and frees its parts (due the GC delay after `now_ms`).
    pub async fn abort_upload(&self, upload: &UploadRecord, now_ms: i64) -> Result<(), IndexError> {
        let upload = upload.clone();
        self.run(move |i| {
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id.clone()));
            }
            let prefix = keys::parts_of(&upload.bucket, &upload.key, &upload.upload_id);
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            let parts = i.scan_all::<PartRecord>(&prefix, &end, usize::MAX)?;
            let mut ops = vec![WriteOp::Delete(ukey)];
            let blobs: Vec<&StoredBlob> =
                parts.iter().filter_map(|(_, p)| p.blob.stored()).collect();
            ops.extend(i.free((&upload.bucket, &upload.key), &blobs, "abort", now_ms));
            ops.extend(parts.iter().map(|(k, _)| WriteOp::Delete(k.clone())));
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    /// Uploads in progress in `bucket` with keys starting with `prefix`, after
    /// (`key_marker`, `upload_id_marker`), up to `limit`.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<String>,
        upload_id_marker: Option<String>,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, IndexError> {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        self.run(move |i| {
            i.require_bucket(&bucket)?;
            let base = keys::uploads_with_prefix(&bucket, &prefix);
            let mut start = base.clone();
            if let Some(km) = &key_marker {
                let marker_start = match &upload_id_marker {
                    Some(u) => keys::after(&keys::upload(&bucket, km, u)),
                    // Without an upload-id marker, every upload of the marker key is skipped.
                    None => {
                        keys::prefix_end(&keys::uploads_of_key(&bucket, km)).expect("non-empty")
                    }
                };
                start = start.max(marker_start);
            }
            let end = keys::prefix_end(&base).expect("tagged prefix");
            Ok(i.scan_all::<UploadRecord>(&start, &end, limit)?
                .into_iter()
                .map(|(_, u)| u)
                .collect())
        })
        .await
    }

    // ---- access keys ----

    /// Stores an access key.
    /// Stores an access key, its secret sealed (when the index has a sealer).
    pub async fn put_access_key(&self, mut rec: AccessKeyRecord) -> Result<(), IndexError> {
        if let Some(sealer) = &self.inner.options.seal {
            rec.secret_key = sealer.seal(&rec.secret_key, &rec.access_key_id);
        }
        self.run(move |i| {
            i.engine.write(vec![WriteOp::Put(
                keys::access_key(&rec.access_key_id),
                records::encode(&rec),
            )])?;
            Ok(())
        })
        .await
    }

    fn open_secret(&self, mut rec: AccessKeyRecord) -> Result<AccessKeyRecord, IndexError> {
        if let Some(sealer) = &self.inner.options.seal {
            rec.secret_key = sealer.open(&rec.secret_key, &rec.access_key_id)?;
        }
        Ok(rec)
    }

    /// The access key, if it exists (its secret opened).
    pub async fn get_access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>, IndexError> {
        let k = keys::access_key(id);
        let rec: Option<AccessKeyRecord> = self.run(move |i| i.get(&k)).await?;
        rec.map(|r| self.open_secret(r)).transpose()
    }

    /// Every access key (secrets opened).
    pub async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>, IndexError> {
        let keys: Vec<AccessKeyRecord> = self.list_table(keys::tag::ACCESS_KEY).await?;
        keys.into_iter().map(|r| self.open_secret(r)).collect()
    }

    /// Seals every access-key secret stored plain (written before sealing) or sealed with a
    /// previous key, each only if it is still as read. Returns how many were sealed again.
    pub async fn reseal_access_keys(&self) -> Result<usize, IndexError> {
        let Some(sealer) = self.inner.options.seal.clone() else {
            return Ok(0);
        };
        let stored: Vec<AccessKeyRecord> = self.list_table(keys::tag::ACCESS_KEY).await?;
        let mut resealed = 0;
        for rec in stored
            .into_iter()
            .filter(|r| sealer.needs_reseal(&r.secret_key))
        {
            let sealer = sealer.clone();
            let done = self
                .run(move |i| {
                    let key = keys::access_key(&rec.access_key_id);
                    let now: Option<AccessKeyRecord> = i.get(&key)?;
                    let Some(mut now) = now.filter(|n| n.secret_key == rec.secret_key) else {
                        return Ok(false);
                    };
                    let plain = sealer.open(&now.secret_key, &now.access_key_id)?;
                    now.secret_key = sealer.seal(&plain, &now.access_key_id);
                    i.engine
                        .write(vec![WriteOp::Put(key, records::encode(&now))])?;
                    Ok(true)
                })
                .await?;
            resealed += usize::from(done);
        }
        Ok(resealed)
    }

    /// Every record of the (small, meta) table `tag`, in key order.
    async fn list_table<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        tag: u8,
    ) -> Result<Vec<T>, IndexError> {
        self.run(move |i| {
            Ok(i.scan_all(&[tag], &[tag + 1], usize::MAX)?
                .into_iter()
                .map(|(_, r)| r)
                .collect())
        })
        .await
    }

    /// Deletes an access key; `false` if it did not exist.
    pub async fn delete_access_key(&self, id: &str) -> Result<bool, IndexError> {
        self.delete_if_present(keys::access_key(id)).await
    }

    /// Deletes the record at `key` (of a small meta table); `false` if there was none.
    async fn delete_if_present(&self, key: Vec<u8>) -> Result<bool, IndexError> {
        self.run(move |i| {
            let existed = i.engine.get(&key)?.is_some();
            if existed {
                i.engine.write(vec![WriteOp::Delete(key.clone())])?;
            }
            Ok(existed)
        })
        .await
    }
}

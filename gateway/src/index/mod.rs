//! The metadata index: buckets, access keys, object entries, multipart state and the garbage
//! queue, over an ordered [`KvEngine`] (RocksDB in production).
//!
//! The S3 layer talks only to [`Index`]; it never sees keys or the engine. Every mutation is one
//! atomic, synced batch: an overwrite frees the old blobs (garbage records) in the same batch that
//! installs the new entry, and a commit removes the *intent* records that protect the new blob's
//! shards from being leaked by a crash. Requests are routed through the [`PartitionMap`], which
//! today holds one partition served by the local engine.

pub mod engine;
pub mod keys;
pub mod list;
pub mod partition;
pub mod records;

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::{EngineError, KvEngine, WriteOp};
use list::{ListPage, ListQuery};
use partition::PartitionMap;
use records::{
    AccessKeyRecord, BucketRecord, GarbageRecord, ObjectRecord, PartRecord, RecordError,
    StoredBlob, UploadRecord,
};

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
    /// No such multipart upload.
    #[error("upload {0} does not exist")]
    NoSuchUpload(String),
    /// A write condition (If-Match / If-None-Match) did not hold at commit time.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The blocking task running the operation failed.
    #[error("index task failed: {0}")]
    Task(String),
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
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            gc_delay_ms: 10 * 60 * 1000,
            intent_ttl_ms: 6 * 60 * 60 * 1000,
        }
    }
}

/// Handle to the garbage record protecting a blob under upload; removed at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent(Vec<u8>);

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const LOCK_STRIPES: usize = 64;

struct Inner {
    engine: Arc<dyn KvEngine>,
    map: PartitionMap,
    options: IndexOptions,
    /// Serialises read-check-write of one object key (striped by hash).
    key_locks: Vec<Mutex<()>>,
    /// Object writes hold it shared; bucket creation and deletion exclusively, so a bucket is never
    /// deleted under a write that checked it exists.
    bucket_lock: RwLock<()>,
}

/// The index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

impl Inner {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, IndexError> {
        debug_assert!(self.map.lookup(key).contains(key));
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

    /// Garbage records freeing `blobs` after the GC delay.
    fn free(&self, blobs: &[&StoredBlob], reason: &str) -> Vec<WriteOp> {
        let due = now_ms() as u64 + self.options.gc_delay_ms;
        blobs
            .iter()
            .map(|b| {
                WriteOp::Put(
                    keys::garbage(due, b.object_id.as_bytes()),
                    records::encode(&GarbageRecord {
                        blob: (*b).clone(),
                        reason: reason.to_string(),
                    }),
                )
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
    /// An index over `engine` with one partition.
    pub fn new(engine: Arc<dyn KvEngine>, options: IndexOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                map: PartitionMap::single(),
                options,
                key_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                bucket_lock: RwLock::new(()),
            }),
        }
    }

    /// The partition map.
    pub fn partition_map(&self) -> PartitionMap {
        self.inner.map.clone()
    }

    /// Approximate bytes of the index on disk.
    pub fn approximate_size(&self) -> u64 {
        self.inner.engine.approximate_size()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| IndexError::Task(e.to_string()))?
    }

    // ---- buckets ----

    /// Creates a bucket; `BucketExists` (with its owner) if the name is taken.
    pub async fn create_bucket(&self, rec: BucketRecord) -> Result<(), IndexError> {
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let key = keys::bucket(&rec.name);
            if let Some(existing) = i.get::<BucketRecord>(&key)? {
                return Err(IndexError::BucketExists {
                    name: rec.name,
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

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), IndexError> {
        let name = name.to_string();
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            i.require_bucket(&name)?;
            for prefix in [keys::objects_of(&name), keys::uploads_of(&name)] {
                let end = keys::prefix_end(&prefix).expect("tagged prefix");
                if !i.engine.scan(&prefix, &end, 1)?.is_empty() {
                    return Err(IndexError::BucketNotEmpty(name));
                }
            }
            i.engine.write(vec![WriteOp::Delete(keys::bucket(&name))])?;
            Ok(())
        })
        .await
    }

    /// (objects, bytes) of a bucket's current objects; a scan, for the admin API.
    pub async fn bucket_usage(&self, name: &str) -> Result<(u64, u64), IndexError> {
        let name = name.to_string();
        self.run(move |i| {
            let prefix = keys::objects_of(&name);
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            let (mut count, mut bytes, mut pos) = (0u64, 0u64, prefix);
            loop {
                let batch = i.scan_all::<ObjectRecord>(&pos, &end, 1000)?;
                let Some((last, _)) = batch.last() else {
                    return Ok((count, bytes));
                };
                pos = keys::after(last);
                for (_, r) in &batch {
                    if !r.delete_marker {
                        count += 1;
                        bytes += r.size;
                    }
                }
            }
        })
        .await
    }

    // ---- objects ----

    /// The current entry of an object key.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let k = keys::object(bucket, key);
        self.run(move |i| i.get(&k)).await
    }

    /// Installs `rec` as the current entry of `key` if `cond` holds, freeing the previous entry's
    /// blobs and removing `intents`, all in one durable batch. Returns the previous entry.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        cond: WriteCondition,
        intents: Vec<Intent>,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            i.require_bucket(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let old: Option<ObjectRecord> = i.get(&okey)?;
            i.check(old.as_ref(), &cond)?;
            let mut ops = vec![WriteOp::Put(okey, records::encode(&rec))];
            if let Some(o) = &old {
                ops.extend(i.free(&o.data.stored_blobs(), "overwrite"));
            }
            ops.extend(intents.into_iter().map(|t| WriteOp::Delete(t.0)));
            i.engine.write(ops)?;
            Ok(old)
        })
        .await
    }

    /// Removes the current entry of `key` (if `cond` holds) and frees its blobs.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        cond: WriteCondition,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            i.require_bucket(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let old: Option<ObjectRecord> = i.get(&okey)?;
            if cond != WriteCondition::None {
                i.check(old.as_ref(), &cond)?;
            }
            if let Some(o) = &old {
                let mut ops = vec![WriteOp::Delete(okey)];
                ops.extend(i.free(&o.data.stored_blobs(), "delete"));
                i.engine.write(ops)?;
            }
            Ok(old)
        })
        .await
    }

    /// One page of a bucket's current objects.
    pub async fn list_objects(
        &self,
        bucket: &str,
        q: ListQuery,
    ) -> Result<ListPage<ObjectRecord>, IndexError> {
        let bucket = bucket.to_string();
        self.run(move |i| {
            i.require_bucket(&bucket)?;
            list::list(i.engine.as_ref(), &keys::objects_of(&bucket), &q, |v| {
                records::decode::<ObjectRecord>(v).map_err(IndexError::from)
            })
        })
        .await
    }

    // ---- intents and garbage ----

    /// Records that `blob`'s shards are about to be written: if the upload never commits, the
    /// garbage collector deletes them once the intent is due.
    pub async fn record_intent(&self, blob: &StoredBlob) -> Result<Intent, IndexError> {
        let blob = blob.clone();
        self.run(move |i| {
            let due = now_ms() as u64 + i.options.intent_ttl_ms;
            let key = keys::garbage(due, blob.object_id.as_bytes());
            let rec = GarbageRecord {
                blob,
                reason: "intent".into(),
            };
            i.engine
                .write(vec![WriteOp::Put(key.clone(), records::encode(&rec))])?;
            Ok(Intent(key))
        })
        .await
    }

    /// Turns an intent into garbage due now (an upload that failed and will not commit).
    pub async fn abandon(&self, intent: Intent, blob: &StoredBlob) -> Result<(), IndexError> {
        let blob = blob.clone();
        self.run(move |i| {
            let mut ops = vec![WriteOp::Delete(intent.0)];
            let rec = GarbageRecord {
                blob: blob.clone(),
                reason: "failed-upload".into(),
            };
            ops.push(WriteOp::Put(
                keys::garbage(now_ms() as u64, blob.object_id.as_bytes()),
                records::encode(&rec),
            ));
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    /// Garbage records due by `now_ms`, oldest first.
    pub async fn due_garbage(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, GarbageRecord)>, IndexError> {
        self.run(move |i| {
            let start = vec![keys::tag::GARBAGE];
            let end = keys::garbage(now.saturating_add(1), &[0; 16]);
            i.scan_all(&start, &end, limit)
        })
        .await
    }

    /// Number of garbage records (due or not), up to `cap`.
    pub async fn garbage_len(&self, cap: usize) -> Result<usize, IndexError> {
        self.run(move |i| {
            let start = vec![keys::tag::GARBAGE];
            let end = vec![keys::tag::GARBAGE + 1];
            Ok(i.engine.scan(&start, &end, cap)?.len())
        })
        .await
    }

    /// Removes collected garbage records.
    pub async fn remove_garbage(&self, keys: Vec<Vec<u8>>) -> Result<(), IndexError> {
        self.run(move |i| {
            i.engine
                .write(keys.into_iter().map(WriteOp::Delete).collect())?;
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
            let new_key = keys::garbage(due_ms, rec.blob.object_id.as_bytes());
            i.engine.write(vec![
                WriteOp::Delete(key),
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
            i.require_bucket(&rec.bucket)?;
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
        let upload = upload.clone();
        self.run(move |i| {
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id));
            }
            let pkey = keys::part(&upload.upload_id, part.part_number);
            let mut ops = Vec::new();
            if let Some(old) = i.get::<PartRecord>(&pkey)? {
                ops.extend(i.free(
                    &old.blob.stored().into_iter().collect::<Vec<_>>(),
                    "part-overwrite",
                ));
            }
            ops.push(WriteOp::Put(pkey, records::encode(&part)));
            ops.extend(intents.into_iter().map(|t| WriteOp::Delete(t.0)));
            i.engine.write(ops)?;
            Ok(())
        })
        .await
    }

    /// Parts of an upload with numbers greater than `after`, up to `limit`.
    pub async fn list_parts(
        &self,
        upload_id: &str,
        after: u32,
        limit: usize,
    ) -> Result<Vec<PartRecord>, IndexError> {
        let upload_id = upload_id.to_string();
        self.run(move |i| {
            let prefix = keys::parts_of(&upload_id);
            let start = keys::part(&upload_id, after.saturating_add(1));
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

    /// Completes an upload: installs `rec` (whose parts are a subset of the uploaded ones) as the
    /// current object if `cond` holds, frees the parts it does not use and the replaced object's
    /// blobs, and removes the upload — one durable batch.
    pub async fn complete_upload(
        &self,
        upload: &UploadRecord,
        rec: ObjectRecord,
        cond: WriteCondition,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let upload = upload.clone();
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id));
            }
            let okey = keys::object(&upload.bucket, &upload.key);
            let old: Option<ObjectRecord> = i.get(&okey)?;
            i.check(old.as_ref(), &cond)?;
            let used: BTreeSet<_> = rec
                .data
                .stored_blobs()
                .iter()
                .map(|b| b.object_id)
                .collect();
            let prefix = keys::parts_of(&upload.upload_id);
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            let parts = i.scan_all::<PartRecord>(&prefix, &end, usize::MAX)?;
            let mut ops = vec![
                WriteOp::Delete(ukey),
                WriteOp::Put(okey, records::encode(&rec)),
            ];
            let mut unused = Vec::new();
            for (pkey, part) in &parts {
                ops.push(WriteOp::Delete(pkey.clone()));
                if let Some(b) = part.blob.stored()
                    && !used.contains(&b.object_id)
                {
                    unused.push(b);
                }
            }
            ops.extend(i.free(&unused, "unused-part"));
            if let Some(o) = &old {
                ops.extend(i.free(&o.data.stored_blobs(), "overwrite"));
            }
            i.engine.write(ops)?;
            Ok(old)
        })
        .await
    }

    /// Aborts an upload and frees its parts.
    pub async fn abort_upload(&self, upload: &UploadRecord) -> Result<(), IndexError> {
        let upload = upload.clone();
        self.run(move |i| {
            let _k = i.key_lock(&upload.bucket, &upload.key);
            let ukey = keys::upload(&upload.bucket, &upload.key, &upload.upload_id);
            if i.engine.get(&ukey)?.is_none() {
                return Err(IndexError::NoSuchUpload(upload.upload_id));
            }
            let prefix = keys::parts_of(&upload.upload_id);
            let end = keys::prefix_end(&prefix).expect("tagged prefix");
            let parts = i.scan_all::<PartRecord>(&prefix, &end, usize::MAX)?;
            let mut ops = vec![WriteOp::Delete(ukey)];
            let blobs: Vec<&StoredBlob> =
                parts.iter().filter_map(|(_, p)| p.blob.stored()).collect();
            ops.extend(i.free(&blobs, "abort"));
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
            let base = keys::uploads_of(&bucket);
            let mut start = [base.as_slice(), prefix.as_bytes()].concat();
            if let Some(km) = &key_marker {
                let marker_start = match &upload_id_marker {
                    Some(u) => keys::after(&keys::upload(&bucket, km, u)),
                    // Without an upload-id marker, every upload of the marker key is skipped.
                    None => {
                        let mut k = [base.as_slice(), km.as_bytes()].concat();
                        k.push(0);
                        keys::prefix_end(&k).expect("non-empty")
                    }
                };
                start = start.max(marker_start);
            }
            let end = keys::prefix_end(&[base.as_slice(), prefix.as_bytes()].concat())
                .expect("tagged prefix");
            Ok(i.scan_all::<UploadRecord>(&start, &end, limit)?
                .into_iter()
                .map(|(_, u)| u)
                .collect())
        })
        .await
    }

    // ---- access keys ----

    /// Stores an access key.
    pub async fn put_access_key(&self, rec: AccessKeyRecord) -> Result<(), IndexError> {
        self.run(move |i| {
            i.engine.write(vec![WriteOp::Put(
                keys::access_key(&rec.access_key_id),
                records::encode(&rec),
            )])?;
            Ok(())
        })
        .await
    }

    /// The access key, if it exists.
    pub async fn get_access_key(&self, id: &str) -> Result<Option<AccessKeyRecord>, IndexError> {
        let k = keys::access_key(id);
        self.run(move |i| i.get(&k)).await
    }

    /// Every access key.
    pub async fn list_access_keys(&self) -> Result<Vec<AccessKeyRecord>, IndexError> {
        self.run(|i| {
            let start = vec![keys::tag::ACCESS_KEY];
            let end = vec![keys::tag::ACCESS_KEY + 1];
            Ok(i.scan_all(&start, &end, usize::MAX)?
                .into_iter()
                .map(|(_, r)| r)
                .collect())
        })
        .await
    }

    /// Deletes an access key; `false` if it did not exist.
    pub async fn delete_access_key(&self, id: &str) -> Result<bool, IndexError> {
        let k = keys::access_key(id);
        self.run(move |i| {
            let existed = i.engine.get(&k)?.is_some();
            if existed {
                i.engine.write(vec![WriteOp::Delete(k)])?;
            }
            Ok(existed)
        })
        .await
    }
}

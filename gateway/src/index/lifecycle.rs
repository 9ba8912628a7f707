//! What lifecycle runs need of the index: walks over a bucket's current and noncurrent versions,
//! the actions as compare-and-set mutations (each applies only if the version is still the one the
//! rules were evaluated on, so a run racing with clients, or redone after a crash, never acts on a
//! newer version), and the per-bucket progress record that makes runs resumable.
//!
//! With a partitioned index, each partition leader walks only its own key range; these walks take
//! a bucket and a cursor, and a partition would bound them by its range.

use super::records::{
    self, LifecycleProgress, ObjectData, ObjectRecord, ObjectTags, StoredBlob, Versioning,
};
use super::version::Stamp;
use super::{Index, IndexError, Intent, LIFECYCLE_PROGRESS, keys};
use cairn_kv::WriteOp;

/// A current version as a lifecycle walk sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentEntry {
    /// Object key.
    pub key: String,
    /// The current version.
    pub record: ObjectRecord,
    /// For a delete marker: `true` if the key has no noncurrent versions.
    pub only_version: bool,
}

impl Index {
    /// Up to `limit` current versions of `bucket` with keys after `after`, in key order.
    pub async fn scan_current(
        &self,
        bucket: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<CurrentEntry>, IndexError> {
        let bucket = bucket.to_string();
        self.run(move |i| {
            let base = keys::objects_of(&bucket);
            let end = keys::prefix_end(&base).expect("tagged prefix");
            let start = match &after {
                Some(k) => keys::after(&keys::object(&bucket, k)),
                None => base.clone(),
            };
            let mut out = Vec::new();
            for (k, r) in i.scan_all::<ObjectRecord>(&start, &end, limit)? {
                let Ok(key) = String::from_utf8(k[base.len()..].to_vec()) else {
                    continue;
                };
                let only_version = r.delete_marker && {
                    let v = keys::versions_of_key(&bucket, &key);
                    let e = keys::prefix_end(&v).expect("tagged prefix");
                    i.engine.scan(&v, &e, 1)?.is_empty()
                };
                out.push(CurrentEntry {
                    key,
                    record: r,
                    only_version,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` noncurrent versions of `bucket` after (key, sequence) `after`: by key, each
    /// key's newest first.
    pub async fn scan_noncurrent(
        &self,
        bucket: &str,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>, IndexError> {
        let bucket = bucket.to_string();
        self.run(move |i| {
            let base = keys::versions_of(&bucket);
            let end = keys::prefix_end(&base).expect("tagged prefix");
            let start = match &after {
                Some((k, seq)) => keys::after(&keys::version(&bucket, k, *seq)),
                None => base,
            };
            Ok(i.scan_all::<ObjectRecord>(&start, &end, limit)?
                .into_iter()
                .filter_map(|(k, r)| keys::parse_version(&bucket, &k).map(|(key, _)| (key, r)))
                .collect())
        })
        .await
    }

    /// Expires the current version of `key` if it is still version `seq` with `tags` (what the
    /// rules saw) and not a delete marker: removes it (unversioned bucket) or makes a delete
    /// marker current. `false` if the key changed since.
    pub async fn expire_current(
        &self,
        bucket: &str,
        key: &str,
        seq: u64,
        tags: &ObjectTags,
        stamp: Stamp,
    ) -> Result<bool, IndexError> {
        let (bucket, key, tags) = (bucket.to_string(), key.to_string(), tags.clone());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let b = i.bucket_record(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let Some(cur) = i.get::<ObjectRecord>(&okey)? else {
                return Ok(false);
            };
            if cur.seq != seq || cur.delete_marker || cur.tags != tags {
                return Ok(false);
            }
            let mut ops = Vec::new();
            if b.versioning == Versioning::Unversioned {
                ops.push(WriteOp::Delete(okey));
                ops.extend(i.free(
                    (&bucket, &key),
                    &cur.data.stored_blobs(),
                    "expire",
                    stamp.now_ms,
                ));
            } else {
                let mut marker = ObjectRecord::delete_marker(stamp.now_ms);
                i.install(&b, &key, Some(&cur), &mut marker, stamp, &mut ops)?;
            }
            i.engine.write(ops)?;
            Ok(true)
        })
        .await
    }

    /// Removes the current delete marker of `key` if it is still version `seq` and the key has no
    /// other version. `false` otherwise.
    pub async fn remove_expired_marker(
        &self,
        bucket: &str,
        key: &str,
        seq: u64,
    ) -> Result<bool, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let okey = keys::object(&bucket, &key);
            let Some(cur) = i.get::<ObjectRecord>(&okey)? else {
                return Ok(false);
            };
            let v = keys::versions_of_key(&bucket, &key);
            let e = keys::prefix_end(&v).expect("tagged prefix");
            if cur.seq != seq || !cur.delete_marker || !i.engine.scan(&v, &e, 1)?.is_empty() {
                return Ok(false);
            }
            i.engine.write(vec![WriteOp::Delete(okey)])?;
            Ok(true)
        })
        .await
    }

    /// Deletes noncurrent version `seq` of `key` if it is still noncurrent and still has
    /// `version_id` and `tags`, freeing its blobs. `false` otherwise.
    pub async fn expire_noncurrent(
        &self,
        bucket: &str,
        key: &str,
        seq: u64,
        version_id: Option<String>,
        tags: &ObjectTags,
        stamp: Stamp,
    ) -> Result<bool, IndexError> {
        let (bucket, key, tags) = (bucket.to_string(), key.to_string(), tags.clone());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let vk = keys::version(&bucket, &key, seq);
            let Some(v) = i.get::<ObjectRecord>(&vk)? else {
                return Ok(false);
            };
            if v.version_id != version_id || v.tags != tags {
                return Ok(false);
            }
            let mut ops = vec![WriteOp::Delete(vk)];
            ops.extend(i.free(
                (&bucket, &key),
                &v.data.stored_blobs(),
                "expire-noncurrent",
                stamp.now_ms,
            ));
            let okey = keys::object(&bucket, &key);
            if v.version_id.is_none()
                && let Some(mut cur) = i.get::<ObjectRecord>(&okey)?
            {
                cur.null_version_seq = None;
                ops.push(WriteOp::Put(okey, records::encode(&cur)));
            }
            i.engine.write(ops)?;
            Ok(true)
        })
        .await
    }

    /// Replaces the data of version `seq` of `key` (current or not) by `new` in `storage_class`,
    /// if its data is still `old` and its tags still `tags`: frees the old blobs and removes
    /// `intents`, one batch. `false` (nothing written) if the version is gone or changed; the
    /// caller then frees `new`.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_version(
        &self,
        bucket: &str,
        key: &str,
        seq: u64,
        old: ObjectData,
        tags: &ObjectTags,
        new: ObjectData,
        storage_class: &str,
        intents: Vec<Intent>,
        stamp: Stamp,
    ) -> Result<bool, IndexError> {
        let (bucket, key, class, tags) = (
            bucket.to_string(),
            key.to_string(),
            storage_class.to_string(),
            tags.clone(),
        );
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let okey = keys::object(&bucket, &key);
            let (slot, mut rec) = match i.get::<ObjectRecord>(&okey)? {
                Some(cur) if cur.seq == seq => (okey, cur),
                _ => {
                    let vk = keys::version(&bucket, &key, seq);
                    match i.get::<ObjectRecord>(&vk)? {
                        Some(v) => (vk, v),
                        None => return Ok(false),
                    }
                }
            };
            if rec.data != old || rec.tags != tags {
                return Ok(false);
            }
            let mut ops = i.free(
                (&bucket, &key),
                &old.stored_blobs(),
                "transition",
                stamp.now_ms,
            );
            rec.data = new.clone();
            rec.storage_class = class.clone();
            ops.push(WriteOp::Put(slot, records::encode(&rec)));
            ops.extend(i.consume_intents(&intents)?);
            i.engine.write(ops)?;
            Ok(true)
        })
        .await
    }

    /// Frees the blobs of `pending` whose intents still exist (their writes never committed):
    /// one batch. Returns how many were freed.
    pub async fn abandon_pending(
        &self,
        pending: Vec<(Intent, StoredBlob)>,
        now_ms: i64,
    ) -> Result<usize, IndexError> {
        self.run(move |i| {
            let mut ops = Vec::new();
            let mut n = 0;
            for (intent, blob) in &pending {
                if i.engine.get(&intent.0)?.is_none() {
                    continue;
                }
                ops.push(WriteOp::Delete(intent.0.clone()));
                ops.push(WriteOp::Put(
                    keys::garbage_due_at(&intent.0, now_ms.max(0) as u64),
                    records::encode(&records::GarbageRecord {
                        blob: blob.clone(),
                        reason: "abandoned-transition".into(),
                    }),
                ));
                n += 1;
            }
            i.engine.write(ops)?;
            Ok(n)
        })
        .await
    }

    /// The lifecycle progress of `bucket` (default when none was recorded).
    pub async fn lifecycle_progress(&self, bucket: &str) -> Result<LifecycleProgress, IndexError> {
        Ok(self
            .get_config(bucket, LIFECYCLE_PROGRESS)
            .await?
            .unwrap_or_default())
    }

    /// Records the lifecycle progress of `bucket`.
    pub async fn put_lifecycle_progress(
        &self,
        bucket: &str,
        p: &LifecycleProgress,
    ) -> Result<(), IndexError> {
        self.put_config(bucket, LIFECYCLE_PROGRESS, p).await
    }
}

//! Object entries and their versions.
//!
//! The current entry of a key is `O` (an object or a delete marker); noncurrent versions are `V`,
//! newest first. Invariant: a key has noncurrent versions only while it has a current entry, so
//! every walk over `O` finds every key that has versions, and deleting the current version promotes
//! the newest noncurrent one. Every mutation reads what it needs under the key's lock and commits
//! one atomic batch; blobs that lose their only reference (a replaced null version, a permanently
//! deleted version) become garbage records in that same batch.

use super::list::{self, ListPage, ListQuery, VersionPage, VersionQuery};
use super::partition::load::Access;
use super::records::{self, BucketRecord, ListedObject, ObjectRecord, Versioning};
use super::version::{self, Stamp, VersionId, VersionRef};
use super::{Index, IndexError, Inner, Intent, WriteCondition, keys};
use cairn_kv::WriteOp;

/// What writing a new version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Version id of the new current entry (`None` = the null version).
    pub version_id: Option<String>,
    /// The bucket's versioning state when the write committed.
    pub versioning: Versioning,
    /// The entry that was current before: now a noncurrent version, or replaced and freed.
    pub previous: Option<ObjectRecord>,
}

impl Written {
    /// The new version's id as clients see it: none in an unversioned bucket, else the id or
    /// `null`.
    pub fn version_header(&self) -> Option<String> {
        (self.versioning != Versioning::Unversioned)
            .then(|| version::display(self.version_id.as_deref()).to_string())
    }
}

/// What a delete without a version id did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Unversioned bucket: the entry removed (and its blobs freed), if there was one.
    Removed(Option<Box<ObjectRecord>>),
    /// Versioning enabled or suspended: a delete marker is now the current version.
    Marker {
        /// Its version id (`None` = null, in a suspended bucket).
        version_id: Option<String>,
    },
}

impl Inner<'_> {
    pub(super) fn bucket_record(&self, bucket: &str) -> Result<BucketRecord, IndexError> {
        self.get(&keys::bucket(bucket))?
            .ok_or_else(|| IndexError::NoSuchBucket(bucket.to_string()))
    }

    /// The newest noncurrent version of a key, with its index key.
    fn newest_noncurrent(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, ObjectRecord)>, IndexError> {
        let start = keys::versions_of_key(bucket, key);
        let end = keys::prefix_end(&start).expect("tagged prefix");
        Ok(self.scan_all(&start, &end, 1)?.into_iter().next())
    }

    /// Appends to `ops` what makes `new` the current version of `key`, whose current entry is
    /// `old`: under versioning the old entry becomes noncurrent, except that a null version is
    /// replaced (freed) by a new null one; without versioning the old entry is replaced. Assigns
    /// `new` its sequence number and version id.
    pub(super) fn install(
        &self,
        b: &BucketRecord,
        key: &str,
        old: Option<&ObjectRecord>,
        new: &mut ObjectRecord,
        stamp: Stamp,
        ops: &mut Vec<WriteOp>,
    ) -> Result<(), IndexError> {
        self.check_fences(b, key)?;
        let (bucket, versioning) = (b.name.as_str(), b.versioning);
        new.seq = old.map_or(1, |o| o.seq + 1);
        new.noncurrent_since_ms = None;
        new.null_version_seq = None;
        new.version_id = None;
        match versioning {
            Versioning::Unversioned => {
                if let Some(o) = old {
                    ops.extend(self.free(
                        (bucket, key),
                        &o.data.stored_blobs(),
                        "overwrite",
                        stamp.now_ms,
                    ));
                }
            }
            Versioning::Enabled | Versioning::Suspended => {
                let suspended = versioning == Versioning::Suspended;
                if !suspended {
                    new.version_id = Some(VersionId::new(new.seq, stamp.nonce).to_string());
                }
                let mut null_seq = old.and_then(|o| o.null_version_seq);
                if let Some(o) = old {
                    if suspended && o.version_id.is_none() {
                        ops.extend(self.free(
                            (bucket, key),
                            &o.data.stored_blobs(),
                            "overwrite",
                            stamp.now_ms,
                        ));
                    } else {
                        if o.version_id.is_none() {
                            null_seq = Some(o.seq);
                        }
                        ops.push(WriteOp::Put(
                            keys::version(bucket, key, o.seq),
                            records::encode(&o.clone().into_noncurrent(stamp.now_ms)),
                        ));
                    }
                }
                if suspended && let Some(s) = null_seq.take() {
                    // The new null version replaces the noncurrent one.
                    let vk = keys::version(bucket, key, s);
                    if let Some(v) = self.get::<ObjectRecord>(&vk)? {
                        ops.extend(self.free(
                            (bucket, key),
                            &v.data.stored_blobs(),
                            "overwrite",
                            stamp.now_ms,
                        ));
                    }
                    ops.push(WriteOp::Delete(vk));
                }
                new.null_version_seq = null_seq;
            }
        }
        ops.push(WriteOp::Put(
            keys::object(bucket, key),
            records::encode(new),
        ));
        Ok(())
    }

    /// Version `v` of `key`, and whether it is the current one.
    pub(super) fn find_version(
        &self,
        bucket: &str,
        key: &str,
        v: &VersionRef,
    ) -> Result<Option<(ObjectRecord, bool)>, IndexError> {
        let Some(cur) = self.get::<ObjectRecord>(&keys::object(bucket, key))? else {
            return Ok(None);
        };
        if v.matches(cur.version_id.as_deref()) {
            return Ok(Some((cur, true)));
        }
        let seq = match v {
            VersionRef::Null => cur.null_version_seq,
            VersionRef::Id(id) => Some(id.seq()),
        };
        let Some(seq) = seq else {
            return Ok(None);
        };
        Ok(self
            .get::<ObjectRecord>(&keys::version(bucket, key, seq))?
            .filter(|r| v.matches(r.version_id.as_deref()))
            .map(|r| (r, false)))
    }
}

impl Index {
    /// The current entry of an object key (possibly a delete marker).
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let k = keys::object(bucket, key);
        self.inner.count(&k, Access::Read);
        self.run(move |i| i.get(&k)).await
    }

    /// A bucket and the current entry of one of its object keys (`None` for the entry when the
    /// bucket does not exist), read in one trip to the index: GET and HEAD need both, and each
    /// trip is a hop onto a blocking thread and back.
    pub async fn get_bucket_and_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(Option<BucketRecord>, Option<ObjectRecord>), IndexError> {
        let (b, k) = (keys::bucket(bucket), keys::object(bucket, key));
        self.inner.count(&k, Access::Read);
        self.run(move |i| match i.get::<BucketRecord>(&b)? {
            Some(bucket) => Ok((Some(bucket), i.get(&k)?)),
            None => Ok((None, None)),
        })
        .await
    }

    /// A version of an object key, and whether it is the current one.
    pub async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        v: VersionRef,
    ) -> Result<Option<(ObjectRecord, bool)>, IndexError> {
        self.inner.count(&keys::object(bucket, key), Access::Read);
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| match i.find_version(&bucket, &key, &v)? {
            Some(found) => Ok(Some(found)),
            // A version being promoted from noncurrent to current is in neither place for an
            // instant; the key lock waits that out.
            None => {
                let _k = i.key_lock(&bucket, &key);
                i.find_version(&bucket, &key, &v)
            }
        })
        .await
    }

    /// Makes `rec` the current version of `key` if `cond` holds, under the bucket's versioning
    /// state (the previous entry becomes noncurrent or is replaced and freed), and removes
    /// `intents`: one durable batch. `rec`'s sequence number and version id are assigned here.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        cond: WriteCondition,
        intents: Vec<Intent>,
        stamp: Stamp,
    ) -> Result<Written, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let b = i.bucket_record(&bucket)?;
            let old: Option<ObjectRecord> = i.get(&keys::object(&bucket, &key))?;
            i.check(old.as_ref(), &cond)?;
            let mut ops = Vec::new();
            let mut rec = rec.clone();
            i.install(&b, &key, old.as_ref(), &mut rec, stamp, &mut ops)?;
            ops.extend(i.consume_intents(&intents)?);
            i.engine.write(ops)?;
            Ok(Written {
                version_id: rec.version_id,
                versioning: b.versioning,
                previous: old,
            })
        })
        .await
    }

    /// Deletes `key` without naming a version (if `cond` holds): removes and frees the entry in
    /// an unversioned bucket, makes a delete marker current in a versioned one.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        cond: WriteCondition,
        stamp: Stamp,
    ) -> Result<Deleted, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let b = i.bucket_record(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let old: Option<ObjectRecord> = i.get(&okey)?;
            if cond != WriteCondition::None {
                i.check(old.as_ref(), &cond)?;
            }
            if b.versioning == Versioning::Unversioned {
                if let Some(o) = &old {
                    let mut ops = vec![WriteOp::Delete(okey)];
                    ops.extend(i.free(
                        (&bucket, &key),
                        &o.data.stored_blobs(),
                        "delete",
                        stamp.now_ms,
                    ));
                    i.engine.write(ops)?;
                }
                return Ok(Deleted::Removed(old.map(Box::new)));
            }
            let mut marker = ObjectRecord::delete_marker(stamp.now_ms);
            let mut ops = Vec::new();
            i.install(&b, &key, old.as_ref(), &mut marker, stamp, &mut ops)?;
            i.engine.write(ops)?;
            Ok(Deleted::Marker {
                version_id: marker.version_id,
            })
        })
        .await
    }

    /// Permanently deletes one version (object or delete marker) and frees its blobs; deleting the
    /// current version makes the newest noncurrent one current. Returns the deleted version, or
    /// `None` if the key has no such version.
    pub async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        v: VersionRef,
        stamp: Stamp,
    ) -> Result<Option<ObjectRecord>, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            i.require_bucket(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let Some((found, current)) = i.find_version(&bucket, &key, &v)? else {
                return Ok(None);
            };
            let mut ops = i.free(
                (&bucket, &key),
                &found.data.stored_blobs(),
                "delete-version",
                stamp.now_ms,
            );
            if current {
                match i.newest_noncurrent(&bucket, &key)? {
                    Some((vk, mut next)) => {
                        next.noncurrent_since_ms = None;
                        next.null_version_seq = if next.version_id.is_none() {
                            None
                        } else {
                            found.null_version_seq
                        };
                        ops.push(WriteOp::Delete(vk));
                        ops.push(WriteOp::Put(okey, records::encode(&next)));
                    }
                    None => ops.push(WriteOp::Delete(okey)),
                }
            } else {
                ops.push(WriteOp::Delete(keys::version(&bucket, &key, found.seq)));
                if found.version_id.is_none()
                    && let Some(mut cur) = i.get::<ObjectRecord>(&okey)?
                {
                    cur.null_version_seq = None;
                    ops.push(WriteOp::Put(okey, records::encode(&cur)));
                }
            }
            i.engine.write(ops)?;
            Ok(Some(found))
        })
        .await
    }

    /// Deletes every version of `key` and frees their blobs (in batches of at most 1000 versions,
    /// the current entry last, so a crash leaves a consistent key). Returns how many went.
    pub async fn purge_object(
        &self,
        bucket: &str,
        key: &str,
        stamp: Stamp,
    ) -> Result<usize, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            let start = keys::versions_of_key(&bucket, &key);
            let end = keys::prefix_end(&start).expect("tagged prefix");
            let mut removed = 0;
            loop {
                let batch = i.scan_all::<ObjectRecord>(&start, &end, 1000)?;
                if batch.is_empty() {
                    break;
                }
                let mut ops = Vec::new();
                for (vk, v) in &batch {
                    ops.push(WriteOp::Delete(vk.clone()));
                    ops.extend(i.free(
                        (&bucket, &key),
                        &v.data.stored_blobs(),
                        "delete",
                        stamp.now_ms,
                    ));
                }
                i.engine.write(ops)?;
                removed += batch.len();
            }
            let okey = keys::object(&bucket, &key);
            if let Some(cur) = i.get::<ObjectRecord>(&okey)? {
                let mut ops = vec![WriteOp::Delete(okey)];
                ops.extend(i.free(
                    (&bucket, &key),
                    &cur.data.stored_blobs(),
                    "delete",
                    stamp.now_ms,
                ));
                i.engine.write(ops)?;
                removed += 1;
            }
            Ok(removed)
        })
        .await
    }

    /// One page of a bucket's current objects (delete markers are not listed).
    pub async fn list_objects(
        &self,
        bucket: &str,
        q: ListQuery,
    ) -> Result<ListPage<ListedObject>, IndexError> {
        self.count_list(bucket, &q.prefix, q.marker.as_deref());
        let bucket = bucket.to_string();
        self.run(move |i| {
            i.require_bucket(&bucket)?;
            let (start, end) = listed_routes(&bucket, &q.prefix, q.marker.as_deref());
            let local = i.engine.local(&start, &end)?;
            list::list(&local, &keys::objects_of(&bucket), &q, |v| {
                let r = records::decode::<ListedObject>(v)?;
                Ok::<_, IndexError>((!r.delete_marker).then_some(r))
            })
        })
        .await
    }

    /// One page of a bucket's versions (delete markers included), newest first per key.
    pub async fn list_versions(
        &self,
        bucket: &str,
        q: VersionQuery,
    ) -> Result<VersionPage, IndexError> {
        self.count_list(bucket, &q.prefix, q.key_marker.as_deref());
        let bucket = bucket.to_string();
        self.run(move |i| {
            i.require_bucket(&bucket)?;
            let (start, end) = listed_routes(&bucket, &q.prefix, q.key_marker.as_deref());
            let local = i.engine.local_routes(&start, &end)?;
            list::list_versions::<IndexError>(&local, &bucket, &q)?
                .map_err(|_| IndexError::UnknownVersionMarker)
        })
        .await
    }

    /// Counts a list as one read at the key it starts from.
    fn count_list(&self, bucket: &str, prefix: &str, marker: Option<&str>) {
        let from = marker.filter(|m| *m > prefix).unwrap_or(prefix);
        self.inner.count(&keys::object(bucket, from), Access::Read);
    }
}

/// The object routes (`O` keys) a listing of `bucket` under `prefix` after `marker` may read:
/// its reads need the barriers of the groups owning them only.
fn listed_routes(bucket: &str, prefix: &str, marker: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let base = keys::objects_of(bucket);
    let full = [base.as_slice(), prefix.as_bytes()].concat();
    let end = keys::prefix_end(&full).expect("tagged prefix");
    let start = match marker {
        Some(m) => full.max(keys::after(&[base.as_slice(), m.as_bytes()].concat())),
        None => full,
    };
    (start.min(end.clone()), end)
}

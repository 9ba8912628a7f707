//! Deleting a bucket when its objects live in other Raft groups than its record.
//!
//! The bucket record is in the meta group; its objects are in data groups, each with a log of
//! its own. A write checks the record when it is computed, but only reads in the written group
//! can guard its batch, so "delete the bucket if it is empty" cannot be one guarded batch: a
//! PUT that read the bucket before the deletion could commit after the emptiness check, and its
//! object would outlive its bucket. Instead the race is decided inside each data group's log,
//! where guards work:
//!
//! 1. The deletion is recorded in the bucket record (`deleting`, with a nonce).
//! 2. In every group holding part of the bucket's routes, one guarded batch checks that the part
//!    holds no object and no upload and writes a *fence* (`F` table, at the part's first route,
//!    with the nonce and the bucket's incarnation).
//! 3. The bucket record is deleted, if the deletion is still the one under way.
//!
//! Every write that creates an object or upload reads the fences of its part of the bucket
//! (a guarded read) and refuses with `NoSuchBucket` if a live one is there. In a group's log
//! either the fence comes first (the write's guard fails; recomputed, it sees the fence) or the
//! write does (the fence's emptiness guard fails: `BucketNotEmpty`). A split copies the fences
//! of the bucket it cuts to the new half (`consensus::store`), so a part fenced once stays
//! fenced. Fences outlive the bucket (a few bytes each; a bucket created again has another
//! incarnation, so they never block it); a deletion that fails or is given up makes its nonce
//! void, so its fences block nothing either.

use super::records::{self, BucketRecord, Deletion, FenceRecord};
use super::{Index, IndexError, Inner, keys};
use cairn_kv::WriteOp;

/// Index keys `[start, end)`.
type Span = (Vec<u8>, Vec<u8>);

/// A deletion still marked after this long is given up (its gateway died between the steps).
pub(super) const STALE_DELETION_MS: i64 = 2 * 60 * 1000;

impl Inner<'_> {
    /// The routes `[start, end)` of `bucket` held by the group owning `route`; `None` on a
    /// gateway alone (one engine holds the whole bucket).
    fn bucket_part(&self, bucket: &str, route: &[u8]) -> Result<Option<Span>, IndexError> {
        let Some((group_start, group_end)) = self.engine.group_routes(route)? else {
            return Ok(None);
        };
        let bucket_start = keys::objects_of(bucket);
        let bucket_end = keys::prefix_end(&bucket_start).expect("tagged prefix");
        let end = match group_end {
            Some(e) => e.min(bucket_end),
            None => bucket_end,
        };
        Ok(Some((group_start.max(bucket_start), end)))
    }

    /// Refuses (`NoSuchBucket`) a write that creates a record of `key` in `b` when the group
    /// holding it carries a live fence of the bucket. The read of the fences guards the write,
    /// so a fence committed before the write refuses it too.
    pub(super) fn check_fences(&self, b: &BucketRecord, key: &str) -> Result<(), IndexError> {
        let route = keys::object(&b.name, key);
        let Some((start, end)) = self.bucket_part(&b.name, &route)? else {
            return Ok(());
        };
        let (from, to) = keys::table_range(keys::tag::FENCE, &start, Some(&end));
        for (k, v) in self.engine.scan(&from, &to, usize::MAX)? {
            let fence: FenceRecord = records::decode(&v)?;
            if keys::fence_nonce(&k).is_some_and(|nonce| b.fenced_by(&fence, nonce)) {
                return Err(IndexError::NoSuchBucket(b.name.clone()));
            }
        }
        Ok(())
    }

    /// Fences the part of `b` held by the group owning `route`, if that part holds no object
    /// and no upload; returns where the part ends (`None`: at the bucket's end).
    fn fence_part(
        &self,
        b: &BucketRecord,
        nonce: u64,
        route: &[u8],
    ) -> Result<Option<Vec<u8>>, IndexError> {
        let Some((start, end)) = self.bucket_part(&b.name, route)? else {
            return Ok(None);
        };
        for table in [keys::tag::OBJECT, keys::tag::UPLOAD] {
            let (from, to) = keys::table_range(table, &start, Some(&end));
            if !self.engine.scan(&from, &to, 1)?.is_empty() {
                return Err(IndexError::BucketNotEmpty(b.name.clone()));
            }
        }
        let fence = keys::fence_at(&start, nonce).expect("a bucket's routes are object routes");
        if self.engine.get(&fence)?.is_none() {
            let value = FenceRecord {
                incarnation: b.incarnation,
            };
            self.engine
                .write(vec![WriteOp::Put(fence, records::encode(&value))])?;
        }
        let bucket_end = keys::prefix_end(&keys::objects_of(&b.name)).expect("tagged prefix");
        Ok((end < bucket_end).then_some(end))
    }

    /// Deletes the record and configuration of `name`, if it is empty (a gateway alone) or its
    /// deletion `nonce` is still the one under way (replicated: every part is fenced).
    fn remove_bucket(&self, name: &str, nonce: Option<u64>) -> Result<(), IndexError> {
        let b = self.bucket_record(name)?;
        match nonce {
            Some(nonce) => {
                if b.deleting.map(|d| d.nonce) != Some(nonce) {
                    return Err(IndexError::DeletionAborted(name.to_string()));
                }
            }
            None => {
                for prefix in [keys::objects_of(name), keys::uploads_of(name)] {
                    let end = keys::prefix_end(&prefix).expect("tagged prefix");
                    if !self.engine.scan(&prefix, &end, 1)?.is_empty() {
                        return Err(IndexError::BucketNotEmpty(name.to_string()));
                    }
                }
            }
        }
        let configs = keys::configs_of(name);
        let end = keys::prefix_end(&configs).expect("tagged prefix");
        let mut ops = vec![WriteOp::Delete(keys::bucket(name))];
        for (k, _) in self.engine.scan(&configs, &end, usize::MAX)? {
            ops.push(WriteOp::Delete(k));
        }
        self.engine.write(ops)?;
        Ok(())
    }
}

impl Index {
    /// Deletes an empty bucket. Replicated, its parts are fenced group by group first (see the
    /// module documentation).
    pub async fn delete_bucket(&self, name: &str) -> Result<(), IndexError> {
        let name = name.to_string();
        if self.inner.consensus.is_none() {
            return self
                .run(move |i| {
                    let _g = i.bucket_lock.write().expect("bucket lock");
                    i.remove_bucket(&name, None)
                })
                .await;
        }
        let nonce = rand::random::<u64>();
        let marked = {
            let name = name.clone();
            self.run(move |i| {
                let _g = i.bucket_lock.write().expect("bucket lock");
                let mut b = i.bucket_record(&name)?;
                // An earlier deletion still marked is superseded: its fences block nothing.
                if let Some(earlier) = b.deleting.take() {
                    b.void_fences.push(earlier.nonce);
                }
                b.deleting = Some(Deletion {
                    nonce,
                    since_ms: super::now_ms(),
                });
                i.engine
                    .write(vec![WriteOp::Put(keys::bucket(&name), records::encode(&b))])?;
                Ok(b)
            })
            .await?
        };
        let mut route = keys::objects_of(&name);
        loop {
            let (b, at) = (marked.clone(), route.clone());
            match self.run(move |i| i.fence_part(&b, nonce, &at)).await {
                Ok(Some(next)) => route = next,
                Ok(None) => break,
                Err(e) => {
                    if let Err(undo) = self.give_up_deletion(&name, nonce).await {
                        tracing::warn!(bucket = %name, error = %undo, "a failed bucket deletion stays marked until it is given up");
                    }
                    return Err(e);
                }
            }
        }
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            i.remove_bucket(&name, Some(nonce))
        })
        .await
    }

    /// Ends the deletion `nonce` of `name` without deleting it (nothing if another deletion is
    /// under way): its fences block nothing from now on.
    async fn give_up_deletion(&self, name: &str, nonce: u64) -> Result<(), IndexError> {
        let name = name.to_string();
        self.run(move |i| {
            let _g = i.bucket_lock.write().expect("bucket lock");
            let mut b = i.bucket_record(&name)?;
            if b.deleting.map(|d| d.nonce) != Some(nonce) {
                return Ok(());
            }
            b.deleting = None;
            b.void_fences.push(nonce);
            i.engine
                .write(vec![WriteOp::Put(keys::bucket(&name), records::encode(&b))])?;
            Ok(())
        })
        .await
    }

    /// Gives up the bucket deletions marked for longer than [`STALE_DELETION_MS`] before `now_ms`
    /// (the gateway deleting them died between the steps): writes to their buckets go on.
    /// Returns the buckets concerned.
    pub async fn give_up_stale_deletions(&self, now_ms: i64) -> Result<Vec<String>, IndexError> {
        let stale: Vec<(String, u64)> = self
            .list_buckets()
            .await?
            .into_iter()
            .filter_map(|b| {
                let d = b.deleting?;
                (now_ms - d.since_ms > STALE_DELETION_MS).then_some((b.name, d.nonce))
            })
            .collect();
        for (name, nonce) in &stale {
            self.give_up_deletion(name, *nonce).await?;
            tracing::warn!(bucket = %name, "gave up a bucket deletion that never finished");
        }
        Ok(stale.into_iter().map(|(name, _)| name).collect())
    }
}

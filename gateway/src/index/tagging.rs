//! Object tags. Tagging rewrites one version's entry where it is (`O` or `V`), as S3 does: no new
//! version, no data touched, one batch under the key's lock.

use super::records::{self, ObjectRecord, ObjectTags};
use super::version::VersionRef;
use super::{Index, IndexError, keys};
use cairn_kv::WriteOp;

/// What [`Index::set_tags`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tagged {
    /// The version now has the new tags (the record as stored).
    Done(Box<ObjectRecord>),
    /// The version is a delete marker, which has no tags: nothing was written.
    DeleteMarker(Box<ObjectRecord>),
    /// The key has no such version (no current one, when none was named).
    Missing,
}

impl Index {
    /// Replaces the tags of version `v` of `key` (the current version without `v`) by `tags`.
    pub async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        v: Option<VersionRef>,
        tags: ObjectTags,
    ) -> Result<Tagged, IndexError> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.run(move |i| {
            let _b = i.bucket_lock.read().expect("bucket lock");
            let _k = i.key_lock(&bucket, &key);
            i.require_bucket(&bucket)?;
            let okey = keys::object(&bucket, &key);
            let found = match &v {
                None => i.get::<ObjectRecord>(&okey)?.map(|r| (r, true)),
                Some(v) => i.find_version(&bucket, &key, v)?,
            };
            let Some((mut rec, current)) = found else {
                return Ok(Tagged::Missing);
            };
            if rec.delete_marker {
                return Ok(Tagged::DeleteMarker(Box::new(rec)));
            }
            if rec.tags != tags {
                rec.tags = tags.clone();
                let slot = if current {
                    okey
                } else {
                    keys::version(&bucket, &key, rec.seq)
                };
                i.engine
                    .write(vec![WriteOp::Put(slot, records::encode(&rec))])?;
            }
            Ok(Tagged::Done(Box::new(rec)))
        })
        .await
    }
}

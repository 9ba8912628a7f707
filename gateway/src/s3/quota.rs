//! Bucket quotas, checked before an upload is accepted against the bucket's usage as scanned at
//! most [`USAGE_TTL`] ago (plus what this gateway wrote since), as MinIO enforces its quotas:
//! exact enough to stop a runaway writer, without a shared counter every write would contend on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::index::records::{BucketRecord, Quota};
use crate::index::{BucketUsage, Index};

/// How old a bucket's scanned usage may be.
pub const USAGE_TTL: Duration = Duration::from_secs(5);

/// Recent usage of the buckets that have quotas.
#[derive(Default)]
pub struct UsageCache {
    usage: Mutex<HashMap<String, (Instant, u64, u64)>>,
}

impl UsageCache {
    /// Refuses an upload of `bytes` more bytes and `objects` more objects into `bucket` if it
    /// would pass the bucket's quota; otherwise counts them.
    pub async fn admit(
        &self,
        index: &Index,
        bucket: &BucketRecord,
        bytes: u64,
        objects: u64,
    ) -> S3Result<()> {
        let Some(quota) = bucket.quota else {
            return Ok(());
        };
        let fresh = {
            let usage = self.usage.lock().expect("usage cache");
            usage
                .get(&bucket.name)
                .filter(|(at, _, _)| at.elapsed() < USAGE_TTL)
                .map(|(_, b, o)| (*b, *o))
        };
        let (used_bytes, used_objects) = match fresh {
            Some(u) => u,
            None => {
                let BucketUsage {
                    bytes: b,
                    objects: o,
                    ..
                } = index.bucket_usage(&bucket.name).await?;
                self.usage
                    .lock()
                    .expect("usage cache")
                    .insert(bucket.name.clone(), (Instant::now(), b, o));
                (b, o)
            }
        };
        check(quota, used_bytes, used_objects, bytes, objects)?;
        if let Some(entry) = self
            .usage
            .lock()
            .expect("usage cache")
            .get_mut(&bucket.name)
        {
            entry.1 += bytes;
            entry.2 += objects;
        }
        Ok(())
    }
}

/// The error for an upload past `quota`.
fn check(
    quota: Quota,
    used_bytes: u64,
    used_objects: u64,
    bytes: u64,
    objects: u64,
) -> S3Result<()> {
    let over = |limit: Option<u64>, used: u64, more: u64| {
        limit.is_some_and(|l| more > 0 && used.saturating_add(more) > l)
    };
    let reason = if over(quota.max_bytes, used_bytes, bytes) {
        format!(
            "the bucket holds {used_bytes} bytes; {bytes} more would pass its quota of {} bytes",
            quota.max_bytes.unwrap_or(0)
        )
    } else if over(quota.max_objects, used_objects, objects) {
        format!(
            "the bucket holds {used_objects} objects; its quota is {}",
            quota.max_objects.unwrap_or(0)
        )
    } else {
        return Ok(());
    };
    let mut e = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), reason);
    e.set_status_code(http::StatusCode::FORBIDDEN);
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_to_what_would_be_added() {
        let q = Quota {
            max_bytes: Some(100),
            max_objects: Some(3),
        };
        assert!(check(q, 0, 0, 100, 1).is_ok());
        assert!(check(q, 1, 0, 100, 1).is_err());
        assert!(check(q, 0, 2, 1, 1).is_ok());
        let e = check(q, 0, 3, 1, 1).unwrap_err();
        assert_eq!(e.code().as_str(), "QuotaExceeded");
        assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN));
        // Overwrites and parts add bytes but no object; an empty write adds nothing.
        assert!(check(q, 0, 3, 10, 0).is_ok());
        assert!(check(q, 100, 3, 0, 0).is_ok());
        assert!(check(Quota::default(), u64::MAX, u64::MAX, 1, 1).is_ok());
    }
}

//! PutObject.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{BodyDigests, ChecksumFields, checksum_type};
use super::conditional::write_condition;
use super::object_meta::{headers_in, metadata_in};
use super::{CairnS3, MAX_PUT_SIZE, check_key, tag_set};
use crate::index::records::{ObjectData, ObjectRecord};
use crate::index::{IndexError, Stamp, WriteCondition};

impl CairnS3 {
    pub(super) async fn put_object_op(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers.take();
        let length = super::upload_length(req.input.content_length, &req.headers)?;
        let input = req.input;
        check_key(&input.key)?;
        let storage_class = self.storage_class(input.storage_class.as_ref())?;
        if length > MAX_PUT_SIZE {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size"
            ));
        }
        let cond = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let user_metadata = metadata_in(input.metadata)?;
        let tags = tag_set::from_header(input.tagging.as_deref())?;
        let bucket = self.require_bucket(&input.bucket).await?;
        let storage_class =
            self.with_bucket_default(storage_class, input.storage_class.is_some(), &bucket)?;
        self.admit(&bucket, &input.key, length).await?;
        // A cheap early check, so a conditional create of an existing key does not upload first;
        // the commit checks again atomically.
        if cond == WriteCondition::IfAbsent
            && self
                .index
                .get_object(&input.bucket, &input.key)
                .await?
                .is_some_and(|r| !r.delete_marker)
        {
            return Err(s3_error!(PreconditionFailed, "The object already exists"));
        }
        let mut digests = BodyDigests::new(
            input.checksum_algorithm.as_ref(),
            ChecksumFields {
                crc32: input.checksum_crc32,
                crc32c: input.checksum_crc32c,
                sha1: input.checksum_sha1,
                sha256: input.checksum_sha256,
                crc64nvme: input.checksum_crc64nvme,
            },
            input.content_md5,
        )?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let (blob, intent) = self
            .store_body(
                (&input.bucket, &input.key),
                body,
                length,
                &storage_class,
                |chunk| digests.update(chunk),
            )
            .await?;
        let verified = match digests.finish(trailers.and_then(|t| t.take())) {
            Ok(v) => v,
            Err(e) => {
                self.discard(&blob, intent).await;
                return Err(e);
            }
        };
        let stamp = Stamp::now();
        let rec = ObjectRecord {
            size: length,
            etag: verified.etag.clone(),
            last_modified_ms: stamp.now_ms,
            version_id: None,
            delete_marker: false,
            seq: 0,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class,
            headers: headers_in(
                input.content_type.map(|c| c.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
            ),
            user_metadata,
            checksum: verified.checksum.clone(),
            tags,
            data: ObjectData::Single(blob.clone()),
        };
        let tags = rec.tags.clone();
        let intents = intent.iter().cloned().collect();
        let written = match self
            .index
            .put_object(&input.bucket, &input.key, rec, cond, intents, stamp)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                self.discard(&blob, intent).await;
                return Err(match e {
                    IndexError::PreconditionFailed => s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ),
                    other => other.into(),
                });
            }
        };
        tracing::debug!(bucket = %input.bucket, key = %input.key, size = length, "object stored");
        let fields = ChecksumFields::from_stored(verified.checksum.as_ref());
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(verified.etag)),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_type: checksum_type(verified.checksum.as_ref()),
            size: Some(length as i64),
            version_id: written.version_header(),
            expiration: self
                .expiration_header(&bucket, &input.key, length, stamp.now_ms, &tags)
                .await,
            ..Default::default()
        }))
    }
}

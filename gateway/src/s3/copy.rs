//! CopyObject and the data half of UploadPartCopy: the source is streamed through the data path
//! into a new blob (each blob has exactly one referencing entry, which keeps garbage collection
//! trivially safe).

use std::ops::Range;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{BodyDigests, ChecksumFields, VerifiedBody};
use super::conditional::{ReadConditions, check_copy_source};
use super::object_meta::{headers_in, metadata_in, timestamp};
use super::{CairnS3, MAX_PUT_SIZE, check_key, check_storage_class};
use crate::index::records::{Blob, ObjectData, ObjectRecord};
use crate::index::{Intent, WriteCondition, now_ms};

/// The source object of a copy, with its conditions checked.
pub(super) struct CopySourceObject {
    pub bucket: String,
    pub key: String,
    pub record: ObjectRecord,
}

impl CairnS3 {
    pub(super) async fn copy_source(
        &self,
        source: &CopySource,
        conditions: ReadConditions<'_>,
    ) -> S3Result<CopySourceObject> {
        let (bucket, key) = match source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => {
                if version_id.as_deref().is_some_and(|v| v != "null") {
                    return Err(s3_error!(
                        NoSuchVersion,
                        "The specified version does not exist."
                    ));
                }
                (bucket.to_string(), key.to_string())
            }
            CopySource::AccessPoint { .. } | CopySource::Outpost { .. } => {
                return Err(s3_error!(NotImplemented, "Access points are not supported"));
            }
        };
        self.require_bucket(&bucket).await?;
        let record = match self.index.get_object(&bucket, &key).await? {
            Some(r) if !r.delete_marker => r,
            _ => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        };
        check_copy_source(&record, &conditions)?;
        Ok(CopySourceObject {
            bucket,
            key,
            record,
        })
    }

    /// Copies `range` of the source into a new blob, hashing it with `algorithm` if given.
    pub(super) async fn copy_data(
        &self,
        src: &ObjectRecord,
        range: Range<u64>,
        algorithm: Option<&ChecksumAlgorithm>,
    ) -> S3Result<(Blob, Option<Intent>, VerifiedBody)> {
        let mut digests = BodyDigests::new(algorithm, ChecksumFields::default(), None)?;
        let len = range.end - range.start;
        let stream = self.object_stream(src, range);
        let (blob, intent) = self.store_body(stream, len, |c| digests.update(c)).await?;
        let verified = digests.finish(None)?;
        Ok((blob, intent, verified))
    }

    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let storage_class = check_storage_class(input.storage_class.as_ref())?;
        let src = self
            .copy_source(
                &input.copy_source,
                ReadConditions {
                    if_match: input.copy_source_if_match.as_ref(),
                    if_none_match: input.copy_source_if_none_match.as_ref(),
                    if_modified_since: input.copy_source_if_modified_since.as_ref(),
                    if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
                },
            )
            .await?;
        self.require_bucket(&input.bucket).await?;
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown metadata directive {other}"
                ));
            }
        };
        if src.bucket == input.bucket
            && src.key == input.key
            && !replace
            && input.storage_class.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        if src.record.size > MAX_PUT_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }
        let algorithm = input.checksum_algorithm.clone().or_else(|| {
            src.record
                .checksum
                .as_ref()
                .map(|c| ChecksumAlgorithm::from(c.algorithm.clone()))
        });
        let (headers, user_metadata) = if replace {
            (
                headers_in(
                    input.content_type.map(|c| c.to_string()),
                    input.content_encoding,
                    input.content_disposition,
                    input.content_language,
                    input.cache_control,
                    input.expires.as_ref(),
                ),
                metadata_in(input.metadata)?,
            )
        } else {
            (src.record.headers.clone(), src.record.user_metadata.clone())
        };
        let (blob, intent, verified) = self
            .copy_data(&src.record, 0..src.record.size, algorithm.as_ref())
            .await?;
        let rec = ObjectRecord {
            size: src.record.size,
            etag: verified.etag.clone(),
            last_modified_ms: now_ms(),
            version_id: None,
            delete_marker: false,
            storage_class,
            headers,
            user_metadata,
            checksum: verified.checksum.clone(),
            data: ObjectData::Single(blob.clone()),
        };
        let last_modified = rec.last_modified_ms;
        if let Err(e) = self
            .index
            .put_object(
                &input.bucket,
                &input.key,
                rec,
                WriteCondition::None,
                intent.iter().cloned().collect(),
            )
            .await
        {
            self.discard(&blob, intent).await;
            return Err(e.into());
        }
        let fields = ChecksumFields::from_stored(verified.checksum.as_ref());
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(verified.etag)),
                last_modified: Some(timestamp(last_modified)),
                checksum_crc32: fields.crc32,
                checksum_crc32c: fields.crc32c,
                checksum_sha1: fields.sha1,
                checksum_sha256: fields.sha256,
                checksum_crc64nvme: fields.crc64nvme,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

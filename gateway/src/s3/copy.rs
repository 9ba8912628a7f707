//! CopyObject and the data half of UploadPartCopy: the source is streamed through the data path
//! into a new blob (each blob has exactly one referencing entry, which keeps garbage collection
//! trivially safe).

use std::ops::Range;

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{BodyDigests, ChecksumFields, VerifiedBody};
use super::conditional::{ReadConditions, check_copy_source};
use super::object_meta::{headers_in, metadata_in, timestamp};
use super::versioning::{no_such_version, version_header, version_param};
use super::{CairnS3, MAX_PUT_SIZE, check_key, tag_set};
use crate::index::records::{Blob, ObjectData, ObjectRecord};
use crate::index::{Intent, Stamp, WriteCondition};

/// The source object of a copy, with its conditions checked.
pub(super) struct CopySourceObject {
    pub bucket: String,
    pub key: String,
    pub record: ObjectRecord,
    /// The source's `x-amz-copy-source-version-id`.
    pub version_header: Option<String>,
    /// The request named a source version.
    pub named_version: bool,
}

impl CairnS3 {
    pub(super) async fn copy_source(
        &self,
        source: &CopySource,
        conditions: ReadConditions<'_>,
    ) -> S3Result<CopySourceObject> {
        let (bucket, key, version) = match source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => (
                bucket.to_string(),
                key.to_string(),
                version_param(version_id.as_deref())?,
            ),
            CopySource::AccessPoint { .. } | CopySource::Outpost { .. } => {
                return Err(s3_error!(NotImplemented, "Access points are not supported"));
            }
        };
        let b = self.require_bucket(&bucket).await?;
        let named_version = version.is_some();
        let record = match version {
            None => match self.index.get_object(&bucket, &key).await? {
                Some(r) if !r.delete_marker => r,
                _ => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
            },
            Some(v) => match self.index.get_version(&bucket, &key, v).await? {
                Some((r, _)) if r.delete_marker => {
                    return Err(s3_error!(
                        InvalidRequest,
                        "The source of a copy request may not specifically refer to a delete marker by version id."
                    ));
                }
                Some((r, _)) => r,
                None => return Err(no_such_version()),
            },
        };
        check_copy_source(&record, &conditions)?;
        Ok(CopySourceObject {
            bucket,
            key,
            version_header: version_header(&b, &record),
            record,
            named_version,
        })
    }

    /// Copies `range` of the source into a new blob of `storage_class`, hashing it with
    /// `algorithm` if given.
    pub(super) async fn copy_data(
        &self,
        target: (&str, &str),
        src: &ObjectRecord,
        range: Range<u64>,
        storage_class: &str,
        algorithm: Option<&ChecksumAlgorithm>,
    ) -> S3Result<(Blob, Option<Intent>, VerifiedBody)> {
        let mut digests = BodyDigests::new(algorithm, ChecksumFields::default(), None)?;
        let len = range.end - range.start;
        let stream = self.object_stream(src, range);
        let (blob, intent) = self
            .store_body(target, stream, len, storage_class, |c| digests.update(c))
            .await?;
        let verified = digests.finish(None)?;
        Ok((blob, intent, verified))
    }

    pub(super) async fn copy_object_op(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let storage_class = self.storage_class(input.storage_class.as_ref())?;
        // REPLACE takes the request's tags (none without `x-amz-tagging`); COPY keeps the source's.
        let replaced_tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            None | Some(TaggingDirective::COPY) => None,
            Some(TaggingDirective::REPLACE) => {
                Some(tag_set::from_header(input.tagging.as_deref())?)
            }
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown tagging directive {other}"
                ));
            }
        };
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
        let bucket = self.require_bucket(&input.bucket).await?;
        let storage_class =
            self.with_bucket_default(storage_class, input.storage_class.is_some(), &bucket)?;
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
            && !src.named_version
            && !replace
            && input.storage_class.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        self.admit(&bucket, &input.key, src.record.size).await?;
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
            .copy_data(
                (&input.bucket, &input.key),
                &src.record,
                0..src.record.size,
                &storage_class,
                algorithm.as_ref(),
            )
            .await?;
        let stamp = Stamp::now();
        let rec = ObjectRecord {
            size: src.record.size,
            etag: verified.etag.clone(),
            last_modified_ms: stamp.now_ms,
            version_id: None,
            delete_marker: false,
            seq: 0,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class,
            headers,
            user_metadata,
            checksum: verified.checksum.clone(),
            tags: replaced_tags.unwrap_or_else(|| src.record.tags.clone()),
            data: ObjectData::Single(blob.clone()),
        };
        let (last_modified, tags) = (rec.last_modified_ms, rec.tags.clone());
        let written = match self
            .index
            .put_object(
                &input.bucket,
                &input.key,
                rec,
                WriteCondition::None,
                intent.iter().cloned().collect(),
                stamp,
            )
            .await
        {
            Ok(w) => w,
            Err(e) => {
                self.discard(&blob, intent).await;
                return Err(e.into());
            }
        };
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
            version_id: written.version_header(),
            expiration: self
                .expiration_header(&bucket, &input.key, src.record.size, last_modified, &tags)
                .await,
            copy_source_version_id: src.version_header,
            ..Default::default()
        }))
    }
}

//! Multipart uploads. Parts are stored as blobs of their own; Complete writes a manifest that
//! lists them (no data is copied) and frees the parts it does not use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{BodyDigests, ChecksumFields, checksum_type, digest, hex};
use super::conditional::{ReadConditions, write_condition};
use super::errors::custom;
use super::object_meta::{etag, headers_in, metadata_in, timestamp};
use super::{CairnS3, MAX_PUT_SIZE, check_key, tag_set};
use crate::index::records::{
    ObjectData, ObjectRecord, PartRecord, PartRef, StoredChecksum, UploadRecord,
};
use crate::index::{IndexError, Stamp, now_ms};

/// Highest part number (S3: 10,000).
const MAX_PART_NUMBER: i32 = 10_000;
/// Smallest part except the last (S3: 5 MiB).
pub const MIN_PART_SIZE: u64 = 5 << 20;

fn check_part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PART_NUMBER).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

fn new_upload_id() -> String {
    hex(&rand::random::<[u8; 16]>())
}

fn part_checksum_fields(c: Option<&StoredChecksum>) -> ChecksumFields {
    ChecksumFields::from_stored(c)
}

impl CairnS3 {
    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<UploadRecord> {
        self.require_bucket(bucket).await?;
        self.index
            .get_upload(bucket, key, upload_id)
            .await?
            .ok_or_else(|| {
                s3_error!(
                    NoSuchUpload,
                    "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
                )
            })
    }

    pub(super) async fn create_multipart_upload_op(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let storage_class = self.storage_class(input.storage_class.as_ref())?;
        let bucket_rec = self.require_bucket(&input.bucket).await?;
        let storage_class =
            self.with_bucket_default(storage_class, input.storage_class.is_some(), &bucket_rec)?;
        let checksum_type = match (&input.checksum_algorithm, &input.checksum_type) {
            (_, Some(t)) if t.as_str() == ChecksumType::FULL_OBJECT => {
                return Err(s3_error!(
                    NotImplemented,
                    "FULL_OBJECT checksums of multipart uploads are not supported; use COMPOSITE"
                ));
            }
            (Some(_), _) => Some(ChecksumType::COMPOSITE.to_string()),
            (None, _) => None,
        };
        let rec = UploadRecord {
            upload_id: new_upload_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated_ms: now_ms(),
            storage_class,
            headers: headers_in(
                input.content_type.map(|c| c.to_string()),
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires.as_ref(),
            ),
            user_metadata: metadata_in(input.metadata)?,
            checksum_algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_string()),
            checksum_type: checksum_type.clone(),
            tags: tag_set::from_header(input.tagging.as_deref())?,
        };
        let upload_id = rec.upload_id.clone();
        self.index.create_upload(rec).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            checksum_type: checksum_type.map(ChecksumType::from),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_op(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.take();
        let length = super::upload_length(req.input.content_length, &req.headers)?;
        let input = req.input;
        let part_number = check_part_number(input.part_number)?;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let bucket = self.require_bucket(&input.bucket).await?;
        if bucket.quota.is_some() {
            // Parts add bytes; the object itself counts when the upload completes.
            self.usage.admit(&self.index, &bucket, length, 0).await?;
        }
        if length > MAX_PUT_SIZE {
            return Err(s3_error!(EntityTooLarge, "A part may be at most 5 GiB"));
        }
        let algorithm = input.checksum_algorithm.clone().or_else(|| {
            upload
                .checksum_algorithm
                .as_ref()
                .map(|a| ChecksumAlgorithm::from(a.clone()))
        });
        let mut digests = BodyDigests::new(
            algorithm.as_ref(),
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
                (&upload.bucket, &upload.key),
                body,
                length,
                &upload.storage_class,
                |c| digests.update(c),
            )
            .await?;
        let verified = match digests.finish(trailers.and_then(|t| t.take())) {
            Ok(v) => v,
            Err(e) => {
                self.discard(&blob, intent).await;
                return Err(e);
            }
        };
        if let (Some(want), Some(got)) = (&upload.checksum_algorithm, &verified.checksum)
            && want != &got.algorithm
        {
            self.discard(&blob, intent).await;
            return Err(s3_error!(
                InvalidRequest,
                "Checksum Type mismatch occurred, expected checksum Type: {want}, actual checksum Type: {}",
                got.algorithm
            ));
        }
        let part = PartRecord {
            part_number,
            etag: verified.etag.clone(),
            last_modified_ms: now_ms(),
            blob: blob.clone(),
            checksum: verified.checksum.clone(),
        };
        if let Err(e) = self
            .index
            .put_part(&upload, part, intent.iter().cloned().collect())
            .await
        {
            self.discard(&blob, intent).await;
            return Err(e.into());
        }
        let fields = part_checksum_fields(verified.checksum.as_ref());
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(verified.etag)),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_crc64nvme: fields.crc64nvme,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_op(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let part_number = check_part_number(input.part_number)?;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
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
        let size = src.record.size;
        let range = match &input.copy_source_range {
            None => 0..size,
            Some(r) => parse_copy_range(r, size)?,
        };
        if range.end - range.start > MAX_PUT_SIZE {
            return Err(s3_error!(EntityTooLarge, "A part may be at most 5 GiB"));
        }
        let algorithm = upload
            .checksum_algorithm
            .as_ref()
            .map(|a| ChecksumAlgorithm::from(a.clone()));
        let (blob, intent, verified) = self
            .copy_data(
                (&upload.bucket, &upload.key),
                &src.record,
                range,
                &upload.storage_class,
                algorithm.as_ref(),
            )
            .await?;
        let part = PartRecord {
            part_number,
            etag: verified.etag.clone(),
            last_modified_ms: now_ms(),
            blob: blob.clone(),
            checksum: verified.checksum.clone(),
        };
        let last_modified = part.last_modified_ms;
        if let Err(e) = self
            .index
            .put_part(&upload, part, intent.iter().cloned().collect())
            .await
        {
            self.discard(&blob, intent).await;
            return Err(e.into());
        }
        let fields = part_checksum_fields(verified.checksum.as_ref());
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(verified.etag)),
                last_modified: Some(timestamp(last_modified)),
                checksum_crc32: fields.crc32,
                checksum_crc32c: fields.crc32c,
                checksum_sha1: fields.sha1,
                checksum_sha256: fields.sha256,
                checksum_crc64nvme: fields.crc64nvme,
            }),
            copy_source_version_id: src.version_header,
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_op(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let cond = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        if requested.len() > MAX_PART_NUMBER as usize {
            return Err(s3_error!(
                InvalidArgument,
                "At most 10000 parts are allowed"
            ));
        }
        let stored = self.index.list_parts(&upload, 0, usize::MAX).await?;
        let by_number: std::collections::HashMap<u32, &PartRecord> =
            stored.iter().map(|p| (p.part_number, p)).collect();
        check_order(&requested)?;
        let mut parts = Vec::with_capacity(requested.len());
        let mut md5s = Vec::with_capacity(requested.len() * 16);
        let mut checksums = Vec::new();
        for (i, want) in requested.iter().enumerate() {
            let n = want
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "A part number is missing"))?;
            let n = check_part_number(n).map_err(|_| s3_error!(InvalidPart))?;
            let invalid = || {
                s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
                )
            };
            let have = by_number.get(&n).ok_or_else(invalid)?;
            if want.e_tag.as_ref().is_some_and(|e| e.value() != have.etag) {
                return Err(invalid());
            }
            let claimed = ChecksumFields {
                crc32: want.checksum_crc32.clone(),
                crc32c: want.checksum_crc32c.clone(),
                sha1: want.checksum_sha1.clone(),
                sha256: want.checksum_sha256.clone(),
                crc64nvme: want.checksum_crc64nvme.clone(),
            };
            let ours = part_checksum_fields(have.checksum.as_ref());
            for (c, o) in [
                (&claimed.crc32, &ours.crc32),
                (&claimed.crc32c, &ours.crc32c),
                (&claimed.sha1, &ours.sha1),
                (&claimed.sha256, &ours.sha256),
                (&claimed.crc64nvme, &ours.crc64nvme),
            ] {
                if c.is_some() && c != o {
                    return Err(invalid());
                }
            }
            let last = i + 1 == requested.len();
            if !last && have.blob.len() < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            md5s.extend_from_slice(&decode_hex16(&have.etag).ok_or_else(invalid)?);
            if let Some(c) = &have.checksum {
                checksums.extend(B64.decode(&c.value).unwrap_or_default());
            }
            parts.push(PartRef {
                part_number: n,
                etag: have.etag.clone(),
                blob: have.blob.clone(),
                checksum: have.checksum.clone(),
            });
        }
        let count = parts.len();
        let md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(&md5s);
        let etag_value = format!("{}-{count}", hex(md5.as_ref()));
        let checksum = upload
            .checksum_algorithm
            .as_ref()
            .map(|alg| StoredChecksum {
                algorithm: alg.clone(),
                value: format!("{}-{count}", B64.encode(digest(alg, &checksums))),
                kind: ChecksumType::COMPOSITE.to_string(),
            });
        let size: u64 = parts.iter().map(|p| p.blob.len()).sum();
        let stamp = Stamp::now();
        let rec = ObjectRecord {
            size,
            etag: etag_value.clone(),
            last_modified_ms: stamp.now_ms,
            version_id: None,
            delete_marker: false,
            seq: 0,
            null_version_seq: None,
            noncurrent_since_ms: None,
            storage_class: upload.storage_class.clone(),
            headers: upload.headers.clone(),
            user_metadata: upload.user_metadata.clone(),
            checksum: checksum.clone(),
            tags: upload.tags.clone(),
            data: ObjectData::Multipart(parts),
        };
        let last_modified = rec.last_modified_ms;
        let bucket = self.require_bucket(&input.bucket).await?;
        let etag_out = etag(&rec);
        let written = match self.index.complete_upload(&upload, rec, cond, stamp).await {
            Ok(w) => w,
            Err(IndexError::PreconditionFailed) => return Err(s3_error!(PreconditionFailed)),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(bucket = %input.bucket, key = %input.key, parts = count, size, "multipart upload completed");
        let fields = ChecksumFields::from_stored(checksum.as_ref());
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(etag_out),
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_type: checksum_type(checksum.as_ref()),
            version_id: written.version_header(),
            expiration: self
                .expiration_header(&bucket, &input.key, size, last_modified, &upload.tags)
                .await,
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_op(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        self.index.abort_upload(&upload, now_ms()).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_op(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let upload = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let after = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
        let mut parts = self.index.list_parts(&upload, after, max + 1).await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|p| p.part_number as i32);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            storage_class: Some(StorageClass::from(upload.storage_class.clone())),
            checksum_algorithm: upload
                .checksum_algorithm
                .clone()
                .map(ChecksumAlgorithm::from),
            checksum_type: upload.checksum_type.clone().map(ChecksumType::from),
            owner: Some(self.owner()),
            initiator: Some(Initiator {
                display_name: Some(self.options.owner_id.clone()),
                id: Some(self.options.owner_id.clone()),
            }),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| {
                        let f = part_checksum_fields(p.checksum.as_ref());
                        Part {
                            part_number: Some(p.part_number as i32),
                            e_tag: Some(ETag::Strong(p.etag)),
                            size: Some(p.blob.len() as i64),
                            last_modified: Some(timestamp(p.last_modified_ms)),
                            checksum_crc32: f.crc32,
                            checksum_crc32c: f.crc32c,
                            checksum_sha1: f.sha1,
                            checksum_sha256: f.sha256,
                            checksum_crc64nvme: f.crc64nvme,
                        }
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_op(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let mut uploads = self
            .index
            .list_uploads(
                &input.bucket,
                input.prefix.as_deref().unwrap_or(""),
                input.key_marker.clone().filter(|k| !k.is_empty()),
                input.upload_id_marker.clone().filter(|u| !u.is_empty()),
                max + 1,
            )
            .await?;
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let (next_key, next_upload) = match (truncated, uploads.last()) {
            (true, Some(u)) => (Some(u.key.clone()), Some(u.upload_id.clone())),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_upload,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        storage_class: Some(StorageClass::from(u.storage_class)),
                        owner: Some(self.owner()),
                        checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
                        checksum_type: u.checksum_type.map(ChecksumType::from),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// `InvalidPartOrder` unless the part numbers of a Complete request ascend strictly. The order is
/// a property of the request alone, so it is checked before any part is looked at: a misordered
/// list gets this error even if its parts are also too small or missing.
fn check_order(parts: &[CompletedPart]) -> S3Result<()> {
    let numbers: Vec<i32> = parts.iter().filter_map(|p| p.part_number).collect();
    if numbers.windows(2).any(|w| w[1] <= w[0]) {
        return Err(s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. The parts list must be specified in order by part number."
        ));
    }
    Ok(())
}

fn decode_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against a source of `size` bytes. A range
/// past the end of the source is an `InvalidArgument` (400), as S3 answers for UploadPartCopy, not
/// the `InvalidRange` (416) of a ranged GET.
fn parse_copy_range(r: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        custom(
            "InvalidArgument",
            400,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let spec = r.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.parse().map_err(|_| bad())?;
    let last: u64 = b.parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        ));
    }
    Ok(first..last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9", 100).unwrap(), 0..10);
        assert!(parse_copy_range("bytes=5-4", 100).is_err());
        assert_eq!(
            parse_copy_range("bytes=0-100", 100).unwrap_err().code(),
            &s3s::S3ErrorCode::InvalidArgument
        );
        assert!(parse_copy_range("0-1", 100).is_err());
        assert!(parse_copy_range("bytes=-5", 100).is_err());
    }

    #[test]
    fn hex16() {
        assert_eq!(decode_hex16(&"ab".repeat(16)), Some([0xab; 16]));
        assert_eq!(decode_hex16("zz"), None);
    }
}

//! GetObject and HeadObject.

use std::ops::Range;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{ChecksumFields, checksum_type};
use super::conditional::{ReadConditions, check_read};
use super::errors::{custom, data_error};
use super::object_meta::{etag, metadata_out, parse_http_date, timestamp};
use super::versioning::version_header;
use super::{CairnS3, STANDARD};
use crate::data::DataError;
use crate::index::records::{Blob, ObjectData, ObjectRecord};

type DataStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, DataError>> + Send + Sync>>;

/// The byte range of part `n` (1-based) of an object.
fn part_range(rec: &ObjectRecord, n: i32) -> S3Result<(Range<u64>, usize)> {
    let bad = || {
        custom(
            "InvalidPartNumber",
            416,
            "The requested partnumber is not satisfiable",
        )
    };
    match &rec.data {
        ObjectData::Single(_) if n == 1 => Ok((0..rec.size, 1)),
        ObjectData::Single(_) => Err(bad()),
        ObjectData::Multipart(parts) => {
            let i = usize::try_from(n)
                .ok()
                .filter(|&i| i >= 1 && i <= parts.len())
                .ok_or_else(bad)?;
            let start: u64 = parts[..i - 1].iter().map(|p| p.blob.len()).sum();
            Ok((start..start + parts[i - 1].blob.len(), parts.len()))
        }
    }
}

impl CairnS3 {
    /// Streams bytes `range` of an object, part by part for multipart objects.
    pub(super) fn object_stream(&self, rec: &ObjectRecord, range: Range<u64>) -> DataStream {
        let segments: Vec<(Blob, Range<u64>)> = match &rec.data {
            ObjectData::Single(b) => vec![(b.clone(), range)],
            ObjectData::Multipart(parts) => {
                let mut out = Vec::new();
                let mut offset = 0;
                for p in parts {
                    let len = p.blob.len();
                    let (s, e) = (range.start.max(offset), range.end.min(offset + len));
                    if s < e {
                        out.push((p.blob.clone(), s - offset..e - offset));
                    }
                    offset += len;
                }
                out
            }
        };
        let this = self.clone();
        Box::pin(
            futures_util::stream::iter(segments)
                .flat_map(move |(blob, r)| this.blob_stream(&blob, r)),
        )
    }

    pub(super) async fn get_object_op(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (rec, bucket, latest) = self
            .readable(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        check_read(
            &rec,
            &ReadConditions {
                if_match: input.if_match.as_ref(),
                if_none_match: input.if_none_match.as_ref(),
                if_modified_since: input.if_modified_since.as_ref(),
                if_unmodified_since: input.if_unmodified_since.as_ref(),
            },
        )?;
        let expiration = if latest {
            self.expiration_header(
                &bucket,
                &input.key,
                rec.size,
                rec.last_modified_ms,
                &rec.tags,
            )
            .await
        } else {
            None
        };
        let (range, partial, parts_count) = match (&input.range, input.part_number) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            (Some(r), None) => (r.check(rec.size)?, true, None),
            (None, Some(n)) => {
                let (r, count) = part_range(&rec, n)?;
                (
                    r,
                    matches!(rec.data, ObjectData::Multipart(_)),
                    Some(count as i32),
                )
            }
            (None, None) => (0..rec.size, false, None),
        };
        let len = range.end - range.start;
        let mut stream = self.object_stream(&rec, range.clone());
        // Read the first chunk before answering, so an object that cannot be read now gets a 503
        // instead of a 200 that breaks off.
        let body: DataStream = if len == 0 {
            Box::pin(futures_util::stream::empty())
        } else {
            match stream.next().await {
                Some(Ok(first)) => {
                    Box::pin(futures_util::stream::once(async move { Ok(first) }).chain(stream))
                }
                Some(Err(e)) => return Err(data_error(e)),
                None => Box::pin(futures_util::stream::empty()),
            }
        };
        self.metrics.bytes_out.inc_by(len);
        let whole = range.start == 0 && range.end == rec.size;
        let checksums = input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && whole;
        let fields = if checksums {
            ChecksumFields::from_stored(rec.checksum.as_ref())
        } else {
            ChecksumFields::default()
        };
        let h = &rec.headers;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(len as i64),
            content_range: partial.then(|| {
                format!(
                    "bytes {}-{}/{}",
                    range.start,
                    range.end.saturating_sub(1),
                    rec.size
                )
            }),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&rec)),
            last_modified: Some(timestamp(rec.last_modified_ms)),
            content_type: h.content_type.clone(),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.as_deref().and_then(parse_http_date),
            metadata: metadata_out(&rec.user_metadata),
            storage_class: (rec.storage_class != STANDARD)
                .then(|| StorageClass::from(rec.storage_class.clone())),
            parts_count,
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_type: checksums
                .then(|| checksum_type(rec.checksum.as_ref()))
                .flatten(),
            version_id: version_header(&bucket, &rec),
            expiration,
            tag_count: Self::tag_count(&rec.tags),
            ..Default::default()
        }))
    }

    pub(super) async fn head_object_op(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (rec, bucket, latest) = self
            .readable(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        check_read(
            &rec,
            &ReadConditions {
                if_match: input.if_match.as_ref(),
                if_none_match: input.if_none_match.as_ref(),
                if_modified_since: input.if_modified_since.as_ref(),
                if_unmodified_since: input.if_unmodified_since.as_ref(),
            },
        )?;
        let expiration = if latest {
            self.expiration_header(
                &bucket,
                &input.key,
                rec.size,
                rec.last_modified_ms,
                &rec.tags,
            )
            .await
        } else {
            None
        };
        let (len, parts_count) = match input.part_number {
            Some(n) => {
                let (r, count) = part_range(&rec, n)?;
                (r.end - r.start, Some(count as i32))
            }
            None => (rec.size, None),
        };
        let checksums = input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let fields = if checksums {
            ChecksumFields::from_stored(rec.checksum.as_ref())
        } else {
            ChecksumFields::default()
        };
        let h = &rec.headers;
        let mut resp = S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&rec)),
            last_modified: Some(timestamp(rec.last_modified_ms)),
            content_type: h.content_type.clone(),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.as_deref().and_then(parse_http_date),
            metadata: metadata_out(&rec.user_metadata),
            storage_class: (rec.storage_class != STANDARD)
                .then(|| StorageClass::from(rec.storage_class.clone())),
            parts_count,
            checksum_crc32: fields.crc32,
            checksum_crc32c: fields.crc32c,
            checksum_sha1: fields.sha1,
            checksum_sha256: fields.sha256,
            checksum_crc64nvme: fields.crc64nvme,
            checksum_type: checksums
                .then(|| checksum_type(rec.checksum.as_ref()))
                .flatten(),
            version_id: version_header(&bucket, &rec),
            expiration,
            ..Default::default()
        });
        // s3s's HeadObjectOutput has no tag count; S3 sends it on HEAD as on GET.
        if let Some(n) = Self::tag_count(&rec.tags) {
            resp.headers
                .insert("x-amz-tagging-count", http::HeaderValue::from(n));
        }
        Ok(resp)
    }
}

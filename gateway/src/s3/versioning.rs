//! Bucket versioning: Put/GetBucketVersioning, ListObjectVersions, and the helpers other
//! operations use for `versionId` and the version headers.

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::list::{encode, max_keys, url_encoded};
use super::object_meta::{etag, timestamp};
use super::{CairnS3, STANDARD};
use crate::index::list::{ListEntry, VersionQuery};
use crate::index::records::{BucketRecord, ObjectRecord, Versioning};
use crate::index::{VersionRef, version};

/// The version a request names with `versionId` (absent or empty: none).
pub(super) fn version_param(v: Option<&str>) -> S3Result<Option<VersionRef>> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Ok(Some(VersionRef::parse(v)?)),
    }
}

/// The `x-amz-version-id` of a version: its id, or `null` once the bucket has had versioning
/// (an unversioned bucket sends none).
pub(super) fn version_header(bucket: &BucketRecord, rec: &ObjectRecord) -> Option<String> {
    match (&rec.version_id, bucket.versioning) {
        (None, Versioning::Unversioned) => None,
        (v, _) => Some(version::display(v.as_deref()).to_string()),
    }
}

/// The error for a read that found a delete marker: `NoSuchKey` (404) when it is the current
/// version, `MethodNotAllowed` (405) when the request named it; both say `x-amz-delete-marker`.
pub(super) fn delete_marker_error(
    bucket: &BucketRecord,
    rec: &ObjectRecord,
    named: bool,
) -> S3Error {
    let mut e = if named {
        super::errors::custom(
            "MethodNotAllowed",
            405,
            "The specified method is not allowed against this resource.",
        )
    } else {
        s3_error!(NoSuchKey, "The specified key does not exist.")
    };
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Some(v) = version_header(bucket, rec)
        && let Ok(v) = http::HeaderValue::from_str(&v)
    {
        h.insert("x-amz-version-id", v);
    }
    if named
        && let Some(d) = super::object_meta::http_date(&timestamp(rec.last_modified_ms))
        && let Ok(v) = http::HeaderValue::from_str(&d)
    {
        h.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(h);
    e
}

/// `NoSuchVersion` (404).
pub(super) fn no_such_version() -> S3Error {
    s3_error!(NoSuchVersion, "The specified version does not exist.")
}

impl CairnS3 {
    /// The object version a read names (the current one without `version`), with the bucket and
    /// whether it is the current version. Delete markers are errors: see [`delete_marker_error`].
    pub(super) async fn readable(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<(ObjectRecord, BucketRecord, bool)> {
        let (b, (rec, latest)) = match version.filter(|v| !v.is_empty()) {
            None => {
                let (b, rec) = self.index.get_bucket_and_object(bucket, key).await?;
                let b = b.ok_or_else(|| {
                    s3_error!(NoSuchBucket, "The specified bucket does not exist")
                })?;
                let rec =
                    rec.ok_or_else(|| s3_error!(NoSuchKey, "The specified key does not exist."))?;
                (b, (rec, true))
            }
            Some(v) => {
                let b = self.require_bucket(bucket).await?;
                let v = VersionRef::parse(v)?;
                let found = self.index.get_version(bucket, key, v).await?;
                (b, found.ok_or_else(no_such_version)?)
            }
        };
        if rec.delete_marker {
            return Err(delete_marker_error(
                &b,
                &rec,
                version.is_some_and(|v| !v.is_empty()),
            ));
        }
        Ok((rec, b, latest))
    }

    pub(super) async fn put_bucket_versioning_op(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = req.input;
        let conf = input.versioning_configuration;
        if conf
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let state = match conf.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "The versioning Status must be Enabled or Suspended"
                ));
            }
        };
        self.index.set_versioning(&input.bucket, state).await?;
        tracing::info!(bucket = %input.bucket, ?state, "bucket versioning set");
        Ok(S3Response::new(PutBucketVersioningOutput {}))
    }

    pub(super) async fn get_bucket_versioning_op(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let b = self.require_bucket(&req.input.bucket).await?;
        let status = match b.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            mfa_delete: None,
        }))
    }

    pub(super) async fn list_object_versions_op(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
        let version_marker = version_param(input.version_id_marker.as_deref())
            .map_err(|_| s3_error!(InvalidArgument, "Invalid version id specified"))?;
        if version_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        let b = self.require_bucket(&input.bucket).await?;
        let q = VersionQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker,
            version_marker,
            max_keys: max,
        };
        let page = match self.index.list_versions(&input.bucket, q).await {
            Err(crate::index::IndexError::UnknownVersionMarker) => {
                return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
            }
            other => other?,
        };
        let enc = |s: String| if url { encode(&s) } else { s };
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        let mut prefixes = Vec::new();
        for e in page.entries {
            match e {
                ListEntry::Object(key, v) => {
                    let r = v.record;
                    let version_id =
                        version_header(&b, &r).or_else(|| Some(version::NULL.to_string()));
                    if r.delete_marker {
                        markers.push(DeleteMarkerEntry {
                            is_latest: Some(v.latest),
                            key: Some(enc(key)),
                            last_modified: Some(timestamp(r.last_modified_ms)),
                            owner: Some(self.owner()),
                            version_id,
                        });
                    } else {
                        versions.push(ObjectVersion {
                            checksum_algorithm: r
                                .checksum
                                .as_ref()
                                .map(|c| vec![ChecksumAlgorithm::from(c.algorithm.clone())]),
                            e_tag: Some(etag(&r)),
                            is_latest: Some(v.latest),
                            key: Some(enc(key)),
                            last_modified: Some(timestamp(r.last_modified_ms)),
                            owner: Some(self.owner()),
                            size: Some(r.size as i64),
                            storage_class: Some(ObjectVersionStorageClass::from(
                                if r.storage_class.is_empty() {
                                    STANDARD.to_string()
                                } else {
                                    r.storage_class.clone()
                                },
                            )),
                            version_id,
                            ..Default::default()
                        });
                    }
                }
                ListEntry::Prefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(enc(p)),
                }),
            }
        }
        let enc_opt = |s: Option<String>| s.map(enc);
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: enc_opt(input.prefix),
            delimiter: enc_opt(input.delimiter),
            key_marker: enc_opt(input.key_marker),
            version_id_marker: input.version_id_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: enc_opt(page.next_key_marker),
            next_version_id_marker: page.next_version_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

//! The S3 front end: s3s does routing, XML and SigV4; this module implements the operations over
//! the index and the data path, one file per operation family. Lower-layer errors become S3 errors
//! in `errors.rs` only.

pub mod auth;
mod bucket;
pub mod checksums;
mod conditional;
mod copy;
mod delete;
pub mod edge;
pub mod errors;
#[cfg(test)]
mod fuzz_tests;
mod get;
mod lifecycle;
mod list;
mod multipart;
mod object_meta;
mod put;
mod quota;
mod replication;
mod tag_set;
mod tagging;
mod versioning;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use crate::data::reader::BlobReader;
use crate::data::writer::BlobWriter;
use crate::index::records::{Blob, BucketRecord, StoredBlob};
use crate::index::{Index, Intent};
use crate::lifecycle::rules::LifecycleClock;
use crate::metrics::{ClassLabels, GatewayMetrics};
use crate::storage_class::StorageClasses;

/// Limits and identity of the S3 front end.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Objects (and parts) up to this size live in the index entry instead of on storage nodes.
    pub inline_threshold: u64,
    /// The region reported by GetBucketLocation.
    pub region: String,
    /// Display name and id reported as the owner of everything.
    pub owner_id: String,
    /// A request body that sends nothing for this long fails with `RequestTimeout`.
    pub stall_timeout: std::time::Duration,
}

/// What a body stream that stopped sending fails with ([`errors::body_error`] knows it).
pub const BODY_STALLED: &str = "BodyStalled: no data arrived within the timeout";

/// `body`, failing with [`BODY_STALLED`] when no chunk arrives for `stall`: a client that stops
/// sending holds its request only that long.
fn stall_guard<S, E>(
    body: S,
    stall: std::time::Duration,
) -> impl Stream<Item = Result<Bytes, String>> + Unpin
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    cairn_transport::stall::stall_guard(body, stall).map(|piece| match piece {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(BODY_STALLED.to_string()),
    })
}

/// The writers of the fleet's storage classes, by name (each with its class's erasure profile).
pub type ClassWriters = BTreeMap<String, BlobWriter>;

/// Largest single PUT (S3: 5 GiB).
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// Largest object key in bytes (S3: 1024).
pub const MAX_KEY_LEN: usize = 1024;
/// The storage class of writes that name none.
pub const STANDARD: &str = crate::storage_class::STANDARD;

/// The S3 service.
#[derive(Clone)]
pub struct CairnS3 {
    index: Index,
    classes: Arc<StorageClasses>,
    writers: Arc<ClassWriters>,
    reader: BlobReader,
    metrics: Arc<GatewayMetrics>,
    options: S3Options,
    lifecycle_clock: LifecycleClock,
    usage: Arc<quota::UsageCache>,
    keys: auth::AccessKeys,
}

impl CairnS3 {
    /// The service over `index` and the data path, with one storage class, `STANDARD`, written
    /// by `writer`.
    pub fn new(
        index: Index,
        writer: BlobWriter,
        reader: BlobReader,
        metrics: Arc<GatewayMetrics>,
        options: S3Options,
    ) -> Self {
        let classes =
            StorageClasses::new(writer.options().profile, Vec::new()).expect("one storage class");
        let writers = Arc::new(BTreeMap::from([(STANDARD.to_string(), writer)]));
        Self {
            keys: auth::AccessKeys::new(index.clone(), metrics.clone()),
            index,
            classes: Arc::new(classes),
            writers,
            reader,
            metrics,
            options,
            lifecycle_clock: LifecycleClock::default(),
            usage: Arc::default(),
        }
        .with_overhead_metrics()
    }

    /// The access keys, cached: the authenticator, the access check and the admin API share
    /// them with the operations.
    pub fn access_keys(&self) -> auth::AccessKeys {
        self.keys.clone()
    }

    /// The same service with the fleet's storage classes and a writer for each.
    pub fn with_storage_classes(
        mut self,
        classes: Arc<StorageClasses>,
        writers: Arc<ClassWriters>,
    ) -> Self {
        debug_assert!(classes.iter().all(|c| writers.contains_key(&c.name)));
        self.classes = classes;
        self.writers = writers;
        self.with_overhead_metrics()
    }

    /// The same service counting lifecycle days with `clock` (for `x-amz-expiration`).
    pub fn with_lifecycle_clock(mut self, clock: LifecycleClock) -> Self {
        self.lifecycle_clock = clock;
        self
    }

    fn with_overhead_metrics(self) -> Self {
        for c in self.classes.iter() {
            self.metrics
                .class_overhead
                .get_or_create(&ClassLabels {
                    class: c.name.clone(),
                })
                .set((c.overhead() * 1000.0).round() as i64);
        }
        self
    }

    /// `true` if this fleet has storage class `class`.
    pub fn storage_class_exists(&self, class: &str) -> bool {
        self.classes.contains(class) && self.writers.contains_key(class)
    }

    /// The storage class a write asks for (`STANDARD` when none): `InvalidStorageClass` unless
    /// the fleet has it.
    fn storage_class(&self, class: Option<&StorageClass>) -> S3Result<String> {
        let name = class.map_or(STANDARD, |c| c.as_str());
        if self.storage_class_exists(name) {
            Ok(name.to_string())
        } else {
            Err(s3_error!(
                InvalidStorageClass,
                "The storage class {name} is not configured in this fleet"
            ))
        }
    }

    /// `chosen` (from the request), or the bucket's default class when the request named none.
    fn with_bucket_default(
        &self,
        chosen: String,
        asked: bool,
        bucket: &BucketRecord,
    ) -> S3Result<String> {
        match &bucket.default_storage_class {
            Some(default) if !asked => {
                self.storage_class(Some(&StorageClass::from(default.clone())))
            }
            _ => Ok(chosen),
        }
    }

    fn owner(&self) -> Owner {
        Owner {
            display_name: Some(self.options.owner_id.clone()),
            id: Some(self.options.owner_id.clone()),
        }
    }

    /// Stores a body of `length` bytes: inline if small, else erasure-coded. `observe` sees every
    /// byte. A stored blob comes with the intent that protects it until the caller commits it (or
    /// [`CairnS3::discard`]s it). `target` (bucket, key) is the object it is written for: its
    /// intent lives with that object.
    async fn store_body<S, E>(
        &self,
        target: (&str, &str),
        body: S,
        length: u64,
        storage_class: &str,
        mut observe: impl FnMut(&[u8]),
    ) -> S3Result<(Blob, Option<Intent>)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut body = stall_guard(body, self.options.stall_timeout);
        self.metrics.bytes_in.inc_by(length);
        if length <= self.options.inline_threshold {
            use futures_util::StreamExt;
            let mut data = Vec::with_capacity(length as usize);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| errors::body_error(&e.to_string()))?;
                if (data.len() + chunk.len()) as u64 > length {
                    return Err(s3_error!(
                        IncompleteBody,
                        "The body is longer than the Content-Length"
                    ));
                }
                observe(&chunk);
                data.extend_from_slice(&chunk);
            }
            if data.len() as u64 != length {
                return Err(s3_error!(
                    IncompleteBody,
                    "You did not provide the number of bytes specified by the Content-Length header"
                ));
            }
            self.metrics.objects_inline.inc();
            return Ok((Blob::Inline(data), None));
        }
        let writer = self.writers.get(storage_class).ok_or_else(|| {
            s3_error!(
                InvalidStorageClass,
                "The storage class {storage_class} is not configured in this fleet"
            )
        })?;
        let mut blob = writer.plan(length).map_err(errors::data_error)?;
        let intent = self
            .index
            .record_intent(target.0, target.1, &blob, crate::index::now_ms())
            .await?;
        match writer.write(&blob, body, observe).await {
            Ok(digests) => {
                self.metrics.objects_erasure_coded.inc();
                blob.stripe_digests = digests;
                Ok((Blob::Stored(blob), Some(intent)))
            }
            Err(e) => {
                self.discard_stored(&blob, intent).await;
                Err(errors::data_error(e))
            }
        }
    }

    /// Frees a blob that will not be committed (bad digest, failed condition).
    async fn discard(&self, blob: &Blob, intent: Option<Intent>) {
        if let (Blob::Stored(b), Some(i)) = (blob, intent) {
            self.discard_stored(b, i).await;
        }
    }

    async fn discard_stored(&self, blob: &StoredBlob, intent: Intent) {
        if let Err(e) = self
            .index
            .abandon(intent, blob, crate::index::now_ms())
            .await
        {
            // The intent record stays and becomes due later: the shards are still collected.
            tracing::warn!(object = %blob.object_id, error = %e, "could not mark blob as garbage now");
        }
    }

    /// Streams bytes `range` of a blob.
    fn blob_stream(
        &self,
        blob: &Blob,
        range: std::ops::Range<u64>,
    ) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, crate::data::DataError>> + Send + Sync>>
    {
        match blob {
            Blob::Inline(d) => {
                let slice = Bytes::copy_from_slice(&d[range.start as usize..range.end as usize]);
                Box::pin(futures_util::stream::iter([Ok(slice)]))
            }
            Blob::Stored(b) => Box::pin(self.reader.read(b, range)),
        }
    }
}

/// Validates an object key: 1..=1024 bytes.
impl CairnS3 {
    /// Refuses `bytes` more into `key` of `bucket` if that passes the bucket's quota (a key
    /// without a current object counts as one more object).
    async fn admit(&self, bucket: &BucketRecord, key: &str, bytes: u64) -> S3Result<()> {
        if bucket.quota.is_none() {
            return Ok(());
        }
        let new_key = self
            .index
            .get_object(&bucket.name, key)
            .await?
            .is_none_or(|r| r.delete_marker);
        self.usage
            .admit(&self.index, bucket, bytes, u64::from(new_key))
            .await
    }
}

/// The length of an upload's object bytes: `Content-Length`, or for an `aws-chunked` body sent
/// with `Transfer-Encoding: chunked` (boto3 over HTTPS does so) `x-amz-decoded-content-length`,
/// which s3s enforces while it decodes the chunks.
fn upload_length(content_length: Option<i64>, headers: &http::HeaderMap) -> S3Result<u64> {
    let length = match content_length {
        Some(n) => n,
        None => headers
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| s3_error!(MissingContentLength))?,
    };
    u64::try_from(length)
        .map_err(|_| s3_error!(InvalidArgument, "Content-Length must not be negative"))
}

fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "Object key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long (more than {MAX_KEY_LEN} bytes)"
        ));
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for CairnS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_op(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.create_bucket_op(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.head_bucket_op(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.delete_bucket_op(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.get_bucket_location_op(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.put_object_op(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.get_object_op(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.head_object_op(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_object_op(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_objects_op(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.copy_object_op(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_op(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_op(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_multipart_upload_op(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.upload_part_op(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.upload_part_copy_op(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart_upload_op(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart_upload_op(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_parts_op(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_multipart_uploads_op(req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_bucket_versioning_op(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_bucket_versioning_op(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_object_versions_op(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_bucket_lifecycle_configuration_op(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_bucket_lifecycle_configuration_op(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_bucket_lifecycle_op(req).await
    }

    async fn put_bucket_replication(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        self.put_bucket_replication_op(req).await
    }

    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.get_bucket_replication_op(req).await
    }

    async fn delete_bucket_replication(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.delete_bucket_replication_op(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_object_tagging_op(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_object_tagging_op(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_object_tagging_op(req).await
    }
}

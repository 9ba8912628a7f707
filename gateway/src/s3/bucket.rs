//! Bucket operations.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::CairnS3;
use super::object_meta::timestamp;
use crate::index::IndexError;
use crate::index::records::BucketRecord;

/// Most buckets per ListBuckets page (S3: 10,000).
const MAX_BUCKETS: i32 = 10_000;

/// The page size of ListBuckets: every bucket unless `max-buckets` (1..=10000) asks for pages.
fn max_buckets(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(usize::MAX),
        Some(n) if (1..=MAX_BUCKETS).contains(&n) => Ok(n as usize),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "max-buckets must be an integer between 1 and {MAX_BUCKETS}"
        )),
    }
}

/// The bucket a ListBuckets continuation token resumes after (the token is the last name listed,
/// encoded like the continuation tokens of ListObjectsV2).
fn resume_after(token: Option<&str>) -> S3Result<Option<String>> {
    token
        .map(|t| {
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "The continuation token provided is incorrect"
                    )
                })
        })
        .transpose()
}

impl CairnS3 {
    /// Buckets the requester may see, and its access key id.
    async fn visible(&self, access_key: Option<&str>, bucket: &str) -> S3Result<bool> {
        let Some(ak) = access_key else {
            return Ok(false);
        };
        match self.keys.get(ak).await?.0 {
            Some(k) => Ok(k
                .buckets
                .as_ref()
                .is_none_or(|b| b.iter().any(|x| x == bucket))),
            None => Ok(true), // the root key
        }
    }

    pub(super) async fn list_buckets_op(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let ak = req.credentials.as_ref().map(|c| c.access_key.clone());
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = max_buckets(input.max_buckets)?;
        let after = resume_after(input.continuation_token.as_deref())?;
        // Every bucket lives in this gateway's region.
        let other_region = input
            .bucket_region
            .as_ref()
            .is_some_and(|r| *r != self.options.region);
        let all = if other_region {
            Vec::new()
        } else {
            self.index.list_buckets().await?
        };
        let mut buckets = Vec::new();
        let mut truncated = false;
        for b in all {
            if !b.name.starts_with(&prefix) || after.as_ref().is_some_and(|a| b.name <= *a) {
                continue;
            }
            if !self.visible(ak.as_deref(), &b.name).await? {
                continue;
            }
            if buckets.len() == max {
                truncated = true;
                break;
            }
            buckets.push(Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.options.region.clone()),
            });
        }
        let continuation_token = buckets
            .last()
            .and_then(|b| b.name.as_ref())
            .filter(|_| truncated)
            .map(|n| URL_SAFE_NO_PAD.encode(n));
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner()),
            prefix: input.prefix,
            continuation_token,
        }))
    }

    pub(super) async fn create_bucket_op(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let owner = req
            .credentials
            .as_ref()
            .map(|c| c.access_key.clone())
            .unwrap_or_default();
        let name = req.input.bucket;
        let rec = BucketRecord::new(&name, &owner, crate::index::now_ms());
        match self.index.create_bucket(rec).await {
            Ok(()) => {
                tracing::info!(bucket = %name, "bucket created");
                Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{name}")),
                }))
            }
            Err(IndexError::BucketExists { owner: o, .. }) if o == owner => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            )),
            Err(IndexError::BucketExists { .. }) => Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available."
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn head_bucket_op(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.options.region.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_op(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.index.delete_bucket(&req.input.bucket).await?;
        tracing::info!(bucket = %req.input.bucket, "bucket deleted");
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    pub(super) async fn get_bucket_location_op(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // us-east-1 is reported as an empty location constraint, as AWS does.
        let location = (self.options.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.options.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    /// `NoSuchBucket` unless the bucket exists.
    pub(super) async fn require_bucket(&self, bucket: &str) -> S3Result<BucketRecord> {
        self.index
            .get_bucket(bucket)
            .await?
            .ok_or_else(|| s3_error!(NoSuchBucket, "The specified bucket does not exist"))
    }
}

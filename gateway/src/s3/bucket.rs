//! Bucket operations.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::CairnS3;
use super::object_meta::timestamp;
use crate::index::IndexError;
use crate::index::records::BucketRecord;

impl CairnS3 {
    /// Buckets the requester may see, and its access key id.
    async fn visible(&self, access_key: Option<&str>, bucket: &str) -> S3Result<bool> {
        let Some(ak) = access_key else {
            return Ok(false);
        };
        match self.index.get_access_key(ak).await? {
            Some(k) => Ok(k.buckets.is_none_or(|b| b.iter().any(|x| x == bucket))),
            None => Ok(true), // the root key
        }
    }

    pub(super) async fn list_buckets_op(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let ak = req.credentials.as_ref().map(|c| c.access_key.clone());
        let mut buckets = Vec::new();
        for b in self.index.list_buckets().await? {
            if self.visible(ak.as_deref(), &b.name).await? {
                buckets.push(Bucket {
                    name: Some(b.name),
                    creation_date: Some(timestamp(b.created_ms)),
                    bucket_region: Some(self.options.region.clone()),
                });
            }
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner()),
            ..Default::default()
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
        let rec = BucketRecord {
            name: name.clone(),
            created_ms: crate::index::now_ms(),
            owner: owner.clone(),
        };
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

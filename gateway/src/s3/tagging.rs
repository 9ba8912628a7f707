//! Put/Get/DeleteObjectTagging. Tags belong to one version (the current one unless `versionId`
//! names another); changing them rewrites that version's index entry in place: no new version,
//! no data copied, `Last-Modified` and ETag unchanged.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::CairnS3;
use super::tag_set;
use super::versioning::{delete_marker_error, no_such_version, version_header, version_param};
use crate::index::Tagged;
use crate::index::records::ObjectTags;

impl CairnS3 {
    pub(super) async fn get_object_tagging_op(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let (rec, bucket, _) = self
            .readable(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set::to_xml(&rec.tags),
            version_id: version_header(&bucket, &rec),
        }))
    }

    pub(super) async fn put_object_tagging_op(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tag_set::from_xml(&input.tagging.tag_set)?;
        let version_id = self
            .set_tags(&input.bucket, &input.key, input.version_id.as_deref(), tags)
            .await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }

    pub(super) async fn delete_object_tagging_op(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let version_id = self
            .set_tags(
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                ObjectTags::new(),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }

    /// Replaces the tags of a version; returns its `x-amz-version-id`.
    async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: ObjectTags,
    ) -> S3Result<Option<String>> {
        let b = self.require_bucket(bucket).await?;
        let v = version_param(version)?;
        let named = v.is_some();
        match self.index.set_tags(bucket, key, v, tags).await? {
            Tagged::Done(rec) => Ok(version_header(&b, &rec)),
            Tagged::DeleteMarker(rec) => Err(delete_marker_error(&b, &rec, named)),
            Tagged::Missing if named => Err(no_such_version()),
            Tagged::Missing => Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        }
    }

    /// The `x-amz-tagging-count` of a version with tags.
    pub(super) fn tag_count(tags: &ObjectTags) -> Option<i32> {
        (!tags.is_empty()).then_some(tags.len() as i32)
    }
}

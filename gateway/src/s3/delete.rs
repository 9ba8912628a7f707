//! DeleteObject and DeleteObjects: without a version id, remove the object (unversioned bucket) or
//! make a delete marker current (versioned bucket); with one, delete that version permanently.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::conditional::write_condition;
use super::versioning::version_param;
use super::{CairnS3, check_key};
use crate::index::{Deleted, IndexError, Stamp, WriteCondition, version};

/// Most keys per DeleteObjects request (S3: 1000).
const MAX_BATCH: usize = 1000;

/// What one delete did, as the response reports it.
struct Outcome {
    /// The version deleted, or the delete marker created.
    version_id: Option<String>,
    /// A delete marker was created, or the deleted version was one.
    delete_marker: bool,
    /// A delete marker was created (DeleteObjects reports its id separately).
    marker_created: bool,
}

impl CairnS3 {
    async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        cond: WriteCondition,
    ) -> S3Result<Outcome> {
        check_key(key)?;
        if let Some(v) = version_param(version_id)? {
            let removed = self
                .index
                .delete_version(bucket, key, v, Stamp::now())
                .await?;
            return Ok(Outcome {
                version_id: version_id.map(str::to_string),
                delete_marker: removed.is_some_and(|r| r.delete_marker),
                marker_created: false,
            });
        }
        match self
            .index
            .delete_object(bucket, key, cond, Stamp::now())
            .await
        {
            // Deleting a missing key succeeds, as in S3.
            Ok(Deleted::Removed(_)) => Ok(Outcome {
                version_id: None,
                delete_marker: false,
                marker_created: false,
            }),
            Ok(Deleted::Marker { version_id }) => Ok(Outcome {
                version_id: Some(version::display(version_id.as_deref()).to_string()),
                delete_marker: true,
                marker_created: true,
            }),
            Err(IndexError::PreconditionFailed) => Err(s3_error!(PreconditionFailed)),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn delete_object_op(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let cond = write_condition(input.if_match.as_ref(), None)?;
        let out = self
            .delete_one(&input.bucket, &input.key, input.version_id.as_deref(), cond)
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: out.delete_marker.then_some(true),
            version_id: out.version_id,
            ..Default::default()
        }))
    }

    pub(super) async fn delete_objects_op(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let objects = input.delete.objects;
        if objects.len() > MAX_BATCH {
            return Err(s3_error!(
                MalformedXML,
                "The request may name at most {MAX_BATCH} keys"
            ));
        }
        self.require_bucket(&input.bucket).await?;
        let quiet = input.delete.quiet == Some(true);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in objects {
            let cond = match obj.e_tag.as_ref() {
                Some(e) => WriteCondition::IfEtag(e.value().to_string()),
                None => WriteCondition::None,
            };
            let outcome = self
                .delete_one(&input.bucket, &obj.key, obj.version_id.as_deref(), cond)
                .await;
            match outcome {
                Ok(out) => {
                    if !quiet {
                        let (version_id, marker_version_id) = if out.marker_created {
                            (None, out.version_id)
                        } else {
                            let marker = out.version_id.clone().filter(|_| out.delete_marker);
                            (out.version_id, marker)
                        };
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            version_id,
                            delete_marker: out.delete_marker.then_some(true),
                            delete_marker_version_id: marker_version_id,
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    key: Some(obj.key),
                    version_id: obj.version_id,
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}

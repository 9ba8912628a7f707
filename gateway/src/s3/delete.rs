//! DeleteObject and DeleteObjects.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::conditional::write_condition;
use super::{CairnS3, check_key};
use crate::index::{IndexError, WriteCondition};

/// Most keys per DeleteObjects request (S3: 1000).
const MAX_BATCH: usize = 1000;

impl CairnS3 {
    pub(super) async fn delete_object_op(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let cond = write_condition(input.if_match.as_ref(), None)?;
        match self
            .index
            .delete_object(&input.bucket, &input.key, cond)
            .await
        {
            // Deleting a missing key succeeds, as in S3.
            Ok(_) => Ok(S3Response::new(DeleteObjectOutput::default())),
            Err(IndexError::PreconditionFailed) => Err(s3_error!(PreconditionFailed)),
            Err(e) => Err(e.into()),
        }
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
            let key = obj.key;
            let outcome = match check_key(&key) {
                Err(e) => Err(e),
                Ok(()) => {
                    let cond = match obj.e_tag.as_ref() {
                        Some(e) => WriteCondition::IfEtag(e.value().to_string()),
                        None => WriteCondition::None,
                    };
                    self.index
                        .delete_object(&input.bucket, &key, cond)
                        .await
                        .map_err(|e| match e {
                            IndexError::PreconditionFailed => s3_error!(PreconditionFailed),
                            other => other.into(),
                        })
                }
            };
            match outcome {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    key: Some(key),
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    ..Default::default()
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

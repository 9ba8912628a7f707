//! Put/Get/DeleteBucketLifecycleConfiguration: the XML form (s3s types) converted to the stored
//! JSON form of `bucket_config::lifecycle` and back, validated there.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::object_meta::{http_date, millis, timestamp};
use super::{CairnS3, STANDARD};
use crate::bucket_config::lifecycle as lc;
use crate::bucket_config::{ConfigError, RuleStatus, Tag as CfgTag};
use crate::index::records::{BucketRecord, ObjectTags};
use crate::lifecycle::rules::{self, VersionFacts};

fn tag_in(t: Tag) -> Result<CfgTag, ConfigError> {
    match (t.key, t.value) {
        (Some(key), value) => Ok(CfgTag {
            key,
            value: value.unwrap_or_default(),
        }),
        (None, _) => Err(ConfigError::MalformedXml("A Tag needs a Key".into())),
    }
}

fn tag_out(t: &CfgTag) -> Tag {
    Tag {
        key: Some(t.key.clone()),
        value: Some(t.value.clone()),
    }
}

fn date_in(d: Option<Timestamp>) -> Option<String> {
    d.map(|t| lc::format_date(millis(&t)))
}

fn date_out(d: &Option<String>) -> Option<Timestamp> {
    d.as_deref()
        .and_then(|s| lc::parse_date(s).ok())
        .map(timestamp)
}

/// The stored form of an XML lifecycle configuration (not yet validated).
pub(super) fn from_dto(
    c: BucketLifecycleConfiguration,
) -> Result<lc::LifecycleConfiguration, ConfigError> {
    let mut rules = Vec::with_capacity(c.rules.len());
    for r in c.rules {
        let filter = match r.filter {
            None => None,
            Some(f) => Some(lc::LifecycleFilter {
                prefix: f.prefix,
                tag: f.tag.map(tag_in).transpose()?,
                object_size_greater_than: f.object_size_greater_than,
                object_size_less_than: f.object_size_less_than,
                and: match f.and {
                    None => None,
                    Some(a) => Some(lc::LifecycleAnd {
                        prefix: a.prefix,
                        tags: a
                            .tags
                            .unwrap_or_default()
                            .into_iter()
                            .map(tag_in)
                            .collect::<Result<_, _>>()?,
                        object_size_greater_than: a.object_size_greater_than,
                        object_size_less_than: a.object_size_less_than,
                    }),
                },
            }),
        };
        let class = |c: Option<TransitionStorageClass>| {
            c.map(|c| c.as_str().to_string()).ok_or_else(|| {
                ConfigError::MalformedXml("A transition needs a StorageClass".into())
            })
        };
        rules.push(lc::LifecycleRule {
            id: r.id,
            status: RuleStatus::parse(r.status.as_str())?,
            filter,
            prefix: r.prefix,
            transitions: r
                .transitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    Ok(lc::Transition {
                        days: t.days,
                        date: date_in(t.date),
                        storage_class: class(t.storage_class)?,
                    })
                })
                .collect::<Result<_, ConfigError>>()?,
            expiration: r.expiration.map(|e| lc::Expiration {
                days: e.days,
                date: date_in(e.date),
                expired_object_delete_marker: e.expired_object_delete_marker,
            }),
            noncurrent_version_transitions: r
                .noncurrent_version_transitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    Ok(lc::NoncurrentVersionTransition {
                        noncurrent_days: t.noncurrent_days,
                        newer_noncurrent_versions: t.newer_noncurrent_versions,
                        storage_class: class(t.storage_class)?,
                    })
                })
                .collect::<Result<_, ConfigError>>()?,
            noncurrent_version_expiration: r.noncurrent_version_expiration.map(|e| {
                lc::NoncurrentVersionExpiration {
                    noncurrent_days: e.noncurrent_days,
                    newer_noncurrent_versions: e.newer_noncurrent_versions,
                }
            }),
            abort_incomplete_multipart_upload: r.abort_incomplete_multipart_upload.map(|a| {
                lc::AbortIncompleteMultipartUpload {
                    days_after_initiation: a.days_after_initiation,
                }
            }),
        });
    }
    Ok(lc::LifecycleConfiguration { rules })
}

/// The XML form of a stored lifecycle configuration.
pub(super) fn to_dto(c: &lc::LifecycleConfiguration) -> Vec<LifecycleRule> {
    c.rules
        .iter()
        .map(|r| LifecycleRule {
            id: r.id.clone(),
            status: ExpirationStatus::from(r.status.as_str().to_string()),
            filter: r.filter.as_ref().map(|f| LifecycleRuleFilter {
                prefix: f.prefix.clone(),
                tag: f.tag.as_ref().map(tag_out),
                object_size_greater_than: f.object_size_greater_than,
                object_size_less_than: f.object_size_less_than,
                and: f.and.as_ref().map(|a| LifecycleRuleAndOperator {
                    prefix: a.prefix.clone(),
                    tags: (!a.tags.is_empty()).then(|| a.tags.iter().map(tag_out).collect()),
                    object_size_greater_than: a.object_size_greater_than,
                    object_size_less_than: a.object_size_less_than,
                }),
            }),
            prefix: r.prefix.clone(),
            transitions: (!r.transitions.is_empty()).then(|| {
                r.transitions
                    .iter()
                    .map(|t| Transition {
                        days: t.days,
                        date: date_out(&t.date),
                        storage_class: Some(TransitionStorageClass::from(t.storage_class.clone())),
                    })
                    .collect()
            }),
            expiration: r.expiration.as_ref().map(|e| LifecycleExpiration {
                days: e.days,
                date: date_out(&e.date),
                expired_object_delete_marker: e.expired_object_delete_marker,
            }),
            noncurrent_version_transitions: (!r.noncurrent_version_transitions.is_empty()).then(
                || {
                    r.noncurrent_version_transitions
                        .iter()
                        .map(|t| NoncurrentVersionTransition {
                            noncurrent_days: t.noncurrent_days,
                            newer_noncurrent_versions: t.newer_noncurrent_versions,
                            storage_class: Some(TransitionStorageClass::from(
                                t.storage_class.clone(),
                            )),
                        })
                        .collect()
                },
            ),
            noncurrent_version_expiration: r.noncurrent_version_expiration.as_ref().map(|e| {
                NoncurrentVersionExpiration {
                    noncurrent_days: e.noncurrent_days,
                    newer_noncurrent_versions: e.newer_noncurrent_versions,
                }
            }),
            abort_incomplete_multipart_upload: r.abort_incomplete_multipart_upload.as_ref().map(
                |a| AbortIncompleteMultipartUpload {
                    days_after_initiation: a.days_after_initiation,
                },
            ),
        })
        .collect()
}

impl CairnS3 {
    /// `x-amz-expiration` for the current version of `key` (`size` bytes, written at
    /// `last_modified_ms`, with `tags`): when the bucket's lifecycle rules expire it, and which
    /// rule.
    pub(super) async fn expiration_header(
        &self,
        bucket: &BucketRecord,
        key: &str,
        size: u64,
        last_modified_ms: i64,
        tags: &ObjectTags,
    ) -> Option<String> {
        if !bucket.lifecycle {
            return None;
        }
        let cfg = match self.index.get_lifecycle(&bucket.name).await {
            Ok(c) => c?,
            Err(e) => {
                tracing::warn!(bucket = %bucket.name, error = %e, "lifecycle configuration unreadable");
                return None;
            }
        };
        let facts = VersionFacts {
            key,
            size,
            tags,
            storage_class: "",
            last_modified_ms,
            delete_marker: false,
            transitionable: false,
        };
        let (due, rule) = rules::expiration(&cfg, &facts, self.lifecycle_clock)?;
        let date = http_date(&timestamp(due))?;
        Some(format!("expiry-date=\"{date}\", rule-id=\"{rule}\""))
    }

    /// Validates a lifecycle configuration against this fleet's storage classes.
    pub fn validate_lifecycle(
        &self,
        c: lc::LifecycleConfiguration,
    ) -> Result<lc::LifecycleConfiguration, ConfigError> {
        c.validate(&|class| self.storage_class_exists(class), STANDARD)
    }

    pub(super) async fn put_bucket_lifecycle_configuration_op(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let input = req.input;
        let conf = input.lifecycle_configuration.ok_or_else(|| {
            s3_error!(
                MalformedXML,
                "The request must carry a lifecycle configuration"
            )
        })?;
        self.require_bucket(&input.bucket).await?;
        let conf = self.validate_lifecycle(from_dto(conf)?)?;
        self.index.put_lifecycle(&input.bucket, &conf).await?;
        tracing::info!(bucket = %input.bucket, rules = conf.rules.len(), "lifecycle configuration set");
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_lifecycle_configuration_op(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let conf = self
            .index
            .get_lifecycle(&req.input.bucket)
            .await?
            .ok_or_else(|| {
                s3_error!(
                    NoSuchLifecycleConfiguration,
                    "The lifecycle configuration does not exist"
                )
            })?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(to_dto(&conf)),
            transition_default_minimum_object_size: None,
        }))
    }

    pub(super) async fn delete_bucket_lifecycle_op(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.index.delete_lifecycle(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput {}))
    }
}

//! Put/Get/DeleteBucketReplication: the configuration is validated and stored (replicating the
//! writes is a later piece of work). The XML form has no place for Cairn's destination endpoint
//! and credentials; those come through the admin API.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::CairnS3;
use super::errors::custom;
use crate::bucket_config::replication as rc;
use crate::bucket_config::{ConfigError, RuleStatus, Tag as CfgTag};

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

fn from_dto(c: ReplicationConfiguration) -> Result<rc::ReplicationConfiguration, ConfigError> {
    let mut rules = Vec::with_capacity(c.rules.len());
    for r in c.rules {
        let filter = match r.filter {
            None => None,
            Some(f) => Some(rc::ReplicationFilter {
                prefix: f.prefix,
                tag: f.tag.map(tag_in).transpose()?,
                and: match f.and {
                    None => None,
                    Some(a) => Some(rc::ReplicationAnd {
                        prefix: a.prefix,
                        tags: a
                            .tags
                            .unwrap_or_default()
                            .into_iter()
                            .map(tag_in)
                            .collect::<Result<_, _>>()?,
                    }),
                },
            }),
        };
        rules.push(rc::ReplicationRule {
            id: r.id,
            priority: r.priority,
            status: RuleStatus::parse(r.status.as_str())?,
            filter,
            prefix: r.prefix,
            delete_marker_replication: match r.delete_marker_replication {
                None => None,
                Some(d) => Some(rc::DeleteMarkerReplication {
                    status: RuleStatus::parse(
                        d.status.as_ref().map_or("Disabled", |s| s.as_str()),
                    )?,
                }),
            },
            destination: rc::Destination {
                bucket: r.destination.bucket,
                storage_class: r.destination.storage_class.map(|c| c.as_str().to_string()),
                endpoint: None,
                region: None,
                credentials: None,
            },
        });
    }
    Ok(rc::ReplicationConfiguration {
        role: c.role,
        rules,
    })
}

fn to_dto(c: &rc::ReplicationConfiguration) -> ReplicationConfiguration {
    ReplicationConfiguration {
        role: c.role.clone(),
        rules: c
            .rules
            .iter()
            .map(|r| ReplicationRule {
                id: r.id.clone(),
                priority: r.priority,
                status: ReplicationRuleStatus::from(r.status.as_str().to_string()),
                filter: r.filter.as_ref().map(|f| ReplicationRuleFilter {
                    prefix: f.prefix.clone(),
                    tag: f.tag.as_ref().map(tag_out),
                    and: f.and.as_ref().map(|a| ReplicationRuleAndOperator {
                        prefix: a.prefix.clone(),
                        tags: (!a.tags.is_empty()).then(|| a.tags.iter().map(tag_out).collect()),
                    }),
                }),
                prefix: r.prefix.clone(),
                delete_marker_replication: r.delete_marker_replication.as_ref().map(|d| {
                    DeleteMarkerReplication {
                        status: Some(DeleteMarkerReplicationStatus::from(
                            d.status.as_str().to_string(),
                        )),
                    }
                }),
                destination: Destination {
                    bucket: r.destination.bucket.clone(),
                    storage_class: r.destination.storage_class.clone().map(StorageClass::from),
                    ..Default::default()
                },
                existing_object_replication: None,
                source_selection_criteria: None,
            })
            .collect(),
    }
}

impl CairnS3 {
    pub(super) async fn put_bucket_replication_op(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        let input = req.input;
        let conf = from_dto(input.replication_configuration)?.validate()?;
        self.index.put_replication(&input.bucket, &conf).await?;
        tracing::info!(bucket = %input.bucket, rules = conf.rules.len(), "replication configuration set");
        Ok(S3Response::new(PutBucketReplicationOutput {}))
    }

    pub(super) async fn get_bucket_replication_op(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        let conf = self
            .index
            .get_replication(&req.input.bucket)
            .await?
            .ok_or_else(|| {
                custom(
                    "ReplicationConfigurationNotFoundError",
                    404,
                    "The replication configuration was not found",
                )
            })?;
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(to_dto(&conf)),
        }))
    }

    pub(super) async fn delete_bucket_replication_op(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.index.delete_replication(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketReplicationOutput {}))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_form_round_trips_through_the_stored_form() {
        let stored: super::rc::ReplicationConfiguration =
            serde_json::from_value(serde_json::json!({
                "Role": "arn:aws:iam::1:role/r",
                "Rules": [{"ID": "r1", "Priority": 2, "Status": "Enabled",
                    "Filter": {"And": {"Prefix": "p/", "Tags": [{"Key": "a", "Value": "b"}]}},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {"Bucket": "arn:aws:s3:::dst", "StorageClass": "STANDARD_IA"}}]
            }))
            .unwrap();
        let back = super::from_dto(super::to_dto(&stored)).unwrap();
        assert_eq!(back, stored);
    }
}

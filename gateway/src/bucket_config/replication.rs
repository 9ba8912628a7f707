//! A bucket's replication configuration: which writes go to which destination bucket. Stored
//! only (executing it is a later piece of work). Besides S3's fields, a destination may carry
//! Cairn's `Endpoint`, `Region` and `Credentials` (S3 names an IAM role instead); those exist only
//! in the JSON form of the admin API, which is what the operator pushes.

use serde::{Deserialize, Serialize};

use super::{ConfigError, RuleStatus, Tag, check_ids, check_rule_count, check_tags};

/// The replication configuration of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationConfiguration {
    /// The IAM role S3 would assume (kept, not used).
    #[serde(default)]
    pub role: String,
    /// The rules (1..=1000).
    pub rules: Vec<ReplicationRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationRule {
    /// Unique id (generated when absent).
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When rules overlap, the highest priority wins; unique among rules with a `Filter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whether the rule applies.
    pub status: RuleStatus,
    /// Which writes (exclusive with `Prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ReplicationFilter>,
    /// The older form of a prefix filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Whether delete markers are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_marker_replication: Option<DeleteMarkerReplication>,
    /// Where the writes go.
    pub destination: Destination,
}

/// A replication rule's filter: at most one of its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationFilter {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// One tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    /// A prefix and tags together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<ReplicationAnd>,
}

/// A prefix and tags that must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicationAnd {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// Whether delete markers are replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteMarkerReplication {
    /// `Enabled` or `Disabled`.
    pub status: RuleStatus,
}

/// The destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Destination {
    /// `arn:aws:s3:::BUCKET`.
    pub bucket: String,
    /// Storage class of the replicas; the source's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Cairn: the destination's S3 endpoint (absent: this fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Cairn: the destination's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Cairn: the key pair used at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<DestinationCredentials>,
}

/// A key pair for the destination. Its `Debug` hides the secret; in the index the secret is
/// sealed ([`crate::seal`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for DestinationCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &REDACTED)
            .finish()
    }
}

/// What the secret key is shown as when a configuration is read back.
pub const REDACTED: &str = "REDACTED";

/// The bucket name of an `arn:aws:s3:::NAME` destination.
pub fn destination_bucket(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:s3:::")
        .filter(|b| s3s::path::check_bucket_name(b))
}

impl ReplicationConfiguration {
    /// Checks the document as S3 does (the bucket must also have versioning enabled, which the
    /// caller checks) and fills in missing rule ids.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        check_rule_count(self.rules.len())?;
        check_ids(self.rules.iter_mut().map(|r| &mut r.id))?;
        let mut priorities = std::collections::HashSet::new();
        for r in &self.rules {
            let tags = match (&r.filter, &r.prefix) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::MalformedXml(
                        "A rule may have a Filter or a Prefix, not both".into(),
                    ));
                }
                (Some(f), None) => {
                    let set = [f.prefix.is_some(), f.tag.is_some(), f.and.is_some()]
                        .into_iter()
                        .filter(|&b| b)
                        .count();
                    if set > 1 {
                        return Err(ConfigError::MalformedXml(
                            "A Filter may hold one condition; combine several with And".into(),
                        ));
                    }
                    let tags: Vec<Tag> = match &f.and {
                        Some(a) => a.tags.clone(),
                        None => f.tag.iter().cloned().collect(),
                    };
                    check_tags(&tags)?;
                    let p = r.priority.ok_or_else(|| {
                        ConfigError::InvalidRequest(
                            "Priority must be specified for a rule with a Filter".into(),
                        )
                    })?;
                    if !priorities.insert(p) {
                        return Err(ConfigError::InvalidRequest(
                            "Found duplicate priority: the priority of each rule must be unique"
                                .into(),
                        ));
                    }
                    tags
                }
                (None, _) => Vec::new(),
            };
            if r.priority.is_some_and(|p| p < 0) {
                return Err(ConfigError::InvalidArgument(
                    "Priority must not be negative".into(),
                ));
            }
            let markers = r
                .delete_marker_replication
                .as_ref()
                .is_some_and(|d| d.status == RuleStatus::Enabled);
            if markers && !tags.is_empty() {
                return Err(ConfigError::InvalidRequest(
                    "Delete marker replication is not supported if any Tag filter is specified"
                        .into(),
                ));
            }
            if destination_bucket(&r.destination.bucket).is_none() {
                return Err(ConfigError::InvalidArgument(
                    "Invalid bucket ARN: the destination must be arn:aws:s3:::BUCKET".into(),
                ));
            }
            if r.destination
                .endpoint
                .as_deref()
                .is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://")))
            {
                return Err(ConfigError::InvalidArgument(
                    "The destination Endpoint must be an http:// or https:// URL".into(),
                ));
            }
        }
        Ok(self)
    }

    /// Applies `f` to every destination secret (to seal or open them), with the access key id
    /// each belongs to.
    pub fn map_secrets<E>(
        mut self,
        mut f: impl FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<Self, E> {
        for r in &mut self.rules {
            if let Some(c) = &mut r.destination.credentials {
                c.secret_access_key = f(&c.access_key_id, &c.secret_access_key)?;
            }
        }
        Ok(self)
    }

    /// The configuration with every destination secret replaced by [`REDACTED`].
    pub fn redacted(mut self) -> Self {
        for r in &mut self.rules {
            if let Some(c) = &mut r.destination.credentials {
                c.secret_access_key = REDACTED.to_string();
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_document_is_accepted_and_secrets_are_redacted_on_read() {
        let doc = serde_json::json!({"Role": "", "Rules": [{
            "ID": "app/mirror", "Priority": 5, "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": "arn:aws:s3:::backup", "Endpoint": "https://s3.example.com", "Region": "eu-west-1",
                "Credentials": {"AccessKeyId": "AK", "SecretAccessKey": "SK"}}
        }]});
        let c: ReplicationConfiguration = serde_json::from_value(doc).unwrap();
        let c = c.validate().unwrap();
        let shown = c.clone().redacted();
        let creds = shown.rules[0].destination.credentials.as_ref().unwrap();
        assert_eq!(creds.secret_access_key, REDACTED);
        assert_eq!(
            c.rules[0]
                .destination
                .credentials
                .as_ref()
                .unwrap()
                .secret_access_key,
            "SK"
        );
    }

    #[test]
    fn invalid_rules_get_the_s3_error() {
        let dest = serde_json::json!({"Bucket": "arn:aws:s3:::backup"});
        let cases = [
            (serde_json::json!({"Rules": []}), "MalformedXML"),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a"}, "Destination": dest}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Priority": 1, "Status": "Enabled", "Filter": {}, "Destination": dest},
                                            {"Priority": 1, "Status": "Enabled", "Filter": {}, "Destination": dest}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Prefix": "", "Destination": {"Bucket": "backup"}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Priority": 1, "Status": "Enabled", "Filter": {"Tag": {"Key": "a", "Value": "b"}},
                    "DeleteMarkerReplication": {"Status": "Enabled"}, "Destination": dest}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a"}, "Prefix": "a", "Destination": dest}]}),
                "MalformedXML",
            ),
        ];
        for (doc, code) in cases {
            let c: ReplicationConfiguration = serde_json::from_value(doc.clone()).unwrap();
            let err = c.validate().expect_err(&doc.to_string());
            assert_eq!(err.code(), code, "{doc}: {err}");
        }
    }
}

//! A bucket's lifecycle configuration: rules that transition objects to other storage classes and
//! expire them, their noncurrent versions, expired delete markers and incomplete multipart
//! uploads. [`LifecycleConfiguration::validate`] checks a document as S3 does and normalises it
//! (ids filled in, dates in one form).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ConfigError, RuleStatus, Tag, check_ids, check_rule_count, check_tags};

/// The lifecycle configuration of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleConfiguration {
    /// The rules (1..=1000).
    pub rules: Vec<LifecycleRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleRule {
    /// Unique id (generated when absent).
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether the rule applies.
    pub status: RuleStatus,
    /// Which objects; every object when absent (with no `Prefix` either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<LifecycleFilter>,
    /// The older form of a prefix filter (exclusive with `Filter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Transitions of current versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Expiration of current versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Transitions of noncurrent versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noncurrent_version_transitions: Vec<NoncurrentVersionTransition>,
    /// Expiration of noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    /// Abort of incomplete multipart uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

/// A rule's filter: at most one of its fields (combine several with `And`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleFilter {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// One tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    /// Only objects larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_greater_than: Option<i64>,
    /// Only objects smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_less_than: Option<i64>,
    /// All of several conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<LifecycleAnd>,
}

/// Conditions that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleAnd {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Tags that must all be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Only objects larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_greater_than: Option<i64>,
    /// Only objects smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_less_than: Option<i64>,
}

/// Move current versions to `storage_class` after `days` days or on `date`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Transition {
    /// Days after the object was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// A date (midnight UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The target class.
    pub storage_class: String,
}

/// Expire current versions, or remove delete markers that have nothing left behind them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Expiration {
    /// Days after the object was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// A date (midnight UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Remove a delete marker that is the only version of its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
}

/// Move noncurrent versions to `storage_class`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoncurrentVersionTransition {
    /// Days after the version became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<i32>,
    /// Keep this many newer noncurrent versions where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<i32>,
    /// The target class.
    pub storage_class: String,
}

/// Delete noncurrent versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoncurrentVersionExpiration {
    /// Days after the version became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<i32>,
    /// Keep this many newer noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<i32>,
}

/// Abort multipart uploads still incomplete this long after they began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AbortIncompleteMultipartUpload {
    /// Days after initiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_after_initiation: Option<i32>,
}

/// The objects a rule applies to, with every form of filter reduced to one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectFilter {
    /// Key prefix (empty: every key).
    pub prefix: String,
    /// Tags that must all be present.
    pub tags: Vec<Tag>,
    /// Size must be greater than this.
    pub size_greater_than: Option<u64>,
    /// Size must be less than this.
    pub size_less_than: Option<u64>,
}

/// Most newer noncurrent versions a rule may keep (S3: 100).
pub const MAX_NEWER_NONCURRENT: i32 = 100;

/// Unix milliseconds of a lifecycle date, which must be midnight UTC.
pub fn parse_date(s: &str) -> Result<i64, ConfigError> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| ConfigError::InvalidArgument(format!("Invalid 'Date' {s:?}")))?;
    let utc = t.to_offset(time::UtcOffset::UTC);
    if utc.time() != time::Time::MIDNIGHT {
        return Err(ConfigError::InvalidArgument(
            "'Date' must be at midnight GMT".into(),
        ));
    }
    Ok((utc.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A lifecycle date in its stored form (`YYYY-MM-DDT00:00:00Z`).
pub fn format_date(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339).unwrap_or_default()
}

fn size(v: Option<i64>, what: &str) -> Result<Option<u64>, ConfigError> {
    v.map(|n| {
        u64::try_from(n)
            .map_err(|_| ConfigError::InvalidArgument(format!("'{what}' must not be negative")))
    })
    .transpose()
}

impl LifecycleRule {
    /// The rule's filter in one form (checks that at most one form is used).
    pub fn object_filter(&self) -> Result<ObjectFilter, ConfigError> {
        let f = match (&self.filter, &self.prefix) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::MalformedXml(
                    "A rule may have a Filter or a Prefix, not both".into(),
                ));
            }
            (None, Some(p)) => {
                return Ok(ObjectFilter {
                    prefix: p.clone(),
                    ..Default::default()
                });
            }
            (None, None) => return Ok(ObjectFilter::default()),
            (Some(f), None) => f,
        };
        let set = [
            f.prefix.is_some(),
            f.tag.is_some(),
            f.object_size_greater_than.is_some(),
            f.object_size_less_than.is_some(),
            f.and.is_some(),
        ]
        .into_iter()
        .filter(|&b| b)
        .count();
        if set > 1 {
            return Err(ConfigError::MalformedXml(
                "A Filter may hold one condition; combine several with And".into(),
            ));
        }
        let out = match &f.and {
            Some(a) => ObjectFilter {
                prefix: a.prefix.clone().unwrap_or_default(),
                tags: a.tags.clone(),
                size_greater_than: size(a.object_size_greater_than, "ObjectSizeGreaterThan")?,
                size_less_than: size(a.object_size_less_than, "ObjectSizeLessThan")?,
            },
            None => ObjectFilter {
                prefix: f.prefix.clone().unwrap_or_default(),
                tags: f.tag.iter().cloned().collect(),
                size_greater_than: size(f.object_size_greater_than, "ObjectSizeGreaterThan")?,
                size_less_than: size(f.object_size_less_than, "ObjectSizeLessThan")?,
            },
        };
        check_tags(&out.tags)?;
        if let (Some(gt), Some(lt)) = (out.size_greater_than, out.size_less_than)
            && lt <= gt
        {
            return Err(ConfigError::InvalidArgument(
                "ObjectSizeLessThan must be greater than ObjectSizeGreaterThan".into(),
            ));
        }
        Ok(out)
    }

    fn has_action(&self) -> bool {
        !self.transitions.is_empty()
            || self.expiration.is_some()
            || !self.noncurrent_version_transitions.is_empty()
            || self.noncurrent_version_expiration.is_some()
            || self.abort_incomplete_multipart_upload.is_some()
    }

    /// Validates one rule against the storage classes of the fleet (`known`; `default_class`
    /// cannot be a transition target) and normalises its dates.
    fn validate(
        &mut self,
        known: &dyn Fn(&str) -> bool,
        default_class: &str,
    ) -> Result<(), ConfigError> {
        let filter = self.object_filter()?;
        if !self.has_action() {
            return Err(ConfigError::InvalidRequest(
                "At least one action needs to be specified in a rule".into(),
            ));
        }
        let check_class = |c: &str| {
            if c == default_class {
                Err(ConfigError::InvalidArgument(format!(
                    "Objects cannot be transitioned to the {c} storage class"
                )))
            } else if !known(c) {
                Err(ConfigError::InvalidStorageClass(format!(
                    "The storage class {c} is not configured in this fleet"
                )))
            } else {
                Ok(())
            }
        };
        // Transitions of current versions: all by days or all by date, distinct classes.
        let (mut by_days, mut by_date) = (false, false);
        let mut classes = std::collections::HashSet::new();
        let mut last_transition_days = None;
        let mut last_transition_date = None;
        for t in &mut self.transitions {
            match (t.days, &t.date) {
                (Some(d), None) => {
                    if d < 0 {
                        return Err(ConfigError::InvalidArgument(
                            "'Days' in Transition action must be nonnegative".into(),
                        ));
                    }
                    by_days = true;
                    last_transition_days = last_transition_days.max(Some(d));
                }
                (None, Some(date)) => {
                    let ms = parse_date(date)?;
                    t.date = Some(format_date(ms));
                    by_date = true;
                    last_transition_date = last_transition_date.max(Some(ms));
                }
                _ => {
                    return Err(ConfigError::MalformedXml(
                        "A Transition needs exactly one of Days or Date".into(),
                    ));
                }
            }
            check_class(&t.storage_class)?;
            if !classes.insert(t.storage_class.clone()) {
                return Err(ConfigError::InvalidRequest(
                    "'StorageClass' must be different for 'Transition' actions in same 'Rule'"
                        .into(),
                ));
            }
        }
        if by_days && by_date {
            return Err(ConfigError::InvalidRequest(
                "Found mixed 'Date' and 'Days' based Transition actions in lifecycle rule".into(),
            ));
        }
        if let Some(e) = &mut self.expiration {
            let set = [
                e.days.is_some(),
                e.date.is_some(),
                e.expired_object_delete_marker.is_some(),
            ]
            .into_iter()
            .filter(|&b| b)
            .count();
            if set != 1 {
                return Err(ConfigError::MalformedXml(
                    "An Expiration needs exactly one of Days, Date or ExpiredObjectDeleteMarker"
                        .into(),
                ));
            }
            if let Some(d) = e.days {
                if d <= 0 {
                    return Err(ConfigError::InvalidArgument(
                        "'Days' for Expiration action must be a positive integer".into(),
                    ));
                }
                if last_transition_days.is_some_and(|t| d <= t) {
                    return Err(ConfigError::InvalidArgument(
                        "'Days' in the Expiration action must be greater than 'Days' in the Transition action".into(),
                    ));
                }
            }
            if let Some(date) = &e.date {
                let ms = parse_date(date)?;
                if last_transition_date.is_some_and(|t| ms <= t) {
                    return Err(ConfigError::InvalidArgument(
                        "'Date' in the Expiration action must be later than 'Date' in the Transition action".into(),
                    ));
                }
                e.date = Some(format_date(ms));
            }
            if e.expired_object_delete_marker.is_some() && !filter.tags.is_empty() {
                return Err(ConfigError::InvalidRequest(
                    "ExpiredObjectDeleteMarker cannot be specified with tags".into(),
                ));
            }
        }
        let newer = |n: Option<i32>| {
            if n.is_some_and(|n| !(1..=MAX_NEWER_NONCURRENT).contains(&n)) {
                Err(ConfigError::InvalidArgument(format!(
                    "'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_NONCURRENT}"
                )))
            } else {
                Ok(())
            }
        };
        let mut classes = std::collections::HashSet::new();
        let mut last_noncurrent_transition = None;
        for t in &self.noncurrent_version_transitions {
            let d = t.noncurrent_days.ok_or_else(|| {
                ConfigError::MalformedXml("NoncurrentVersionTransition needs NoncurrentDays".into())
            })?;
            if d < 0 {
                return Err(ConfigError::InvalidArgument(
                    "'NoncurrentDays' in NoncurrentVersionTransition action must be nonnegative"
                        .into(),
                ));
            }
            newer(t.newer_noncurrent_versions)?;
            check_class(&t.storage_class)?;
            if !classes.insert(t.storage_class.clone()) {
                return Err(ConfigError::InvalidRequest(
                    "'StorageClass' must be different for 'NoncurrentVersionTransition' actions in same 'Rule'".into(),
                ));
            }
            last_noncurrent_transition = last_noncurrent_transition.max(Some(d));
        }
        if let Some(e) = &self.noncurrent_version_expiration {
            let d = e.noncurrent_days.ok_or_else(|| {
                ConfigError::MalformedXml("NoncurrentVersionExpiration needs NoncurrentDays".into())
            })?;
            if d <= 0 {
                return Err(ConfigError::InvalidArgument(
                    "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer".into(),
                ));
            }
            newer(e.newer_noncurrent_versions)?;
            if last_noncurrent_transition.is_some_and(|t| d <= t) {
                return Err(ConfigError::InvalidArgument(
                    "'NoncurrentDays' in the NoncurrentVersionExpiration action must be greater than 'NoncurrentDays' in the NoncurrentVersionTransition action".into(),
                ));
            }
        }
        if let Some(a) = &self.abort_incomplete_multipart_upload {
            let d = a.days_after_initiation.ok_or_else(|| {
                ConfigError::MalformedXml(
                    "AbortIncompleteMultipartUpload needs DaysAfterInitiation".into(),
                )
            })?;
            if d <= 0 {
                return Err(ConfigError::InvalidArgument(
                    "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer".into(),
                ));
            }
            if !filter.tags.is_empty() {
                return Err(ConfigError::InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags.".into(),
                ));
            }
            if filter.size_greater_than.is_some() || filter.size_less_than.is_some() {
                return Err(ConfigError::InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with an object size filter."
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

impl LifecycleConfiguration {
    /// Checks the document as S3 does and normalises it: rule ids filled in (`rule-N`), dates as
    /// `YYYY-MM-DDT00:00:00Z`. `known` says which storage classes the fleet has;
    /// `default_class` (STANDARD) cannot be a transition target.
    pub fn validate(
        mut self,
        known: &dyn Fn(&str) -> bool,
        default_class: &str,
    ) -> Result<Self, ConfigError> {
        check_rule_count(self.rules.len())?;
        check_ids(self.rules.iter_mut().map(|r| &mut r.id))?;
        for r in &mut self.rules {
            r.validate(known, default_class)?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(c: &str) -> bool {
        matches!(c, "STANDARD" | "STANDARD_IA" | "GLACIER_IR")
    }

    fn parse(v: serde_json::Value) -> Result<LifecycleConfiguration, ConfigError> {
        serde_json::from_value::<LifecycleConfiguration>(v)
            .expect("well-formed JSON")
            .validate(&known, "STANDARD")
    }

    #[test]
    fn the_operators_document_is_accepted_and_normalised() {
        let doc = serde_json::json!({"Rules": [{
            "ID": "archive", "Status": "Enabled",
            "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "tier", "Value": "cold"}], "ObjectSizeGreaterThan": 1024}},
            "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}, {"Days": 90, "StorageClass": "GLACIER_IR"}],
            "Expiration": {"Days": 365},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
        }, {
            "Status": "Disabled", "Filter": {"Prefix": "tmp/"},
            "Expiration": {"Date": "2030-01-01T00:00:00+00:00"},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}
        }]});
        let c = parse(doc).unwrap();
        assert_eq!(c.rules[1].id.as_deref(), Some("rule-1"));
        assert_eq!(
            c.rules[1].expiration.as_ref().unwrap().date.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        let f = c.rules[0].object_filter().unwrap();
        assert_eq!(f.prefix, "logs/");
        assert_eq!(f.size_greater_than, Some(1024));
        // The stored form round-trips.
        let again: LifecycleConfiguration =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        // No filter at all: every object.
        let all =
            parse(serde_json::json!({"Rules": [{"Status": "Enabled", "Expiration": {"Days": 1}}]}))
                .unwrap();
        assert_eq!(
            all.rules[0].object_filter().unwrap(),
            ObjectFilter::default()
        );
    }

    #[test]
    fn invalid_rules_get_the_s3_error() {
        let cases = [
            (serde_json::json!({"Rules": []}), "MalformedXML"),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a"}}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a"}, "Prefix": "b", "Expiration": {"Days": 1}}]}),
                "MalformedXML",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a", "ObjectSizeLessThan": 5}, "Expiration": {"Days": 1}}]}),
                "MalformedXML",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Expiration": {"Days": 0}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Expiration": {"Days": 3, "ExpiredObjectDeleteMarker": true}}]}),
                "MalformedXML",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Expiration": {"Date": "2030-01-01T10:00:00Z"}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"ID": "x", "Status": "Enabled", "Expiration": {"Days": 1}}, {"ID": "x", "Status": "Enabled", "Expiration": {"Days": 2}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"ID": "x".repeat(256), "Status": "Enabled", "Expiration": {"Days": 1}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 1, "StorageClass": "DEEP_ARCHIVE"}]}]}),
                "InvalidStorageClass",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 1, "StorageClass": "STANDARD"}]}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 1, "StorageClass": "STANDARD_IA"}, {"Date": "2030-01-01T00:00:00Z", "StorageClass": "GLACIER_IR"}]}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 10, "StorageClass": "STANDARD_IA"}], "Expiration": {"Days": 5}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 101}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "NoncurrentVersionExpiration": {}}]}),
                "MalformedXML",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}),
                "InvalidRequest",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"And": {"Tags": [{"Key": "k", "Value": "v"}, {"Key": "k", "Value": "w"}]}}, "Expiration": {"Days": 1}}]}),
                "InvalidArgument",
            ),
            (
                serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": {"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 10}}, "Expiration": {"Days": 1}}]}),
                "InvalidArgument",
            ),
        ];
        for (doc, code) in cases {
            let err = parse(doc.clone()).expect_err(&doc.to_string());
            assert_eq!(err.code(), code, "{doc}: {err}");
        }
    }
}

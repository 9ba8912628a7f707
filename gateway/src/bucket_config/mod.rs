//! Bucket configuration documents that the index stores per bucket: lifecycle rules and replication
//! rules. Their stored (and admin API) form is S3's JSON form — the shape of `aws s3api
//! put-bucket-lifecycle-configuration --lifecycle-configuration file://x.json`, which is also what
//! the operator pushes — and they are validated as S3 validates the XML form, with the S3 error
//! code carried in [`ConfigError`]. Pure code: no I/O.

pub mod lifecycle;
pub mod replication;

use serde::{Deserialize, Serialize};

/// Why a configuration document was refused; each variant is the S3 error code AWS answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `MalformedXML`: the document's shape is wrong (missing or conflicting elements).
    #[error("{0}")]
    MalformedXml(String),
    /// `InvalidArgument`: a value is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// `InvalidRequest`: elements that cannot go together, or a bucket state that forbids it.
    #[error("{0}")]
    InvalidRequest(String),
    /// `InvalidStorageClass`: a storage class this fleet does not have.
    #[error("{0}")]
    InvalidStorageClass(String),
}

impl ConfigError {
    /// The S3 error code.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::MalformedXml(_) => "MalformedXML",
            ConfigError::InvalidArgument(_) => "InvalidArgument",
            ConfigError::InvalidRequest(_) => "InvalidRequest",
            ConfigError::InvalidStorageClass(_) => "InvalidStorageClass",
        }
    }
}

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleStatus {
    /// The rule applies.
    Enabled,
    /// The rule is kept but not applied.
    Disabled,
}

impl RuleStatus {
    /// Parses S3's status strings; anything else is `MalformedXML`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "Enabled" => Ok(RuleStatus::Enabled),
            "Disabled" => Ok(RuleStatus::Disabled),
            other => Err(ConfigError::MalformedXml(format!(
                "Status must be Enabled or Disabled, not {other:?}"
            ))),
        }
    }

    /// S3's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Enabled => "Enabled",
            RuleStatus::Disabled => "Disabled",
        }
    }
}

/// An object tag in a filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// Most rules in one configuration (S3: 1,000).
pub const MAX_RULES: usize = 1000;
/// Longest rule id (S3: 255).
pub const MAX_ID_LEN: usize = 255;

/// Gives rules without an id a unique one and checks ids: at most 255 characters, unique.
fn check_ids<'a>(ids: impl Iterator<Item = &'a mut Option<String>>) -> Result<(), ConfigError> {
    let mut ids: Vec<&mut Option<String>> = ids.collect();
    let mut seen = std::collections::HashSet::new();
    for id in ids.iter().filter_map(|i| i.as_deref()) {
        if id.len() > MAX_ID_LEN {
            return Err(ConfigError::InvalidArgument(format!(
                "ID length should not exceed allowed limit of {MAX_ID_LEN}"
            )));
        }
        if !seen.insert(id.to_string()) {
            return Err(ConfigError::InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule".into(),
            ));
        }
    }
    let mut n = 0;
    for id in ids.iter_mut().filter(|i| i.is_none()) {
        let generated = loop {
            n += 1;
            let candidate = format!("rule-{n}");
            if !seen.contains(&candidate) {
                break candidate;
            }
        };
        seen.insert(generated.clone());
        **id = Some(generated);
    }
    Ok(())
}

/// Checks a tag list: keys 1..=128 characters, values at most 256, no key twice.
fn check_tags(tags: &[Tag]) -> Result<(), ConfigError> {
    let mut keys = std::collections::HashSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return Err(ConfigError::InvalidArgument(
                "The TagKey you have provided is invalid".into(),
            ));
        }
        if !keys.insert(&t.key) {
            return Err(ConfigError::InvalidArgument(
                "Duplicate Tag Keys are not allowed.".into(),
            ));
        }
    }
    Ok(())
}

fn check_rule_count(n: usize) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(ConfigError::MalformedXml(
            "The configuration must contain at least one rule".into(),
        ));
    }
    if n > MAX_RULES {
        return Err(ConfigError::InvalidRequest(format!(
            "The configuration may contain at most {MAX_RULES} rules"
        )));
    }
    Ok(())
}

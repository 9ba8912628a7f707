//! `ReplicationRule`: one rule of a bucket's S3 replication configuration.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::lifecycle::Tag;
use super::{LocalObjectRef, Phase};

/// Replicates matching writes of a Bucket (same namespace) to another S3 endpoint. Every
/// ReplicationRule of a bucket becomes one rule of the bucket's replication configuration.
// clippy mistakes the repeated `type_ = ...` of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cairn.io",
    version = "v1alpha1",
    kind = "ReplicationRule",
    namespaced,
    status = "ReplicationRuleStatus",
    shortname = "rr",
    category = "cairn",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.bucketRef.name"),
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destination.bucket"
    ),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRuleSpec {
    /// The source Bucket resource (same namespace).
    pub bucket_ref: LocalObjectRef,
    /// Whether the rule is applied.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Rule priority: when rules overlap, the highest wins. Unique per bucket.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000))]
    pub priority: i32,
    /// Which writes are replicated; every write when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ReplicationFilter>,
    /// Where they go.
    pub destination: Destination,
    /// Replicate delete markers too.
    #[serde(default)]
    pub delete_marker_replication: bool,
}

fn yes() -> bool {
    true
}

/// Writes a replication rule applies to.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationFilter {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Object tags that must all be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub tags: Vec<Tag>,
}

/// The destination of a replication rule.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// S3 endpoint URL (another Cairn fleet or any S3).
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"), length(max = 2048))]
    pub endpoint: String,
    /// Destination bucket.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// Region of the destination.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 63))]
    pub region: String,
    /// A Secret (same namespace) with the destination's credentials.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Storage class of the replicas; the source object's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub storage_class: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// A Secret holding an access key pair.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_key")]
    pub access_key_id_key: String,
    /// Key of the secret key in the Secret.
    #[serde(default = "default_secret_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// What the operator observed of the rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationRuleStatus {
    /// Coarse state.
    #[serde(default)]
    pub phase: Phase,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The S3 bucket the rule was pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
}

//! `LifecyclePolicy`: S3 lifecycle rules of a bucket (transitions, expirations, cleanup).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{LocalObjectRef, Phase};

/// S3 lifecycle rules for a Bucket (in the same namespace). Every LifecyclePolicy of a bucket is
/// merged into the bucket's one lifecycle configuration; rule ids must be unique across them.
// clippy mistakes the repeated `type_ = ...` of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cairn.io",
    version = "v1alpha1",
    kind = "LifecyclePolicy",
    namespaced,
    status = "LifecyclePolicyStatus",
    shortname = "lcp",
    category = "cairn",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.bucketRef.name"),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.rules"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicySpec {
    /// The Bucket resource (same namespace) the rules apply to.
    pub bucket_ref: LocalObjectRef,
    /// The rules, as in S3 lifecycle configuration.
    #[schemars(length(min = 1, max = 1000))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["id".into()]))]
    pub rules: Vec<LifecycleRule>,
}

/// One lifecycle rule.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.transitions) || has(self.expiration) || has(self.noncurrentVersionTransitions) || has(self.noncurrentVersionExpiration) || has(self.abortIncompleteMultipartUpload)"
).message("a rule needs at least one action: transitions, expiration, noncurrentVersionTransitions, noncurrentVersionExpiration or abortIncompleteMultipartUpload"))]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRule {
    /// Rule id, unique in the bucket.
    #[schemars(length(min = 1, max = 255))]
    pub id: String,
    /// Whether the rule is applied.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Which objects the rule applies to; every object when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<LifecycleFilter>,
    /// Moves current versions to another storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub transitions: Option<Vec<Transition>>,
    /// Expires current versions (a delete marker in a versioned bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// Moves noncurrent versions to another storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub noncurrent_version_transitions: Option<Vec<NoncurrentVersionTransition>>,
    /// Deletes noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    /// Aborts multipart uploads left incomplete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

fn yes() -> bool {
    true
}

/// Objects a lifecycle rule applies to: all conditions must hold.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.objectSizeGreaterThan) || !has(self.objectSizeLessThan) || self.objectSizeLessThan > self.objectSizeGreaterThan"
).message("objectSizeLessThan must be greater than objectSizeGreaterThan"))]
#[serde(rename_all = "camelCase")]
pub struct LifecycleFilter {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Object tags that must all be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub tags: Vec<Tag>,
    /// Only objects larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub object_size_greater_than: Option<i64>,
    /// Only objects smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub object_size_less_than: Option<i64>,
}

/// An object tag.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag key.
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    /// Tag value.
    #[schemars(length(max = 256))]
    pub value: String,
}

/// A transition of current versions: after `days` or on `date`, to `storageClass`.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new("has(self.days) != has(self.date)")
    .message("a transition needs exactly one of days or date"))]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub days: Option<i32>,
    /// A date (`YYYY-MM-DD`, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: Option<String>,
    /// Target storage class (one of the ObjectStore's).
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub storage_class: String,
}

/// Expiration of current versions.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.days) ? 1 : 0) + (has(self.date) ? 1 : 0) + (has(self.expiredObjectDeleteMarker) ? 1 : 0) == 1"
).message("an expiration needs exactly one of days, date or expiredObjectDeleteMarker"))]
#[serde(rename_all = "camelCase")]
pub struct Expiration {
    /// Days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub days: Option<i32>,
    /// A date (`YYYY-MM-DD`, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub date: Option<String>,
    /// Remove delete markers that have no noncurrent versions left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
}

/// A transition of noncurrent versions.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoncurrentVersionTransition {
    /// Days after the version became noncurrent.
    #[schemars(range(min = 0))]
    pub noncurrent_days: i32,
    /// Keep this many newest noncurrent versions where they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub newer_noncurrent_versions: Option<i32>,
    /// Target storage class.
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub storage_class: String,
}

/// Expiration of noncurrent versions.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NoncurrentVersionExpiration {
    /// Days after the version became noncurrent.
    #[schemars(range(min = 1))]
    pub noncurrent_days: i32,
    /// Keep this many newest noncurrent versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub newer_noncurrent_versions: Option<i32>,
}

/// Abort multipart uploads left incomplete.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortIncompleteMultipartUpload {
    /// Days after the upload began.
    #[schemars(range(min = 1))]
    pub days_after_initiation: i32,
}

/// What the operator observed of the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePolicyStatus {
    /// Coarse state.
    #[serde(default)]
    pub phase: Phase,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The S3 bucket the rules were pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// Rules of this policy in the bucket's configuration.
    #[serde(default)]
    pub rules: i32,
}

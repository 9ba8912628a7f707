//! `Bucket`: an S3 bucket in an ObjectStore, and a Secret with credentials scoped to it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{ObjectRef, Phase};

/// An S3 bucket in an ObjectStore. The operator creates it through the gateway admin API, creates
/// an access key that may use only this bucket, and writes a Secret an application can `envFrom`.
// clippy mistakes the repeated `type_ = ...` of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cairn.io",
    version = "v1alpha1",
    kind = "Bucket",
    namespaced,
    status = "BucketStatus",
    shortname = "cb",
    category = "cairn",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".status.bucketName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Versioning", type_ = "string", json_path = ".spec.versioning"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.bucketName) == has(oldSelf.bucketName)")
        .message("bucketName cannot be added or removed after creation"),
    validation = kube::core::Rule::new("self.objectStoreRef == oldSelf.objectStoreRef")
        .message("objectStoreRef is immutable"),
)]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// S3 bucket name; `metadata.name` when absent. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("bucketName is immutable"))]
    pub bucket_name: Option<String>,
    /// The ObjectStore holding the bucket.
    pub object_store_ref: ObjectRef,
    /// S3 versioning. Once `Enabled` it can be `Suspended` but never `Off` again (as in S3).
    #[serde(default)]
    #[x_kube(validation = kube::core::Rule::new("oldSelf == 'Off' || self != 'Off'")
        .message("versioning cannot go back to Off once enabled; use Suspended")
        .reason(kube::core::Reason::FieldValueForbidden))]
    pub versioning: Versioning,
    /// Storage class of writes that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub default_storage_class: Option<String>,
    /// What deleting this resource does to the data: `Retain` keeps the bucket and its objects
    /// (only the access key goes), `Delete` empties and deletes the bucket.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take over a bucket that already exists in the ObjectStore instead of failing.
    #[serde(default)]
    pub adopt_existing: bool,
    /// Limits of the bucket itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Name of the Secret written for applications; `metadata.name` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
}

/// S3 versioning state of a bucket.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Versioning {
    /// Never versioned.
    #[default]
    Off,
    /// Every write keeps the previous version.
    Enabled,
    /// Was enabled; new writes replace the null version.
    Suspended,
}

/// What happens to the data when a Bucket resource is deleted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Keep the bucket and its objects; delete the access key.
    #[default]
    Retain,
    /// Delete every object and the bucket.
    Delete,
}

/// Limits of a bucket.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new("has(self.maxSize) || has(self.maxObjects)")
    .message("quota needs maxSize or maxObjects"))]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Most bytes of current objects (a Kubernetes quantity, e.g. `500Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub max_size: Option<String>,
    /// Most current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_objects: Option<i64>,
}

/// What the operator observed of the bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketStatus {
    /// Coarse state.
    #[serde(default)]
    pub phase: Phase,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The S3 bucket name, set once the operator created or adopted the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// S3 endpoint inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The Secret with the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Access key id in that Secret (the secret key is only in the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Current objects, at the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<i64>,
    /// Bytes of current objects, at the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
}

impl Bucket {
    /// The S3 bucket name: `spec.bucketName`, else `metadata.name`.
    pub fn bucket_name(&self) -> String {
        self.spec
            .bucket_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The application Secret's name: `spec.secretName`, else `metadata.name`.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

//! The wire types of the admin API (`docs/admin-api.md`): what the gateway serves and the operator
//! reads, one definition for both. Serde only, so the operator does not build the gateway.
//!
//! Compatibility: the operator and the gateways of a fleet are upgraded at different moments, so
//! every field a reader can do without has a serde default (an older gateway that does not send
//! it still parses), and unknown fields are ignored (a newer gateway's additions too).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Reply of `GET /admin/v1/health`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` (every node up, no repair backlog), `degraded` (reads and writes work),
    /// `unavailable`.
    pub status: String,
    /// Storage nodes up.
    pub nodes_up: usize,
    /// Storage nodes configured.
    pub nodes_total: usize,
    /// Whether new writes can reach their quorum.
    pub writable: bool,
    /// Damaged shards the nodes' scrubbers found and have not repaired yet (a pass under way
    /// repairs as it goes; failed repairs wait for the next pass). Rolling a node now would
    /// take away one of the copies a repair needs.
    #[serde(default)]
    pub repair_backlog: u64,
    /// Shards the scrubbers found with fewer than k healthy siblings (lost stripes), in the
    /// last and current passes.
    #[serde(default)]
    pub unrepairable_shards: u64,
}

/// One storage node as a gateway sees it (`GET /admin/v1/nodes`, `PUT /admin/v1/nodes/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Node id (in Kubernetes, the pod name).
    pub id: String,
    /// Zone.
    pub zone: String,
    /// API address.
    pub endpoint: String,
    /// `up` or `down`.
    pub state: String,
    /// Bytes free for shards, at the last probe.
    #[serde(default)]
    pub available_bytes: u64,
    /// Size of its data filesystem, at the last probe.
    #[serde(default)]
    pub total_bytes: u64,
    /// Bytes of shard files, at the last probe.
    #[serde(default)]
    pub used_bytes: u64,
}

/// A bucket as the admin API shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Name.
    pub name: String,
    /// Creation time, Unix milliseconds.
    #[serde(default)]
    pub created_ms: i64,
    /// Owner (access key id of the creator).
    #[serde(default)]
    pub owner: String,
    /// Versioning state: `Off`, `Enabled` or `Suspended`.
    #[serde(default)]
    pub versioning: String,
    /// Current objects (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Bytes of current objects (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Noncurrent versions (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_versions: Option<u64>,
    /// Bytes of noncurrent versions (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_bytes: Option<u64>,
    /// Delete markers, current or not (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_markers: Option<u64>,
    /// Versions per storage class, with the bytes they take on disk (only in single-bucket info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_classes: Option<BTreeMap<String, ClassInfo>>,
    /// The bucket's quota, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The storage class of writes that name none, if not STANDARD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_storage_class: Option<String>,
}

/// What one storage class holds of a bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Versions (current and noncurrent).
    pub versions: u64,
    /// Object bytes.
    pub bytes: u64,
    /// Bytes stored: erasure-coded shards plus inline bytes kept in the index.
    pub stored_bytes: u64,
    /// `stored_bytes / bytes`: the class's storage overhead as measured.
    pub overhead: f64,
}

/// A bucket's quota (`PUT /admin/v1/buckets/{name}/quota`; `null` removes it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Most bytes of current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Most current objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects: Option<u64>,
}

/// Body of `POST /admin/v1/buckets`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBucket {
    /// Bucket name (S3 naming rules).
    pub name: String,
    /// Succeed if the bucket already exists (adoption) instead of answering 409.
    #[serde(default)]
    pub exist_ok: bool,
}

/// Body of `PUT /admin/v1/buckets/{name}/versioning` (and its answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersioningStatus {
    /// `Enabled` or `Suspended` (`Off` is accepted only while the bucket was never versioned).
    pub status: String,
}

/// Body of `/admin/v1/buckets/{name}/storage-class`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultClass {
    /// The class of writes that name none (`null`: STANDARD).
    pub storage_class: Option<String>,
}

/// An access key as listed (`GET /admin/v1/keys`; never its secret).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Access key id.
    pub access_key_id: String,
    /// Name given at creation.
    pub name: String,
    /// Buckets it may use; absent = every bucket.
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
    /// Creation time, Unix milliseconds.
    #[serde(default)]
    pub created_ms: i64,
}

/// Body of `POST /admin/v1/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateKey {
    /// Human-readable name.
    pub name: String,
    /// Buckets the key may use; absent = every bucket.
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
}

/// Reply of `POST /admin/v1/keys`: the only time the secret is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for CreatedKey {
    /// Never the secret (it would end up in a log).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// Every error answer: `{"error": {"code", "message"}}` with a 4xx or 5xx status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code (`NoSuchBucket`, `BucketNotEmpty`, ...).
    pub code: String,
    /// For people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_gateways_answers_still_parse() {
        // A bucket as gateways before owners and usage answered it.
        let b: BucketInfo = serde_json::from_str(r#"{"name":"photos"}"#).unwrap();
        assert_eq!(b.name, "photos");
        assert_eq!((b.objects, b.quota), (None, None));
        // Health before the repair counters.
        let h: Health =
            serde_json::from_str(r#"{"status":"ok","nodes_up":6,"nodes_total":6,"writable":true}"#)
                .unwrap();
        assert_eq!(h.repair_backlog, 0);
        // Unknown fields of a newer gateway are ignored.
        let k: KeyInfo = serde_json::from_str(
            r#"{"access_key_id":"CK1","name":"n","buckets":null,"created_ms":5,"new":1}"#,
        )
        .unwrap();
        assert_eq!(k.created_ms, 5);
    }

    #[test]
    fn absent_usage_is_left_out_and_a_quota_is_camel_case() {
        let b = BucketInfo {
            name: "b".into(),
            quota: Some(Quota {
                max_bytes: Some(10),
                max_objects: None,
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&b).unwrap();
        assert!(json.get("objects").is_none());
        assert_eq!(json["quota"], serde_json::json!({"maxBytes": 10}));
        assert_eq!(serde_json::from_value::<BucketInfo>(json).unwrap(), b);
    }

    #[test]
    fn a_created_keys_secret_never_shows_in_debug() {
        let k = CreatedKey {
            access_key_id: "CK1".into(),
            secret_key: "s3cr3t-value".into(),
        };
        assert!(!format!("{k:?}").contains("s3cr3t"));
    }
}

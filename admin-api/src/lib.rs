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

/// `GET /admin/v1/partitions` (`replication`) and `PUT /admin/v1/index/retiring`: the replicated
/// index as one gateway sees it.
/// The replication state as the admin API shows it: the meta group's at the top level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationStatus {
    /// This gateway's id.
    pub id: u64,
    /// Leader, follower, candidate or learner.
    pub state: String,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Last log index on this replica.
    pub last_log_index: Option<u64>,
    /// Last index applied to this replica's index.
    pub applied_index: Option<u64>,
    /// This gateway's zone.
    pub zone: String,
    /// Voting members (gateway ids).
    pub voters: Vec<u64>,
    /// Members holding a replica without a vote.
    pub learners: Vec<u64>,
    /// The listed gateways as the leader probes them (empty on other gateways).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerStatus>,
    /// Gateways being drained (`PUT /admin/v1/index/retiring`), as this replica holds the
    /// set: they hand their votes and the leadership to the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<u64>,
    /// Last log index covered by this replica's newest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index are purged from this replica's log.
    pub purged_index: Option<u64>,
    /// Every group this gateway hosts (the meta group too), with its leader and members.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// The groups only other gateways run, as they last described them (leader, members,
    /// keys, their applied index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_groups: Vec<GroupStatus>,
}

/// A listed gateway as the leader's membership reconciler last saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Gateway id.
    pub id: u64,
    /// Its zone, once it answered.
    pub zone: Option<String>,
    /// Whether it answered the last probe.
    pub reachable: bool,
    /// Seconds since it last answered (or since this leader took over).
    pub unseen_seconds: f64,
    /// Whether it has been unreachable for longer than the grace period.
    pub gone: bool,
}

/// One group as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GroupStatus {
    /// The group (a partition id; 1 is the meta group).
    pub group: u64,
    /// The current leader, if known.
    pub leader: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Last index applied to this replica.
    pub applied_index: Option<u64>,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Members holding a replica without a vote.
    pub learners: Vec<u64>,
    /// The object keys it owns, `bucket/key` from (inclusive) and to (exclusive; absent: to the
    /// end); absent for a group that owns no object keys (the meta group, once split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_from: Option<String>,
    /// See `objects_from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_to: Option<String>,
    /// The log index of the group's freeze, while a merge is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<u64>,
    /// Last log index covered by this replica's newest snapshot of the group.
    pub snapshot_index: Option<u64>,
    /// The group's log is purged up to this index here.
    pub purged_index: Option<u64>,
}

impl ReplicationStatus {
    /// Whether none of `retiring` votes or leads any more, in any group this answer shows
    /// (the answering gateway's and the remote ones): they can be removed without taking a
    /// group's majority with them. A group with no known leader is not drained.
    pub fn drained(&self, retiring: &std::collections::BTreeSet<u64>) -> bool {
        let clear = |leader: Option<u64>, voters: &[u64]| {
            leader.is_some_and(|l| !retiring.contains(&l))
                && voters.iter().all(|v| !retiring.contains(v))
        };
        clear(self.leader, &self.voters)
            && self
                .groups
                .iter()
                .chain(&self.remote_groups)
                .all(|g| clear(g.leader, &g.voters))
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
    fn an_older_gateways_replication_status_parses_and_its_top_level_decides() {
        // The operator's drain test (operator/src/controller/objectstore.rs) covers the groups.
        let retiring = std::collections::BTreeSet::from([3, 4]);
        // An answer of a gateway before groups parses, and its top level decides.
        let old: ReplicationStatus =
            serde_json::from_str(r#"{"leader":0,"voters":[0,1,2],"retiring":[3]}"#).unwrap();
        assert!(old.drained(&retiring));
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

//! `ObjectStore`: a Cairn fleet — storage nodes in zones, gateways, Services, storage classes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::Phase;

/// A Cairn fleet: storage nodes spread over zones, gateways serving S3, and their storage classes.
// clippy mistakes the repeated `type_ = ...` of separate printcolumns for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "cairn.io",
    version = "v1alpha1",
    kind = "ObjectStore",
    namespaced,
    status = "ObjectStoreStatus",
    shortname = "os",
    category = "cairn",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Gateways",
        type_ = "integer",
        json_path = ".status.readyGateways"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.readyStorageNodes"
    ),
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = kube::core::Rule::new("size(self.metadata.name) <= 20")
        .message("ObjectStore names are at most 20 characters: they prefix StatefulSet, pod and PVC names")
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.storageClasses) || self.storageClasses.all(c, !has(c.zone) || c.zone in self.zones)"
).message("every storageClasses[].zone must be one of spec.zones"))]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Failure zones, matched to nodes by the `topology.kubernetes.io/zone` label. Zones can be
    /// added, never removed (their storage nodes hold shards).
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 24))
    )]
    #[x_kube(
        merge_strategy = kube::core::ListMerge::Set,
        validation = kube::core::Rule::new("oldSelf.all(z, z in self)").message("zones can be added but not removed")
    )]
    pub zones: Vec<String>,
    /// Storage nodes and their volumes.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Gateways (the S3 API).
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Container images; the operator's defaults (its own version) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesSpec>,
    /// Storage classes: erasure profiles and their placement. The first one (or the one named
    /// `STANDARD`) is the default profile of the gateways.
    #[serde(default = "default_storage_classes")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub storage_classes: Vec<StorageClassSpec>,
    /// Objects (and parts) up to this size live in the index instead of on storage nodes
    /// (`64K`, `1M`...).
    #[serde(default = "default_inline_threshold")]
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub inline_threshold: String,
    /// Bytes per second each storage node's scrubber reads (`32M`; `0` = unlimited).
    #[serde(default = "default_scrub_rate")]
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub scrub_rate: String,
    /// Pause between scrub passes (`24h`, `30m`).
    #[serde(default = "default_scrub_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub scrub_interval: String,
    /// Region reported to S3 clients.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 63))]
    pub region: String,
    /// The S3 Service.
    #[serde(default)]
    pub service: ServiceSpec,
    /// TLS for the S3 endpoint, from a `kubernetes.io/tls` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Namespaces besides this ObjectStore's own whose Buckets (and those Buckets'
    /// LifecyclePolicies and ReplicationRules) may use this fleet. None when absent: a Bucket of
    /// another namespace gets `Ready=False NamespaceNotAllowed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
    /// The fleet's NetworkPolicy.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// Namespaces allowed to use a fleet: those named, and those whose labels match.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    pub names: Vec<String>,
    /// Namespaces whose labels match this selector (`matchLabels`, `matchExpressions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

/// The fleet's NetworkPolicy: storage-node port only from this fleet's gateways and storage
/// nodes, the gateway admin port (which also carries gateway-to-gateway traffic) only from its
/// gateways and the operator, the S3 port from anywhere.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Whether the operator creates it (and deletes it when switched off).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Who else may reach the storage nodes' port and the gateways' admin port, where they serve
    /// `/metrics`: Prometheus, as NetworkPolicy peers (e.g. `namespaceSelector: {matchLabels:
    /// {kubernetes.io/metadata.name: monitoring}}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_from: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Storage nodes: how many per zone and their volumes.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new(
    "quantity(self.volumeSize).compareTo(quantity(oldSelf.volumeSize)) >= 0"
).message("storage.volumeSize can grow but not shrink"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Storage nodes in each zone. Can grow, not shrink (there is no drain yet).
    #[serde(default = "default_nodes_per_zone")]
    #[schemars(range(min = 1, max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self >= oldSelf").message("storage.nodesPerZone can grow but not shrink"))]
    pub nodes_per_zone: i32,
    /// Size of each storage node's volume (a Kubernetes quantity, e.g. `100Gi`). Growing it expands
    /// the PVCs in place where the StorageClass allows volume expansion.
    #[serde(default = "default_volume_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub volume_size: String,
    /// StorageClass of the volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Free space each node always keeps (`64M`); writes that would cross it are refused.
    #[serde(default = "default_min_free")]
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub min_free_bytes: String,
    /// CPU and memory of each storage node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            nodes_per_zone: default_nodes_per_zone(),
            volume_size: default_volume_size(),
            storage_class_name: None,
            min_free_bytes: default_min_free(),
            resources: None,
        }
    }
}

/// Gateways: replicas, resources and the index volume.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Gateway pods, spread over the zones. Several share one replicated index (a write needs a
    /// majority of them: 3 keep serving with one down); 1 keeps its index alone.
    #[serde(default = "default_gateway_replicas")]
    #[schemars(range(min = 1, max = 64))]
    pub replicas: i32,
    /// Size of each gateway's index volume (RocksDB; inline objects live there too).
    #[serde(default = "default_index_volume_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub index_volume_size: String,
    /// StorageClass of the index volumes; `storage.storageClassName` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// CPU and memory of each gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// When index partitions split and merge (the gateway's defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<PartitioningSpec>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            replicas: default_gateway_replicas(),
            index_volume_size: default_index_volume_size(),
            storage_class_name: None,
            resources: None,
            partitioning: None,
        }
    }
}

/// Load-based splitting of the index partitions. Each field left out keeps the gateway's default.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitioningSpec {
    /// Split a partition taking more writes per second (default 3500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub split_write_threshold: Option<u32>,
    /// Split a partition serving more reads per second (default 5500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub split_read_threshold: Option<u32>,
    /// Split a partition larger than this on disk, e.g. `512M` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[KMGT]?$"))]
    pub split_size_limit: Option<String>,
    /// Merge neighbours that stayed cold this long, e.g. `10m` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub merge_quiet_period: Option<String>,
}

/// Container images.
#[derive(kube::KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagesSpec {
    /// Image of `cairn-gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Image of `cairn-storage-node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_node: Option<String>,
    /// Pull policy of both; the operator's default (`IfNotPresent` unless set) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Secrets in this namespace to pull them (a private registry); the operator's default
    /// (chart value `imagePullSecrets`) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub pull_secrets: Vec<super::LocalObjectRef>,
}

/// Kubernetes image pull policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when not present on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// A storage class: an erasure profile and where its shards go.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = kube::core::Rule::new(
    "self.placement == 'SingleZone' ? has(self.zone) : !has(self.zone)"
).message("zone is required for placement SingleZone and not allowed for Spread"))]
#[serde(rename_all = "camelCase")]
pub struct StorageClassSpec {
    /// S3 storage class name (`STANDARD`, `STANDARD_IA`, `ONEZONE_IA`, `GLACIER`...).
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]{0,63}$"))]
    pub name: String,
    /// Data shards (k).
    #[schemars(range(min = 1, max = 32))]
    pub data_shards: i32,
    /// Parity shards (m).
    #[schemars(range(min = 0, max = 16))]
    pub parity_shards: i32,
    /// Where the k+m shards go.
    #[serde(default)]
    pub placement: Placement,
    /// The zone of a `SingleZone` class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Shard placement of a storage class.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Placement {
    /// Evenly over every zone, so that losing a zone loses at most m shards.
    #[default]
    Spread,
    /// Every shard in one zone.
    SingleZone,
}

/// The S3 Service.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type of the S3 endpoint.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// S3 port.
    #[serde(default = "default_s3_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Admin API port (only on the internal `<name>-admin` Service).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// Annotations of the S3 Service (load balancer settings...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::ClusterIP,
            port: default_s3_port(),
            admin_port: default_admin_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Kubernetes Service type.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ServiceType {
    /// Inside the cluster only.
    #[default]
    ClusterIP,
    /// On a port of every node.
    NodePort,
    /// Through the cloud's load balancer.
    LoadBalancer,
}

/// TLS of the S3 endpoint.
#[derive(kube::KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret in the ObjectStore's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// What the operator observed of the fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreStatus {
    /// Coarse state.
    #[serde(default)]
    pub phase: Phase,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Gateway pods ready.
    #[serde(default)]
    pub ready_gateways: i32,
    /// Storage node pods ready, over every zone.
    #[serde(default)]
    pub ready_storage_nodes: i32,
    /// Per zone: storage nodes wanted and ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,
    /// Fleet health as the gateway admin API reports it (`ok`, `degraded`, `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Capacity and usage, from the gateway admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// S3 endpoint inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Secret with the root credentials and the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Storage nodes of one zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    /// Zone name.
    pub name: String,
    /// Storage nodes wanted.
    pub desired_nodes: i32,
    /// Storage node pods ready.
    pub ready_nodes: i32,
    /// Storage nodes the gateway sees up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_up: Option<i32>,
    /// Bytes of the zone's volumes, from the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    /// Bytes used in the zone, from the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<i64>,
}

/// Capacity and usage of the whole fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Bytes of every storage node's filesystem.
    pub total_bytes: i64,
    /// Bytes used.
    pub used_bytes: i64,
    /// Bytes still writable.
    pub available_bytes: i64,
}

fn default_nodes_per_zone() -> i32 {
    2
}
fn default_volume_size() -> String {
    "100Gi".into()
}
fn default_min_free() -> String {
    "64M".into()
}
fn default_gateway_replicas() -> i32 {
    1
}
fn default_index_volume_size() -> String {
    "10Gi".into()
}
fn default_inline_threshold() -> String {
    "64K".into()
}
fn default_scrub_rate() -> String {
    "32M".into()
}
fn default_scrub_interval() -> String {
    "24h".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_s3_port() -> i32 {
    9000
}
fn default_admin_port() -> i32 {
    9001
}
/// STANDARD = RS(4,2) spread over the zones.
pub fn default_storage_classes() -> Vec<StorageClassSpec> {
    vec![StorageClassSpec {
        name: "STANDARD".into(),
        data_shards: 4,
        parity_shards: 2,
        placement: Placement::Spread,
        zone: None,
    }]
}

impl ObjectStoreSpec {
    /// The storage class the gateways use for writes without a storage class: `STANDARD` if
    /// present, else the first.
    pub fn default_storage_class(&self) -> Option<&StorageClassSpec> {
        self.storage_classes
            .iter()
            .find(|c| c.name == "STANDARD")
            .or_else(|| self.storage_classes.first())
    }
}

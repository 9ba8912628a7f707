//! The Kubernetes objects of an ObjectStore: a storage-node StatefulSet, headless Service and
//! PodDisruptionBudget per zone; the gateway StatefulSet spread over the zones with its headless
//! Service and PodDisruptionBudget; the S3 and admin Services; the credentials Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::labels;
use crate::crd::objectstore::{ObjectStore, ObjectStoreSpec, Placement, PullPolicy, ServiceType};

/// Port of every storage node's HTTP API.
pub const NODE_PORT: i32 = 7000;
/// Container port of the gateway's S3 API.
pub const GATEWAY_S3_PORT: i32 = 9000;
/// Container port of the gateway's admin API.
pub const GATEWAY_ADMIN_PORT: i32 = 9001;
/// Keys of the credentials Secret (the gateway's environment variables).
pub const ROOT_ACCESS_KEY: &str = "CAIRN_ROOT_ACCESS_KEY";
/// See [`ROOT_ACCESS_KEY`].
pub const ROOT_SECRET_KEY: &str = "CAIRN_ROOT_SECRET_KEY";
/// See [`ROOT_ACCESS_KEY`].
pub const ADMIN_TOKEN: &str = "CAIRN_ADMIN_TOKEN";
/// The fleet's internal credential (gateway to storage node, node to node, gateway to gateway):
/// 32 random bytes, hex. Gateways and storage nodes get it; nothing else.
pub const FLEET_SECRET: &str = "CAIRN_FLEET_SECRET";
/// The key sealing secrets at rest in the gateways' index: 32 random bytes, hex. Gateways only.
pub const INDEX_SEAL_KEY: &str = "CAIRN_INDEX_SEAL_KEY";
/// Keys of the credentials Secret generated once and added to an existing Secret that lacks
/// them (one made by an older operator), leaving its other keys alone.
pub const GENERATED_ONCE: [&str; 2] = [FLEET_SECRET, INDEX_SEAL_KEY];
/// Shortest admin token the operator generates (and the gateway accepts).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;
/// Component label of storage nodes.
pub const COMPONENT_NODE: &str = "storage-node";
/// Component label of gateways.
pub const COMPONENT_GATEWAY: &str = "gateway";

/// Operator-wide settings that shape the objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Gateway image when the ObjectStore names none.
    pub gateway_image: String,
    /// Storage-node image when the ObjectStore names none.
    pub storage_node_image: String,
    /// Most gateway pods to run (`None`: as many as the ObjectStore asks). Several gateways
    /// share one replicated index, so this is only an optional limit set by the cluster admin.
    pub max_gateway_replicas: Option<i32>,
    /// Pull policy when the ObjectStore names none (`IfNotPresent` when `None`).
    pub pull_policy: Option<PullPolicy>,
    /// Image pull Secrets (in the fleet's namespace) when the ObjectStore names none.
    pub pull_secrets: Vec<String>,
    /// The operator's namespace: its pods may reach the gateways' admin port
    /// (`network_policy`). `None`: operator pods in any namespace.
    pub operator_namespace: Option<String>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        let tag = concat!("v", env!("CARGO_PKG_VERSION"));
        Self {
            gateway_image: format!("ghcr.io/cairn-io/cairn-gateway:{tag}"),
            storage_node_image: format!("ghcr.io/cairn-io/cairn-storage-node:{tag}"),
            max_gateway_replicas: None,
            pull_policy: None,
            pull_secrets: Vec::new(),
            operator_namespace: None,
        }
    }
}

/// Root credentials and admin token of a fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSecrets {
    /// Root access key id.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// [`FLEET_SECRET`], when the Secret has it.
    pub fleet_secret: Option<String>,
    /// [`INDEX_SEAL_KEY`], when the Secret has it.
    pub index_seal_key: Option<String>,
}

/// 32 random bytes, hex (64 characters).
pub fn random_key() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

impl FleetSecrets {
    /// Fresh random secrets (the same formats `cairn-gateway dev` generates).
    pub fn generate() -> Self {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        Self {
            access_key: format!(
                "CK{}",
                random_string(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
            ),
            secret_key: random_string(40, ALNUM),
            admin_token: random_string(48, ALNUM),
            fleet_secret: Some(random_key()),
            index_seal_key: Some(random_key()),
        }
    }

    /// The generated-once keys ([`GENERATED_ONCE`]) `secret` lacks, each with a fresh value.
    pub fn missing_keys(secret: &Secret) -> BTreeMap<String, String> {
        GENERATED_ONCE
            .iter()
            .filter(|k| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(**k))
                    .is_none_or(|v| v.0.is_empty())
            })
            .map(|k| (k.to_string(), random_key()))
            .collect()
    }

    /// The secrets in an existing credentials Secret, if it holds the root keys and the admin
    /// token (the generated-once keys are optional here: [`FleetSecrets::missing_keys`]).
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|s| !s.is_empty())
        };
        Some(Self {
            access_key: get(ROOT_ACCESS_KEY)?,
            secret_key: get(ROOT_SECRET_KEY)?,
            admin_token: get(ADMIN_TOKEN)?,
            fleet_secret: get(FLEET_SECRET),
            index_seal_key: get(INDEX_SEAL_KEY),
        })
    }
}

/// Names of an ObjectStore's objects.
pub mod names {
    /// The credentials Secret.
    pub fn credentials(store: &str) -> String {
        format!("{store}-credentials")
    }
    /// The storage-node StatefulSet (and its headless Service and PDB) of a zone.
    pub fn node_set(store: &str, zone: &str) -> String {
        format!("{store}-node-{zone}")
    }
    /// The gateway StatefulSet, its headless Service and PDB.
    pub fn gateway(store: &str) -> String {
        format!("{store}-gateway")
    }
    /// The S3 Service.
    pub fn s3_service(store: &str) -> String {
        store.to_string()
    }
    /// The admin Service (inside the cluster only).
    pub fn admin_service(store: &str) -> String {
        format!("{store}-admin")
    }
    /// The fleet's NetworkPolicy.
    pub fn network_policy(store: &str) -> String {
        format!("{store}-fleet")
    }
}

/// Where applications reach a fleet's S3 API inside the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Endpoint {
    /// Service host name (`<store>.<namespace>.svc`).
    pub host: String,
    /// Service port.
    pub port: i32,
    /// Whether it serves TLS.
    pub tls: bool,
    /// Region.
    pub region: String,
}

impl S3Endpoint {
    /// The endpoint URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

fn store_ns(store: &ObjectStore) -> String {
    store
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn store_name(store: &ObjectStore) -> String {
    store.metadata.name.clone().unwrap_or_default()
}

/// The S3 endpoint of a fleet.
pub fn s3_endpoint(store: &ObjectStore) -> S3Endpoint {
    S3Endpoint {
        host: format!(
            "{}.{}.svc",
            names::s3_service(&store_name(store)),
            store_ns(store)
        ),
        port: store.spec.service.port,
        tls: store.spec.tls.is_some(),
        region: store.spec.region.clone(),
    }
}

/// The admin API URL of a fleet (the internal admin Service).
pub fn admin_url(store: &ObjectStore) -> String {
    format!(
        "http://{}.{}.svc:{}",
        names::admin_service(&store_name(store)),
        store_ns(store),
        store.spec.service.admin_port
    )
}

/// Every storage node as the gateway's `--node` list wants it: `id@zone=http://host:port`, the id
/// being the pod name and the host its stable DNS name under the zone's headless Service.
pub fn node_list(store: &ObjectStore) -> Vec<String> {
    let name = store_name(store);
    let ns = store_ns(store);
    let mut out = Vec::new();
    for zone in &store.spec.zones {
        let set = names::node_set(&name, zone);
        for i in 0..store.spec.storage.nodes_per_zone {
            let pod = format!("{set}-{i}");
            out.push(format!(
                "{pod}@{zone}=http://{pod}.{set}.{ns}.svc:{NODE_PORT}"
            ));
        }
    }
    out
}

/// The storage classes besides the default one, in the gateway's `CAIRN_STORAGE_CLASSES` form
/// (`NAME=K+M[:zone=ZONE]`, comma-separated; empty when there are none). The default class is
/// the gateway's STANDARD profile (`CAIRN_DATA_SHARDS`/`CAIRN_PARITY_SHARDS`).
pub fn extra_storage_classes(spec: &ObjectStoreSpec) -> String {
    let default = spec.default_storage_class().map(|c| c.name.as_str());
    spec.storage_classes
        .iter()
        .filter(|c| Some(c.name.as_str()) != default)
        .map(|c| {
            let mut s = format!("{}={}+{}", c.name, c.data_shards, c.parity_shards);
            if c.placement == Placement::SingleZone
                && let Some(z) = &c.zone
            {
                s.push_str(&format!(":zone={z}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Env var with a gateway's id in the replicated index (its StatefulSet ordinal).
pub const GATEWAY_ID_ENV: &str = "CAIRN_GATEWAY_ID";
/// Env var listing every gateway of the fleet as `ID=ADMIN_URL`, comma-separated.
pub const PEERS_ENV: &str = "CAIRN_PEERS";
/// Env var with the number of voting gateways.
pub const INDEX_REPLICAS_ENV: &str = "CAIRN_INDEX_REPLICAS";
/// How many gateways vote in the index group (one per zone when there are three zones).
pub const INDEX_VOTERS: i32 = 3;
/// Env var with a gateway's zone.
pub const ZONE_ENV: &str = "CAIRN_ZONE";
/// Where the gateway pods mount the TLS Secret.
pub const TLS_MOUNT: &str = "/tls";
/// Pod label Kubernetes (>= 1.28) sets on StatefulSet pods to their ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Every gateway of a fleet of `replicas` gateways as the gateway's `CAIRN_PEERS` wants it:
/// `ORDINAL=http://POD.HEADLESS.NAMESPACE.svc:ADMIN_PORT`, comma-separated, the pod DNS name
/// coming from the gateway StatefulSet's headless Service.
pub fn gateway_peers(store: &ObjectStore, replicas: i32) -> String {
    let name = store_name(store);
    let ns = store_ns(store);
    // The StatefulSet and its governing headless Service share this name.
    let set = names::gateway(&name);
    (0..replicas)
        .map(|i| format!("{i}=http://{set}-{i}.{set}.{ns}.svc:{GATEWAY_ADMIN_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Gateway pods actually run: the spec's replicas, capped by the operator setting.
pub fn gateway_replicas(spec: &ObjectStoreSpec, config: &BuildConfig) -> i32 {
    match config.max_gateway_replicas {
        Some(max) => spec.gateway.replicas.min(max.max(1)),
        None => spec.gateway.replicas,
    }
}

/// What the schema cannot check: every storage class must fit the fleet. Each problem is one
/// sentence for the `Ready` condition.
pub fn validate(spec: &ObjectStoreSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let zones = spec.zones.len() as i32;
    let per_zone = spec.storage.nodes_per_zone;
    for c in &spec.storage_classes {
        let shards = c.data_shards + c.parity_shards;
        match c.placement {
            Placement::Spread => {
                if shards > zones * per_zone {
                    problems.push(format!(
                        "storage class {} needs {shards} storage nodes (RS({},{})) but the fleet has {} ({} zones x {per_zone})",
                        c.name,
                        c.data_shards,
                        c.parity_shards,
                        zones * per_zone,
                        zones
                    ));
                }
            }
            Placement::SingleZone => {
                if shards > per_zone {
                    problems.push(format!(
                        "storage class {} needs {shards} storage nodes in zone {} but each zone has {per_zone}",
                        c.name,
                        c.zone.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for z in &spec.zones {
        if !seen.insert(z) {
            problems.push(format!("zone {z} is listed twice"));
        }
    }
    problems
}

/// The credentials Secret (root keys, admin token, fleet secret, index seal key), created once
/// and never rotated by the operator.
pub fn credentials_secret(
    store: &ObjectStore,
    secrets: &FleetSecrets,
    owner: &OwnerReference,
) -> Secret {
    let name = store_name(store);
    let mut data = BTreeMap::from([
        (
            ROOT_ACCESS_KEY.to_string(),
            ByteString(secrets.access_key.clone().into_bytes()),
        ),
        (
            ROOT_SECRET_KEY.to_string(),
            ByteString(secrets.secret_key.clone().into_bytes()),
        ),
        (
            ADMIN_TOKEN.to_string(),
            ByteString(secrets.admin_token.clone().into_bytes()),
        ),
    ]);
    for (k, v) in [
        (FLEET_SECRET, &secrets.fleet_secret),
        (INDEX_SEAL_KEY, &secrets.index_seal_key),
    ] {
        if let Some(v) = v {
            data.insert(k.to_string(), ByteString(v.clone().into_bytes()));
        }
    }
    Secret {
        metadata: meta(
            &names::credentials(&name),
            store,
            labels(&name, "credentials"),
            owner,
        ),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn meta(
    name: &str,
    store: &ObjectStore,
    labels: BTreeMap<String, String>,
    owner: &OwnerReference,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(store_ns(store)),
        labels: Some(labels),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The typed object of a builder's JSON. In debug builds (the tests) the JSON must survive the
/// round trip: k8s-openapi ignores fields it does not know, so a misspelt field in a builder
/// would otherwise vanish without a trace instead of failing a test.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> T {
    let t: T = serde_json::from_value(v.clone()).expect("the builders produce valid objects");
    #[cfg(debug_assertions)]
    {
        let back = serde_json::to_value(&t).expect("serializable");
        let mut lost = Vec::new();
        lost_fields(&v, &back, "", &mut lost);
        assert!(
            lost.is_empty(),
            "builder fields the Kubernetes type does not have: {lost:?}"
        );
    }
    t
}

/// Paths of `built` (not null, not empty) that `typed` lost.
#[cfg(debug_assertions)]
fn lost_fields(built: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (built, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &p, out),
                    None if v.is_null()
                        || v.as_array().is_some_and(|a| a.is_empty())
                        || v.as_object().is_some_and(|o| o.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn node_labels(store: &str, zone: &str) -> BTreeMap<String, String> {
    let mut l = labels(store, COMPONENT_NODE);
    l.insert(super::ZONE_LABEL.into(), zone.into());
    l
}

fn selector(l: &BTreeMap<String, String>) -> Value {
    let keep = [
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        super::ZONE_LABEL,
    ];
    let m: BTreeMap<_, _> = l
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .collect();
    json!({ "matchLabels": m })
}

fn security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn pod_security_context() -> Value {
    json!({"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"})
}

fn image_of(store: &ObjectStore, gateway: bool, config: &BuildConfig) -> (String, String) {
    let images = store.spec.images.clone().unwrap_or_default();
    let image = if gateway {
        images
            .gateway
            .unwrap_or_else(|| config.gateway_image.clone())
    } else {
        images
            .storage_node
            .unwrap_or_else(|| config.storage_node_image.clone())
    };
    let policy = images
        .pull_policy
        .or(config.pull_policy)
        .map(|p| {
            serde_json::to_value(p)
                .expect("enum")
                .as_str()
                .unwrap_or("IfNotPresent")
                .to_string()
        })
        .unwrap_or_else(|| "IfNotPresent".into());
    (image, policy)
}

/// `imagePullSecrets` of the fleet's pods: the ObjectStore's, else the operator's.
fn pull_secrets(store: &ObjectStore, config: &BuildConfig) -> Value {
    let own: Vec<String> = store
        .spec
        .images
        .iter()
        .flat_map(|i| i.pull_secrets.iter().map(|r| r.name.clone()))
        .collect();
    let names = if own.is_empty() {
        &config.pull_secrets
    } else {
        &own
    };
    Value::Array(names.iter().map(|n| json!({"name": n})).collect())
}

/// A volume claim template. Its labels (the fleet's) end up on every PVC, which outlives the
/// ObjectStore (`whenDeleted: Retain`): `kubectl delete pvc -l app.kubernetes.io/instance=NAME`
/// removes them.
fn pvc(name: &str, size: &str, class: Option<&String>, l: &BTreeMap<String, String>) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}}
    });
    if let Some(c) = class {
        spec["storageClassName"] = json!(c);
    }
    json!({"metadata": {"name": name, "labels": l}, "spec": spec})
}

/// The storage-node StatefulSet of one zone: pinned to the zone by node affinity, one PVC per pod,
/// pods of the zone kept apart by anti-affinity, and `OnDelete` updates so the operator can roll
/// one node at a time while the fleet is healthy.
pub fn node_statefulset(
    store: &ObjectStore,
    zone: &str,
    config: &BuildConfig,
    owner: &OwnerReference,
) -> StatefulSet {
    let name = store_name(store);
    let set = names::node_set(&name, zone);
    let l = node_labels(&name, zone);
    let (image, pull) = image_of(store, false, config);
    let s = &store.spec.storage;
    let mut container = json!({
        "name": "storage-node",
        "image": image,
        "imagePullPolicy": pull,
        "env": [
            {"name": "CAIRN_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CAIRN_ZONE", "value": zone},
            {"name": "CAIRN_DATA_DIR", "value": "/data"},
            {"name": "CAIRN_LISTEN", "value": format!("0.0.0.0:{NODE_PORT}")},
            {"name": "CAIRN_MIN_FREE_BYTES", "value": s.min_free_bytes},
            {"name": "CAIRN_SCRUB_RATE", "value": store.spec.scrub_rate},
            {"name": "CAIRN_SCRUB_INTERVAL", "value": store.spec.scrub_interval},
            // The one credential a storage node gets: the fleet secret, not the admin token
            // nor the index seal key.
            {"name": FLEET_SECRET, "valueFrom": {"secretKeyRef": {"name": names::credentials(&name), "key": FLEET_SECRET}}},
        ],
        "ports": [{"name": "http", "containerPort": NODE_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        // A crash's last log lines become the container's termination message, which the
        // ObjectStore status shows (`NodeCrashLoop`).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security_context(),
    });
    if let Some(r) = &s.resources {
        container["resources"] = serde_json::to_value(r).expect("resources");
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(&set, store, l.clone(), owner),
        "spec": {
            "replicas": s.nodes_per_zone,
            "serviceName": set,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "selector": selector(&l),
            "template": {
                "metadata": {"labels": l},
                "spec": {
                    "affinity": {
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": super::TOPOLOGY_ZONE, "operator": "In", "values": [zone]}]}
                        ]}},
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": {"labelSelector": selector(&l), "topologyKey": "kubernetes.io/hostname"}
                        }]}
                    },
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "imagePullSecrets": pull_secrets(store, config),
                    "containers": [container],
                }
            },
            "volumeClaimTemplates": [pvc("data", &s.volume_size, s.storage_class_name.as_ref(), &l)],
        }
    }))
}

/// The gateway StatefulSet: spread over the zones (`maxSkew` 1), a PVC for the index, the node
/// list, and the credentials from the Secret. With more than one gateway, each pod also gets its
/// id in the replicated index (`CAIRN_GATEWAY_ID`, its ordinal from the downward API) and the list
/// of every gateway (`CAIRN_PEERS`, stable DNS names under the headless Service); with one, neither
/// (the gateway keeps its index alone).
pub fn gateway_statefulset(
    store: &ObjectStore,
    config: &BuildConfig,
    owner: &OwnerReference,
) -> StatefulSet {
    gateway_statefulset_of(store, config, owner, gateway_replicas(&store.spec, config))
}

/// [`gateway_statefulset`] with `replicas` gateways (more than the spec asks while the leaving
/// ones are drained of their index votes).
pub fn gateway_statefulset_of(
    store: &ObjectStore,
    config: &BuildConfig,
    owner: &OwnerReference,
    replicas: i32,
) -> StatefulSet {
    let name = store_name(store);
    let set = names::gateway(&name);
    let l = labels(&name, COMPONENT_GATEWAY);
    let (image, pull) = image_of(store, true, config);
    let spec = &store.spec;
    let class = spec.default_storage_class();
    let secret = names::credentials(&name);
    let secret_env = |var: &str| json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": var}}});
    let mut container = json!({
        "name": "gateway",
        "image": image,
        "imagePullPolicy": pull,
        "args": ["serve"],
        "env": [
            {"name": "CAIRN_DATA", "value": "/data"},
            {"name": "CAIRN_LISTEN", "value": format!("0.0.0.0:{GATEWAY_S3_PORT}")},
            {"name": "CAIRN_ADMIN_LISTEN", "value": format!("0.0.0.0:{GATEWAY_ADMIN_PORT}")},
            {"name": "CAIRN_NODES", "value": node_list(store).join(",")},
            {"name": "CAIRN_REGION", "value": spec.region},
            {"name": "CAIRN_INLINE_THRESHOLD", "value": spec.inline_threshold},
            {"name": "CAIRN_DATA_SHARDS", "value": class.map(|c| c.data_shards).unwrap_or(4).to_string()},
            {"name": "CAIRN_PARITY_SHARDS", "value": class.map(|c| c.parity_shards).unwrap_or(2).to_string()},
            secret_env(ROOT_ACCESS_KEY),
            secret_env(ROOT_SECRET_KEY),
            secret_env(ADMIN_TOKEN),
            secret_env(FLEET_SECRET),
            secret_env(INDEX_SEAL_KEY),
        ],
        "ports": [
            {"name": "s3", "containerPort": GATEWAY_S3_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": GATEWAY_ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [{"name": "index", "mountPath": "/data"}],
        // A crash's last log lines (a refused flag, say) become the container's termination
        // message, which the ObjectStore status shows (`GatewayCrashLoop`).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security_context(),
    });
    if let Some(r) = &spec.gateway.resources {
        container["resources"] = serde_json::to_value(r).expect("resources");
    }
    // Only when there is a class besides the default one: the variable is then never empty.
    let classes = extra_storage_classes(spec);
    if !classes.is_empty() {
        container["env"]
            .as_array_mut()
            .expect("env")
            .push(json!({"name": "CAIRN_STORAGE_CLASSES", "value": classes}));
    }
    // Even one gateway runs as a (one-member) replicated group: everything it indexes is then
    // in the Raft log, so scaling to several later hands every entry to the new gateways. A
    // gateway started alone keeps no log, and would refuse to join a group later.
    {
        let env = container["env"].as_array_mut().expect("env");
        env.push(json!({"name": GATEWAY_ID_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": format!("metadata.labels['{POD_INDEX_LABEL}']")
        }}}));
        env.push(json!({"name": PEERS_ENV, "value": gateway_peers(store, replicas)}));
        // Three gateways vote (the others hold a replica as learners). A scale-down deletes the
        // highest ordinals at once, so the operator first has their votes moved to the others
        // (see `controller::objectstore::gateway_scale`).
        env.push(json!({"name": INDEX_REPLICAS_ENV, "value": INDEX_VOTERS.min(replicas.max(1)).to_string()}));
        // The gateway's zone, so the index group's voters spread over zones: Kubernetes copies
        // the node's zone label onto the pod (node topology labels via the downward API, beta
        // since 1.35); on older clusters the value is empty and voters are placed by count only.
        env.push(json!({"name": ZONE_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": format!("metadata.labels['{}']", super::TOPOLOGY_ZONE)
        }}}));
    }
    if let Some(p) = &spec.gateway.partitioning {
        let env = container["env"].as_array_mut().expect("env");
        let settings = [
            (
                "CAIRN_SPLIT_WRITE_THRESHOLD",
                p.split_write_threshold.map(|v| v.to_string()),
            ),
            (
                "CAIRN_SPLIT_READ_THRESHOLD",
                p.split_read_threshold.map(|v| v.to_string()),
            ),
            ("CAIRN_SPLIT_SIZE_LIMIT", p.split_size_limit.clone()),
            ("CAIRN_MERGE_QUIET_PERIOD", p.merge_quiet_period.clone()),
        ];
        for (name, value) in settings {
            if let Some(value) = value {
                env.push(json!({"name": name, "value": value}));
            }
        }
    }
    // HTTPS on the S3 port from the `kubernetes.io/tls` Secret (read at start: a renewed
    // certificate takes effect when the pods restart).
    let mut volumes = Vec::new();
    if let Some(tls) = &spec.tls {
        container["env"].as_array_mut().expect("env").extend([
            json!({"name": "CAIRN_TLS_CERT", "value": format!("{TLS_MOUNT}/tls.crt")}),
            json!({"name": "CAIRN_TLS_KEY", "value": format!("{TLS_MOUNT}/tls.key")}),
        ]);
        container["volumeMounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": true}));
        volumes.push(json!({"name": "tls", "secret": {"secretName": tls.secret_name}}));
    }
    let index_class = spec
        .gateway
        .storage_class_name
        .as_ref()
        .or(spec.storage.storage_class_name.as_ref());
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(&set, store, l.clone(), owner),
        "spec": {
            "replicas": replicas,
            // The headless Service of the same name (see `services`): it gives each pod the DNS
            // name listed in `CAIRN_PEERS`.
            "serviceName": set,
            // Parallel, whatever the replica count (the field cannot change on an existing
            // StatefulSet, so it must not depend on `replicas`): with OrderedReady, pod 1 would
            // wait for pod 0 to be Ready. The readiness probe (`/healthz` on the admin port)
            // answers without the index today, but a probe that needed it would deadlock, since
            // pod 0 alone cannot win an election among several listed peers (it needs a
            // majority). Rolling updates still replace one pod at a time.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "selector": selector(&l),
            "template": {
                "metadata": {"labels": l},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": super::TOPOLOGY_ZONE, "operator": "In", "values": spec.zones}]}
                    ]}}},
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": super::TOPOLOGY_ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector(&l)},
                        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": selector(&l)},
                    ],
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "imagePullSecrets": pull_secrets(store, config),
                    "containers": [container],
                    "volumes": volumes,
                }
            },
            "volumeClaimTemplates": [pvc("index", &spec.gateway.index_volume_size, index_class, &l)],
        }
    }))
}

fn service(
    store: &ObjectStore,
    name: &str,
    l: BTreeMap<String, String>,
    select: &BTreeMap<String, String>,
    spec: Value,
    owner: &OwnerReference,
) -> Service {
    let mut spec = spec;
    spec["selector"] = selector(select)["matchLabels"].clone();
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, store, l, owner),
        "spec": spec,
    }))
}

/// Every Service: a headless one per StatefulSet (stable pod DNS names, published before the pods
/// are ready: storage nodes repair through each other, and gateways replicate their index to
/// peers whatever the peers' readiness), the S3 Service and the internal admin Service.
pub fn services(store: &ObjectStore, owner: &OwnerReference) -> Vec<Service> {
    let name = store_name(store);
    let mut out = Vec::new();
    for zone in &store.spec.zones {
        let l = node_labels(&name, zone);
        let mut meta_l = l.clone();
        meta_l.insert("cairn.io/metrics".into(), "true".into());
        out.push(service(
            store,
            &names::node_set(&name, zone),
            meta_l,
            &l,
            json!({"clusterIP": "None", "publishNotReadyAddresses": true,
                   "ports": [{"name": "http", "port": NODE_PORT, "targetPort": "http", "protocol": "TCP"}]}),
            owner,
        ));
    }
    let gl = labels(&name, COMPONENT_GATEWAY);
    let mut meta_l = gl.clone();
    meta_l.insert("cairn.io/metrics".into(), "true".into());
    out.push(service(
        store,
        &names::gateway(&name),
        meta_l,
        &gl,
        json!({"clusterIP": "None", "publishNotReadyAddresses": true,
               "ports": [{"name": "s3", "port": GATEWAY_S3_PORT, "targetPort": "s3", "protocol": "TCP"},
                         {"name": "admin", "port": GATEWAY_ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"}]}),
        owner,
    ));
    let svc = &store.spec.service;
    let mut s3 = service(
        store,
        &names::s3_service(&name),
        labels(&name, "s3"),
        &gl,
        json!({"type": match svc.type_ { ServiceType::ClusterIP => "ClusterIP", ServiceType::NodePort => "NodePort", ServiceType::LoadBalancer => "LoadBalancer" },
               "ports": [{"name": "s3", "port": svc.port, "targetPort": "s3", "protocol": "TCP"}]}),
        owner,
    );
    if !svc.annotations.is_empty() {
        s3.metadata.annotations = Some(svc.annotations.clone());
    }
    out.push(s3);
    out.push(service(
        store,
        &names::admin_service(&name),
        labels(&name, "admin"),
        &gl,
        json!({"type": "ClusterIP",
               "ports": [{"name": "admin", "port": svc.admin_port, "targetPort": "admin", "protocol": "TCP"}]}),
        owner,
    ));
    out
}

/// PodDisruptionBudgets: at most one storage node per zone down at a time; a majority of
/// gateways always up (none for fewer than three gateways, where a majority would block every
/// node drain).
pub fn disruption_budgets(
    store: &ObjectStore,
    config: &BuildConfig,
    owner: &OwnerReference,
) -> Vec<PodDisruptionBudget> {
    let name = store_name(store);
    let mut out = Vec::new();
    for zone in &store.spec.zones {
        let l = node_labels(&name, zone);
        out.push(typed(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(&names::node_set(&name, zone), store, l.clone(), owner),
            "spec": {"maxUnavailable": 1, "selector": selector(&l)},
        })));
    }
    let replicas = gateway_replicas(&store.spec, config);
    if replicas >= 3 {
        let l = labels(&name, COMPONENT_GATEWAY);
        out.push(typed(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(&names::gateway(&name), store, l.clone(), owner),
            "spec": {"minAvailable": replicas / 2 + 1, "selector": selector(&l)},
        })));
    }
    out
}

/// A Prometheus Operator ServiceMonitor scraping every gateway and storage node (applied only
/// when that CRD exists in the cluster).
pub fn service_monitor(store: &ObjectStore, owner: &OwnerReference) -> DynamicObject {
    let name = store_name(store);
    typed(json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(&name, store, labels(&name, "metrics"), owner),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name, "cairn.io/metrics": "true"}},
            "endpoints": [
                {"port": "s3", "path": "/metrics", "interval": "30s"},
                {"port": "http", "path": "/metrics", "interval": "30s"},
            ],
        }
    }))
}

/// Labels of the operator's pods (the chart's selector labels, less the release name).
pub const OPERATOR_POD_LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/name", "cairn"),
    ("app.kubernetes.io/component", "operator"),
];

/// The fleet's NetworkPolicy (`NAME-fleet`), over its gateway and storage-node pods: the S3 port
/// from anywhere; the storage nodes' port only from this fleet's gateways and storage nodes;
/// the gateways' admin port (the admin API, and gateway-to-gateway Raft and internal RPC) only
/// from this fleet's gateways and the operator's pods; both of those also from
/// `spec.networkPolicy.metricsFrom` (Prometheus: `/metrics`). Ingress only; `None` when
/// `spec.networkPolicy.enabled` is false.
pub fn network_policy(
    store: &ObjectStore,
    config: &BuildConfig,
    owner: &OwnerReference,
) -> Option<NetworkPolicy> {
    let np = &store.spec.network_policy;
    if !np.enabled {
        return None;
    }
    let name = store_name(store);
    let pods_of = |component: &str| {
        json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/instance": name, "app.kubernetes.io/component": component}}})
    };
    let operator_labels: BTreeMap<&str, &str> = OPERATOR_POD_LABELS.into_iter().collect();
    let operator = match &config.operator_namespace {
        Some(ns) => json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "podSelector": {"matchLabels": operator_labels},
        }),
        None => json!({"namespaceSelector": {}, "podSelector": {"matchLabels": operator_labels}}),
    };
    let metrics: Vec<Value> = np
        .metrics_from
        .iter()
        .map(|p| serde_json::to_value(p).expect("peer"))
        .collect();
    let port = |p: i32| json!([{"port": p, "protocol": "TCP"}]);
    let mut node_peers = vec![pods_of(COMPONENT_GATEWAY), pods_of(COMPONENT_NODE)];
    node_peers.extend(metrics.iter().cloned());
    let mut admin_peers = vec![pods_of(COMPONENT_GATEWAY), operator];
    admin_peers.extend(metrics);
    Some(typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(&names::network_policy(&name), store, labels(&name, "network"), owner),
        "spec": {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/instance": name},
                "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In",
                                      "values": [COMPONENT_GATEWAY, COMPONENT_NODE]}],
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": port(GATEWAY_S3_PORT)},
                {"ports": port(NODE_PORT), "from": node_peers},
                {"ports": port(GATEWAY_ADMIN_PORT), "from": admin_peers},
            ],
        }
    })))
}

/// The owner reference every object of `store` carries.
pub fn owner_ref(store: &ObjectStore) -> OwnerReference {
    store
        .controller_owner_ref(&())
        .expect("an ObjectStore from the API has a name and uid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::objectstore::{StorageClassSpec, TlsSpec};
    use serde_json::Value;

    /// An ObjectStore as the API server returns it (name, namespace, uid, defaults).
    pub fn store(zones: &[&str]) -> ObjectStore {
        let mut s: ObjectStore = serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1",
            "kind": "ObjectStore",
            "metadata": {"name": "s3", "namespace": "storage", "uid": "uid-1", "generation": 1},
            "spec": {"zones": zones, "storage": {"nodesPerZone": 2, "volumeSize": "50Gi", "storageClassName": "fast"}}
        }))
        .unwrap();
        s.spec.gateway.replicas = 3;
        s
    }

    fn config() -> BuildConfig {
        BuildConfig {
            max_gateway_replicas: None,
            ..Default::default()
        }
    }

    fn v<T: serde::Serialize>(t: &T) -> Value {
        serde_json::to_value(t).unwrap()
    }

    #[test]
    fn node_statefulset_is_pinned_to_its_zone_with_a_pvc_per_pod() {
        let s = store(&["a", "b", "c"]);
        let sts = v(&node_statefulset(&s, "b", &config(), &owner_ref(&s)));
        assert_eq!(sts["metadata"]["name"], "s3-node-b");
        assert_eq!(sts["metadata"]["namespace"], "storage");
        assert_eq!(sts["metadata"]["ownerReferences"][0]["kind"], "ObjectStore");
        assert_eq!(sts["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 2);
        assert_eq!(spec["serviceName"], "s3-node-b");
        assert_eq!(spec["updateStrategy"]["type"], "OnDelete");
        let term = &spec["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0];
        assert_eq!(term["key"], "topology.kubernetes.io/zone");
        assert_eq!(term["operator"], "In");
        assert_eq!(term["values"], json!(["b"]));
        let anti = &spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(anti["labelSelector"]["matchLabels"]["cairn.io/zone"], "b");
        let pvc = &spec["volumeClaimTemplates"][0];
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "50Gi");
        assert_eq!(pvc["spec"]["storageClassName"], "fast");
        let env = &spec["template"]["spec"]["containers"][0]["env"];
        let get = |n: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .cloned()
                .unwrap()
        };
        assert_eq!(get("CAIRN_ZONE")["value"], "b");
        assert_eq!(
            get("CAIRN_NODE_ID")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert_eq!(get("CAIRN_LISTEN")["value"], "0.0.0.0:7000");
        // The selector matches the pod labels.
        for (k, val) in spec["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&spec["template"]["metadata"]["labels"][k], val);
        }
    }

    #[test]
    fn gateway_spreads_over_zones_and_knows_every_node() {
        let s = store(&["a", "b", "c"]);
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 3);
        let spread = &spec["template"]["spec"]["topologySpreadConstraints"][0];
        assert_eq!(spread["maxSkew"], 1);
        assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
        assert_eq!(spread["whenUnsatisfiable"], "DoNotSchedule");
        assert_eq!(
            spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "gateway"
        );
        assert_eq!(spec["volumeClaimTemplates"][0]["metadata"]["name"], "index");
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "10Gi"
        );
        let c = &spec["template"]["spec"]["containers"][0];
        assert_eq!(c["args"], json!(["serve"]));
        let env = c["env"].as_array().unwrap();
        let get = |n: &str| env.iter().find(|e| e["name"] == n).cloned().unwrap();
        let nodes = get("CAIRN_NODES")["value"].as_str().unwrap().to_string();
        let nodes: Vec<&str> = nodes.split(',').collect();
        assert_eq!(nodes.len(), 6);
        assert_eq!(
            nodes[0],
            "s3-node-a-0@a=http://s3-node-a-0.s3-node-a.storage.svc:7000"
        );
        assert_eq!(
            nodes[5],
            "s3-node-c-1@c=http://s3-node-c-1.s3-node-c.storage.svc:7000"
        );
        assert_eq!(
            get("CAIRN_ADMIN_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
            "s3-credentials"
        );
        assert_eq!(
            get("CAIRN_ROOT_ACCESS_KEY")["valueFrom"]["secretKeyRef"]["key"],
            "CAIRN_ROOT_ACCESS_KEY"
        );
        assert_eq!(get("CAIRN_DATA_SHARDS")["value"], "4");
        assert_eq!(get("CAIRN_PARITY_SHARDS")["value"], "2");
        // One storage class: no CAIRN_STORAGE_CLASSES at all (an empty value crash-looped the
        // gateways of every single-class fleet).
        assert!(!env.iter().any(|e| e["name"] == "CAIRN_STORAGE_CLASSES"));
        assert_eq!(get("CAIRN_INLINE_THRESHOLD")["value"], "64K");
        // Every node id parses as the gateway's `id@zone=url`.
        for n in nodes {
            let (id_zone, url) = n.split_once('=').unwrap();
            let (id, _zone) = id_zone.split_once('@').unwrap();
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(url.starts_with("http://"));
        }
    }

    #[test]
    fn gateway_replicas_capped_only_when_the_operator_says_so() {
        let s = store(&["a"]);
        // No cap by default: the gateways share a replicated index.
        assert_eq!(BuildConfig::default().max_gateway_replicas, None);
        assert_eq!(gateway_replicas(&s.spec, &BuildConfig::default()), 3);
        let capped = BuildConfig {
            max_gateway_replicas: Some(1),
            ..Default::default()
        };
        assert_eq!(gateway_replicas(&s.spec, &capped), 1);
        // No gateway PDB for a single gateway (it would block every drain).
        let pdbs = disruption_budgets(&s, &capped, &owner_ref(&s));
        assert_eq!(pdbs.len(), 1);
        // The capped count is what the peer list holds.
        let two = BuildConfig {
            max_gateway_replicas: Some(2),
            ..Default::default()
        };
        let sts = v(&gateway_statefulset(&s, &two, &owner_ref(&s)));
        assert_eq!(sts["spec"]["replicas"], 2);
        assert_eq!(
            env_of(&sts, PEERS_ENV)["value"],
            "0=http://s3-gateway-0.s3-gateway.storage.svc:9001,\
             1=http://s3-gateway-1.s3-gateway.storage.svc:9001"
        );
    }

    fn env_of(sts: &Value, name: &str) -> Value {
        sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn one_gateway_is_a_group_of_one_so_it_can_grow() {
        let mut s = store(&["a", "b", "c"]);
        s.spec.gateway.replicas = 1;
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(
            env_of(&sts, GATEWAY_ID_ENV)["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        assert_eq!(
            env_of(&sts, PEERS_ENV)["value"],
            "0=http://s3-gateway-0.s3-gateway.storage.svc:9001"
        );
    }

    #[test]
    fn three_of_five_gateways_vote_and_a_drain_keeps_the_leaving_ones_listed() {
        let mut s = store(&["a", "b", "c"]);
        s.spec.gateway.replicas = 5;
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(sts["spec"]["replicas"], 5);
        assert_eq!(env_of(&sts, INDEX_REPLICAS_ENV)["value"], "3");
        // Scaling to three while 3 and 4 are drained: still five pods, all five listed.
        s.spec.gateway.replicas = 3;
        let draining = v(&gateway_statefulset_of(&s, &config(), &owner_ref(&s), 5));
        assert_eq!(draining["spec"]["replicas"], 5);
        assert_eq!(env_of(&draining, PEERS_ENV), env_of(&sts, PEERS_ENV));
        let done = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(done["spec"]["replicas"], 3);
        assert_eq!(
            env_of(&done, PEERS_ENV)["value"]
                .as_str()
                .unwrap()
                .split(',')
                .count(),
            3
        );
        // Two gateways: both vote.
        s.spec.gateway.replicas = 2;
        let two = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(env_of(&two, INDEX_REPLICAS_ENV)["value"], "2");
    }

    #[test]
    fn several_gateways_share_one_index_through_the_headless_service() {
        let s = store(&["a", "b", "c"]);
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["podManagementPolicy"], "Parallel");
        assert_eq!(
            env_of(&sts, "CAIRN_GATEWAY_ID")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        assert_eq!(env_of(&sts, "CAIRN_INDEX_REPLICAS")["value"], "3");
        assert_eq!(
            env_of(&sts, "CAIRN_ZONE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['topology.kubernetes.io/zone']"
        );
        assert_eq!(
            env_of(&sts, "CAIRN_PEERS")["value"],
            "0=http://s3-gateway-0.s3-gateway.storage.svc:9001,\
             1=http://s3-gateway-1.s3-gateway.storage.svc:9001,\
             2=http://s3-gateway-2.s3-gateway.storage.svc:9001"
        );
        // Every peer parses as the gateway's `ID=URL` (unsigned id, http:// URL).
        for p in env_of(&sts, "CAIRN_PEERS")["value"]
            .as_str()
            .unwrap()
            .split(',')
        {
            let (id, url) = p.split_once('=').unwrap();
            id.parse::<u64>().unwrap();
            assert!(url.starts_with("http://") && !url.ends_with('/'), "{url}");
        }
        // The peer URLs name the admin port of the pods.
        let ports = spec["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "admin" && p["containerPort"] == GATEWAY_ADMIN_PORT)
        );
        // The governing Service is headless, publishes pods before they are ready, and
        // selects the gateway pods.
        let svcs: Vec<Value> = services(&s, &owner_ref(&s)).iter().map(v).collect();
        let headless = svcs
            .iter()
            .find(|svc| svc["metadata"]["name"] == spec["serviceName"])
            .unwrap();
        assert_eq!(spec["serviceName"], "s3-gateway");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
        for (k, val) in headless["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&spec["template"]["metadata"]["labels"][k], val);
        }
    }

    #[test]
    fn services_and_budgets() {
        let s = store(&["a", "b"]);
        let o = owner_ref(&s);
        let svcs: Vec<Value> = services(&s, &o).iter().map(v).collect();
        let names: Vec<&str> = svcs
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["s3-node-a", "s3-node-b", "s3-gateway", "s3", "s3-admin"]
        );
        assert_eq!(svcs[0]["spec"]["clusterIP"], "None");
        assert_eq!(svcs[0]["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(svcs[0]["spec"]["selector"]["cairn.io/zone"], "a");
        assert_eq!(svcs[2]["spec"]["clusterIP"], "None");
        assert_eq!(svcs[3]["spec"]["type"], "ClusterIP");
        assert_eq!(svcs[3]["spec"]["ports"][0]["port"], 9000);
        assert_eq!(
            svcs[3]["spec"]["selector"]["app.kubernetes.io/component"],
            "gateway"
        );
        assert_eq!(svcs[4]["spec"]["ports"][0]["port"], 9001);
        assert!(
            svcs.iter()
                .all(|s| s["metadata"]["ownerReferences"][0]["name"] == "s3")
        );
        let pdbs: Vec<Value> = disruption_budgets(&s, &config(), &o)
            .iter()
            .map(v)
            .collect();
        assert_eq!(pdbs.len(), 3);
        assert_eq!(pdbs[0]["spec"]["maxUnavailable"], 1);
        assert_eq!(
            pdbs[0]["spec"]["selector"]["matchLabels"]["cairn.io/zone"],
            "a"
        );
        assert_eq!(pdbs[2]["metadata"]["name"], "s3-gateway");
        assert_eq!(pdbs[2]["spec"]["minAvailable"], 2);
    }

    #[test]
    fn credentials_secret_round_trips() {
        let s = store(&["a"]);
        let secrets = FleetSecrets::generate();
        assert!(secrets.access_key.starts_with("CK") && secrets.access_key.len() == 20);
        assert_eq!(secrets.secret_key.len(), 40);
        assert!(secrets.admin_token.len() >= MIN_ADMIN_TOKEN_LEN);
        for k in [&secrets.fleet_secret, &secrets.index_seal_key] {
            let k = k.as_deref().unwrap();
            assert_eq!(k.len(), 64);
            assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(secrets.fleet_secret, secrets.index_seal_key);
        assert_ne!(FleetSecrets::generate(), secrets);
        let secret = credentials_secret(&s, &secrets, &owner_ref(&s));
        assert_eq!(secret.metadata.name.as_deref(), Some("s3-credentials"));
        assert_eq!(FleetSecrets::from_secret(&secret), Some(secrets.clone()));
        assert!(secret.metadata.owner_references.is_some());
        assert!(FleetSecrets::missing_keys(&secret).is_empty());
        // A Secret an older operator made: the generated-once keys are missing, and only they.
        let old = FleetSecrets {
            fleet_secret: None,
            index_seal_key: None,
            ..secrets
        };
        let old_secret = credentials_secret(&s, &old, &owner_ref(&s));
        let missing = FleetSecrets::missing_keys(&old_secret);
        assert_eq!(
            missing.keys().map(String::as_str).collect::<Vec<_>>(),
            [FLEET_SECRET, INDEX_SEAL_KEY]
        );
        assert_eq!(FleetSecrets::from_secret(&old_secret), Some(old));
    }

    /// Every `secretKeyRef` of a StatefulSet's container, as `key`.
    fn secret_keys(sts: &Value) -> Vec<String> {
        sts["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["key"].as_str())
            .map(String::from)
            .collect()
    }

    #[test]
    fn gateways_get_the_fleet_secret_and_seal_key_storage_nodes_only_the_fleet_secret() {
        let s = store(&["a", "b", "c"]);
        let gw = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(
            secret_keys(&gw),
            [
                ROOT_ACCESS_KEY,
                ROOT_SECRET_KEY,
                ADMIN_TOKEN,
                FLEET_SECRET,
                INDEX_SEAL_KEY
            ]
        );
        assert_eq!(
            env_of(&gw, FLEET_SECRET)["valueFrom"]["secretKeyRef"]["name"],
            "s3-credentials"
        );
        let node = v(&node_statefulset(&s, "a", &config(), &owner_ref(&s)));
        assert_eq!(secret_keys(&node), [FLEET_SECRET]);
        assert_eq!(
            env_of(&node, FLEET_SECRET)["valueFrom"]["secretKeyRef"]["name"],
            "s3-credentials"
        );
    }

    #[test]
    fn the_network_policy_opens_each_port_to_whom_needs_it() {
        let mut s = store(&["a", "b", "c"]);
        let mut c = config();
        c.operator_namespace = Some("cairn-system".into());
        let np = v(&network_policy(&s, &c, &owner_ref(&s)).unwrap());
        assert_eq!(np["metadata"]["name"], "s3-fleet");
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        let sel = &np["spec"]["podSelector"];
        assert_eq!(sel["matchLabels"]["app.kubernetes.io/instance"], "s3");
        assert_eq!(
            sel["matchExpressions"][0]["values"],
            json!(["gateway", "storage-node"])
        );
        let rules = np["spec"]["ingress"].as_array().unwrap();
        let rule = |port: i32| {
            rules
                .iter()
                .find(|r| r["ports"][0]["port"] == port)
                .unwrap()
                .clone()
        };
        // S3 from anywhere.
        assert_eq!(rule(9000).get("from"), None);
        // Storage nodes: this fleet's gateways and storage nodes only.
        let from = |r: &Value| -> Vec<Value> { r["from"].as_array().unwrap().clone() };
        let comp =
            |p: &Value| p["podSelector"]["matchLabels"]["app.kubernetes.io/component"].clone();
        let nodes = from(&rule(7000));
        assert_eq!(nodes.len(), 2);
        assert_eq!(comp(&nodes[0]), "gateway");
        assert_eq!(comp(&nodes[1]), "storage-node");
        assert!(nodes.iter().all(
            |p| p["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "s3"
                && p.get("namespaceSelector").is_none()
        ));
        // Admin: gateways, and the operator's pods in the operator's namespace.
        let admin = from(&rule(9001));
        assert_eq!(admin.len(), 2);
        assert_eq!(comp(&admin[0]), "gateway");
        assert_eq!(
            admin[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "cairn-system"
        );
        assert_eq!(comp(&admin[1]), "operator");
        // Prometheus, when named, may scrape both internal ports.
        s.spec.network_policy.metrics_from = vec![serde_json::from_value(json!(
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ))
        .unwrap()];
        let np = v(&network_policy(&s, &c, &owner_ref(&s)).unwrap());
        let rules = np["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules[1]["from"].as_array().unwrap().len(), 3);
        assert_eq!(rules[2]["from"].as_array().unwrap().len(), 3);
        s.spec.network_policy.enabled = false;
        assert!(network_policy(&s, &c, &owner_ref(&s)).is_none());
    }

    #[test]
    fn extra_storage_classes_use_the_gateways_syntax() {
        let mut s = store(&["a", "b", "c"]);
        assert_eq!(extra_storage_classes(&s.spec), "");
        s.spec.storage_classes.push(StorageClassSpec {
            name: "STANDARD_IA".into(),
            data_shards: 6,
            parity_shards: 3,
            placement: Placement::Spread,
            zone: None,
        });
        s.spec.storage_classes.push(StorageClassSpec {
            name: "ONEZONE_IA".into(),
            data_shards: 1,
            parity_shards: 1,
            placement: Placement::SingleZone,
            zone: Some("b".into()),
        });
        assert_eq!(
            extra_storage_classes(&s.spec),
            "STANDARD_IA=6+3,ONEZONE_IA=1+1:zone=b"
        );
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(
            env_of(&sts, "CAIRN_STORAGE_CLASSES")["value"],
            "STANDARD_IA=6+3,ONEZONE_IA=1+1:zone=b"
        );
    }

    #[test]
    fn validation_of_what_the_schema_cannot_see() {
        let mut s = store(&["a", "b", "c"]);
        assert!(validate(&s.spec).is_empty());
        s.spec.storage_classes.push(StorageClassSpec {
            name: "GLACIER".into(),
            data_shards: 10,
            parity_shards: 4,
            placement: Placement::Spread,
            zone: None,
        });
        let p = validate(&s.spec);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("GLACIER needs 14 storage nodes"), "{p:?}");
        s.spec.storage_classes.pop();
        s.spec.storage_classes.push(StorageClassSpec {
            name: "ONEZONE_IA".into(),
            data_shards: 2,
            parity_shards: 1,
            placement: Placement::SingleZone,
            zone: Some("a".into()),
        });
        assert!(validate(&s.spec)[0].contains("ONEZONE_IA needs 3 storage nodes in zone a"));
    }

    #[test]
    fn partitioning_settings_reach_the_gateway_and_absent_ones_keep_its_defaults() {
        let mut s = store(&["a", "b", "c"]);
        let plain = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(env_of(&plain, "CAIRN_SPLIT_WRITE_THRESHOLD"), Value::Null);
        s.spec.gateway.partitioning = Some(crate::crd::objectstore::PartitioningSpec {
            split_write_threshold: Some(1000),
            merge_quiet_period: Some("30m".into()),
            ..Default::default()
        });
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(env_of(&sts, "CAIRN_SPLIT_WRITE_THRESHOLD")["value"], "1000");
        assert_eq!(env_of(&sts, "CAIRN_MERGE_QUIET_PERIOD")["value"], "30m");
        assert_eq!(env_of(&sts, "CAIRN_SPLIT_READ_THRESHOLD"), Value::Null);
        assert_eq!(env_of(&sts, "CAIRN_SPLIT_SIZE_LIMIT"), Value::Null);
    }

    #[test]
    fn a_tls_secret_is_mounted_and_handed_to_the_gateway() {
        let mut s = store(&["a", "b", "c"]);
        let plain = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(env_of(&plain, "CAIRN_TLS_CERT"), Value::Null);
        assert_eq!(plain["spec"]["template"]["spec"]["volumes"], json!([]));
        s.spec.tls = Some(TlsSpec {
            secret_name: "s3-cert".into(),
        });
        let sts = v(&gateway_statefulset(&s, &config(), &owner_ref(&s)));
        assert_eq!(env_of(&sts, "CAIRN_TLS_CERT")["value"], "/tls/tls.crt");
        assert_eq!(env_of(&sts, "CAIRN_TLS_KEY")["value"], "/tls/tls.key");
        let pod = &sts["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"],
            json!([{"name": "tls", "secret": {"secretName": "s3-cert"}}])
        );
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(mounts.contains(&json!({"name": "tls", "mountPath": "/tls", "readOnly": true})));
    }

    #[test]
    fn endpoint_and_service_type() {
        let mut s = store(&["a"]);
        assert_eq!(s3_endpoint(&s).url(), "http://s3.storage.svc:9000");
        assert_eq!(admin_url(&s), "http://s3-admin.storage.svc:9001");
        s.spec.tls = Some(TlsSpec {
            secret_name: "tls".into(),
        });
        s.spec.service.type_ = ServiceType::LoadBalancer;
        s.spec
            .service
            .annotations
            .insert("lb".into(), "internal".into());
        assert_eq!(s3_endpoint(&s).url(), "https://s3.storage.svc:9000");
        let svc = v(&services(&s, &owner_ref(&s))[2]);
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["metadata"]["annotations"]["lb"], "internal");
    }

    #[test]
    fn service_monitor_selects_gateways_and_nodes() {
        let s = store(&["a"]);
        let sm = v(&service_monitor(&s, &owner_ref(&s)));
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(sm["kind"], "ServiceMonitor");
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"]["cairn.io/metrics"],
            "true"
        );
        let ports: Vec<&str> = sm["spec"]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["port"].as_str().unwrap())
            .collect();
        assert_eq!(ports, ["s3", "http"]);
        // The headless Services carry the label and the port names it scrapes.
        let svcs: Vec<Value> = services(&s, &owner_ref(&s)).iter().map(v).collect();
        assert_eq!(svcs[0]["metadata"]["labels"]["cairn.io/metrics"], "true");
        assert_eq!(svcs[0]["spec"]["ports"][0]["name"], "http");
        assert_eq!(svcs[1]["metadata"]["labels"]["cairn.io/metrics"], "true");
        assert_eq!(svcs[1]["spec"]["ports"][0]["name"], "s3");
    }
}

//! The four controllers against an in-memory API server and admin API: objects created and their
//! key fields, idempotency, status and conditions, finalizer paths, bad specs.

mod common;

use std::sync::Arc;

use cairn_operator::controller::{Context, bucket, objectstore, policy};
use cairn_operator::crd::{Bucket, LifecyclePolicy, ObjectStore, ReplicationRule};
use common::fake_admin::FakeAdmin;
use common::fake_kube::FakeKube;
use kube::api::Api;
use serde_json::{Value, json};

const CAIRN: &str = "/apis/cairn.io/v1alpha1/namespaces";

fn store_json(extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "ObjectStore",
        "metadata": {"name": "s3", "namespace": "storage"},
        "spec": {"zones": ["a", "b", "c"], "storage": {"nodesPerZone": 2, "volumeSize": "10Gi"}, "gateway": {"replicas": 3}}
    });
    json_patch::merge(&mut v, &extra);
    v
}

fn cond<'a>(obj: &'a Value, t: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

async fn reconcile_store(kube: &FakeKube, ctx: &Arc<Context>) -> Result<(), String> {
    let api: Api<ObjectStore> = Api::namespaced(kube.client(), "storage");
    let s = api.get("s3").await.map_err(|e| e.to_string())?;
    objectstore::reconcile(Arc::new(s), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn reconcile_bucket(kube: &FakeKube, ctx: &Arc<Context>, name: &str) -> Result<(), String> {
    let api: Api<Bucket> = Api::namespaced(kube.client(), "app");
    let b = api.get(name).await.map_err(|e| e.to_string())?;
    bucket::reconcile(Arc::new(b), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn path_store() -> String {
    format!("{CAIRN}/storage/objectstores/s3")
}

#[tokio::test]
async fn objectstore_creates_the_fleet_idempotently() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::default()); // no gateway answering yet
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );

    reconcile_store(&kube, &ctx).await.unwrap(); // adds the finalizer
    assert_eq!(
        kube.get(&path_store()).unwrap()["metadata"]["finalizers"],
        json!(["cairn.io/finalizer"])
    );
    reconcile_store(&kube, &ctx).await.unwrap();

    let sts = kube.paths("/apis/apps/v1/namespaces/storage/statefulsets/");
    assert_eq!(sts.len(), 4, "{sts:?}");
    let zone_b = kube
        .get("/apis/apps/v1/namespaces/storage/statefulsets/s3-node-b")
        .unwrap();
    assert_eq!(
        zone_b["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["b"])
    );
    assert_eq!(zone_b["metadata"]["ownerReferences"][0]["name"], "s3");
    let gw = kube
        .get("/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway")
        .unwrap();
    assert_eq!(
        gw["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(kube.paths("/api/v1/namespaces/storage/services/").len(), 6);
    assert_eq!(
        kube.paths("/apis/policy/v1/namespaces/storage/poddisruptionbudgets/")
            .len(),
        4
    );
    let secret = kube
        .get("/api/v1/namespaces/storage/secrets/s3-credentials")
        .unwrap();
    for k in [
        "CAIRN_ROOT_ACCESS_KEY",
        "CAIRN_ROOT_SECRET_KEY",
        "CAIRN_ADMIN_TOKEN",
        "CAIRN_FLEET_SECRET",
        "CAIRN_INDEX_SEAL_KEY",
    ] {
        assert!(secret["data"][k].is_string(), "{k}");
    }
    let fleet = base64_lite::decode(secret["data"]["CAIRN_FLEET_SECRET"].as_str().unwrap());
    assert_eq!(fleet.len(), 64, "32 bytes, hex");
    assert!(base64_lite::decode(secret["data"]["CAIRN_ADMIN_TOKEN"].as_str().unwrap()).len() >= 32);

    let store = kube.get(&path_store()).unwrap();
    assert_eq!(store["status"]["observedGeneration"], 1);
    assert_eq!(cond(&store, "Ready")["status"], "False");
    assert_eq!(cond(&store, "Ready")["reason"], "PodsNotReady");
    assert_eq!(cond(&store, "Progressing")["status"], "True");
    assert_eq!(store["status"]["endpoint"], "http://s3.storage.svc:9000");
    assert_eq!(store["status"]["phase"], "Progressing");

    // A second reconcile changes nothing, and the generated credentials are kept.
    let before = kube.versions();
    reconcile_store(&kube, &ctx).await.unwrap();
    assert_eq!(kube.versions(), before);
    assert_eq!(
        kube.get("/api/v1/namespaces/storage/secrets/s3-credentials")
            .unwrap()["data"],
        secret["data"]
    );
    // Server-side apply with the operator's field manager.
    assert!(
        kube.requests()
            .iter()
            .any(|(m, p)| m == "PATCH" && p.ends_with("/statefulsets/s3-gateway"))
    );
}

#[tokio::test]
async fn objectstore_ready_when_pods_ready_and_fleet_healthy() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    for p in kube.paths("/apis/apps/v1/namespaces/storage/statefulsets/") {
        kube.edit(&p, |s| {
            let n = s["spec"]["replicas"].clone();
            s["status"] = json!({"replicas": n, "readyReplicas": n, "observedGeneration": 1,
                                 "currentRevision": "r1", "updateRevision": "r1"});
        });
    }
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(
        cond(&store, "Ready")["status"],
        "True",
        "{}",
        store["status"]
    );
    assert_eq!(cond(&store, "Degraded")["status"], "False");
    assert_eq!(cond(&store, "Progressing")["status"], "False");
    assert_eq!(store["status"]["phase"], "Ready");
    assert_eq!(store["status"]["readyGateways"], 3);
    assert_eq!(store["status"]["readyStorageNodes"], 6);
    assert_eq!(store["status"]["capacity"]["totalBytes"], 6000);
    assert_eq!(store["status"]["zones"][0]["nodesUp"], 2);
    assert!(kube.event_reasons().contains(&"Ready".to_string()));

    // A node goes down: Degraded.
    admin.state.lock().unwrap().health.as_mut().unwrap().status = "degraded".into();
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Degraded")["status"], "True");
    assert_eq!(cond(&store, "Degraded")["reason"], "NodesDown");
}

#[tokio::test]
async fn gateways_share_an_index_and_a_cap_is_only_what_the_operator_sets() {
    use cairn_operator::metrics::Metrics;
    use cairn_operator::resources::objectstore::BuildConfig;

    let gw_env = |kube: &FakeKube| -> Value {
        kube.get("/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
            .clone()
    };
    let env_value = |env: &Value, name: &str| -> Value {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };

    // The default operator runs every gateway the spec asks for, as one replicated index.
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let default_ctx = Context::new(
        kube.client(),
        Arc::new(common::FixedConnector(admin.clone())),
        Arc::new(Metrics::default()),
        BuildConfig::default(),
    );
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &default_ctx).await.unwrap();
    reconcile_store(&kube, &default_ctx).await.unwrap();
    let gw = kube
        .get("/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway")
        .unwrap();
    assert_eq!(gw["spec"]["replicas"], 3);
    assert_eq!(gw["spec"]["serviceName"], "s3-gateway");
    let env = gw_env(&kube);
    assert_eq!(
        env_value(&env, "CAIRN_PEERS")["value"],
        "0=http://s3-gateway-0.s3-gateway.storage.svc:9001,1=http://s3-gateway-1.s3-gateway.storage.svc:9001,2=http://s3-gateway-2.s3-gateway.storage.svc:9001"
    );
    assert_eq!(
        env_value(&env, "CAIRN_GATEWAY_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let headless = kube
        .get("/api/v1/namespaces/storage/services/s3-gateway")
        .unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let store = kube.get(&path_store()).unwrap();
    assert_ne!(cond(&store, "Degraded")["reason"], "GatewayReplicasCapped");

    // An operator capped at 2: two gateways listed as peers, and a Degraded condition says so.
    let capped = Context::new(
        kube.client(),
        Arc::new(common::FixedConnector(admin.clone())),
        Arc::new(Metrics::default()),
        BuildConfig {
            max_gateway_replicas: Some(2),
            ..Default::default()
        },
    );
    reconcile_store(&kube, &capped).await.unwrap();
    let gw = kube
        .get("/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway")
        .unwrap();
    assert_eq!(gw["spec"]["replicas"], 2);
    assert_eq!(
        env_value(&gw_env(&kube), "CAIRN_PEERS")["value"],
        "0=http://s3-gateway-0.s3-gateway.storage.svc:9001,1=http://s3-gateway-1.s3-gateway.storage.svc:9001"
    );
    let store = kube.get(&path_store()).unwrap();
    let degraded = cond(&store, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "GatewayReplicasCapped");
    let msg = degraded["message"].as_str().unwrap();
    assert!(msg.contains("running 2 gateway(s) instead of 3"), "{msg}");
    assert!(msg.contains("--max-gateway-replicas"), "{msg}");
    assert!(!msg.contains("unreplicated"), "{msg}");

    // One gateway: a group of one (its log lets it grow to several later).
    kube.edit(&path_store(), |s| {
        s["spec"]["gateway"]["replicas"] = json!(1)
    });
    reconcile_store(&kube, &default_ctx).await.unwrap();
    let env = gw_env(&kube);
    assert_eq!(
        env_value(&env, "CAIRN_PEERS")["value"],
        "0=http://s3-gateway-0.s3-gateway.storage.svc:9001"
    );
    assert!(env_value(&env, "CAIRN_GATEWAY_ID")["valueFrom"].is_object());
    let store = kube.get(&path_store()).unwrap();
    assert_ne!(cond(&store, "Degraded")["reason"], "GatewayReplicasCapped");
}

#[tokio::test]
async fn a_gateway_scale_down_waits_until_the_leaving_gateways_no_longer_vote() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({"spec": {"gateway": {"replicas": 5}}})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    let gateway = "/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway";
    assert_eq!(kube.get(gateway).unwrap()["spec"]["replicas"], 5);
    {
        let mut s = admin.state.lock().unwrap();
        // Gateway 4 leads, 3 votes: deleting both at once would leave one of three voters.
        s.index.leader = Some(4);
        s.index.voters = vec![0, 3, 4];
        s.drain_stuck = true;
    }

    kube.edit(&path_store(), |s| {
        s["spec"]["gateway"]["replicas"] = json!(3)
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    // Still five gateways, all listed, while 3 and 4 hand their votes over.
    let gw = kube.get(gateway).unwrap();
    assert_eq!(gw["spec"]["replicas"], 5);
    let peers = gw["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CAIRN_PEERS")
        .unwrap()["value"]
        .clone();
    assert_eq!(peers.as_str().unwrap().split(',').count(), 5);
    let store = kube.get(&path_store()).unwrap();
    let progressing = cond(&store, "Progressing");
    assert_eq!(progressing["status"], "True");
    assert_eq!(progressing["reason"], "DrainingGateways");
    let msg = progressing["message"].as_str().unwrap();
    assert!(msg.contains("{3, 4}") && msg.contains("5 -> 3"), "{msg}");
    assert!(
        admin
            .state
            .lock()
            .unwrap()
            .calls
            .contains(&"retire {3, 4}".to_string())
    );

    // Once they no longer vote or lead, the StatefulSet shrinks.
    admin.state.lock().unwrap().drain_stuck = false;
    reconcile_store(&kube, &ctx).await.unwrap();
    let gw = kube.get(gateway).unwrap();
    assert_eq!(gw["spec"]["replicas"], 3);
    let index = admin.state.lock().unwrap().index.clone();
    assert_eq!(index.voters, vec![0]);
    assert_eq!(index.leader, Some(0));
    // Settled (no gateway pod beyond the count): nothing is retiring any more.
    reconcile_store(&kube, &ctx).await.unwrap();
    assert!(admin.state.lock().unwrap().index.retiring.is_empty());
    let store = kube.get(&path_store()).unwrap();
    assert_ne!(cond(&store, "Progressing")["reason"], "DrainingGateways");
}

#[tokio::test]
async fn objectstore_bad_spec_is_a_condition_not_a_crash_loop() {
    let kube = FakeKube::new();
    let ctx = common::context(&kube, Arc::new(FakeAdmin::default()));
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({"spec": {"storageClasses": [{"name": "GLACIER", "dataShards": 10, "parityShards": 4}]}})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Ready")["reason"], "InvalidSpec");
    assert!(
        cond(&store, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("GLACIER needs 14 storage nodes")
    );
    assert_eq!(store["status"]["phase"], "Failed");
    assert!(
        kube.paths("/apis/apps/v1/").is_empty(),
        "nothing is built from a bad spec"
    );
    assert!(kube.event_reasons().contains(&"InvalidSpec".to_string()));
}

#[tokio::test]
async fn objectstore_rolls_one_storage_node_only_while_healthy() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    for p in kube.paths("/apis/apps/v1/namespaces/storage/statefulsets/") {
        kube.edit(&p, |s| {
            let n = s["spec"]["replicas"].clone();
            s["status"] = json!({"replicas": n, "readyReplicas": n, "observedGeneration": 1,
                                 "currentRevision": "r1", "updateRevision": "r2"});
        });
    }
    for zone in ["a", "b", "c"] {
        for i in 0..2 {
            let set = format!("s3-node-{zone}");
            kube.insert("/api/v1/namespaces/storage/pods", json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{set}-{i}"), "namespace": "storage",
                             "labels": {"app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "storage-node", "controller-revision-hash": "r1"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set, "uid": "x"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }));
        }
    }
    admin.state.lock().unwrap().health.as_mut().unwrap().status = "degraded".into();
    reconcile_store(&kube, &ctx).await.unwrap();
    assert_eq!(
        kube.paths("/api/v1/namespaces/storage/pods/").len(),
        6,
        "no roll while degraded"
    );
    let store = kube.get(&path_store()).unwrap();
    assert!(
        cond(&store, "Progressing")["message"]
            .as_str()
            .unwrap()
            .contains("paused: fleet is degraded")
    );

    admin.state.lock().unwrap().health.as_mut().unwrap().status = "ok".into();
    reconcile_store(&kube, &ctx).await.unwrap();
    let pods = kube.paths("/api/v1/namespaces/storage/pods/");
    assert_eq!(pods.len(), 5, "exactly one storage node restarted");
    assert!(!pods.iter().any(|p| p.ends_with("s3-node-c-1")));
    assert!(
        kube.event_reasons()
            .contains(&"RollingStorageNode".to_string())
    );
}

#[tokio::test]
async fn objectstore_deletion_blocked_while_buckets_exist() {
    let kube = FakeKube::new();
    let ctx = common::context(&kube, Arc::new(FakeAdmin::default()));
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    kube.insert(
        &format!("{CAIRN}/app/buckets"),
        json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "photos", "namespace": "app"},
            "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}}
        }),
    );
    kube.delete(&path_store());
    let err = reconcile_store(&kube, &ctx).await.unwrap_err();
    assert!(
        err.contains("still used by 1 Bucket(s): app/photos"),
        "{err}"
    );
    let store = kube.get(&path_store()).expect("kept by its finalizer");
    assert_eq!(cond(&store, "Ready")["reason"], "DeletionBlocked");
    assert_eq!(store["status"]["phase"], "Deleting");
    assert!(
        kube.event_reasons()
            .contains(&"DeletionBlocked".to_string())
    );

    kube.objects
        .lock()
        .unwrap()
        .remove(&format!("{CAIRN}/app/buckets/photos"));
    reconcile_store(&kube, &ctx).await.unwrap();
    assert!(
        kube.get(&path_store()).is_none(),
        "finalizer removed, store gone"
    );
}

/// A store with its credentials Secret, and a Bucket.
fn bucket_setup(bucket_extra: Value) -> (FakeKube, Arc<FakeAdmin>, Arc<Context>) {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({"spec": {"allowedNamespaces": {"names": ["app"]}}})),
    );
    kube.insert("/api/v1/namespaces/storage/secrets", json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": "storage"},
        "data": {"CAIRN_ROOT_ACCESS_KEY": "QUs=", "CAIRN_ROOT_SECRET_KEY": "U0s=", "CAIRN_ADMIN_TOKEN": "VA=="}
    }));
    let mut b = json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "photos", "namespace": "app"},
        "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}, "versioning": "Off", "deletionPolicy": "Retain", "adoptExisting": false}
    });
    json_patch::merge(&mut b, &bucket_extra);
    kube.insert(&format!("{CAIRN}/app/buckets"), b);
    (kube, admin, ctx)
}

fn secret_value(kube: &FakeKube, name: &str, key: &str) -> String {
    use base64_lite::decode;
    let s = kube
        .get(&format!("/api/v1/namespaces/app/secrets/{name}"))
        .expect("secret");
    decode(s["data"][key].as_str().expect(key))
}

/// Minimal base64 decoding for the test (the Secret data is base64).
mod base64_lite {
    pub fn decode(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=') {
            bits = (bits << 6) | T.iter().position(|t| *t == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}

#[tokio::test]
async fn bucket_created_with_a_scoped_key_and_app_secret() {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap(); // finalizer
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    {
        let s = admin.state.lock().unwrap();
        assert!(s.buckets.contains_key("photos"));
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.keys[0].0.buckets, Some(vec!["photos".to_string()]));
        assert_eq!(s.keys[0].0.name, "k8s:app/photos");
    }
    let id = secret_value(&kube, "photos", "AWS_ACCESS_KEY_ID");
    assert_eq!(id, "CKFAKE1");
    assert_eq!(secret_value(&kube, "photos", "COSI_S3_ACCESS_KEY_ID"), id);
    assert_eq!(
        secret_value(&kube, "photos", "AWS_ENDPOINT_URL_S3"),
        "http://s3.storage.svc:9000"
    );
    assert_eq!(
        secret_value(&kube, "photos", "BUCKET_HOST"),
        "s3.storage.svc"
    );
    assert_eq!(secret_value(&kube, "photos", "BUCKET_PORT"), "9000");
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["status"], "True");
    assert_eq!(b["status"]["phase"], "Ready");
    assert_eq!(b["status"]["bucketName"], "photos");
    assert_eq!(b["status"]["secretName"], "photos");
    assert_eq!(b["status"]["accessKeyId"], "CKFAKE1");
    assert_eq!(b["status"]["observedGeneration"], 1);
    assert_eq!(b["metadata"]["finalizers"], json!(["cairn.io/finalizer"]));
    let secret = kube.get("/api/v1/namespaces/app/secrets/photos").unwrap();
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Bucket");

    // Idempotent: no new key, nothing rewritten.
    let before = kube.versions();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    assert_eq!(kube.versions(), before);
    assert_eq!(admin.state.lock().unwrap().keys.len(), 1);

    // The Secret is lost: a new key replaces the old one.
    kube.objects
        .lock()
        .unwrap()
        .remove("/api/v1/namespaces/app/secrets/photos");
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let s = admin.state.lock().unwrap();
    assert_eq!(s.keys.len(), 1);
    assert_eq!(s.keys[0].0.access_key_id, "CKFAKE2");
    assert!(s.calls.contains(&"delete_key CKFAKE1".to_string()));
    drop(s);
    assert_eq!(
        secret_value(&kube, "photos", "AWS_ACCESS_KEY_ID"),
        "CKFAKE2"
    );
}

#[tokio::test]
async fn bucket_retain_keeps_data_and_deletes_the_key() {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    kube.delete(&format!("{CAIRN}/app/buckets/photos"));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    assert!(kube.get(&format!("{CAIRN}/app/buckets/photos")).is_none());
    let s = admin.state.lock().unwrap();
    assert!(s.buckets.contains_key("photos"), "data kept");
    assert!(s.keys.is_empty(), "key deleted");
    drop(s);
    assert!(kube.event_reasons().contains(&"BucketRetained".to_string()));
}

#[tokio::test]
async fn bucket_delete_policy_empties_and_deletes() {
    let (kube, admin, ctx) = bucket_setup(json!({"spec": {"deletionPolicy": "Delete"}}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    admin
        .state
        .lock()
        .unwrap()
        .buckets
        .insert("photos".into(), 5); // objects in it
    kube.delete(&format!("{CAIRN}/app/buckets/photos"));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    assert!(kube.get(&format!("{CAIRN}/app/buckets/photos")).is_none());
    let s = admin.state.lock().unwrap();
    assert!(!s.buckets.contains_key("photos"));
    assert!(
        s.calls
            .contains(&"delete_bucket photos force=true".to_string())
    );
    assert!(s.keys.is_empty());
}

#[tokio::test]
async fn bucket_existing_needs_adoption() {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    admin
        .state
        .lock()
        .unwrap()
        .buckets
        .insert("photos".into(), 3);
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "BucketAlreadyExists");
    assert!(
        cond(&b, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("adoptExisting")
    );
    assert!(kube.get("/api/v1/namespaces/app/secrets/photos").is_none());

    // Adoption from another namespace than the ObjectStore's is refused: it would hand this
    // namespace a bucket someone else made.
    kube.edit(&format!("{CAIRN}/app/buckets/photos"), |b| {
        b["spec"]["adoptExisting"] = json!(true)
    });
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "AdoptionNotAllowed");
    assert!(admin.state.lock().unwrap().keys.is_empty());

    // In the ObjectStore's own namespace it adopts.
    kube.insert(
        &format!("{CAIRN}/storage/buckets"),
        json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
               "metadata": {"name": "photos", "namespace": "storage"},
               "spec": {"objectStoreRef": {"name": "s3"}, "adoptExisting": true}}),
    );
    let api: Api<Bucket> = Api::namespaced(kube.client(), "storage");
    for _ in 0..2 {
        let b = api.get("photos").await.unwrap();
        bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    }
    let b = kube
        .get(&format!("{CAIRN}/storage/buckets/photos"))
        .unwrap();
    assert_eq!(cond(&b, "Ready")["status"], "True", "{}", b["status"]);
    assert_eq!(b["status"]["objects"], 3);
    assert!(kube.event_reasons().contains(&"BucketAdopted".to_string()));
}

#[tokio::test]
async fn bucket_conditions_for_missing_store_and_unsupported_features() {
    let (kube, _admin, ctx) = bucket_setup(json!({"spec": {"objectStoreRef": {"name": "nope"}}}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "ObjectStoreNotFound");
    assert!(
        cond(&b, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("storage/nope")
    );

    // Versioning, the quota and the default storage class are pushed to the gateway.
    let (kube, admin, ctx) = bucket_setup(json!({"spec": {
        "versioning": "Enabled",
        "quota": {"maxSize": "1Gi", "maxObjects": 5},
        "defaultStorageClass": "STANDARD_IA",
    }}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["status"], "True");
    assert_eq!(cond(&b, "Degraded")["status"], "False");
    let state = admin.state.lock().unwrap();
    assert_eq!(
        state.versioning.get("photos").map(String::as_str),
        Some("Enabled")
    );
    assert_eq!(
        state.quota.get("photos"),
        Some(&json!({"maxBytes": 1u64 << 30, "maxObjects": 5}))
    );
    assert_eq!(
        state.default_class.get("photos").map(String::as_str),
        Some("STANDARD_IA")
    );
}

async fn ready_bucket() -> (FakeKube, Arc<FakeAdmin>, Arc<Context>) {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    (kube, admin, ctx)
}

async fn reconcile_lifecycle(
    kube: &FakeKube,
    ctx: &Arc<Context>,
    name: &str,
) -> Result<(), String> {
    let api: Api<LifecyclePolicy> = Api::namespaced(kube.client(), "app");
    let p = api.get(name).await.map_err(|e| e.to_string())?;
    policy::reconcile_lifecycle(Arc::new(p), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn lifecycle(name: &str, class: &str) -> Value {
    json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy",
        "metadata": {"name": name, "namespace": "app"},
        "spec": {"bucketRef": {"name": "photos"}, "rules": [
            {"id": format!("{name}-r"), "enabled": true, "filter": {"prefix": "logs/"},
             "transitions": [{"days": 30, "storageClass": class}], "expiration": {"days": 90}}
        ]}
    })
}

#[tokio::test]
async fn lifecycle_pushed_merged_and_removed() {
    let (kube, admin, ctx) = ready_bucket().await;
    kube.insert(
        &format!("{CAIRN}/app/lifecyclepolicies"),
        lifecycle("p1", "STANDARD"),
    );
    kube.insert(
        &format!("{CAIRN}/app/lifecyclepolicies"),
        lifecycle("p2", "STANDARD"),
    );
    for _ in 0..2 {
        reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    }
    let p = kube
        .get(&format!("{CAIRN}/app/lifecyclepolicies/p1"))
        .unwrap();
    assert_eq!(cond(&p, "Ready")["status"], "True", "{}", p["status"]);
    assert_eq!(p["status"]["bucketName"], "photos");
    assert_eq!(p["status"]["rules"], 1);
    {
        let s = admin.state.lock().unwrap();
        let doc = &s.configs[&("photos".to_string(), "lifecycle")];
        let ids: Vec<&str> = doc["Rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ID"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["p1-r", "p2-r"],
            "every policy of the bucket in one configuration"
        );
        assert_eq!(
            doc["Rules"][0]["Transitions"][0]["StorageClass"],
            "STANDARD"
        );
    }
    let before = kube.versions();
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    assert_eq!(kube.versions(), before, "idempotent");

    // Deleting p1 leaves p2's rule; deleting p2 removes the configuration.
    kube.delete(&format!("{CAIRN}/app/lifecyclepolicies/p1"));
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    assert!(
        kube.get(&format!("{CAIRN}/app/lifecyclepolicies/p1"))
            .is_none()
    );
    {
        let s = admin.state.lock().unwrap();
        let doc = &s.configs[&("photos".to_string(), "lifecycle")];
        assert_eq!(doc["Rules"].as_array().unwrap().len(), 1);
        assert_eq!(doc["Rules"][0]["ID"], "p2-r");
    }
    reconcile_lifecycle(&kube, &ctx, "p2").await.unwrap();
    kube.delete(&format!("{CAIRN}/app/lifecyclepolicies/p2"));
    reconcile_lifecycle(&kube, &ctx, "p2").await.unwrap();
    assert!(admin.state.lock().unwrap().configs.is_empty());
}

#[tokio::test]
async fn lifecycle_conditions_for_unsupported_gateway_and_bad_specs() {
    let (kube, admin, ctx) = ready_bucket().await;
    admin.state.lock().unwrap().no_config_endpoints = true;
    kube.insert(
        &format!("{CAIRN}/app/lifecyclepolicies"),
        lifecycle("p1", "STANDARD"),
    );
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    let p = kube
        .get(&format!("{CAIRN}/app/lifecyclepolicies/p1"))
        .unwrap();
    assert_eq!(cond(&p, "Ready")["status"], "False");
    assert_eq!(cond(&p, "Ready")["reason"], "GatewayUnsupported");
    // Deleting works even though nothing was ever stored.
    kube.delete(&format!("{CAIRN}/app/lifecyclepolicies/p1"));
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    assert!(
        kube.get(&format!("{CAIRN}/app/lifecyclepolicies/p1"))
            .is_none()
    );

    admin.state.lock().unwrap().no_config_endpoints = false;
    kube.insert(
        &format!("{CAIRN}/app/lifecyclepolicies"),
        lifecycle("p2", "GLACIER"),
    );
    reconcile_lifecycle(&kube, &ctx, "p2").await.unwrap();
    reconcile_lifecycle(&kube, &ctx, "p2").await.unwrap();
    let p = kube
        .get(&format!("{CAIRN}/app/lifecyclepolicies/p2"))
        .unwrap();
    assert_eq!(cond(&p, "Ready")["reason"], "UnknownStorageClass");
    assert!(
        cond(&p, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("GLACIER")
    );

    let mut orphan = lifecycle("p3", "STANDARD");
    orphan["spec"]["bucketRef"]["name"] = json!("missing");
    kube.insert(&format!("{CAIRN}/app/lifecyclepolicies"), orphan);
    reconcile_lifecycle(&kube, &ctx, "p3").await.unwrap();
    reconcile_lifecycle(&kube, &ctx, "p3").await.unwrap();
    let p = kube
        .get(&format!("{CAIRN}/app/lifecyclepolicies/p3"))
        .unwrap();
    assert_eq!(cond(&p, "Ready")["reason"], "BucketNotFound");
}

async fn reconcile_replication(
    kube: &FakeKube,
    ctx: &Arc<Context>,
    name: &str,
) -> Result<(), String> {
    let api: Api<ReplicationRule> = Api::namespaced(kube.client(), "app");
    let r = api.get(name).await.map_err(|e| e.to_string())?;
    policy::reconcile_replication(Arc::new(r), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn replication_pushed_with_credentials_or_a_clear_condition() {
    let (kube, admin, ctx) = ready_bucket().await;
    kube.insert(&format!("{CAIRN}/app/replicationrules"), json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
        "metadata": {"name": "dr", "namespace": "app"},
        "spec": {"bucketRef": {"name": "photos"}, "priority": 1, "enabled": true, "deleteMarkerReplication": false,
                 "destination": {"endpoint": "https://s3.example", "bucket": "photos-dr", "region": "eu-1",
                                 "credentialsSecretRef": {"name": "dr-creds", "accessKeyIdKey": "AWS_ACCESS_KEY_ID", "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}}}
    }));
    reconcile_replication(&kube, &ctx, "dr").await.unwrap();
    reconcile_replication(&kube, &ctx, "dr").await.unwrap();
    let r = kube
        .get(&format!("{CAIRN}/app/replicationrules/dr"))
        .unwrap();
    assert_eq!(cond(&r, "Ready")["reason"], "CredentialsNotFound");

    kube.insert("/api/v1/namespaces/app/secrets", json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dr-creds", "namespace": "app"},
        "data": {"AWS_ACCESS_KEY_ID": "QUs=", "AWS_SECRET_ACCESS_KEY": "U0s="}
    }));
    // The bucket is not versioned: the gateway refuses the configuration, and the condition says
    // why.
    reconcile_replication(&kube, &ctx, "dr").await.unwrap();
    let r = kube
        .get(&format!("{CAIRN}/app/replicationrules/dr"))
        .unwrap();
    assert_eq!(cond(&r, "Ready")["reason"], "Rejected");
    assert!(
        cond(&r, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("versioning must be enabled")
    );
    // Versioning switched on in the Bucket: the rule goes through (the Bucket's change requeues
    // it: `controller::watch::policies_of_bucket`).
    kube.edit(&format!("{CAIRN}/app/buckets/photos"), |b| {
        b["spec"]["versioning"] = json!("Enabled")
    });
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_replication(&kube, &ctx, "dr").await.unwrap();
    let r = kube
        .get(&format!("{CAIRN}/app/replicationrules/dr"))
        .unwrap();
    assert_eq!(cond(&r, "Ready")["status"], "True", "{}", r["status"]);
    {
        let s = admin.state.lock().unwrap();
        let doc = &s.configs[&("photos".to_string(), "replication")];
        assert_eq!(doc["Rules"][0]["ID"], "app/dr");
        assert_eq!(
            doc["Rules"][0]["Destination"]["Bucket"],
            "arn:aws:s3:::photos-dr"
        );
        assert_eq!(
            doc["Rules"][0]["Destination"]["Credentials"]["AccessKeyId"],
            "AK"
        );
    }
    kube.delete(&format!("{CAIRN}/app/replicationrules/dr"));
    reconcile_replication(&kube, &ctx, "dr").await.unwrap();
    assert!(admin.state.lock().unwrap().configs.is_empty());
}

/// Pods of the fleet as the StatefulSet controller would have made them: every storage node
/// ready, gateway 0 as `gateway_status` says.
fn insert_fleet_pods(kube: &FakeKube, gateway_status: Value) {
    for zone in ["a", "b", "c"] {
        for i in 0..2 {
            let set = format!("s3-node-{zone}");
            kube.insert("/api/v1/namespaces/storage/pods", json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{set}-{i}"), "namespace": "storage",
                             "labels": {"app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "storage-node",
                                        "app.kubernetes.io/managed-by": "cairn-operator", "controller-revision-hash": "r1"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set, "uid": "x"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            }));
        }
    }
    kube.insert(
        "/api/v1/namespaces/storage/pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "s3-gateway-0", "namespace": "storage",
                         "labels": {"app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "gateway",
                                    "app.kubernetes.io/managed-by": "cairn-operator", "controller-revision-hash": "g1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s3-gateway", "uid": "y"}]},
            "status": gateway_status
        }),
    );
}

/// Every StatefulSet settled at one revision with `ready(name)` ready pods.
fn settle_sets(kube: &FakeKube, ready: impl Fn(&str, &Value) -> Value) {
    for p in kube.paths("/apis/apps/v1/namespaces/storage/statefulsets/") {
        kube.edit(&p, |s| {
            let n = s["spec"]["replicas"].clone();
            let r = ready(s["metadata"]["name"].as_str().unwrap(), &n);
            s["status"] = json!({"replicas": n, "readyReplicas": r, "observedGeneration": 1,
                                 "currentRevision": "r1", "updateRevision": "r1"});
        });
    }
}

#[tokio::test]
async fn a_crash_looping_gateway_is_named_with_its_last_words_not_shown_as_updating() {
    let kube = FakeKube::new();
    // The gateway never answers: it crash-loops.
    let ctx = common::context(&kube, Arc::new(FakeAdmin::default()));
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({"spec": {"gateway": {"replicas": 1}}})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    settle_sets(&kube, |name, n| {
        if name == "s3-gateway" {
            json!(0)
        } else {
            n.clone()
        }
    });
    insert_fleet_pods(
        &kube,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
               "containerStatuses": [{"name": "gateway", "image": "cairn-gateway:v0.1.0", "imageID": "", "ready": false,
                   "restartCount": 5,
                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}},
                   "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                       "message": "error: invalid value '' for '--storage-class <STORAGE_CLASSES>': \"\": expected NAME=K+M[:stripe=SIZE][:zone=ZONE]\n\nFor more information, try '--help'.\n"}}}]}),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    let ready = cond(&store, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "GatewayCrashLoop", "{}", store["status"]);
    let msg = ready["message"].as_str().unwrap();
    assert!(
        msg.contains("gateway s3-gateway-0 is crash-looping (5 restart(s)); last exit code 2 (Error): error: invalid value ''"),
        "{msg}"
    );
    assert!(
        msg.contains("0 of 1 gateways and 6 of 6 storage nodes ready"),
        "{msg}"
    );
    // Nothing is rolling: not "Progressing=True Updating".
    let progressing = cond(&store, "Progressing");
    assert_eq!(progressing["status"], "False", "{progressing}");
    assert_eq!(store["status"]["phase"], "Failed");
    assert!(
        kube.event_reasons()
            .contains(&"GatewayCrashLoop".to_string())
    );
    // The same loop again: no second Event.
    reconcile_store(&kube, &ctx).await.unwrap();
    let n = kube
        .event_reasons()
        .iter()
        .filter(|r| *r == "GatewayCrashLoop")
        .count();
    assert_eq!(n, 1);

    // A storage node crash-loops too: the gateway comes first, and the message says there is more.
    kube.edit("/api/v1/namespaces/storage/pods/s3-node-b-1", |p| {
        p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "storage-node", "image": "n", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "Error: No space left on device"}}}]});
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Ready")["reason"], "GatewayCrashLoop");
    assert!(
        cond(&store, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("and 1 more pod(s) in trouble")
    );
    // The gateway recovers: the storage node's loop is the reason now.
    kube.edit("/api/v1/namespaces/storage/pods/s3-gateway-0", |p| {
        p["status"] =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Ready")["reason"], "NodeCrashLoop");
    assert!(
        cond(&store, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("storage node s3-node-b-1 is crash-looping (3 restart(s)); last exit code 1 (Error): Error: No space left on device")
    );
}

#[tokio::test]
async fn progressing_only_while_something_rolls_or_starts() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({"spec": {"gateway": {"replicas": 1}}})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    // Just created: no pods yet, they are coming.
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Progressing")["status"], "True");
    assert_eq!(cond(&store, "Progressing")["reason"], "PodsStarting");

    // Every pod ready, settled: Ready, not progressing.
    settle_sets(&kube, |_, n| n.clone());
    insert_fleet_pods(
        &kube,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(
        cond(&store, "Ready")["status"],
        "True",
        "{}",
        store["status"]
    );
    assert_eq!(cond(&store, "Progressing")["status"], "False");

    // The gateway StatefulSet rolls a new revision: that is an update.
    kube.edit(
        "/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway",
        |s| s["status"]["updateRevision"] = json!("r2"),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Progressing")["status"], "True");
    assert_eq!(cond(&store, "Progressing")["reason"], "Updating");
    assert!(
        cond(&store, "Progressing")["message"]
            .as_str()
            .unwrap()
            .contains("s3-gateway")
    );

    // Settled again, but a storage node has hung for an hour: not ready, and not progressing.
    kube.edit(
        "/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway",
        |s| s["status"]["updateRevision"] = json!("r1"),
    );
    kube.edit(
        "/apis/apps/v1/namespaces/storage/statefulsets/s3-node-a",
        |s| s["status"]["readyReplicas"] = json!(1),
    );
    kube.edit("/api/v1/namespaces/storage/pods/s3-node-a-0", |p| {
        p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "storage-node", "image": "n", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2020-01-01T00:00:00Z"}}}]});
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    let store = kube.get(&path_store()).unwrap();
    assert_eq!(cond(&store, "Ready")["status"], "False");
    assert_eq!(cond(&store, "Ready")["reason"], "PodsNotReady");
    assert!(
        cond(&store, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("storage node s3-node-a-0 has been running since 2020-01-01T00:00:00Z")
    );
    assert_eq!(cond(&store, "Progressing")["status"], "False");
}

#[tokio::test]
async fn a_gateway_scale_down_deletes_the_budget_one_gateway_cannot_have() {
    let kube = FakeKube::new();
    let admin = Arc::new(FakeAdmin::healthy(6));
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    let pdb = "/apis/policy/v1/namespaces/storage/poddisruptionbudgets/s3-gateway";
    assert_eq!(kube.get(pdb).unwrap()["spec"]["minAvailable"], 2);
    // Someone else's PDB with the same labels but no owner reference to this store stays.
    kube.insert(
        "/apis/policy/v1/namespaces/storage/poddisruptionbudgets",
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "s3-extra", "namespace": "storage",
                            "labels": {"app.kubernetes.io/instance": "s3", "app.kubernetes.io/managed-by": "cairn-operator"}},
               "spec": {"maxUnavailable": 1}}),
    );

    // 3 -> 1: the fake gateways hand their votes over at once, so the StatefulSet shrinks.
    kube.edit(&path_store(), |s| {
        s["spec"]["gateway"]["replicas"] = json!(1)
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    assert_eq!(
        kube.get("/apis/apps/v1/namespaces/storage/statefulsets/s3-gateway")
            .unwrap()["spec"]["replicas"],
        1
    );
    assert!(
        kube.get(pdb).is_none(),
        "a minAvailable=2 budget over one gateway blocks every drain of its node"
    );
    let left: Vec<String> = kube.paths("/apis/policy/v1/namespaces/storage/poddisruptionbudgets/");
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(kube.event_reasons().contains(&"Pruned".to_string()));

    // 1 -> 5: the budget comes back, sized for five.
    kube.edit(&path_store(), |s| {
        s["spec"]["gateway"]["replicas"] = json!(5)
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    assert_eq!(kube.get(pdb).unwrap()["spec"]["minAvailable"], 3);
}

#[tokio::test]
async fn a_reconcile_from_a_stale_cache_keeps_the_bucket_it_just_created() {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap(); // finalizer
    // The copy a watch event delivers before the status write below reaches the cache.
    let api: Api<Bucket> = Api::namespaced(kube.client(), "app");
    let stale = api.get("photos").await.unwrap();
    assert!(stale.status.is_none());
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap(); // creates the bucket
    assert!(admin.state.lock().unwrap().buckets.contains_key("photos"));
    // The Secret it wrote triggers a reconcile that sees the stale copy.
    bucket::reconcile(Arc::new(stale.clone()), ctx.clone())
        .await
        .unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["status"], "True", "{}", b["status"]);
    assert_eq!(b["status"]["phase"], "Ready");
    assert!(
        !kube
            .event_reasons()
            .contains(&"BucketAlreadyExists".to_string()),
        "flapped to Failed: {:?}",
        kube.event_reasons()
    );
    // Still one key, the one in the Secret.
    assert_eq!(admin.state.lock().unwrap().keys.len(), 1);

    // A bucket another resource made is still refused, whatever this one's status says.
    let (kube, admin, ctx) = bucket_setup(json!({}));
    admin
        .state
        .lock()
        .unwrap()
        .buckets
        .insert("photos".into(), 0);
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "BucketAlreadyExists");
    // And deleting it with deletionPolicy Delete leaves the other's bucket alone.
    kube.edit(&format!("{CAIRN}/app/buckets/photos"), |b| {
        b["spec"]["deletionPolicy"] = json!("Delete")
    });
    kube.delete(&format!("{CAIRN}/app/buckets/photos"));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    assert!(admin.state.lock().unwrap().buckets.contains_key("photos"));
}

#[tokio::test]
async fn a_deleted_bucket_with_a_stale_status_is_still_deleted_when_its_key_marks_it() {
    let (kube, admin, ctx) = bucket_setup(json!({"spec": {"deletionPolicy": "Delete"}}));
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let api: Api<Bucket> = Api::namespaced(kube.client(), "app");
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    kube.delete(&format!("{CAIRN}/app/buckets/photos"));
    let mut stale = api.get("photos").await.unwrap();
    stale.status = None;
    bucket::reconcile(Arc::new(stale), ctx.clone())
        .await
        .unwrap();
    assert!(!admin.state.lock().unwrap().buckets.contains_key("photos"));
}

#[tokio::test]
async fn an_older_credentials_secret_gains_the_fleet_secret_and_seal_key_and_keeps_its_keys() {
    let kube = FakeKube::new();
    let ctx = common::context(&kube, Arc::new(FakeAdmin::healthy(6)));
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    // What an older operator made: root keys and admin token only.
    let old = json!({"CAIRN_ROOT_ACCESS_KEY": "QUs=", "CAIRN_ROOT_SECRET_KEY": "U0s=",
                     "CAIRN_ADMIN_TOKEN": "VG9rZW4tb2YtYW4tb2xkZXItb3BlcmF0b3ItMDEyMzQ1Njc4OQ==", "extra": "eA=="});
    kube.insert(
        "/api/v1/namespaces/storage/secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s3-credentials", "namespace": "storage"}, "data": old}),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    let path = "/api/v1/namespaces/storage/secrets/s3-credentials";
    let data = kube.get(path).unwrap()["data"].clone();
    for (k, v) in old.as_object().unwrap() {
        assert_eq!(&data[k], v, "{k} untouched");
    }
    let seal = base64_lite::decode(data["CAIRN_INDEX_SEAL_KEY"].as_str().unwrap());
    let fleet = base64_lite::decode(data["CAIRN_FLEET_SECRET"].as_str().unwrap());
    assert_eq!((seal.len(), fleet.len()), (64, 64));
    assert_ne!(seal, fleet);
    assert!(
        kube.event_reasons()
            .contains(&"CredentialsExtended".to_string())
    );
    // Generated once: later reconciles keep them.
    reconcile_store(&kube, &ctx).await.unwrap();
    assert_eq!(kube.get(path).unwrap()["data"], data);
    // The pods read them from the Secret: gateways both, storage nodes the fleet secret only.
    let keys = |sts: &str| -> Vec<String> {
        kube.get(&format!(
            "/apis/apps/v1/namespaces/storage/statefulsets/{sts}"
        ))
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                e["valueFrom"]["secretKeyRef"]["key"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    };
    assert!(keys("s3-gateway").contains(&"CAIRN_INDEX_SEAL_KEY".to_string()));
    assert!(keys("s3-gateway").contains(&"CAIRN_FLEET_SECRET".to_string()));
    assert_eq!(keys("s3-node-a"), ["CAIRN_FLEET_SECRET"]);
}

#[tokio::test]
async fn buckets_of_namespaces_the_store_does_not_allow_get_nothing() {
    let (kube, admin, ctx) = bucket_setup(json!({}));
    // The store allows only `app`: a Bucket in `other` gets nothing, and says why.
    kube.insert(
        &format!("{CAIRN}/other/buckets"),
        json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
               "metadata": {"name": "grab", "namespace": "other"},
               "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}, "bucketName": "photos",
                        "adoptExisting": true, "deletionPolicy": "Delete"}}),
    );
    let other: Api<Bucket> = Api::namespaced(kube.client(), "other");
    let reconcile_other = || async {
        let b = other.get("grab").await.unwrap();
        bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    };
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    reconcile_other().await;
    reconcile_other().await;
    let b = kube.get(&format!("{CAIRN}/other/buckets/grab")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "NamespaceNotAllowed");
    assert!(
        cond(&b, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("does not allow namespace other")
    );
    assert_eq!(b["status"]["phase"], "Failed");
    assert!(kube.get("/api/v1/namespaces/other/secrets/grab").is_none());
    // Its deletion (deletionPolicy Delete) leaves the bucket of `app` alone.
    kube.delete(&format!("{CAIRN}/other/buckets/grab"));
    reconcile_other().await;
    assert!(kube.get(&format!("{CAIRN}/other/buckets/grab")).is_none());
    assert!(admin.state.lock().unwrap().buckets.contains_key("photos"));
    assert_eq!(admin.state.lock().unwrap().keys.len(), 1, "app's key stays");

    // A LifecyclePolicy of a Bucket whose namespace is not allowed is not pushed either.
    kube.edit(&format!("{CAIRN}/storage/objectstores/s3"), |s| {
        s["spec"]["allowedNamespaces"] = json!({"names": []})
    });
    // Taking `app` off the list takes its access away: its key goes.
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["reason"], "NamespaceNotAllowed");
    assert!(
        cond(&b, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("its access key was deleted")
    );
    assert!(admin.state.lock().unwrap().keys.is_empty());
    kube.insert(
        &format!("{CAIRN}/app/lifecyclepolicies"),
        lifecycle("p1", "STANDARD"),
    );
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    reconcile_lifecycle(&kube, &ctx, "p1").await.unwrap();
    let p = kube
        .get(&format!("{CAIRN}/app/lifecyclepolicies/p1"))
        .unwrap();
    assert_eq!(cond(&p, "Ready")["reason"], "NamespaceNotAllowed");
    assert!(admin.state.lock().unwrap().configs.is_empty());

    // A selector allows it again, by the namespace's labels: a new key.
    kube.insert(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "app", "labels": {"cairn.io/object-store": "s3"}}}),
    );
    kube.edit(&format!("{CAIRN}/storage/objectstores/s3"), |s| {
        s["spec"]["allowedNamespaces"] =
            json!({"selector": {"matchLabels": {"cairn.io/object-store": "s3"}}})
    });
    reconcile_bucket(&kube, &ctx, "photos").await.unwrap();
    let b = kube.get(&format!("{CAIRN}/app/buckets/photos")).unwrap();
    assert_eq!(cond(&b, "Ready")["status"], "True", "{}", b["status"]);
    assert_eq!(admin.state.lock().unwrap().keys.len(), 1);
}

#[tokio::test]
async fn each_fleet_gets_a_network_policy_and_loses_it_when_switched_off() {
    let kube = FakeKube::new();
    let ctx = common::context(&kube, Arc::new(FakeAdmin::healthy(6)));
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    reconcile_store(&kube, &ctx).await.unwrap();
    let path = "/apis/networking.k8s.io/v1/namespaces/storage/networkpolicies/s3-fleet";
    let np = kube.get(path).expect("the fleet's NetworkPolicy");
    assert_eq!(np["metadata"]["ownerReferences"][0]["name"], "s3");
    let ports: Vec<i64> = np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ports"][0]["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [9000, 7000, 9001]);
    kube.edit(&path_store(), |s| {
        s["spec"]["networkPolicy"] = json!({"enabled": false})
    });
    reconcile_store(&kube, &ctx).await.unwrap();
    assert!(kube.get(path).is_none());
}

#[tokio::test]
async fn confined_to_namespaces_the_operator_lists_only_there() {
    let kube = FakeKube::new();
    let mut ctx = common::context(&kube, Arc::new(FakeAdmin::default()));
    Arc::get_mut(&mut ctx).unwrap().namespaces = Some(vec!["storage".into(), "app".into()]);
    kube.insert(
        &format!("{CAIRN}/storage/objectstores"),
        store_json(json!({})),
    );
    reconcile_store(&kube, &ctx).await.unwrap();
    kube.insert(
        &format!("{CAIRN}/app/buckets"),
        json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
               "metadata": {"name": "photos", "namespace": "app"},
               "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}}}),
    );
    kube.delete(&path_store());
    let err = reconcile_store(&kube, &ctx).await.unwrap_err();
    assert!(err.contains("app/photos"), "{err}");
    let lists: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.ends_with("/buckets"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        lists,
        [
            format!("{CAIRN}/storage/buckets"),
            format!("{CAIRN}/app/buckets")
        ],
        "no cluster-wide list (its Roles would not allow one)"
    );
}

//! The Bucket, LifecyclePolicy and ReplicationRule reconcilers against a real gateway (a dev
//! fleet started in this process, as `gateway/tests/common` does) and the in-memory API server:
//! the bucket exists, the scoped key works with aws-sdk-s3 for that bucket and is refused for
//! another, and deletion with `Delete` removes the bucket.

mod common;

use std::net::TcpListener;
use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use cairn_gateway::config::{DevArgs, GatewayArgs};
use cairn_operator::admin::{AdminApi, HttpAdmin};
use cairn_operator::controller::{bucket, policy};
use cairn_operator::crd::{Bucket, LifecyclePolicy, ReplicationRule};
use common::fake_kube::FakeKube;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;

fn free_ports(n: u16) -> u16 {
    // Tests of this file run at once: each call starts elsewhere.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = 30_000 + ((std::process::id() % 500) as u16 * 16 + call * 2_000) % 30_000;
    (0..400)
        .map(|i| base + i * 16 % 10_000)
        .find(|start| (*start..start + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .expect("free ports")
}

fn dev_args(data: std::path::PathBuf) -> DevArgs {
    let base = free_ports(8);
    DevArgs {
        data,
        node_base_port: base,
        scrub_rate: 0,
        scrub_interval: std::time::Duration::from_secs(3600),
        gateway: GatewayArgs {
            listen: format!("127.0.0.1:{}", base + 6).parse().unwrap(),
            admin_listen: format!("127.0.0.1:{}", base + 7).parse().unwrap(),
            inline_threshold: 64 * 1024,
            stripe_size: 1 << 20,
            data_shards: 4,
            parity_shards: 2,
            storage_classes: Vec::new(),
            lifecycle_day_length: std::time::Duration::from_secs(86_400),
            lifecycle_rate: 1000,
            failpoint_merge_crash_file: None,
            tls_cert: None,
            tls_key: None,
            gc_delay: std::time::Duration::from_millis(200),
            gc_interval: std::time::Duration::from_millis(200),
            upload_timeout: std::time::Duration::from_secs(3600),
            region: "us-east-1".into(),
            domain: None,
            split_write_threshold: 3500.0,
            split_read_threshold: 5500.0,
            split_size_limit: 512 << 20,
            split_cooldown: std::time::Duration::from_secs(30),
            merge_quiet_period: std::time::Duration::from_secs(600),
            partition_load_half_life: std::time::Duration::from_secs(10),
            max_connections: 4096,
            header_timeout: std::time::Duration::from_secs(30),
            stall_timeout: std::time::Duration::from_secs(60),
            allow_sigv2: false,
            public_metrics: false,
        },
    }
}

fn s3(endpoint: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_reconciler_against_a_real_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = cairn_gateway::dev::start(&dev_args(dir.path().to_path_buf()))
        .await
        .expect("dev fleet");
    let endpoint = format!("http://{}", fleet.gateway.s3_addr);
    let admin_url = format!("http://{}", fleet.gateway.admin_addr);
    let secrets = fleet.secrets.clone();
    let admin: Arc<dyn AdminApi> = Arc::new(HttpAdmin::new(&admin_url, &secrets.admin_token));

    let kube = FakeKube::new();
    let ctx = common::context(&kube, admin.clone());
    kube.insert(
        "/apis/cairn.io/v1alpha1/namespaces/storage/objectstores",
        json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "ObjectStore",
            "metadata": {"name": "s3", "namespace": "storage"},
            "spec": {"zones": ["a", "b", "c"], "allowedNamespaces": {"names": ["app"]}}
        }),
    );
    kube.insert("/api/v1/namespaces/storage/secrets", json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": "storage"},
        "data": {"CAIRN_ROOT_ACCESS_KEY": b64(&secrets.access_key), "CAIRN_ROOT_SECRET_KEY": b64(&secrets.secret_key),
                 "CAIRN_ADMIN_TOKEN": b64(&secrets.admin_token)}
    }));
    kube.insert("/apis/cairn.io/v1alpha1/namespaces/app/buckets", json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "photos", "namespace": "app"},
        "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}, "deletionPolicy": "Delete"}
    }));
    let buckets: Api<Bucket> = Api::namespaced(kube.client(), "app");
    for _ in 0..2 {
        let b = buckets.get("photos").await.unwrap();
        bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    }

    // The bucket exists in the gateway.
    assert!(admin.bucket("photos").await.unwrap().is_some());
    let secret = kube
        .get("/api/v1/namespaces/app/secrets/photos")
        .expect("app secret");
    let id = unb64(secret["data"]["AWS_ACCESS_KEY_ID"].as_str().unwrap());
    let key = unb64(secret["data"]["AWS_SECRET_ACCESS_KEY"].as_str().unwrap());
    assert_eq!(
        unb64(secret["data"]["BUCKET_NAME"].as_str().unwrap()),
        "photos"
    );

    // The scoped key works for its bucket...
    let app = s3(&endpoint, &id, &key);
    app.put_object()
        .bucket("photos")
        .key("a.txt")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let got = app
        .get_object()
        .bucket("photos")
        .key("a.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello"
    );
    let listed = app.list_buckets().send().await.unwrap();
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["photos"]);
    // ...and is refused for another.
    let root = s3(&endpoint, &secrets.access_key, &secrets.secret_key);
    root.create_bucket().bucket("other").send().await.unwrap();
    let err = app
        .put_object()
        .bucket("other")
        .key("x")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert!(app.create_bucket().bucket("mine").send().await.is_err());

    // A quota in the Bucket's spec reaches the gateway and limits the bucket.
    kube.edit(
        "/apis/cairn.io/v1alpha1/namespaces/app/buckets/photos",
        |b| b["spec"]["quota"] = json!({"maxObjects": 1}),
    );
    let b = buckets.get("photos").await.unwrap();
    bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    let err = app
        .put_object()
        .bucket("photos")
        .key("b.txt")
        .body(ByteStream::from_static(b"over"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("QuotaExceeded")
    );
    // Overwriting the one object is still allowed; removing the quota lifts the limit.
    app.put_object()
        .bucket("photos")
        .key("a.txt")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    kube.edit(
        "/apis/cairn.io/v1alpha1/namespaces/app/buckets/photos",
        |b| {
            b["spec"].as_object_mut().unwrap().remove("quota");
        },
    );
    let b = buckets.get("photos").await.unwrap();
    bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    app.put_object()
        .bucket("photos")
        .key("b.txt")
        .body(ByteStream::from_static(b"fits"))
        .send()
        .await
        .unwrap();

    // Lifecycle: this gateway has no lifecycle endpoint yet, which the condition says.
    kube.insert("/apis/cairn.io/v1alpha1/namespaces/app/lifecyclepolicies", json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy",
        "metadata": {"name": "expire", "namespace": "app"},
        "spec": {"bucketRef": {"name": "photos"}, "rules": [{"id": "tmp", "enabled": true, "filter": {"prefix": "tmp/"}, "expiration": {"days": 1}}]}
    }));
    let policies: Api<LifecyclePolicy> = Api::namespaced(kube.client(), "app");
    for _ in 0..2 {
        let p = policies.get("expire").await.unwrap();
        policy::reconcile_lifecycle(Arc::new(p), ctx.clone())
            .await
            .unwrap();
    }
    let p = kube
        .get("/apis/cairn.io/v1alpha1/namespaces/app/lifecyclepolicies/expire")
        .unwrap();
    let ready = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    if ready["status"] == "True" {
        // Once the gateway stores lifecycle configuration, it must round-trip through S3.
        let lc = root
            .get_bucket_lifecycle_configuration()
            .bucket("photos")
            .send()
            .await
            .unwrap();
        assert_eq!(lc.rules().len(), 1);
    } else {
        assert_eq!(ready["reason"], "GatewayUnsupported", "{ready}");
    }

    // Deleting the Bucket (deletionPolicy Delete) empties and deletes it, and its key goes.
    kube.delete("/apis/cairn.io/v1alpha1/namespaces/app/buckets/photos");
    let b = buckets.get("photos").await.unwrap();
    bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    assert!(admin.bucket("photos").await.unwrap().is_none());
    assert!(
        !admin
            .keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.access_key_id == id)
    );
    assert!(admin.bucket("other").await.unwrap().is_some());
    fleet.stop().await;
}

/// The YAML documents of `examples/FILE`.
fn example(file: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    std::fs::read_to_string(path)
        .unwrap()
        .split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .collect()
}

fn ready_condition(obj: &serde_json::Value) -> serde_json::Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default()
}

/// The steps of docs/kubernetes.md with `examples/` unmodified, against a real gateway: the Bucket, the
/// LifecyclePolicy and the ReplicationRule (whose destination needs a versioned source bucket)
/// all become Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_work_together_against_a_real_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = cairn_gateway::dev::start(&dev_args(dir.path().to_path_buf()))
        .await
        .expect("dev fleet");
    let secrets = fleet.secrets.clone();
    let admin: Arc<dyn AdminApi> = Arc::new(HttpAdmin::new(
        format!("http://{}", fleet.gateway.admin_addr),
        &secrets.admin_token,
    ));
    let kube = FakeKube::new();
    let ctx = common::context(&kube, admin.clone());
    let ns = "photos";
    let collection = |kind: &str| match kind {
        "ObjectStore" => format!("/apis/cairn.io/v1alpha1/namespaces/{ns}/objectstores"),
        "Bucket" => format!("/apis/cairn.io/v1alpha1/namespaces/{ns}/buckets"),
        "LifecyclePolicy" => format!("/apis/cairn.io/v1alpha1/namespaces/{ns}/lifecyclepolicies"),
        "ReplicationRule" => format!("/apis/cairn.io/v1alpha1/namespaces/{ns}/replicationrules"),
        "Secret" => format!("/api/v1/namespaces/{ns}/secrets"),
        other => panic!("an example of kind {other}"),
    };
    for file in [
        "objectstore.yaml",
        "bucket.yaml",
        "lifecyclepolicy.yaml",
        "replicationrule.yaml",
    ] {
        for mut doc in example(file) {
            doc["metadata"]["namespace"] = json!(ns);
            if doc["kind"] == "Secret" {
                // `stringData` is folded into `data` by the API server.
                let mut data = serde_json::Map::new();
                for (k, v) in doc["stringData"].as_object().cloned().unwrap_or_default() {
                    data.insert(k, json!(b64(v.as_str().unwrap())));
                }
                doc.as_object_mut().unwrap().remove("stringData");
                doc["data"] = serde_json::Value::Object(data);
            }
            let kind = doc["kind"].as_str().unwrap().to_string();
            kube.insert(&collection(&kind), doc);
        }
    }
    // The credentials Secret the ObjectStore controller would have made, for this gateway.
    let store_name = example("objectstore.yaml")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    kube.insert(&collection("Secret"), json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{store_name}-credentials"), "namespace": ns},
        "data": {"CAIRN_ROOT_ACCESS_KEY": b64(&secrets.access_key), "CAIRN_ROOT_SECRET_KEY": b64(&secrets.secret_key),
                 "CAIRN_ADMIN_TOKEN": b64(&secrets.admin_token)}
    }));

    let buckets: Api<Bucket> = Api::namespaced(kube.client(), ns);
    let policies: Api<LifecyclePolicy> = Api::namespaced(kube.client(), ns);
    let rules: Api<ReplicationRule> = Api::namespaced(kube.client(), ns);
    let bucket_name = example("bucket.yaml")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        let b = buckets.get(&bucket_name).await.unwrap();
        bucket::reconcile(Arc::new(b), ctx.clone()).await.unwrap();
    }
    for p in policies.list(&Default::default()).await.unwrap() {
        for _ in 0..2 {
            let p = policies.get(&p.name_any()).await.unwrap();
            policy::reconcile_lifecycle(Arc::new(p), ctx.clone())
                .await
                .unwrap();
        }
    }
    for r in rules.list(&Default::default()).await.unwrap() {
        for _ in 0..2 {
            let r = rules.get(&r.name_any()).await.unwrap();
            policy::reconcile_replication(Arc::new(r), ctx.clone())
                .await
                .unwrap();
        }
    }
    let mut kinds = 0;
    for path in kube.paths(&format!("/apis/cairn.io/v1alpha1/namespaces/{ns}/")) {
        if path.contains("/objectstores/") {
            continue;
        }
        let obj = kube.get(&path).unwrap();
        let ready = ready_condition(&obj);
        assert_eq!(ready["status"], "True", "{path}: {}", obj["status"]);
        kinds += 1;
    }
    assert_eq!(
        kinds, 3,
        "a Bucket, a LifecyclePolicy and a ReplicationRule"
    );
    assert!(admin.bucket(&bucket_name).await.unwrap().is_some());
    fleet.stop().await;
}

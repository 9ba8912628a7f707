//! Tests against a real cluster, only when `KUBECONFIG` is set: the CRDs are installed (run
//! `helm install cairn charts/cairn` first), an ObjectStore from `examples/` becomes Ready, and a
//! Bucket's Secret gives working S3 credentials: an object written with them reads back
//! byte-exactly (through `CAIRN_TEST_S3_ENDPOINT`, e.g. a `kubectl port-forward` of the S3
//! Service, since the Secret's endpoint is a cluster DNS name). Otherwise they print that they
//! were skipped.

use std::time::Duration;

use cairn_operator::crd::{Bucket, ObjectStore};
use kube::api::{Api, Patch, PatchParams};

fn cluster() -> bool {
    if std::env::var_os("KUBECONFIG").is_none() {
        skipped("SKIPPED: KUBECONFIG not set");
        return false;
    }
    true
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn examples_become_ready_in_a_cluster() {
    if !cluster() {
        return;
    }
    let client = kube::Client::try_default().await.expect("KUBECONFIG works");
    let ns = std::env::var("CAIRN_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let pp = PatchParams::apply("cairn-e2e").force();
    let store: ObjectStore = example("objectstore.yaml");
    let stores: Api<ObjectStore> = Api::namespaced(client.clone(), &ns);
    stores
        .patch("cairn", &pp, &Patch::Apply(&store))
        .await
        .unwrap();
    let bucket: Bucket = example("bucket.yaml");
    let buckets: Api<Bucket> = Api::namespaced(client.clone(), &ns);
    buckets
        .patch(
            bucket.metadata.name.as_deref().unwrap(),
            &pp,
            &Patch::Apply(&bucket),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let ready = loop {
        let b = buckets
            .get(bucket.metadata.name.as_deref().unwrap())
            .await
            .unwrap();
        let ready = b
            .status
            .as_ref()
            .is_some_and(|s| cairn_operator::conditions::is_true(&s.conditions, "Ready"));
        if ready {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bucket not Ready in 10 minutes: {:?}",
            b.status
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    object_round_trip(&client, &ns, &ready).await;
}

/// Writes and reads an object with the credentials of the Bucket's Secret.
async fn object_round_trip(client: &kube::Client, ns: &str, bucket: &Bucket) {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use k8s_openapi::api::core::v1::Secret;
    let Ok(endpoint) = std::env::var("CAIRN_TEST_S3_ENDPOINT") else {
        skipped(
            "SKIPPED object round trip: set CAIRN_TEST_S3_ENDPOINT (e.g. a kubectl port-forward of the S3 Service)",
        );
        return;
    };
    let status = bucket.status.as_ref().expect("a Ready Bucket has a status");
    let name = status
        .secret_name
        .as_deref()
        .expect("secret name in status");
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    let data = secret.data.unwrap_or_default();
    let value = |k: &str| {
        String::from_utf8(
            data.get(k)
                .unwrap_or_else(|| panic!("{k} in the Secret"))
                .0
                .clone(),
        )
        .unwrap()
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(value("AWS_REGION")))
        .credentials_provider(Credentials::new(
            value("AWS_ACCESS_KEY_ID"),
            value("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "secret",
        ))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let bucket_name = value("BUCKET_NAME");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket(&bucket_name)
        .key("cluster-test")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&bucket_name)
        .key("cluster-test")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
    s3.delete_object()
        .bucket(&bucket_name)
        .key("cluster-test")
        .send()
        .await
        .unwrap();
}

/// Says a test was skipped on the real stderr (libtest captures `println!` of passing tests).
fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

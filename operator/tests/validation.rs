//! The in-memory API server refuses what the real one refuses, so the controller tests that run
//! against it (`reconcile.rs`, `gateway_admin.rs`) check every object and status the operator
//! writes: a field a kind's schema does not declare (the ReplicationRule `.status.rules` a real
//! cluster refused with HTTP 500 on every retry), a value of the wrong type or outside an enum,
//! a CEL rule broken by an update.

mod common;

use common::fake_kube::FakeKube;
use common::schema;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn rule() -> Value {
    json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
        "metadata": {"name": "dr", "namespace": "app"},
        "spec": {"bucketRef": {"name": "photos"}, "destination": {"endpoint": "https://s3.example",
                 "bucket": "photos-dr", "credentialsSecretRef": {"name": "c"}}}
    })
}

#[test]
fn an_undeclared_status_field_is_refused_by_the_schema() {
    let s = schema::for_collection("/apis/cairn.io/v1alpha1/replicationrules").unwrap();
    let mut r = rule();
    r["status"] = json!({"phase": "Ready", "bucketName": "photos"});
    assert_eq!(s.validate(&r, None), Vec::<String>::new());
    r["status"]["rules"] = json!(1);
    assert_eq!(
        s.validate(&r, None),
        [".status.rules: field not declared in schema"]
    );
    // A LifecyclePolicy does declare it.
    let l = schema::for_collection("/apis/cairn.io/v1alpha1/lifecyclepolicies").unwrap();
    let p = json!({
        "apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy",
        "metadata": {"name": "p", "namespace": "app"},
        "spec": {"bucketRef": {"name": "photos"}, "rules": [{"id": "r", "expiration": {"days": 1}}]},
        "status": {"phase": "Ready", "rules": 1}
    });
    assert_eq!(l.validate(&p, None), Vec::<String>::new());
}

fn api(
    kube: &FakeKube,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(kube.client(), "app", &ar)
}

fn status_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn the_fake_api_server_refuses_what_the_real_one_refuses() {
    let kube = FakeKube::new();
    kube.insert(
        "/apis/cairn.io/v1alpha1/namespaces/app/replicationrules",
        rule(),
    );
    let rules = api(
        &kube,
        "cairn.io",
        "v1alpha1",
        "ReplicationRule",
        "replicationrules",
    );
    let pp = PatchParams::apply("test").force();
    // A status with `rules` (what the operator used to write): 500, as server-side apply answers.
    let patch = json!({"apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
                       "status": {"phase": "Ready", "rules": 0}});
    let (code, msg) = status_code(
        rules
            .patch_status("dr", &pp, &Patch::Apply(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 500);
    assert!(
        msg.contains(".status.rules: field not declared in schema"),
        "{msg}"
    );
    // The status without it goes through.
    let patch = json!({"apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
                       "status": {"phase": "Ready", "bucketName": "photos"}});
    rules
        .patch_status("dr", &pp, &Patch::Apply(&patch))
        .await
        .unwrap();
    // A phase that is not one of the enum: 422.
    let patch = json!({"apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
                       "status": {"phase": "Happy"}});
    let (code, msg) = status_code(
        rules
            .patch_status("dr", &pp, &Patch::Apply(&patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");

    // A built-in kind against the Kubernetes OpenAPI: a misspelt field of a StatefulSet.
    let sets = api(&kube, "apps", "v1", "StatefulSet", "statefulsets");
    let mut sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "s", "namespace": "app"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "s",
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    });
    sets.patch("s", &pp, &Patch::Apply(&sts)).await.unwrap();
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Never");
    let (code, msg) = status_code(sets.patch("s", &pp, &Patch::Apply(&sts)).await.unwrap_err());
    assert_eq!(code, 500);
    assert!(
        msg.contains(".spec.template.spec.containers[0].imagePullPolicyy: field not declared"),
        "{msg}"
    );
    // A required field missing: 422.
    sts["spec"]["template"]["spec"]["containers"][0] = json!({"image": "i"});
    let (code, msg) = status_code(sets.patch("s", &pp, &Patch::Apply(&sts)).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(msg.contains("containers[0].name: Required value"), "{msg}");

    // A CEL transition rule: versioning cannot go back to Off.
    kube.insert(
        "/apis/cairn.io/v1alpha1/namespaces/app/buckets",
        json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
               "metadata": {"name": "b", "namespace": "app"},
               "spec": {"objectStoreRef": {"name": "s3"}, "versioning": "Enabled"}}),
    );
    let buckets = api(&kube, "cairn.io", "v1alpha1", "Bucket", "buckets");
    let off = json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
                     "spec": {"objectStoreRef": {"name": "s3"}, "versioning": "Off"}});
    let (code, msg) = status_code(
        buckets
            .patch("b", &pp, &Patch::Apply(&off))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert!(msg.contains("versioning cannot go back to Off"), "{msg}");
    assert_eq!(kube.rejected().len(), 5);
}

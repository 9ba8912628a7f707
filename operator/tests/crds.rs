//! The CRDs: `crds/` and `charts/cairn/crds/` must equal what the Rust types generate, every CEL
//! rule must compile, and the rules that span fields or versions must refuse what they should
//! (evaluated with kube's client-side CEL, as the API server would).

use std::path::PathBuf;

use cairn_operator::crd;
use kube::CustomResourceExt;
use kube::core::cel::{Validator, compile_schema};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn crds_directory_is_up_to_date() {
    for dir in ["crds", "charts/cairn/crds"] {
        for (file, c) in crd::all() {
            let path = root().join(dir).join(file);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == crd::to_yaml(&c),
                "{} is out of date: run `cargo run -p cairn-operator --bin crdgen && cp crds/*.yaml charts/cairn/crds/`",
                path.display()
            );
        }
        let files = std::fs::read_dir(root().join(dir)).unwrap().count();
        assert_eq!(
            files,
            crd::all().len(),
            "{dir} holds only the generated CRDs"
        );
    }
}

fn schema<K: CustomResourceExt>() -> Value {
    let c = K::crd();
    serde_json::to_value(
        c.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn every_cel_rule_compiles_and_crds_have_status_and_columns() {
    for (file, c) in crd::all() {
        let v = &c.spec.versions[0];
        let s = serde_json::to_value(
            v.schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let compiled = compile_schema(&s);
        assert!(
            !compiled.has_errors(),
            "{file}: {:?}",
            compiled.compilation_errors()
        );
        assert!(
            v.subresources.as_ref().unwrap().status.is_some(),
            "{file}: status subresource"
        );
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 3),
            "{file}: printer columns"
        );
        assert_eq!(c.spec.group, "cairn.io");
        assert_eq!(v.name, "v1alpha1");
    }
}

fn check(schema: &Value, new: &Value, old: Option<&Value>) -> Result<(), String> {
    Validator::new()
        .validate(schema, new, old)
        .map_err(|e| e.to_string())
}

fn bucket(spec: Value) -> Value {
    let mut s = json!({"objectStoreRef": {"name": "s3"}});
    json_patch::merge(&mut s, &spec);
    json!({"apiVersion": "cairn.io/v1alpha1", "kind": "Bucket", "metadata": {"name": "b"}, "spec": s})
}

#[test]
fn bucket_versioning_never_goes_back_to_off() {
    let s = schema::<crd::Bucket>();
    let off = bucket(json!({"versioning": "Off"}));
    let enabled = bucket(json!({"versioning": "Enabled"}));
    let suspended = bucket(json!({"versioning": "Suspended"}));
    let unset = bucket(json!({}));
    check(&s, &enabled, Some(&off)).unwrap();
    check(&s, &suspended, Some(&enabled)).unwrap();
    check(&s, &enabled, Some(&suspended)).unwrap();
    let e = check(&s, &off, Some(&enabled)).unwrap_err();
    assert!(e.contains("versioning cannot go back to Off"), "{e}");
    assert!(check(&s, &off, Some(&suspended)).is_err());
    // Removing the field defaults it to Off: refused too.
    assert!(check(&s, &unset, Some(&suspended)).is_err());
}

#[test]
fn bucket_name_and_store_are_immutable_and_quota_needs_a_limit() {
    let s = schema::<crd::Bucket>();
    let a = bucket(json!({"bucketName": "photos"}));
    let b = bucket(json!({"bucketName": "videos"}));
    assert!(
        check(&s, &b, Some(&a))
            .unwrap_err()
            .contains("bucketName is immutable")
    );
    assert!(
        check(&s, &bucket(json!({})), Some(&a))
            .unwrap_err()
            .contains("cannot be added or removed")
    );
    let other = bucket(json!({"objectStoreRef": {"name": "other"}}));
    assert!(
        check(&s, &other, Some(&bucket(json!({}))))
            .unwrap_err()
            .contains("objectStoreRef is immutable")
    );
    assert!(
        check(&s, &bucket(json!({"quota": {}})), None)
            .unwrap_err()
            .contains("quota needs maxSize or maxObjects")
    );
    check(&s, &bucket(json!({"quota": {"maxObjects": 10}})), None).unwrap();
}

fn store(spec: Value) -> Value {
    json!({"apiVersion": "cairn.io/v1alpha1", "kind": "ObjectStore", "metadata": {"name": "s3"}, "spec": spec})
}

#[test]
fn objectstore_transition_and_cross_field_rules() {
    let s = schema::<crd::ObjectStore>();
    let base = store(
        json!({"zones": ["a", "b", "c"], "storage": {"nodesPerZone": 2, "volumeSize": "100Gi"}}),
    );
    check(&s, &base, None).unwrap();
    let fewer_zones =
        store(json!({"zones": ["a", "b"], "storage": {"nodesPerZone": 2, "volumeSize": "100Gi"}}));
    assert!(
        check(&s, &fewer_zones, Some(&base))
            .unwrap_err()
            .contains("zones can be added but not removed")
    );
    let more_zones = store(
        json!({"zones": ["a", "b", "c", "d"], "storage": {"nodesPerZone": 2, "volumeSize": "100Gi"}}),
    );
    check(&s, &more_zones, Some(&base)).unwrap();
    let fewer_nodes = store(
        json!({"zones": ["a", "b", "c"], "storage": {"nodesPerZone": 1, "volumeSize": "100Gi"}}),
    );
    assert!(
        check(&s, &fewer_nodes, Some(&base))
            .unwrap_err()
            .contains("nodesPerZone can grow but not shrink")
    );
    let smaller = store(
        json!({"zones": ["a", "b", "c"], "storage": {"nodesPerZone": 2, "volumeSize": "50Gi"}}),
    );
    assert!(
        check(&s, &smaller, Some(&base))
            .unwrap_err()
            .contains("volumeSize can grow but not shrink")
    );
    let bigger = store(
        json!({"zones": ["a", "b", "c"], "storage": {"nodesPerZone": 2, "volumeSize": "1Ti"}}),
    );
    check(&s, &bigger, Some(&base)).unwrap();
    let mut long = base.clone();
    long["metadata"]["name"] = json!("a-very-long-object-store-name");
    assert!(
        check(&s, &long, None)
            .unwrap_err()
            .contains("at most 20 characters")
    );
    let bad_zone = store(json!({"zones": ["a"], "storageClasses": [
        {"name": "ONEZONE_IA", "dataShards": 1, "parityShards": 0, "placement": "SingleZone", "zone": "z"}]}));
    assert!(
        check(&s, &bad_zone, None)
            .unwrap_err()
            .contains("must be one of spec.zones")
    );
    let no_zone = store(json!({"zones": ["a"], "storageClasses": [
        {"name": "ONEZONE_IA", "dataShards": 1, "parityShards": 0, "placement": "SingleZone"}]}));
    assert!(
        check(&s, &no_zone, None)
            .unwrap_err()
            .contains("zone is required for placement SingleZone")
    );
}

#[test]
fn lifecycle_rules_need_an_action_and_one_time_spec() {
    let s = schema::<crd::LifecyclePolicy>();
    let p = |rule: Value| {
        json!({"apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy", "metadata": {"name": "p"},
                                  "spec": {"bucketRef": {"name": "b"}, "rules": [rule]}})
    };
    check(&s, &p(json!({"id": "r", "expiration": {"days": 3}})), None).unwrap();
    assert!(
        check(&s, &p(json!({"id": "r"})), None)
            .unwrap_err()
            .contains("at least one action")
    );
    let both = json!({"id": "r", "transitions": [{"days": 3, "date": "2030-01-01", "storageClass": "GLACIER"}]});
    assert!(
        check(&s, &p(both), None)
            .unwrap_err()
            .contains("exactly one of days or date")
    );
    let two = json!({"id": "r", "expiration": {"days": 3, "expiredObjectDeleteMarker": true}});
    assert!(
        check(&s, &p(two), None)
            .unwrap_err()
            .contains("exactly one of days, date or expiredObjectDeleteMarker")
    );
    let sizes = json!({"id": "r", "expiration": {"days": 3}, "filter": {"objectSizeGreaterThan": 100, "objectSizeLessThan": 10}});
    assert!(
        check(&s, &p(sizes), None)
            .unwrap_err()
            .contains("objectSizeLessThan must be greater")
    );
}

#[test]
fn schema_validation_ranges_enums_patterns() {
    let s = schema::<crd::ObjectStore>();
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(
        spec["storage"]["properties"]["nodesPerZone"]["minimum"],
        json!(1.0)
    );
    assert_eq!(
        spec["zones"]["items"]["pattern"],
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    );
    assert_eq!(
        spec["service"]["properties"]["type"]["enum"],
        json!(["ClusterIP", "NodePort", "LoadBalancer"])
    );
    assert_eq!(s["properties"]["spec"]["required"], json!(["zones"]));
    let b = schema::<crd::Bucket>();
    assert_eq!(
        b["properties"]["spec"]["properties"]["deletionPolicy"]["enum"],
        json!(["Retain", "Delete"])
    );
    assert_eq!(
        b["properties"]["spec"]["properties"]["deletionPolicy"]["default"],
        "Retain"
    );
    let r = schema::<crd::ReplicationRule>();
    assert!(
        r["properties"]["spec"]["properties"]["destination"]["properties"]["endpoint"]["pattern"]
            .is_string()
    );
}

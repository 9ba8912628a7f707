//! What to reconcile when a related object changes: the watch mappers of the controllers (wired
//! in `main.rs`), pure functions over the reflector caches so they are unit-tested.
//!
//! - a pod of a fleet (gateway or storage node) → its ObjectStore, so readiness, crash loops and
//!   restarts show in the status at once instead of at the next periodic requeue;
//! - an ObjectStore → the Buckets using it (they wait for its credentials and admin API);
//! - a Bucket → the LifecyclePolicies and ReplicationRules targeting it (they wait for the bucket,
//!   and a replication rule for its versioning);
//! - an ObjectStore → the policies of every Bucket using it (storage classes a lifecycle rule
//!   names, the admin API coming up).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{Bucket, LifecyclePolicy, ObjectStore, ReplicationRule};
use crate::resources::MANAGED_BY;
use crate::resources::objectstore::{COMPONENT_GATEWAY, COMPONENT_NODE};

/// The ObjectStore a pod belongs to, if it is a gateway or storage node the operator built.
pub fn store_of_pod(pod: &Pod) -> Option<ObjectRef<ObjectStore>> {
    let l = pod.labels();
    if l.get("app.kubernetes.io/managed-by").map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    let component = l.get("app.kubernetes.io/component")?;
    if component != COMPONENT_GATEWAY && component != COMPONENT_NODE {
        return None;
    }
    let store = l.get("app.kubernetes.io/instance")?;
    Some(ObjectRef::new(store).within(&pod.namespace()?))
}

/// Whether `bucket` refers to `store`.
pub fn uses(bucket: &Bucket, store: &ObjectStore) -> bool {
    let r = &bucket.spec.object_store_ref;
    let bns = bucket.namespace().unwrap_or_default();
    r.name == store.name_any()
        && r.namespace.as_deref().unwrap_or(&bns) == store.namespace().unwrap_or_default()
}

/// The Buckets that use `store`.
pub fn buckets_of_store(buckets: &[Arc<Bucket>], store: &ObjectStore) -> Vec<ObjectRef<Bucket>> {
    buckets
        .iter()
        .filter(|b| uses(b, store))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The Buckets of namespace `ns` (its labels changed: an ObjectStore's `allowedNamespaces`
/// selector may now match it, or not).
pub fn buckets_in_namespace(buckets: &[Arc<Bucket>], ns: &str) -> Vec<ObjectRef<Bucket>> {
    buckets
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// A kind whose resources each target one Bucket of their own namespace.
pub trait TargetsBucket: kube::Resource<DynamicType = ()> + Sized {
    /// Name of the Bucket resource.
    fn bucket_ref(&self) -> &str;
}

impl TargetsBucket for LifecyclePolicy {
    fn bucket_ref(&self) -> &str {
        &self.spec.bucket_ref.name
    }
}

impl TargetsBucket for ReplicationRule {
    fn bucket_ref(&self) -> &str {
        &self.spec.bucket_ref.name
    }
}

/// The policies targeting `bucket`.
pub fn policies_of_bucket<P: TargetsBucket>(
    policies: &[Arc<P>],
    bucket: &Bucket,
) -> Vec<ObjectRef<P>> {
    let ns = bucket.namespace();
    policies
        .iter()
        .filter(|p| p.bucket_ref() == bucket.name_any() && p.meta().namespace == ns)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// The policies targeting a Bucket that uses `store`.
pub fn policies_of_store<P: TargetsBucket>(
    policies: &[Arc<P>],
    buckets: &[Arc<Bucket>],
    store: &ObjectStore,
) -> Vec<ObjectRef<P>> {
    buckets
        .iter()
        .filter(|b| uses(b, store))
        .flat_map(|b| policies_of_bucket(policies, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket(ns: &str, name: &str, store_ns: Option<&str>) -> Arc<Bucket> {
        let mut r = json!({"name": "s3"});
        if let Some(n) = store_ns {
            r["namespace"] = json!(n);
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"objectStoreRef": r}
            }))
            .unwrap(),
        )
    }

    fn store(ns: &str) -> ObjectStore {
        serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "ObjectStore",
            "metadata": {"name": "s3", "namespace": ns}, "spec": {"zones": ["a"]}
        }))
        .unwrap()
    }

    fn rule(ns: &str, name: &str, bucket: &str) -> Arc<ReplicationRule> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"bucketRef": {"name": bucket}, "destination": {"endpoint": "https://x",
                         "bucket": "dst", "credentialsSecretRef": {"name": "c"}}}
            }))
            .unwrap(),
        )
    }

    fn lifecycle(ns: &str, name: &str, bucket: &str) -> Arc<LifecyclePolicy> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"bucketRef": {"name": bucket}, "rules": [{"id": "r", "expiration": {"days": 1}}]}
            }))
            .unwrap(),
        )
    }

    fn names<K: kube::Resource<DynamicType = ()>>(refs: Vec<ObjectRef<K>>) -> Vec<String> {
        let mut v: Vec<String> = refs
            .iter()
            .map(|r| format!("{}/{}", r.namespace.clone().unwrap_or_default(), r.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_bucket_change_requeues_the_policies_targeting_it() {
        let rules = vec![
            rule("app", "dr", "photos"),
            rule("app", "other", "videos"),
            rule("elsewhere", "same-name", "photos"),
        ];
        let photos = bucket("app", "photos", Some("storage"));
        assert_eq!(names(policies_of_bucket(&rules, &photos)), ["app/dr"]);
        let lcs = vec![lifecycle("app", "lc", "photos")];
        assert_eq!(names(policies_of_bucket(&lcs, &photos)), ["app/lc"]);
    }

    #[test]
    fn a_store_change_requeues_its_buckets_and_their_policies() {
        let buckets = vec![
            bucket("app", "photos", Some("storage")),
            bucket("storage", "logs", None),
            bucket("app", "local", None),
        ];
        let s = store("storage");
        assert_eq!(
            names(buckets_of_store(&buckets, &s)),
            ["app/photos", "storage/logs"]
        );
        let rules = vec![
            rule("app", "dr", "photos"),
            rule("app", "x", "local"),
            rule("storage", "y", "logs"),
        ];
        assert_eq!(
            names(policies_of_store(&rules, &buckets, &s)),
            ["app/dr", "storage/y"]
        );
        assert_eq!(
            names(buckets_in_namespace(&buckets, "app")),
            ["app/local", "app/photos"]
        );
    }

    #[test]
    fn a_pod_maps_to_its_store_only_if_the_operator_built_it() {
        let pod = |labels: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "s3-gateway-0", "namespace": "storage", "labels": labels}}))
                .unwrap()
        };
        let r = store_of_pod(&pod(json!({
            "app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "gateway",
            "app.kubernetes.io/managed-by": "cairn-operator"})))
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("s3", Some("storage"))
        );
        assert!(
            store_of_pod(&pod(json!({
                "app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "storage-node",
                "app.kubernetes.io/managed-by": "cairn-operator"})))
            .is_some()
        );
        assert!(
            store_of_pod(&pod(json!({
                "app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "gateway"})))
            .is_none()
        );
        assert!(
            store_of_pod(&pod(json!({
                "app.kubernetes.io/instance": "s3", "app.kubernetes.io/component": "app",
                "app.kubernetes.io/managed-by": "cairn-operator"})))
            .is_none()
        );
    }
}

//! Which namespaces may use a fleet: the ObjectStore's own, and those `spec.allowedNamespaces`
//! names or selects by label. A Bucket elsewhere (and so its LifecyclePolicies and
//! ReplicationRules) gets `Ready=False NamespaceNotAllowed`, and loses the access key it had.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;

use super::{Context, Result};
use crate::crd::ObjectStore;

/// Whether `labels` match `selector` as Kubernetes matches them (an empty selector matches
/// everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

/// Whether namespace `ns` (with `labels`, when known) may use `store`.
pub fn allows(store: &ObjectStore, ns: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
    if store.namespace().as_deref() == Some(ns) {
        return true;
    }
    let Some(a) = &store.spec.allowed_namespaces else {
        return false;
    };
    a.names.iter().any(|n| n == ns)
        || a.selector
            .as_ref()
            .zip(labels)
            .is_some_and(|(s, l)| selector_matches(s, l))
}

/// Whether namespace `ns` may use `store`, reading the namespace's labels only when a selector
/// needs them.
pub async fn namespace_allowed(ctx: &Context, store: &ObjectStore, ns: &str) -> Result<bool> {
    if allows(store, ns, None) {
        return Ok(true);
    }
    if store
        .spec
        .allowed_namespaces
        .as_ref()
        .is_none_or(|a| a.selector.is_none())
    {
        return Ok(false);
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let labels = namespaces
        .get_opt(ns)
        .await?
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    Ok(allows(store, ns, Some(&labels)))
}

/// Why namespace `ns` may not use `store`, for a condition.
pub fn not_allowed_message(store: &ObjectStore, ns: &str) -> String {
    format!(
        "ObjectStore {}/{} does not allow namespace {ns}: add it to the ObjectStore's spec.allowedNamespaces (names or selector)",
        store.namespace().unwrap_or_default(),
        store.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(allowed: serde_json::Value) -> ObjectStore {
        serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "ObjectStore",
            "metadata": {"name": "s3", "namespace": "storage"},
            "spec": {"zones": ["a"], "allowedNamespaces": allowed}
        }))
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn own_namespace_names_and_selectors() {
        let none = store(serde_json::Value::Null);
        assert!(allows(&none, "storage", None));
        assert!(!allows(&none, "app", Some(&labels(&[]))));
        let named = store(json!({"names": ["app"]}));
        assert!(allows(&named, "app", None));
        assert!(!allows(&named, "other", Some(&labels(&[]))));
        let selected = store(json!({"selector": {
            "matchLabels": {"cairn.io/storage": "s3"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["test"]}]}}));
        assert!(allows(
            &selected,
            "app",
            Some(&labels(&[("cairn.io/storage", "s3")]))
        ));
        assert!(!allows(
            &selected,
            "app",
            Some(&labels(&[("cairn.io/storage", "s3"), ("env", "test")]))
        ));
        assert!(!allows(&selected, "app", Some(&labels(&[("env", "prod")]))));
        assert!(!allows(&selected, "app", None), "labels unknown");
        let exists = LabelSelector {
            match_expressions: Some(vec![
                serde_json::from_value(json!({"key": "team", "operator": "Exists"})).unwrap(),
                serde_json::from_value(json!({"key": "frozen", "operator": "DoesNotExist"}))
                    .unwrap(),
                serde_json::from_value(
                    json!({"key": "tier", "operator": "In", "values": ["gold", "silver"]}),
                )
                .unwrap(),
            ]),
            ..Default::default()
        };
        assert!(selector_matches(
            &exists,
            &labels(&[("team", "x"), ("tier", "gold")])
        ));
        assert!(!selector_matches(
            &exists,
            &labels(&[("team", "x"), ("tier", "bronze")])
        ));
        assert!(!selector_matches(
            &exists,
            &labels(&[("team", "x"), ("tier", "gold"), ("frozen", "")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }
}

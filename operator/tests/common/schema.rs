//! Validation of what the operator writes, as the API server does it: every object (and every
//! status) against its kind's schema — the generated CRDs for Cairn's kinds (structure, then the
//! CEL rules with kube's client-side evaluator), the Kubernetes OpenAPI (k8s-openapi's schemas)
//! for the built-in ones. A field the schema does not declare is refused as server-side apply
//! refuses it (`.status.rules: field not declared in schema`), so a test whose reconcile writes
//! one fails the way the real cluster did.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use cairn_operator::crd;
use kube::CustomResourceExt;
use serde_json::{Map, Value};

/// A schema and the root its `$ref`s point into.
#[derive(Clone)]
pub struct Schema {
    root: Value,
    /// Cairn's kinds: the CEL rules (`x-kubernetes-validations`) are evaluated too.
    crd: bool,
}

fn crd_schema<K: CustomResourceExt>() -> Schema {
    let c = K::crd();
    let root = serde_json::to_value(
        c.spec.versions[0]
            .schema
            .as_ref()
            .expect("schema")
            .open_api_v3_schema
            .as_ref()
            .expect("openAPIV3Schema"),
    )
    .expect("schema JSON");
    Schema { root, crd: true }
}

fn k8s_schema<T: schemars::JsonSchema>() -> Schema {
    let root =
        serde_json::to_value(schemars::SchemaGenerator::default().into_root_schema_for::<T>())
            .expect("schema JSON");
    Schema { root, crd: false }
}

/// The schema of the objects in a collection (`/apis/apps/v1/statefulsets`, namespace left out),
/// `None` for a collection the fake does not know (a test must not write there unchecked).
pub fn for_collection(collection_all: &str) -> Option<Schema> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Option<Schema>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().unwrap().get(collection_all) {
        return s.clone();
    }
    use k8s_openapi::api;
    let s = match collection_all {
        "/apis/cairn.io/v1alpha1/objectstores" => Some(crd_schema::<crd::ObjectStore>()),
        "/apis/cairn.io/v1alpha1/buckets" => Some(crd_schema::<crd::Bucket>()),
        "/apis/cairn.io/v1alpha1/lifecyclepolicies" => Some(crd_schema::<crd::LifecyclePolicy>()),
        "/apis/cairn.io/v1alpha1/replicationrules" => Some(crd_schema::<crd::ReplicationRule>()),
        "/apis/apps/v1/statefulsets" => Some(k8s_schema::<api::apps::v1::StatefulSet>()),
        "/api/v1/services" => Some(k8s_schema::<api::core::v1::Service>()),
        "/api/v1/secrets" => Some(k8s_schema::<api::core::v1::Secret>()),
        "/api/v1/pods" => Some(k8s_schema::<api::core::v1::Pod>()),
        "/api/v1/namespaces" => Some(k8s_schema::<api::core::v1::Namespace>()),
        "/api/v1/persistentvolumeclaims" => {
            Some(k8s_schema::<api::core::v1::PersistentVolumeClaim>())
        }
        "/apis/policy/v1/poddisruptionbudgets" => {
            Some(k8s_schema::<api::policy::v1::PodDisruptionBudget>())
        }
        "/apis/networking.k8s.io/v1/networkpolicies" => {
            Some(k8s_schema::<api::networking::v1::NetworkPolicy>())
        }
        "/apis/events.k8s.io/v1/events" => Some(k8s_schema::<api::events::v1::Event>()),
        "/apis/coordination.k8s.io/v1/leases" => Some(k8s_schema::<api::coordination::v1::Lease>()),
        "/apis/rbac.authorization.k8s.io/v1/roles" => Some(k8s_schema::<api::rbac::v1::Role>()),
        "/apis/rbac.authorization.k8s.io/v1/rolebindings" => {
            Some(k8s_schema::<api::rbac::v1::RoleBinding>())
        }
        _ => None,
    };
    cache
        .lock()
        .unwrap()
        .insert(collection_all.to_string(), s.clone());
    s
}

impl Schema {
    /// Every problem of `obj` (a whole object as stored), `old` being the stored object it
    /// replaces (for the CEL transition rules).
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<String> {
        let mut errs = Vec::new();
        let mut root = self.root.clone();
        if self.crd {
            // The API server declares these for every custom resource.
            let props = root["properties"]
                .as_object_mut()
                .expect("a CRD schema has properties");
            for (k, t) in [("apiVersion", "string"), ("kind", "string")] {
                props.insert(k.into(), serde_json::json!({"type": t}));
            }
            props.insert(
                "metadata".into(),
                serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        check(&root, &root, obj, "", &mut errs);
        if self.crd && errs.is_empty() {
            // CEL sees only the name and generateName of the metadata.
            let strip = |v: &Value| {
                let mut v = v.clone();
                let m = &v["metadata"];
                let kept =
                    serde_json::json!({"name": m["name"], "generateName": m["generateName"]});
                let kept: Map<String, Value> = kept
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, x)| !x.is_null())
                    .map(|(k, x)| (k.clone(), x.clone()))
                    .collect();
                v["metadata"] = Value::Object(kept);
                v
            };
            let (new, old) = (strip(obj), old.map(strip));
            if let Err(e) =
                kube::core::cel::Validator::new().validate(&self.root, &new, old.as_ref())
            {
                errs.push(format!("CEL: {e}"));
            }
        }
        errs
    }
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..32 {
        let Some(r) = s.get("$ref").and_then(Value::as_str) else {
            return s;
        };
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .unwrap_or_else(|| panic!("unsupported $ref {r}"));
        let defs = root
            .get("$defs")
            .or_else(|| root.get("definitions"))
            .expect("definitions");
        s = defs
            .get(name)
            .unwrap_or_else(|| panic!("no definition {name}"));
    }
    panic!("$ref loop");
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        _ => true,
    }
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = resolve(root, schema);
    // The API server drops nulls of fields that are not nullable before validating.
    if v.is_null() {
        return;
    }
    for b in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(root, b, v, path, errs);
    }
    let int_or_string = s
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(format!("{path}: must be an integer or a string, got {v}"));
        }
        return;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let ok = branches.iter().any(|b| {
                let mut e = Vec::new();
                check(root, b, v, path, &mut e);
                e.is_empty()
            });
            if !ok {
                errs.push(format!("{path}: matches none of {key}"));
            }
        }
    }
    if let Some(t) = s.get("type").and_then(Value::as_str)
        && !type_ok(t, v)
    {
        errs.push(format!("{path}: must be of type {t}, got {v}"));
        return;
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!(
            "{path}: {v} is not one of {}",
            Value::from(e.clone())
        ));
    }
    if let Some(text) = v.as_str() {
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
            if !re.is_match(text) {
                errs.push(format!("{path}: {text:?} does not match {p}"));
            }
        }
        let n = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            errs.push(format!("{path}: shorter than minLength"));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            errs.push(format!("{path}: longer than maxLength"));
        }
    }
    if let Some(x) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x < m)
        {
            errs.push(format!("{path}: {x} is below the minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x > m)
        {
            errs.push(format!("{path}: {x} is above the maximum"));
        }
        if s.get("format").and_then(Value::as_str) == Some("int32")
            && !(i32::MIN as f64..=i32::MAX as f64).contains(&x)
        {
            errs.push(format!("{path}: {x} is not an int32"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            errs.push(format!("{path}: fewer than minItems"));
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            errs.push(format!("{path}: more than maxItems"));
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                check(root, item, x, &format!("{path}[{i}]"), errs);
            }
        }
    }
    if let Some(obj) = v.as_object() {
        check_object(root, s, obj, path, errs);
    }
}

fn check_object(
    root: &Value,
    s: &Value,
    obj: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let open = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let embedded = s
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (k, x) in obj {
        let p = format!("{path}.{k}");
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            check(root, ps, x, &p, errs);
        } else if let Some(a) = additional.filter(|a| a.is_object()) {
            check(root, a, x, &p, errs);
        } else if open
            || additional == Some(&Value::Bool(true))
            || (embedded && ["apiVersion", "kind", "metadata"].contains(&k.as_str()))
            // An object schema declaring nothing (k8s-openapi's free-form `RawExtension`s).
            || (props.is_none() && additional.is_none())
        {
        } else {
            errs.push(format!("{p}: field not declared in schema"));
        }
    }
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let r = r.as_str().unwrap_or_default();
        if obj.get(r).is_none_or(Value::is_null) {
            errs.push(format!("{path}.{r}: Required value"));
        }
    }
}

//! The application Secret of a Bucket, and the lifecycle and replication documents pushed to the
//! gateway (S3's configuration in the JSON form the AWS CLI and SDKs use).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Map, Value, json};

use super::objectstore::S3Endpoint;
use crate::crd::lifecycle::{LifecycleFilter, LifecycleRule, Tag};
use crate::crd::{Bucket, LifecyclePolicy, ReplicationRule};

/// Key of the access key id in the application Secret.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Key of the secret key in the application Secret.
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// The Secret an application `envFrom`s: the AWS SDK variables, plus the names Rook's
/// ObjectBucketClaim (`BUCKET_HOST`, `BUCKET_PORT`, `BUCKET_NAME`) and Kubernetes COSI
/// (`COSI_S3_*`) consumers expect.
pub fn app_secret(
    bucket: &Bucket,
    endpoint: &S3Endpoint,
    access_key_id: &str,
    secret_key: &str,
    owner: &OwnerReference,
) -> Secret {
    let name = bucket.bucket_name();
    let url = endpoint.url();
    let pairs = [
        (AWS_ACCESS_KEY_ID, access_key_id.to_string()),
        (AWS_SECRET_ACCESS_KEY, secret_key.to_string()),
        ("AWS_ENDPOINT_URL_S3", url.clone()),
        ("AWS_REGION", endpoint.region.clone()),
        ("BUCKET_NAME", name.clone()),
        ("BUCKET_HOST", endpoint.host.clone()),
        ("BUCKET_PORT", endpoint.port.to_string()),
        ("COSI_S3_ENDPOINT", url),
        ("COSI_S3_ACCESS_KEY_ID", access_key_id.to_string()),
        ("COSI_S3_ACCESS_SECRET_KEY", secret_key.to_string()),
        ("COSI_S3_BUCKET_ID", name),
        ("COSI_S3_REGION", endpoint.region.clone()),
    ];
    let data: BTreeMap<String, ByteString> = pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "cairn".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "bucket-credentials".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            super::MANAGED_BY.to_string(),
        ),
    ]);
    labels.insert(
        "cairn.io/bucket".into(),
        bucket.metadata.name.clone().unwrap_or_default(),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(bucket.secret_name()),
            namespace: bucket.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Name given to the access key of a Bucket resource (so leftovers can be found and deleted).
pub fn key_name(bucket: &Bucket) -> String {
    format!(
        "k8s:{}/{}",
        bucket.metadata.namespace.as_deref().unwrap_or("default"),
        bucket.metadata.name.as_deref().unwrap_or("")
    )
}

fn tags(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"Key": t.key, "Value": t.value}))
            .collect(),
    )
}

/// An S3 filter: one condition alone, several under `And` (as S3 requires).
fn filter(prefix: Option<&String>, tag_list: &[Tag], gt: Option<i64>, lt: Option<i64>) -> Value {
    let mut conds = Map::new();
    if let Some(p) = prefix {
        conds.insert("Prefix".into(), json!(p));
    }
    if let Some(v) = gt {
        conds.insert("ObjectSizeGreaterThan".into(), json!(v));
    }
    if let Some(v) = lt {
        conds.insert("ObjectSizeLessThan".into(), json!(v));
    }
    let n = conds.len() + tag_list.len();
    if n == 0 {
        return json!({"Prefix": ""});
    }
    if n == 1 {
        if let Some(t) = tag_list.first() {
            return json!({"Tag": {"Key": t.key, "Value": t.value}});
        }
        return Value::Object(conds);
    }
    if !tag_list.is_empty() {
        conds.insert("Tags".into(), tags(tag_list));
    }
    json!({ "And": conds })
}

fn lifecycle_filter(f: Option<&LifecycleFilter>) -> Value {
    match f {
        None => json!({"Prefix": ""}),
        Some(f) => filter(
            f.prefix.as_ref(),
            &f.tags,
            f.object_size_greater_than,
            f.object_size_less_than,
        ),
    }
}

fn status(enabled: bool) -> &'static str {
    if enabled { "Enabled" } else { "Disabled" }
}

/// One rule in S3's JSON form.
pub fn lifecycle_rule(rule: &LifecycleRule) -> Value {
    let mut r = Map::new();
    r.insert("ID".into(), json!(rule.id));
    r.insert("Status".into(), json!(status(rule.enabled)));
    r.insert("Filter".into(), lifecycle_filter(rule.filter.as_ref()));
    if let Some(ts) = &rule.transitions {
        let ts: Vec<Value> = ts
            .iter()
            .map(|t| {
                let mut o = Map::new();
                if let Some(d) = t.days {
                    o.insert("Days".into(), json!(d));
                }
                if let Some(d) = &t.date {
                    o.insert("Date".into(), json!(format!("{d}T00:00:00Z")));
                }
                o.insert("StorageClass".into(), json!(t.storage_class));
                Value::Object(o)
            })
            .collect();
        r.insert("Transitions".into(), Value::Array(ts));
    }
    if let Some(e) = &rule.expiration {
        let mut o = Map::new();
        if let Some(d) = e.days {
            o.insert("Days".into(), json!(d));
        }
        if let Some(d) = &e.date {
            o.insert("Date".into(), json!(format!("{d}T00:00:00Z")));
        }
        if let Some(m) = e.expired_object_delete_marker {
            o.insert("ExpiredObjectDeleteMarker".into(), json!(m));
        }
        r.insert("Expiration".into(), Value::Object(o));
    }
    if let Some(ts) = &rule.noncurrent_version_transitions {
        let ts: Vec<Value> = ts
            .iter()
            .map(|t| {
                let mut o = Map::new();
                o.insert("NoncurrentDays".into(), json!(t.noncurrent_days));
                if let Some(n) = t.newer_noncurrent_versions {
                    o.insert("NewerNoncurrentVersions".into(), json!(n));
                }
                o.insert("StorageClass".into(), json!(t.storage_class));
                Value::Object(o)
            })
            .collect();
        r.insert("NoncurrentVersionTransitions".into(), Value::Array(ts));
    }
    if let Some(e) = &rule.noncurrent_version_expiration {
        let mut o = Map::new();
        o.insert("NoncurrentDays".into(), json!(e.noncurrent_days));
        if let Some(n) = e.newer_noncurrent_versions {
            o.insert("NewerNoncurrentVersions".into(), json!(n));
        }
        r.insert("NoncurrentVersionExpiration".into(), Value::Object(o));
    }
    if let Some(a) = &rule.abort_incomplete_multipart_upload {
        r.insert(
            "AbortIncompleteMultipartUpload".into(),
            json!({"DaysAfterInitiation": a.days_after_initiation}),
        );
    }
    Value::Object(r)
}

/// The bucket's lifecycle configuration from every policy that targets it, in name order. Rule
/// ids must be unique across them: a duplicate is returned as an error naming both policies.
pub fn lifecycle_document(policies: &[&LifecyclePolicy]) -> Result<Value, String> {
    let mut sorted: Vec<&&LifecyclePolicy> = policies.iter().collect();
    sorted.sort_by_key(|p| p.metadata.name.clone());
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut rules = Vec::new();
    for p in sorted {
        let pname = p.metadata.name.as_deref().unwrap_or("");
        for r in &p.spec.rules {
            if let Some(other) = seen.insert(&r.id, pname) {
                return Err(format!(
                    "rule id {:?} is used by LifecyclePolicy {other} and {pname}",
                    r.id
                ));
            }
            rules.push(lifecycle_rule(r));
        }
    }
    Ok(json!({ "Rules": rules }))
}

/// Destination credentials of a replication rule, read from its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
}

/// The bucket's replication configuration: one S3 rule per ReplicationRule (id
/// `namespace/name`), the destination as S3's `Destination` plus Cairn's `Endpoint`, `Region` and
/// `Credentials` (S3 names an IAM role instead). Priorities must be unique.
pub fn replication_document(
    rules: &[(&ReplicationRule, DestinationCredentials)],
) -> Result<Value, String> {
    let mut sorted: Vec<&(&ReplicationRule, DestinationCredentials)> = rules.iter().collect();
    sorted.sort_by_key(|(r, _)| (std::cmp::Reverse(r.spec.priority), r.metadata.name.clone()));
    let mut seen: BTreeMap<i32, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for (r, creds) in sorted {
        let name = r.metadata.name.as_deref().unwrap_or("");
        if let Some(other) = seen.insert(r.spec.priority, name) {
            return Err(format!(
                "priority {} is used by ReplicationRule {other} and {name}",
                r.spec.priority
            ));
        }
        let s = &r.spec;
        let f = match &s.filter {
            None => json!({"Prefix": ""}),
            Some(f) => filter(f.prefix.as_ref(), &f.tags, None, None),
        };
        let mut dest = Map::new();
        dest.insert(
            "Bucket".into(),
            json!(format!("arn:aws:s3:::{}", s.destination.bucket)),
        );
        if let Some(c) = &s.destination.storage_class {
            dest.insert("StorageClass".into(), json!(c));
        }
        dest.insert("Endpoint".into(), json!(s.destination.endpoint));
        dest.insert("Region".into(), json!(s.destination.region));
        dest.insert(
            "Credentials".into(),
            json!({"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key}),
        );
        out.push(json!({
            "ID": format!("{}/{}", r.metadata.namespace.as_deref().unwrap_or("default"), name),
            "Priority": s.priority,
            "Status": status(s.enabled),
            "Filter": f,
            "DeleteMarkerReplication": {"Status": status(s.delete_marker_replication)},
            "Destination": Value::Object(dest),
        }));
    }
    Ok(json!({"Role": "", "Rules": out}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    fn bucket() -> Bucket {
        serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "photos", "namespace": "app", "uid": "b-1"},
            "spec": {"objectStoreRef": {"name": "s3", "namespace": "storage"}}
        }))
        .unwrap()
    }

    fn endpoint() -> S3Endpoint {
        S3Endpoint {
            host: "s3.storage.svc".into(),
            port: 9000,
            tls: false,
            region: "eu-1".into(),
        }
    }

    #[test]
    fn app_secret_has_every_key_applications_expect() {
        let b = bucket();
        let owner = b.controller_owner_ref(&()).unwrap();
        let s = app_secret(&b, &endpoint(), "CKID", "SECRET", &owner);
        let d: BTreeMap<String, String> = s
            .data
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        let expect = [
            ("AWS_ACCESS_KEY_ID", "CKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_ENDPOINT_URL_S3", "http://s3.storage.svc:9000"),
            ("AWS_REGION", "eu-1"),
            ("BUCKET_NAME", "photos"),
            ("BUCKET_HOST", "s3.storage.svc"),
            ("BUCKET_PORT", "9000"),
            ("COSI_S3_ENDPOINT", "http://s3.storage.svc:9000"),
            ("COSI_S3_ACCESS_KEY_ID", "CKID"),
            ("COSI_S3_ACCESS_SECRET_KEY", "SECRET"),
            ("COSI_S3_BUCKET_ID", "photos"),
            ("COSI_S3_REGION", "eu-1"),
        ];
        assert_eq!(d.len(), expect.len());
        for (k, val) in expect {
            assert_eq!(d.get(k).map(String::as_str), Some(val), "{k}");
        }
        assert_eq!(s.metadata.name.as_deref(), Some("photos"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("app"));
        assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "b-1");
        assert_eq!(key_name(&b), "k8s:app/photos");
    }

    #[test]
    fn bucket_and_secret_names_default_to_the_resource_name() {
        let mut b = bucket();
        assert_eq!(b.bucket_name(), "photos");
        assert_eq!(b.secret_name(), "photos");
        b.spec.bucket_name = Some("photos-prod".into());
        b.spec.secret_name = Some("photo-creds".into());
        assert_eq!(b.bucket_name(), "photos-prod");
        assert_eq!(b.secret_name(), "photo-creds");
    }

    fn policy(name: &str, rules: Value) -> LifecyclePolicy {
        serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "LifecyclePolicy",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"bucketRef": {"name": "photos"}, "rules": rules}
        }))
        .unwrap()
    }

    #[test]
    fn lifecycle_document_in_s3_json_form() {
        let p = policy(
            "p1",
            json!([{
                "id": "archive",
                "filter": {"prefix": "logs/", "tags": [{"key": "tier", "value": "cold"}], "objectSizeGreaterThan": 1024},
                "transitions": [{"days": 30, "storageClass": "STANDARD_IA"}, {"date": "2030-01-01", "storageClass": "GLACIER"}],
                "expiration": {"days": 365},
                "noncurrentVersionExpiration": {"noncurrentDays": 7, "newerNoncurrentVersions": 2},
                "abortIncompleteMultipartUpload": {"daysAfterInitiation": 3}
            }, {
                "id": "tmp", "enabled": false, "filter": {"prefix": "tmp/"}, "expiration": {"days": 1}
            }]),
        );
        let doc = lifecycle_document(&[&p]).unwrap();
        let r = &doc["Rules"][0];
        assert_eq!(r["ID"], "archive");
        assert_eq!(r["Status"], "Enabled");
        assert_eq!(r["Filter"]["And"]["Prefix"], "logs/");
        assert_eq!(
            r["Filter"]["And"]["Tags"][0],
            json!({"Key": "tier", "Value": "cold"})
        );
        assert_eq!(r["Filter"]["And"]["ObjectSizeGreaterThan"], 1024);
        assert_eq!(
            r["Transitions"][0],
            json!({"Days": 30, "StorageClass": "STANDARD_IA"})
        );
        assert_eq!(
            r["Transitions"][1],
            json!({"Date": "2030-01-01T00:00:00Z", "StorageClass": "GLACIER"})
        );
        assert_eq!(r["Expiration"], json!({"Days": 365}));
        assert_eq!(
            r["NoncurrentVersionExpiration"],
            json!({"NoncurrentDays": 7, "NewerNoncurrentVersions": 2})
        );
        assert_eq!(
            r["AbortIncompleteMultipartUpload"],
            json!({"DaysAfterInitiation": 3})
        );
        let t = &doc["Rules"][1];
        assert_eq!(t["Status"], "Disabled");
        assert_eq!(t["Filter"], json!({"Prefix": "tmp/"}));
        // Policies merge; duplicate ids are a conflict.
        let q = policy("p2", json!([{"id": "other", "expiration": {"days": 2}}]));
        assert_eq!(
            lifecycle_document(&[&q, &p]).unwrap()["Rules"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let dup = policy("p3", json!([{"id": "tmp", "expiration": {"days": 2}}]));
        let err = lifecycle_document(&[&p, &dup]).unwrap_err();
        assert!(
            err.contains("\"tmp\"") && err.contains("p1") && err.contains("p3"),
            "{err}"
        );
        // No filter: every object.
        let all = policy("p4", json!([{"id": "x", "expiration": {"days": 2}}]));
        assert_eq!(
            lifecycle_document(&[&all]).unwrap()["Rules"][0]["Filter"],
            json!({"Prefix": ""})
        );
    }

    fn rule(name: &str, priority: i32) -> ReplicationRule {
        serde_json::from_value(json!({
            "apiVersion": "cairn.io/v1alpha1", "kind": "ReplicationRule",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"bucketRef": {"name": "photos"}, "priority": priority,
                     "filter": {"prefix": "img/"}, "deleteMarkerReplication": true,
                     "destination": {"endpoint": "https://s3.backup.example", "bucket": "photos-dr",
                                     "storageClass": "STANDARD_IA",
                                     "credentialsSecretRef": {"name": "dr"}}}
        }))
        .unwrap()
    }

    #[test]
    fn replication_document_in_s3_json_form() {
        let creds = DestinationCredentials {
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
        };
        let a = rule("a", 1);
        let b = rule("b", 5);
        let doc = replication_document(&[(&a, creds.clone()), (&b, creds.clone())]).unwrap();
        let rules = doc["Rules"].as_array().unwrap();
        assert_eq!(rules[0]["ID"], "app/b", "highest priority first");
        let r = &rules[1];
        assert_eq!(r["ID"], "app/a");
        assert_eq!(r["Priority"], 1);
        assert_eq!(r["Status"], "Enabled");
        assert_eq!(r["Filter"], json!({"Prefix": "img/"}));
        assert_eq!(r["DeleteMarkerReplication"]["Status"], "Enabled");
        assert_eq!(r["Destination"]["Bucket"], "arn:aws:s3:::photos-dr");
        assert_eq!(r["Destination"]["StorageClass"], "STANDARD_IA");
        assert_eq!(r["Destination"]["Endpoint"], "https://s3.backup.example");
        assert_eq!(r["Destination"]["Region"], "us-east-1");
        assert_eq!(
            r["Destination"]["Credentials"],
            json!({"AccessKeyId": "AK", "SecretAccessKey": "SK"})
        );
        let c = rule("c", 1);
        assert!(
            replication_document(&[(&a, creds.clone()), (&c, creds)])
                .unwrap_err()
                .contains("priority 1")
        );
    }
}

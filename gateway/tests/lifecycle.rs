//! Lifecycle through the official `aws-sdk-s3` client and the admin API: lifecycle and
//! replication configuration documents round-trip in both forms and invalid ones get the error S3
//! gives; and, with a lifecycle day shortened to a second or two, rules really run: a prefix rule
//! re-encodes objects into another storage class (new shards, another count, other nodes) and then
//! expires them, noncurrent versions and lone delete markers expire, incomplete multipart uploads
//! are aborted and their parts' shards collected, and a gateway killed in the middle of a run
//! finishes it after a restart with nothing lost and nothing left behind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
    CompletedMultipartUpload, CompletedPart, DeleteMarkerReplication,
    DeleteMarkerReplicationStatus, Destination, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter, NoncurrentVersionExpiration,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, Tag,
    Transition, TransitionStorageClass, VersioningConfiguration,
};
use cairn_gateway::storage_class::parse_storage_class;
use common::*;
use serde_json::json;

const KIB: usize = 1024;

/// The admin API of a test fleet.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn of(t: &TestFleet) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: t.admin(),
            token: t.fleet.secrets.admin_token.clone(),
        }
    }

    /// Status and JSON body (`null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("admin call");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, v)
    }
}

fn rule(id: &str) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_configuration_round_trips_through_s3_and_the_admin_api() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    let admin = Admin::of(&t);
    s3.create_bucket().bucket("life").send().await.unwrap();

    let err = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchLifecycleConfiguration"));

    let conf = BucketLifecycleConfiguration::builder()
        .rules(
            rule("logs")
                .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
                .expiration(LifecycleExpiration::builder().days(30).build())
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(7)
                        .newer_noncurrent_versions(2)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .rules(
            rule("big-tmp")
                .filter(
                    LifecycleRuleFilter::builder()
                        .and(
                            LifecycleRuleAndOperator::builder()
                                .prefix("tmp/")
                                .object_size_greater_than(1024)
                                .build(),
                        )
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .date(DateTime::from_secs(1_893_456_000)) // 2030-01-01
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .rules(
            LifecycleRule::builder()
                .status(ExpirationStatus::Disabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(2)
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s3.put_bucket_lifecycle_configuration()
        .bucket("life")
        .lifecycle_configuration(conf)
        .send()
        .await
        .unwrap();

    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    let rules = got.rules();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].id(), Some("logs"));
    assert_eq!(
        rules[0].filter().unwrap().prefix(),
        Some("logs/"),
        "{rules:?}"
    );
    assert_eq!(rules[0].expiration().unwrap().days(), Some(30));
    let nve = rules[0].noncurrent_version_expiration().unwrap();
    assert_eq!(
        (nve.noncurrent_days(), nve.newer_noncurrent_versions()),
        (Some(7), Some(2))
    );
    let and = rules[1].filter().unwrap().and().unwrap();
    assert_eq!(and.prefix(), Some("tmp/"));
    assert_eq!(and.object_size_greater_than(), Some(1024));
    assert_eq!(
        rules[1].expiration().unwrap().date().unwrap().secs(),
        1_893_456_000
    );
    // A rule without an id gets one.
    assert_eq!(rules[2].id(), Some("rule-1"));
    assert_eq!(rules[2].status(), &ExpirationStatus::Disabled);
    assert_eq!(
        rules[2]
            .abort_incomplete_multipart_upload()
            .unwrap()
            .days_after_initiation(),
        Some(2)
    );

    // The admin API shows the same document in S3's JSON form.
    let (status, doc) = admin
        .call(
            reqwest::Method::GET,
            "/admin/v1/buckets/life/lifecycle",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["Rules"][0]["ID"], "logs");
    assert_eq!(doc["Rules"][0]["Filter"]["Prefix"], "logs/");
    assert_eq!(
        doc["Rules"][1]["Expiration"]["Date"],
        "2030-01-01T00:00:00Z"
    );
    assert_eq!(doc["Rules"][2]["Status"], "Disabled");

    // What the operator pushes for a LifecyclePolicy replaces it, and S3 reads it back.
    let pushed = json!({"Rules": [{"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}]});
    let (status, doc) = admin
        .call(
            reqwest::Method::PUT,
            "/admin/v1/buckets/life/lifecycle",
            Some(pushed.clone()),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc, pushed);
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    assert_eq!(got.rules().len(), 1);
    assert_eq!(got.rules()[0].id(), Some("tmp"));
    assert_eq!(got.rules()[0].expiration().unwrap().days(), Some(1));

    // Invalid documents get S3's errors through both doors, and change nothing.
    for (doc, code) in [
        (json!({"Rules": []}), "MalformedXML"),
        (
            json!({"Rules": [{"Status": "Enabled", "Expiration": {"Days": 0}}]}),
            "InvalidArgument",
        ),
        (
            json!({"Rules": [{"Status": "Enabled", "Filter": {"Prefix": "a/"}}]}),
            "InvalidRequest",
        ),
        (
            json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 5, "StorageClass": "NO_SUCH_CLASS"}]}]}),
            "InvalidStorageClass",
        ),
        (
            json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 5, "StorageClass": "STANDARD"}]}]}),
            "InvalidArgument",
        ),
        (json!({"Rules": [{"Status": "Sometimes"}]}), "MalformedJSON"),
    ] {
        let (status, body) = admin
            .call(
                reqwest::Method::PUT,
                "/admin/v1/buckets/life/lifecycle",
                Some(doc.clone()),
            )
            .await;
        assert_eq!(status, 400, "{doc}");
        assert_eq!(body["error"]["code"], code, "{doc}: {body}");
    }
    let bad = [
        (
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("zero")
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .expiration(LifecycleExpiration::builder().days(0).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "InvalidArgument",
        ),
        (
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("dup")
                        .filter(LifecycleRuleFilter::builder().prefix("a").build())
                        .expiration(LifecycleExpiration::builder().days(1).build())
                        .build()
                        .unwrap(),
                )
                .rules(
                    rule("dup")
                        .filter(LifecycleRuleFilter::builder().prefix("b").build())
                        .expiration(LifecycleExpiration::builder().days(1).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "InvalidArgument",
        ),
        (
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("none")
                        .filter(LifecycleRuleFilter::builder().prefix("a").build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "InvalidRequest",
        ),
        (
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("tags-abort")
                        .filter(
                            LifecycleRuleFilter::builder()
                                .tag(Tag::builder().key("k").value("v").build().unwrap())
                                .build(),
                        )
                        .abort_incomplete_multipart_upload(
                            AbortIncompleteMultipartUpload::builder()
                                .days_after_initiation(1)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "InvalidRequest",
        ),
        (
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("glacier")
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .transitions(
                            Transition::builder()
                                .days(10)
                                .storage_class(TransitionStorageClass::DeepArchive)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            "InvalidStorageClass",
        ),
    ];
    for (conf, code) in bad {
        let err = s3
            .put_bucket_lifecycle_configuration()
            .bucket("life")
            .lifecycle_configuration(conf)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(code), "{err:?}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
    }
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.rules()[0].id(),
        Some("tmp"),
        "unchanged by refused puts"
    );

    // Deleting: through S3, then the admin API answers 404 on read and 204 on a second delete.
    s3.delete_bucket_lifecycle()
        .bucket("life")
        .send()
        .await
        .unwrap();
    let (status, body) = admin
        .call(
            reqwest::Method::GET,
            "/admin/v1/buckets/life/lifecycle",
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NoSuchLifecycleConfiguration");
    let (status, _) = admin
        .call(
            reqwest::Method::DELETE,
            "/admin/v1/buckets/life/lifecycle",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = admin
        .call(
            reqwest::Method::PUT,
            "/admin/v1/buckets/nope/lifecycle",
            Some(pushed),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NoSuchBucket"))
    );

    // The configuration goes with its bucket.
    s3.put_bucket_lifecycle_configuration()
        .bucket("life")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    rule("x")
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .expiration(LifecycleExpiration::builder().days(3).build())
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("life").send().await.unwrap();
    s3.create_bucket().bucket("life").send().await.unwrap();
    let err = s3
        .get_bucket_lifecycle_configuration()
        .bucket("life")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchLifecycleConfiguration"));
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_configuration_is_stored_and_needs_versioning() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    let admin = Admin::of(&t);
    s3.create_bucket().bucket("repl").send().await.unwrap();
    let conf = ReplicationConfiguration::builder()
        .role("arn:aws:iam::123456789012:role/replication")
        .rules(
            ReplicationRule::builder()
                .id("all")
                .priority(1)
                .status(ReplicationRuleStatus::Enabled)
                .filter(ReplicationRuleFilter::builder().prefix("docs/").build())
                .delete_marker_replication(
                    DeleteMarkerReplication::builder()
                        .status(DeleteMarkerReplicationStatus::Enabled)
                        .build(),
                )
                .destination(
                    Destination::builder()
                        .bucket("arn:aws:s3:::backup")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // S3 requires versioning first.
    let err = s3
        .put_bucket_replication()
        .bucket("repl")
        .replication_configuration(conf.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidRequest"), "{err:?}");
    let err = s3
        .get_bucket_replication()
        .bucket("repl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ReplicationConfigurationNotFoundError"));
    s3.put_bucket_versioning()
        .bucket("repl")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_bucket_replication()
        .bucket("repl")
        .replication_configuration(conf)
        .send()
        .await
        .unwrap();
    let got = s3
        .get_bucket_replication()
        .bucket("repl")
        .send()
        .await
        .unwrap();
    let got = got.replication_configuration().unwrap();
    assert_eq!(got.role(), "arn:aws:iam::123456789012:role/replication");
    let r = &got.rules()[0];
    assert_eq!(r.id(), Some("all"));
    assert_eq!(r.priority(), Some(1));
    assert_eq!(r.filter().unwrap().prefix(), Some("docs/"));
    assert_eq!(r.destination().unwrap().bucket(), "arn:aws:s3:::backup");

    // With replication configured, versioning cannot be suspended.
    let err = s3
        .put_bucket_versioning()
        .bucket("repl")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidBucketState"));

    // The operator's document, with Cairn's endpoint and credentials; the secret is not shown back.
    let pushed = json!({"Role": "", "Rules": [{
        "ID": "app/mirror", "Priority": 0, "Status": "Enabled", "Filter": {"Prefix": ""},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "Destination": {"Bucket": "arn:aws:s3:::mirror", "Endpoint": "http://other:9000", "Region": "eu-west-1",
            "Credentials": {"AccessKeyId": "AKID", "SecretAccessKey": "very-secret"}}
    }]});
    let (status, body) = admin
        .call(
            reqwest::Method::PUT,
            "/admin/v1/buckets/repl/replication",
            Some(pushed),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin
        .call(
            reqwest::Method::GET,
            "/admin/v1/buckets/repl/replication",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let dest = &body["Rules"][0]["Destination"];
    assert_eq!(dest["Endpoint"], "http://other:9000");
    assert_eq!(dest["Credentials"]["AccessKeyId"], "AKID");
    assert_ne!(dest["Credentials"]["SecretAccessKey"], "very-secret");
    let got = s3
        .get_bucket_replication()
        .bucket("repl")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.replication_configuration().unwrap().rules()[0].id(),
        Some("app/mirror")
    );
    // Invalid: a destination that is not a bucket ARN; duplicate priorities.
    for (doc, code) in [
        (
            json!({"Rules": [{"Status": "Enabled", "Prefix": "", "Destination": {"Bucket": "mirror"}}]}),
            "InvalidArgument",
        ),
        (
            json!({"Rules": [
                {"Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "a"}, "Destination": {"Bucket": "arn:aws:s3:::mirror"}},
                {"Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "b"}, "Destination": {"Bucket": "arn:aws:s3:::mirror"}}]}),
            "InvalidRequest",
        ),
    ] {
        let (status, body) = admin
            .call(
                reqwest::Method::PUT,
                "/admin/v1/buckets/repl/replication",
                Some(doc.clone()),
            )
            .await;
        assert_eq!(status, 400, "{doc}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (status, _) = admin
        .call(
            reqwest::Method::DELETE,
            "/admin/v1/buckets/repl/replication",
            None,
        )
        .await;
    assert_eq!(status, 204);
    s3.delete_bucket_replication()
        .bucket("repl")
        .send()
        .await
        .unwrap();
    let err = s3
        .get_bucket_replication()
        .bucket("repl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ReplicationConfigurationNotFoundError"));
    // Without replication, versioning can be suspended again.
    s3.put_bucket_versioning()
        .bucket("repl")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Suspended)
                .build(),
        )
        .send()
        .await
        .unwrap();
    t.fleet.stop().await;
}

// ---- lifecycle execution, with short days ----

/// A fleet with storage class `COLD` = RS(3,1) besides STANDARD = RS(4,2), and lifecycle days
/// of `day`.
async fn short_day_fleet(day: Duration) -> TestFleet {
    let dir = tempfile::tempdir().unwrap();
    let mut args = dev_args(dir.path().to_path_buf());
    args.gateway.storage_classes = vec![parse_storage_class("COLD=3+1").unwrap()];
    args.gateway.lifecycle_day_length = day;
    args.gateway.lifecycle_rate = 0;
    TestFleet::start_with(dir, args).await
}

/// Shards on disk: object id → (node, shard index) of each.
fn shards(t: &TestFleet) -> BTreeMap<String, BTreeSet<(String, u8)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, u8)>> = BTreeMap::new();
    for n in &t.fleet.nodes {
        for (id, idx, _) in shard_files(&n.data_dir) {
            out.entry(id).or_default().insert((n.id.clone(), idx));
        }
    }
    out
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
        .version_id()
        .map(str::to_string)
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

async fn storage_class(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let h = s3.head_object().bucket(bucket).key(key).send().await.ok()?;
    Some(
        h.storage_class()
            .map_or("STANDARD".to_string(), |c| c.as_str().to_string()),
    )
}

async fn exists(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
            false
        }
    }
}

async fn set_rules(s3: &aws_sdk_s3::Client, bucket: &str, rules: Vec<LifecycleRule>) {
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

fn prefix(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

/// The `value` of the sample `name{bucket="..."}` on the gateway's `/metrics` (0 if absent).
async fn bucket_metric(endpoint: &str, name: &str, bucket: &str) -> f64 {
    let text = reqwest::get(format!("{endpoint}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = format!("{name}{{bucket=\"{bucket}\"}}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(&want)
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_rule_re_encodes_objects_into_another_class_then_expires_them() {
    let t = short_day_fleet(Duration::from_secs(2)).await;
    let s3 = t.client();
    let admin = Admin::of(&t);
    s3.create_bucket().bucket("tiers").send().await.unwrap();
    // A transition to an unknown class is refused; COLD is known.
    let (status, body) = admin
        .call(
            reqwest::Method::PUT,
            "/admin/v1/buckets/tiers/lifecycle",
            Some(json!({"Rules": [{"Status": "Enabled", "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("InvalidStorageClass"))
    );

    let a = random_bytes(300 * KIB, 1);
    let c = random_bytes(300 * KIB, 2);
    let part1 = random_bytes(5 << 20, 3);
    let part2 = random_bytes(100 * KIB, 4);
    put(&s3, "tiers", "logs/a", &a).await;
    put(&s3, "tiers", "keep/c", &c).await;
    put(&s3, "tiers", "logs/tiny", b"tiny").await;
    let up = s3
        .create_multipart_upload()
        .bucket("tiers")
        .key("logs/mp")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap();
    let mut parts = CompletedMultipartUpload::builder();
    for (n, body) in [(1, &part1), (2, &part2)] {
        let p = s3
            .upload_part()
            .bucket("tiers")
            .key("logs/mp")
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        parts = parts.parts(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(p.e_tag().unwrap())
                .build(),
        );
    }
    let mp_etag = s3
        .complete_multipart_upload()
        .bucket("tiers")
        .key("logs/mp")
        .upload_id(upload_id)
        .multipart_upload(parts.build())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    // Four erasure-coded blobs (a, c, two parts), six shards each over the six nodes.
    let before = shards(&t);
    assert_eq!(before.len(), 4);
    assert!(before.values().all(|s| s.len() == 6));

    set_rules(
        &s3,
        "tiers",
        vec![
            rule("logs")
                .filter(prefix("logs/"))
                .transitions(
                    Transition::builder()
                        .days(1)
                        .storage_class(TransitionStorageClass::from("COLD"))
                        .build(),
                )
                .expiration(LifecycleExpiration::builder().days(4).build())
                .build()
                .unwrap(),
        ],
    )
    .await;
    let head = s3
        .head_object()
        .bucket("tiers")
        .key("logs/a")
        .send()
        .await
        .unwrap();
    let exp = head.expiration().expect("x-amz-expiration");
    assert!(
        exp.starts_with("expiry-date=\"") && exp.ends_with("rule-id=\"logs\""),
        "{exp}"
    );
    assert!(head.storage_class().is_none(), "STANDARD is not reported");
    let head = s3
        .head_object()
        .bucket("tiers")
        .key("keep/c")
        .send()
        .await
        .unwrap();
    assert_eq!(head.expiration(), None);

    // Re-encoded: new blobs with RS(3,1)'s four shards; the old shards are collected; the data
    // reads back exactly, with the same ETag.
    eventually(
        "logs/ objects are COLD",
        Duration::from_secs(30),
        || async {
            storage_class(&s3, "tiers", "logs/a").await.as_deref() == Some("COLD")
                && storage_class(&s3, "tiers", "logs/mp").await.as_deref() == Some("COLD")
        },
    )
    .await;
    eventually(
        "old shards are collected",
        Duration::from_secs(20),
        || async {
            let now = shards(&t);
            now.len() == 4 && now.values().filter(|s| s.len() == 4).count() == 3
        },
    )
    .await;
    let after = shards(&t);
    let kept: Vec<&String> = after.keys().filter(|id| before.contains_key(*id)).collect();
    assert_eq!(kept.len(), 1, "only keep/c's blob is the same");
    assert_eq!(after[kept[0]].len(), 6);
    assert_eq!(
        storage_class(&s3, "tiers", "keep/c").await.as_deref(),
        Some("STANDARD")
    );
    assert_eq!(
        storage_class(&s3, "tiers", "logs/tiny").await.as_deref(),
        Some("STANDARD"),
        "inline data is not re-encoded"
    );
    assert!(get(&s3, "tiers", "logs/a").await == a);
    let whole = get(&s3, "tiers", "logs/mp").await;
    assert!(whole[..5 << 20] == part1[..] && whole[5 << 20..] == part2[..]);
    let p2 = s3
        .get_object()
        .bucket("tiers")
        .key("logs/mp")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.e_tag(), Some(mp_etag.as_str()));
    assert!(p2.body.collect().await.unwrap().into_bytes() == part2[..]);
    let listed = s3
        .list_objects_v2()
        .bucket("tiers")
        .prefix("logs/")
        .send()
        .await
        .unwrap();
    let classes: Vec<(&str, &str)> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.storage_class().unwrap().as_str()))
        .collect();
    assert_eq!(
        classes,
        vec![
            ("logs/a", "COLD"),
            ("logs/mp", "COLD"),
            ("logs/tiny", "STANDARD")
        ]
    );
    // The storage overhead of each class, in bucket info and metrics.
    let (_, info) = admin
        .call(reqwest::Method::GET, "/admin/v1/buckets/tiers", None)
        .await;
    let cold = &info["storage_classes"]["COLD"];
    assert_eq!(cold["versions"], 2);
    let overhead = cold["overhead"].as_f64().unwrap();
    assert!((1.33..1.34).contains(&overhead), "COLD overhead {overhead}");
    let (_, classes) = admin
        .call(reqwest::Method::GET, "/admin/v1/storage-classes", None)
        .await;
    assert_eq!(classes[0]["name"], "COLD");
    assert_eq!(classes[1]["overhead"], 1.5);
    assert_eq!(
        metric(
            &t.endpoint(),
            "cairn_storage_class_overhead_permille{class=\"COLD\"}"
        )
        .await,
        1333.0
    );
    assert!(
        bucket_metric(&t.endpoint(), "cairn_lifecycle_transitioned_total", "tiers").await >= 2.0
    );

    // Then the expiration: every logs/ object goes, its shards with it; keep/c stays.
    eventually("logs/ objects expire", Duration::from_secs(30), || async {
        !exists(&s3, "tiers", "logs/a").await
            && !exists(&s3, "tiers", "logs/mp").await
            && !exists(&s3, "tiers", "logs/tiny").await
    })
    .await;
    assert!(get(&s3, "tiers", "keep/c").await == c);
    eventually(
        "expired shards are collected",
        Duration::from_secs(20),
        || async { shards(&t).len() == 1 },
    )
    .await;
    let (status, st) = admin
        .call(
            reqwest::Method::GET,
            "/admin/v1/buckets/tiers/lifecycle/status",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut totals = st["totals"].clone();
    if let Some(running) = st["running"]["counters"].as_object() {
        // Counters of the run under way are not in the totals yet.
        for (k, v) in running {
            totals[k] = json!(totals[k].as_u64().unwrap() + v.as_u64().unwrap());
        }
    }
    assert_eq!(totals["transitioned"], 2, "{st}");
    assert_eq!(totals["expired"], 3, "{st}");
    assert_eq!(
        totals["bytes_moved"],
        (300 * KIB + (5 << 20) + 100 * KIB) as u64,
        "{st}"
    );
    assert!(st["last"]["finished_ms"].as_i64().is_some(), "{st}");
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noncurrent_versions_and_lone_delete_markers_expire() {
    let t = short_day_fleet(Duration::from_secs(1)).await;
    let s3 = t.client();
    let admin = Admin::of(&t);
    s3.create_bucket().bucket("hist").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("hist")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            put(&s3, "hist", "v/k", &random_bytes(100 * KIB, i))
                .await
                .unwrap(),
        );
    }
    put(&s3, "hist", "gone/x", &random_bytes(100 * KIB, 9)).await;
    s3.delete_object()
        .bucket("hist")
        .key("gone/x")
        .send()
        .await
        .unwrap();
    assert_eq!(shards(&t).len(), 5);
    set_rules(
        &s3,
        "hist",
        vec![
            rule("keep-one")
                .filter(prefix("v/"))
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .newer_noncurrent_versions(1)
                        .build(),
                )
                .build()
                .unwrap(),
            rule("gone")
                .filter(prefix("gone/"))
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(1)
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;
    let versions = |p: &'static str| {
        let s3 = s3.clone();
        async move {
            let out = s3
                .list_object_versions()
                .bucket("hist")
                .prefix(p)
                .send()
                .await
                .unwrap();
            let mut v: Vec<String> = out
                .versions()
                .iter()
                .map(|v| v.version_id().unwrap().to_string())
                .collect();
            v.extend(
                out.delete_markers()
                    .iter()
                    .map(|m| format!("marker:{}", m.version_id().unwrap())),
            );
            v
        }
    };
    eventually(
        "old noncurrent versions expire",
        Duration::from_secs(30),
        || async { versions("v/").await.len() == 2 && versions("gone/").await.is_empty() },
    )
    .await;
    // The current version and the newest noncurrent one are kept, byte for byte.
    let mut left = versions("v/").await;
    left.sort();
    let mut want = vec![ids[2].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(left, want);
    let old = s3
        .get_object()
        .bucket("hist")
        .key("v/k")
        .version_id(&ids[2])
        .send()
        .await
        .unwrap();
    assert!(old.body.collect().await.unwrap().into_bytes() == random_bytes(100 * KIB, 2)[..]);
    eventually(
        "expired versions' shards are collected",
        Duration::from_secs(20),
        || async { shards(&t).len() == 2 },
    )
    .await;
    let (_, st) = admin
        .call(
            reqwest::Method::GET,
            "/admin/v1/buckets/hist/lifecycle/status",
            None,
        )
        .await;
    let sum = |k: &str| {
        st["totals"][k].as_u64().unwrap() + st["running"]["counters"][k].as_u64().unwrap_or(0)
    };
    assert_eq!(sum("noncurrent_expired"), 3, "{st}");
    assert_eq!(sum("markers_removed"), 1, "{st}");
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_multipart_uploads_are_aborted_and_their_parts_collected() {
    let t = short_day_fleet(Duration::from_secs(1)).await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let mut uploads = Vec::new();
    for key in ["up/x", "keep/y"] {
        let id = s3
            .create_multipart_upload()
            .bucket("mpu")
            .key(key)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_string();
        s3.upload_part()
            .bucket("mpu")
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .body(ByteStream::from(random_bytes(200 * KIB, 1)))
            .send()
            .await
            .unwrap();
        uploads.push(id);
    }
    assert_eq!(shards(&t).len(), 2);
    set_rules(
        &s3,
        "mpu",
        vec![
            rule("abort")
                .filter(prefix("up/"))
                .abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(1)
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;
    eventually(
        "the up/ upload is aborted",
        Duration::from_secs(30),
        || async {
            let l = s3
                .list_multipart_uploads()
                .bucket("mpu")
                .send()
                .await
                .unwrap();
            l.uploads().len() == 1
        },
    )
    .await;
    let l = s3
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    assert_eq!(l.uploads()[0].key(), Some("keep/y"));
    let err = s3
        .upload_part()
        .bucket("mpu")
        .key("up/x")
        .upload_id(&uploads[0])
        .part_number(2)
        .body(ByteStream::from_static(b"late"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchUpload"));
    eventually(
        "the aborted part's shards are collected",
        Duration::from_secs(20),
        || async { shards(&t).len() == 1 },
    )
    .await;
    assert!(
        bucket_metric(
            &t.endpoint(),
            "cairn_lifecycle_uploads_aborted_total",
            "mpu"
        )
        .await
            >= 1.0
    );
    t.fleet.stop().await;
}

// ---- a gateway killed in the middle of a lifecycle run ----

/// One run of the real `cairn-gateway dev` binary.
struct Process {
    child: Child,
    endpoint: String,
    admin: String,
}

impl Process {
    /// Starts `cairn-gateway dev` on `data`; with `crash_after`, it aborts once that many
    /// lifecycle transitions have written their shards and not yet switched the index (and its
    /// garbage collector does not run, so what the crash leaves on disk is exactly known).
    fn spawn(data: &Path, base: u16, log: &Path, crash_after: Option<u64>) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-gateway"))
            .arg("dev")
            .arg("--data")
            .arg(data)
            .args(["--node-base-port", &base.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", base + 6)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", base + 7)])
            .args(["--gc-delay", "1s"])
            .args([
                "--gc-interval",
                if crash_after.is_some() { "1h" } else { "300ms" },
            ])
            .args(["--upload-timeout", "1h"])
            .args(["--storage-class", "COLD=3+1"])
            .args(["--lifecycle-day-length", "2s", "--lifecycle-rate", "10"])
            .args(["--scrub-interval", "24h"])
            .env("RUST_LOG", "warn")
            .envs(crash_after.map(|n| ("CAIRN_FAILPOINT_LIFECYCLE_CRASH", n.to_string())))
            .env_remove("CAIRN_ROOT_ACCESS_KEY")
            .env_remove("CAIRN_ROOT_SECRET_KEY")
            .env_remove("CAIRN_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cairn-gateway starts");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{}", base + 6),
            admin: format!("http://127.0.0.1:{}", base + 7),
        }
    }

    async fn wait_ready(&mut self, log: &Path) {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "cairn-gateway exited with {status}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "the S3 port never opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shard files under every node of a dev data directory: object id → shard count.
fn disk_shards(data: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(data.join("nodes")).unwrap() {
        for (id, _, _) in shard_files(&e.unwrap().path()) {
            *out.entry(id).or_default() += 1;
        }
    }
    out
}

/// Files the storage nodes write before renaming them into place (`NODE/tmp/`): none may be
/// left over.
fn temp_files(data: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data.join("nodes"))
        .unwrap()
        .flat_map(|n| {
            std::fs::read_dir(n.unwrap().path().join("tmp"))
                .into_iter()
                .flatten()
        })
        .map(|e| e.unwrap().path())
        .collect()
}

async fn lifecycle_status(admin: &str, token: &str, bucket: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!(
            "{admin}/admin/v1/buckets/{bucket}/lifecycle/status"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_run_finishes_the_run_after_restart() {
    tokio::time::timeout(Duration::from_secs(300), killed_mid_run())
        .await
        .expect("test finished in time");
}

async fn killed_mid_run() {
    const OBJECTS: u64 = 40;
    const CRASH_AFTER: u64 = 12;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let base = free_ports(8);
    let log1 = tmp.path().join("run1.log");
    let mut p = Process::spawn(&data, base, &log1, Some(CRASH_AFTER));
    p.wait_ready(&log1).await;
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    let (ak, sk, token) = (
        creds["access_key"].as_str().unwrap().to_string(),
        creds["secret_key"].as_str().unwrap().to_string(),
        creds["admin_token"].as_str().unwrap().to_string(),
    );
    let s3 = client(&p.endpoint, &ak, &sk);
    s3.create_bucket().bucket("crash").send().await.unwrap();
    for i in 0..OBJECTS {
        put(
            &s3,
            "crash",
            &format!("t/{i:03}"),
            &random_bytes(150 * KIB, i),
        )
        .await;
    }
    // Two lifecycle days later every object is due, so the first run transitions them in key
    // order, and the run that finishes after the restart must have done them all.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    set_rules(
        &s3,
        "crash",
        vec![
            rule("cold")
                .filter(prefix("t/"))
                .transitions(
                    Transition::builder()
                        .days(1)
                        .storage_class(TransitionStorageClass::from("COLD"))
                        .build(),
                )
                .build()
                .unwrap(),
        ],
    )
    .await;
    // The gateway crashes in the middle of the run: the twelfth transition has written its new
    // shards and not switched the index to them.
    let exit = tokio::task::spawn_blocking(move || {
        let status = p.child.wait().unwrap();
        (p, status)
    });
    let (p, status) = tokio::time::timeout(Duration::from_secs(60), exit)
        .await
        .expect("the failpoint crashes the gateway")
        .unwrap();
    assert!(!status.success(), "{status}");
    drop(p);
    let crashed = disk_shards(&data);
    // Eleven objects were re-encoded (new blobs of 4 shards; their old blobs of 6 wait for the
    // garbage collector), and the twelfth has a new blob nothing refers to yet.
    assert_eq!(crashed.len() as u64, OBJECTS + CRASH_AFTER);
    assert_eq!(
        crashed.values().filter(|&&n| n == 4).count() as u64,
        CRASH_AFTER
    );
    assert_eq!(
        crashed.values().filter(|&&n| n == 6).count() as u64,
        OBJECTS
    );

    let log2 = tmp.path().join("run2.log");
    let mut p = Process::spawn(&data, base, &log2, None);
    p.wait_ready(&log2).await;
    let s3 = client(&p.endpoint, &ak, &sk);
    eventually(
        "the interrupted run finishes",
        Duration::from_secs(60),
        || async {
            let st = lifecycle_status(&p.admin, &token, "crash").await;
            st["last"]["finished_ms"].is_i64()
        },
    )
    .await;
    // Nothing lost: every object reads back exactly, in its new class.
    for i in 0..OBJECTS {
        let key = format!("t/{i:03}");
        assert_eq!(
            storage_class(&s3, "crash", &key).await.as_deref(),
            Some("COLD"),
            "{key}; status {}; log:\n{}",
            lifecycle_status(&p.admin, &token, "crash").await,
            std::fs::read_to_string(&log2).unwrap_or_default()
        );
        assert!(
            get(&s3, "crash", &key).await == random_bytes(150 * KIB, i),
            "{key}"
        );
    }
    // Nothing left behind: once the GC delay has passed, one blob of four shards per object.
    eventually(
        "only the COLD blobs are left on disk",
        Duration::from_secs(30),
        || async {
            let now = disk_shards(&data);
            now.len() == OBJECTS as usize && now.values().all(|&n| n == 4)
        },
    )
    .await;
    assert!(temp_files(&data).is_empty(), "{:?}", temp_files(&data));
    let st = lifecycle_status(&p.admin, &token, "crash").await;
    let transitioned = st["totals"]["transitioned"].as_u64().unwrap()
        + st["running"]["counters"]["transitioned"]
            .as_u64()
            .unwrap_or(0);
    // Counters are saved with every action, so the totals over both gateway processes add up:
    // every object once (the one whose transition was cut short was done again, once).
    assert_eq!(transitioned, OBJECTS, "{st}");
}

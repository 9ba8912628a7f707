//! Object tagging through the official `aws-sdk-s3` client: Put/Get/DeleteObjectTagging, tags
//! given with `x-amz-tagging` on PutObject, multipart uploads and copies (COPY and REPLACE
//! directives), `x-amz-tagging-count` on GET and HEAD, per-version tags that change no version,
//! the errors AWS gives for invalid tag sets, and a lifecycle rule filtered by tags that expires
//! only the objects carrying them.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, CompletedMultipartUpload, CompletedPart,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator,
    LifecycleRuleFilter, Tag, Tagging, TaggingDirective, VersioningConfiguration,
};
use common::*;

const KIB: usize = 1024;

// ---- helpers ----

/// Asserts an SDK call failed with HTTP `status` and S3 error `code`; returns the message.
#[track_caller]
fn expect_err<T: Debug, E: ProvideErrorMetadata + Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    code: &str,
    status: u16,
) -> String {
    let err = r.expect_err("the request should fail");
    let (got_status, got_code) = error_status(&err);
    assert_eq!(got_status, Some(status), "status of {err:?}");
    assert_eq!(got_code.as_deref(), Some(code), "code of {err:?}");
    err.message().unwrap_or_default().to_string()
}

fn tagging(pairs: &[(&str, &str)]) -> Tagging {
    Tagging::builder()
        .set_tag_set(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap()
}

/// The tags of `key` (its version `version` if given), as (key, value) pairs, and the
/// `x-amz-version-id` of the answer.
async fn tags_of(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> (Vec<(String, String)>, Option<String>) {
    let out = s3
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get tagging of {key}: {e:?}"));
    let tags = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    (tags, out.version_id().map(str::to_string))
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn put_tagged(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    header: Option<&str>,
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .set_tagging(header.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
}

async fn get_tag_count(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<i32> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .tag_count()
}

/// `x-amz-tagging-count` of a HEAD (the SDK's HeadObjectOutput has no field for it).
async fn head_tag_count(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let req = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let mut head = reqwest::Client::new().head(req.uri());
    for (name, value) in req.headers() {
        head = head.header(name, value);
    }
    let resp = head.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "HEAD {key}");
    resp.headers()
        .get("x-amz-tagging-count")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_round_trip_and_are_counted_on_get_and_head() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("tags").send().await.unwrap();

    // x-amz-tagging on PUT, URL-encoded; a large object (erasure-coded) and a small one (inline).
    put_tagged(
        &s3,
        "tags",
        "big",
        &random_bytes(200 * KIB, 1),
        Some("a=1&b=two%20words&c+d=x%2Fy"),
    )
    .await;
    put_tagged(&s3, "tags", "small", b"small", Some("only=one")).await;
    put_tagged(&s3, "tags", "plain", b"plain", None).await;
    let (tags, version) = tags_of(&s3, "tags", "big", None).await;
    assert_eq!(
        tags,
        pairs(&[("a", "1"), ("b", "two words"), ("c d", "x/y")])
    );
    assert_eq!(version, None, "an unversioned bucket sends no version id");
    assert_eq!(get_tag_count(&s3, "tags", "big").await, Some(3));
    assert_eq!(
        head_tag_count(&s3, "tags", "big").await.as_deref(),
        Some("3")
    );
    assert_eq!(get_tag_count(&s3, "tags", "small").await, Some(1));
    assert_eq!(tags_of(&s3, "tags", "plain", None).await.0, vec![]);
    assert_eq!(get_tag_count(&s3, "tags", "plain").await, None);
    assert_eq!(head_tag_count(&s3, "tags", "plain").await, None);

    // PutObjectTagging replaces the whole set and leaves the object itself alone.
    let before = s3
        .head_object()
        .bucket("tags")
        .key("big")
        .send()
        .await
        .unwrap();
    let out = s3
        .put_object_tagging()
        .bucket("tags")
        .key("big")
        .tagging(tagging(&[("x", "y"), ("ünï", "çødé ok")]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), None);
    assert_eq!(
        tags_of(&s3, "tags", "big", None).await.0,
        pairs(&[("x", "y"), ("ünï", "çødé ok")])
    );
    let after = s3
        .head_object()
        .bucket("tags")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(after.e_tag(), before.e_tag());
    assert_eq!(after.last_modified(), before.last_modified());
    assert_eq!(after.content_length(), before.content_length());
    let body = s3
        .get_object()
        .bucket("tags")
        .key("big")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        body == random_bytes(200 * KIB, 1)[..],
        "the data is untouched"
    );
    // Tagging an untagged object; an empty set removes the tags.
    s3.put_object_tagging()
        .bucket("tags")
        .key("plain")
        .tagging(tagging(&[("k", "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&s3, "tags", "plain", None).await.0,
        pairs(&[("k", "")])
    );
    s3.put_object_tagging()
        .bucket("tags")
        .key("plain")
        .tagging(tagging(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&s3, "tags", "plain", None).await.0, vec![]);

    // DeleteObjectTagging removes every tag.
    s3.delete_object_tagging()
        .bucket("tags")
        .key("big")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&s3, "tags", "big", None).await.0, vec![]);
    assert_eq!(get_tag_count(&s3, "tags", "big").await, None);
    assert_eq!(head_tag_count(&s3, "tags", "big").await, None);

    // Missing keys and buckets.
    expect_err(
        s3.get_object_tagging()
            .bucket("tags")
            .key("nope")
            .send()
            .await,
        "NoSuchKey",
        404,
    );
    expect_err(
        s3.put_object_tagging()
            .bucket("tags")
            .key("nope")
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await,
        "NoSuchKey",
        404,
    );
    expect_err(
        s3.delete_object_tagging()
            .bucket("tags")
            .key("nope")
            .send()
            .await,
        "NoSuchKey",
        404,
    );
    expect_err(
        s3.get_object_tagging()
            .bucket("nobucket")
            .key("k")
            .send()
            .await,
        "NoSuchBucket",
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_and_copies_carry_tags() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mpu").send().await.unwrap();

    // Tags given when the upload is created apply when it completes.
    let up = s3
        .create_multipart_upload()
        .bucket("mpu")
        .key("assembled")
        .tagging("team=storage&tier=warm")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap();
    let part = s3
        .upload_part()
        .bucket("mpu")
        .key("assembled")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from(random_bytes(100 * KIB, 2)))
        .send()
        .await
        .unwrap();
    s3.complete_multipart_upload()
        .bucket("mpu")
        .key("assembled")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&s3, "mpu", "assembled", None).await.0,
        pairs(&[("team", "storage"), ("tier", "warm")])
    );
    assert_eq!(get_tag_count(&s3, "mpu", "assembled").await, Some(2));
    // An invalid header is refused when the upload is created.
    expect_err(
        s3.create_multipart_upload()
            .bucket("mpu")
            .key("bad")
            .tagging("aws:reserved=1")
            .send()
            .await,
        "InvalidTag",
        400,
    );

    // CopyObject: COPY (the default) keeps the source's tags, REPLACE takes the request's.
    put_tagged(&s3, "mpu", "src", b"source data", Some("a=1&b=2")).await;
    let copy = |dst: &'static str| {
        s3.copy_object()
            .bucket("mpu")
            .key(dst)
            .copy_source("mpu/src")
    };
    copy("default").send().await.unwrap();
    assert_eq!(
        tags_of(&s3, "mpu", "default", None).await.0,
        pairs(&[("a", "1"), ("b", "2")])
    );
    copy("copied")
        .tagging_directive(TaggingDirective::Copy)
        .tagging("ignored=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&s3, "mpu", "copied", None).await.0,
        pairs(&[("a", "1"), ("b", "2")])
    );
    copy("replaced")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("c=3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&s3, "mpu", "replaced", None).await.0,
        pairs(&[("c", "3")])
    );
    copy("cleared")
        .tagging_directive(TaggingDirective::Replace)
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&s3, "mpu", "cleared", None).await.0, vec![]);
    expect_err(
        copy("refused")
            .tagging_directive(TaggingDirective::Replace)
            .tagging("a=1&a=2")
            .send()
            .await,
        "InvalidArgument",
        400,
    );
    expect_err(
        copy("refused")
            .tagging_directive(TaggingDirective::from("SOMETIMES"))
            .send()
            .await,
        "InvalidArgument",
        400,
    );
    // The source keeps its tags, and copies are independent of it.
    s3.delete_object_tagging()
        .bucket("mpu")
        .key("src")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&s3, "mpu", "default", None).await.0.len(), 2);
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagging_a_version_changes_only_that_version_and_makes_no_new_one() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    enable_versioning(&s3, "ver").await;
    let v1 = put_tagged(&s3, "ver", "k", &random_bytes(100 * KIB, 1), Some("gen=1"))
        .await
        .version_id()
        .unwrap()
        .to_string();
    let v2 = put_tagged(&s3, "ver", "k", b"second", None)
        .await
        .version_id()
        .unwrap()
        .to_string();
    let versions = || async {
        let out = s3
            .list_object_versions()
            .bucket("ver")
            .send()
            .await
            .unwrap();
        assert!(out.delete_markers().is_empty());
        out.versions()
            .iter()
            .map(|v| {
                (
                    v.version_id().unwrap().to_string(),
                    v.e_tag().unwrap().to_string(),
                    v.last_modified().unwrap().secs(),
                    v.is_latest().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let listed = versions().await;
    assert_eq!(listed.len(), 2);

    // The current version is v2 (untagged); v1 keeps the tags it was written with.
    assert_eq!(
        tags_of(&s3, "ver", "k", None).await,
        (vec![], Some(v2.clone()))
    );
    assert_eq!(
        tags_of(&s3, "ver", "k", Some(&v1)).await,
        (pairs(&[("gen", "1")]), Some(v1.clone()))
    );

    // Tagging v1 by id answers its id and touches nothing else.
    let out = s3
        .put_object_tagging()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .tagging(tagging(&[("old", "yes")]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some(v1.as_str()));
    assert_eq!(
        tags_of(&s3, "ver", "k", Some(&v1)).await.0,
        pairs(&[("old", "yes")])
    );
    assert_eq!(tags_of(&s3, "ver", "k", None).await.0, vec![]);
    // Tagging without an id tags the current version.
    let out = s3
        .put_object_tagging()
        .bucket("ver")
        .key("k")
        .tagging(tagging(&[("current", "yes")]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some(v2.as_str()));
    assert_eq!(
        tags_of(&s3, "ver", "k", Some(&v2)).await.0,
        pairs(&[("current", "yes")])
    );
    assert_eq!(
        tags_of(&s3, "ver", "k", Some(&v1)).await.0,
        pairs(&[("old", "yes")])
    );
    assert_eq!(versions().await, listed, "no version was added or changed");
    let old = s3
        .get_object()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(old.tag_count(), Some(1));
    assert!(old.body.collect().await.unwrap().into_bytes() == random_bytes(100 * KIB, 1)[..]);
    // DeleteObjectTagging by id.
    let out = s3
        .delete_object_tagging()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(out.version_id(), Some(v1.as_str()));
    assert_eq!(tags_of(&s3, "ver", "k", Some(&v1)).await.0, vec![]);
    assert_eq!(tags_of(&s3, "ver", "k", None).await.0.len(), 1);
    assert_eq!(versions().await, listed);

    // Unknown versions, and delete markers (which have no tags).
    let unknown = format!("{:016x}{:016x}", 99, 7);
    expect_err(
        s3.get_object_tagging()
            .bucket("ver")
            .key("k")
            .version_id(&unknown)
            .send()
            .await,
        "NoSuchVersion",
        404,
    );
    expect_err(
        s3.put_object_tagging()
            .bucket("ver")
            .key("k")
            .version_id(&unknown)
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await,
        "NoSuchVersion",
        404,
    );
    let marker = s3
        .delete_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    expect_err(
        s3.get_object_tagging().bucket("ver").key("k").send().await,
        "NoSuchKey",
        404,
    );
    expect_err(
        s3.put_object_tagging()
            .bucket("ver")
            .key("k")
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await,
        "NoSuchKey",
        404,
    );
    expect_err(
        s3.put_object_tagging()
            .bucket("ver")
            .key("k")
            .version_id(&marker)
            .tagging(tagging(&[("a", "1")]))
            .send()
            .await,
        "MethodNotAllowed",
        405,
    );
    // The noncurrent versions can still be tagged.
    s3.put_object_tagging()
        .bucket("ver")
        .key("k")
        .version_id(&v2)
        .tagging(tagging(&[("after", "delete")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags_of(&s3, "ver", "k", Some(&v2)).await.0,
        pairs(&[("after", "delete")])
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tag_sets_get_the_errors_aws_gives() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    put_tagged(&s3, "bad", "k", b"data", Some("keep=me")).await;
    let put = |tags: Tagging| {
        s3.put_object_tagging()
            .bucket("bad")
            .key("k")
            .tagging(tags)
            .send()
    };

    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let eleven_refs: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let msg = expect_err(put(tagging(&eleven_refs)).await, "BadRequest", 400);
    assert_eq!(msg, "Object tags cannot be greater than 10");
    let msg = expect_err(
        put(tagging(&[("dup", "1"), ("dup", "2")])).await,
        "InvalidTag",
        400,
    );
    assert_eq!(msg, "Cannot provide multiple Tags with the same key");
    let msg = expect_err(
        put(tagging(&[("aws:owner", "me")])).await,
        "InvalidTag",
        400,
    );
    assert_eq!(msg, "Your TagKey cannot be prefixed with aws:");
    let long_key = "k".repeat(129);
    let msg = expect_err(
        put(tagging(&[(long_key.as_str(), "v")])).await,
        "InvalidTag",
        400,
    );
    assert_eq!(msg, "The TagKey you have provided is invalid");
    let long_value = "v".repeat(257);
    let msg = expect_err(
        put(tagging(&[("k", long_value.as_str())])).await,
        "InvalidTag",
        400,
    );
    assert_eq!(msg, "The TagValue you have provided is invalid");
    expect_err(put(tagging(&[("a,b", "v")])).await, "InvalidTag", 400);
    // The limits themselves are fine: ten tags, 128-character keys, 256-character values.
    let ten = &eleven_refs[..10];
    put(tagging(ten)).await.unwrap();
    assert_eq!(tags_of(&s3, "bad", "k", None).await.0.len(), 10);
    let long_ok = [("k".repeat(128), "v".repeat(256))];
    put(tagging(&[(long_ok[0].0.as_str(), long_ok[0].1.as_str())]))
        .await
        .unwrap();
    // A refused set leaves the tags as they were.
    expect_err(put(tagging(&[("aws:x", "1")])).await, "InvalidTag", 400);
    assert_eq!(
        tags_of(&s3, "bad", "k", None).await.0,
        vec![long_ok[0].clone()]
    );

    // The same rules for x-amz-tagging, and no object is written when it is refused.
    let put_header = |key: &'static str, header: String| {
        s3.put_object()
            .bucket("bad")
            .key(key)
            .tagging(header)
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    let header: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
    expect_err(put_header("h", header.join("&")).await, "BadRequest", 400);
    expect_err(put_header("h", "aws:x=1".into()).await, "InvalidTag", 400);
    expect_err(
        put_header("h", format!("{}=v", "k".repeat(129))).await,
        "InvalidTag",
        400,
    );
    let msg = expect_err(
        put_header("h", "a=1&a=2".into()).await,
        "InvalidArgument",
        400,
    );
    assert!(msg.contains("x-amz-tagging"), "{msg}");
    expect_err(
        put_header("h", "a=%zz".into()).await,
        "InvalidArgument",
        400,
    );
    let err = s3
        .head_object()
        .bucket("bad")
        .key("h")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_status(&err).0, Some(404), "nothing was written");
    t.fleet.stop().await;
}

// ---- lifecycle ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_filtered_by_tags_expires_only_the_tagged_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = dev_args(dir.path().to_path_buf());
    args.gateway.lifecycle_day_length = Duration::from_secs(1);
    args.gateway.lifecycle_rate = 0;
    let t = TestFleet::start_with(dir, args).await;
    let s3 = t.client();
    s3.create_bucket().bucket("life").send().await.unwrap();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    let rules = vec![
        LifecycleRule::builder()
            .id("tagged-logs")
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("logs/")
                            .tags(tag("expire", "yes"))
                            .tags(tag("team", "a"))
                            .build(),
                    )
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap(),
        LifecycleRule::builder()
            .id("scratch")
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .tag(tag("scratch", "true"))
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap(),
    ];
    s3.put_bucket_lifecycle_configuration()
        .bucket("life")
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let body = random_bytes(100 * KIB, 3);
    let put = put_tagged(
        &s3,
        "life",
        "logs/both",
        &body,
        Some("expire=yes&team=a&x=1"),
    )
    .await;
    assert!(
        put.expiration()
            .is_some_and(|e| e.contains("rule-id=\"tagged-logs\"")),
        "x-amz-expiration names the tag rule: {:?}",
        put.expiration()
    );
    put_tagged(&s3, "life", "tmp/scratch", b"scratch", Some("scratch=true")).await;
    let kept = [
        ("logs/one-tag", Some("expire=yes")),
        ("logs/other-value", Some("expire=no&team=a")),
        ("logs/untagged", None),
        ("other/both", Some("expire=yes&team=a")),
        ("tmp/not-scratch", Some("scratch=false")),
    ];
    for (key, header) in kept {
        let out = put_tagged(&s3, "life", key, &body, header).await;
        assert_eq!(out.expiration(), None, "{key}");
    }
    // Tags set after the write count, and so does removing them.
    put_tagged(&s3, "life", "logs/tagged-later", &body, None).await;
    put_tagged(
        &s3,
        "life",
        "logs/untagged-later",
        &body,
        Some("expire=yes&team=a"),
    )
    .await;
    s3.put_object_tagging()
        .bucket("life")
        .key("logs/tagged-later")
        .tagging(tagging(&[("team", "a"), ("expire", "yes")]))
        .send()
        .await
        .unwrap();
    s3.delete_object_tagging()
        .bucket("life")
        .key("logs/untagged-later")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("life")
        .key("logs/tagged-later")
        .send()
        .await
        .unwrap();
    assert!(
        head.expiration().is_some(),
        "HEAD sees the rule once tagged"
    );

    let exists = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.head_object()
                .bucket("life")
                .key(key)
                .send()
                .await
                .is_ok()
        }
    };
    let start = std::time::Instant::now();
    loop {
        let mut gone = Vec::new();
        for k in ["logs/both", "tmp/scratch", "logs/tagged-later"] {
            if !exists(k).await {
                gone.push(k);
            }
        }
        if gone.len() == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tagged objects did not expire (gone: {gone:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more lifecycle days: what the filters do not select stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for key in kept.iter().map(|(k, _)| *k).chain(["logs/untagged-later"]) {
        assert!(exists(key).await, "{key} was expired");
    }
    t.fleet.stop().await;
}

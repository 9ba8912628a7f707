//! The S3 API through the official `aws-sdk-s3` client (and plain HTTP where the SDK would hide
//! what the gateway sent): every implemented operation and the errors AWS documents for them.
//! Each test starts its own fleet, so a failure names the operation family that broke.

mod common;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, ChecksumMode, ChecksumType,
    CompletedMultipartUpload, CompletedPart, Delete, EncodingType, MetadataDirective,
    ObjectIdentifier,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use s3s::crypto::{Checksum, Crc32, Crc32c, Md5, Sha256};

const MIB: usize = 1 << 20;

// ---- helpers ----

/// Asserts that an SDK call failed with HTTP `status` and (if given) S3 error `code`, and that
/// the response carried a request id. Returns the error message.
#[track_caller]
fn expect_err<T: Debug, E: ProvideErrorMetadata + Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    code: Option<&str>,
    status: u16,
) -> Option<String> {
    let err = r.expect_err("the request should fail");
    let raw = err
        .raw_response()
        .unwrap_or_else(|| panic!("no HTTP response: {err:?}"));
    assert_eq!(raw.status().as_u16(), status, "status of {err:?}");
    if let Some(code) = code {
        assert_eq!(err.code(), Some(code), "code of {err:?}");
    }
    assert!(
        raw.headers()
            .get("x-amz-request-id")
            .is_some_and(|v| !v.is_empty()),
        "x-amz-request-id missing in {err:?}"
    );
    err.message().map(str::to_string)
}

fn md5_hex(data: &[u8]) -> String {
    hex(Md5::checksum(data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64<C: Checksum>(data: &[u8]) -> String {
    B64.encode(C::checksum(data).as_ref())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> String {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
        .e_tag()
        .expect("etag")
        .to_string()
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// A plain HTTP client (no TLS needed on loopback).
fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Asserts that a raw HTTP error response has the S3 error shape: the code, a request id header
/// and `<RequestId>` in the XML body.
async fn expect_raw_err(resp: reqwest::Response, code: &str, status: u16) {
    let got = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-amz-request-id")
        .expect("x-amz-request-id header")
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert!(
        body.contains(&format!("<Code>{code}</Code>")),
        "expected {code}: {body}"
    );
    assert!(
        body.contains(&format!("<RequestId>{id}</RequestId>")),
        "request id {id} not in body: {body}"
    );
}

/// Percent-encodes a key for `x-amz-copy-source` (unreserved characters and `/` stay).
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes `%XX` escapes (for `encoding-type=url` listings).
fn decode_key(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 key")
}

/// Records the headers of the requests an SDK call sends.
#[derive(Debug, Clone, Default)]
struct SeenHeaders(Arc<Mutex<Vec<(String, String)>>>);

impl SeenHeaders {
    fn get(&self, name: &str) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Intercept for SeenHeaders {
    fn name(&self) -> &'static str {
        "SeenHeaders"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut seen = self.0.lock().unwrap();
        for (k, v) in ctx.request().headers() {
            seen.push((k.to_string(), v.to_string()));
        }
        Ok(())
    }
}

// ---- buckets ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets() {
    let t = TestFleet::start().await;
    let s3 = t.client();

    let before = s3.list_buckets().send().await.unwrap();
    assert!(before.buckets().is_empty());
    for b in ["beta", "alpha"] {
        let out = s3.create_bucket().bucket(b).send().await.unwrap();
        assert_eq!(out.location(), Some(format!("/{b}").as_str()));
    }
    let list = s3.list_buckets().send().await.unwrap();
    let names: Vec<_> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(list.buckets().iter().all(|b| b.creation_date().is_some()));
    assert!(list.owner().and_then(|o| o.id()).is_some());
    assert!(list.continuation_token().is_none());

    // Prefix, and pages of max-buckets with continuation tokens.
    for b in ["alpha-2", "alpha-3", "gamma"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let out = s3.list_buckets().prefix("alpha").send().await.unwrap();
    let names: Vec<_> = out.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["alpha", "alpha-2", "alpha-3"]);
    assert_eq!(out.prefix(), Some("alpha"));
    let mut token = None;
    let mut pages = Vec::new();
    loop {
        let out = s3
            .list_buckets()
            .max_buckets(2)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        pages.push(
            out.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string))
                .collect::<Vec<_>>(),
        );
        token = out.continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        [
            vec!["alpha", "alpha-2"],
            vec!["alpha-3", "beta"],
            vec!["gamma"]
        ]
    );
    let out = s3
        .list_buckets()
        .bucket_region("eu-west-1")
        .send()
        .await
        .unwrap();
    assert!(out.buckets().is_empty());
    expect_err(
        s3.list_buckets().max_buckets(0).send().await,
        Some("InvalidArgument"),
        400,
    );
    for b in ["alpha-2", "alpha-3", "gamma"] {
        s3.delete_bucket().bucket(b).send().await.unwrap();
    }

    expect_err(
        s3.create_bucket().bucket("alpha").send().await,
        Some("BucketAlreadyOwnedByYou"),
        409,
    );

    // The SDK does not validate bucket names of a custom endpoint with path-style addressing, so
    // the invalid name reaches the gateway.
    for bad in ["Bad_Name", "ab", "-leading", "a..b"] {
        expect_err(
            s3.create_bucket().bucket(bad).send().await,
            Some("InvalidBucketName"),
            400,
        );
    }

    let head = s3.head_bucket().bucket("alpha").send().await.unwrap();
    assert_eq!(head.bucket_region(), Some("us-east-1"));
    // HEAD responses have no body: the SDK only sees the status.
    expect_err(s3.head_bucket().bucket("missing").send().await, None, 404);

    let loc = s3
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .unwrap();
    // us-east-1 is the empty location constraint.
    assert!(
        loc.location_constraint().is_none()
            || loc.location_constraint() == Some(&BucketLocationConstraint::from("")),
        "{loc:?}"
    );
    expect_err(
        s3.get_bucket_location().bucket("missing").send().await,
        Some("NoSuchBucket"),
        404,
    );

    put(&s3, "beta", "k", b"v").await;
    expect_err(
        s3.delete_bucket().bucket("beta").send().await,
        Some("BucketNotEmpty"),
        409,
    );
    s3.delete_object()
        .bucket("beta")
        .key("k")
        .send()
        .await
        .unwrap();
    // An unfinished multipart upload also keeps a bucket from being deleted.
    let up = s3
        .create_multipart_upload()
        .bucket("beta")
        .key("mp")
        .send()
        .await
        .unwrap();
    expect_err(
        s3.delete_bucket().bucket("beta").send().await,
        Some("BucketNotEmpty"),
        409,
    );
    s3.abort_multipart_upload()
        .bucket("beta")
        .key("mp")
        .upload_id(up.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("beta").send().await.unwrap();
    expect_err(s3.head_bucket().bucket("beta").send().await, None, 404);
    expect_err(
        s3.delete_bucket().bucket("beta").send().await,
        Some("NoSuchBucket"),
        404,
    );
    let names: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert_eq!(names, ["alpha"]);
    t.fleet.stop().await;
}

// ---- objects ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_headers_and_metadata() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let expires = DateTime::from_secs(2_000_000_000);
    // One inline object and one erasure-coded one: metadata must not depend on where data lives.
    for (key, data) in [
        ("small", b"hello world".to_vec()),
        ("big", random_bytes(300 * 1024, 3)),
    ] {
        let out = s3
            .put_object()
            .bucket("bkt")
            .key(key)
            .body(ByteStream::from(data.clone()))
            .content_type("text/plain; charset=utf-8")
            .content_encoding("gzip")
            .content_disposition("attachment; filename=\"x.txt\"")
            .content_language("en-GB")
            .cache_control("max-age=60")
            .expires(expires)
            .metadata("Color", "blue")
            .metadata("owner-name", "Ann Example")
            .send()
            .await
            .unwrap();
        let etag = format!("\"{}\"", md5_hex(&data));
        assert_eq!(out.e_tag(), Some(etag.as_str()));

        let got = s3.get_object().bucket("bkt").key(key).send().await.unwrap();
        assert_eq!(got.content_type(), Some("text/plain; charset=utf-8"));
        assert_eq!(got.content_encoding(), Some("gzip"));
        assert_eq!(
            got.content_disposition(),
            Some("attachment; filename=\"x.txt\"")
        );
        assert_eq!(got.content_language(), Some("en-GB"));
        assert_eq!(got.cache_control(), Some("max-age=60"));
        assert_eq!(got.expires_string(), Some("Wed, 18 May 2033 03:33:20 GMT"));
        assert_eq!(got.e_tag(), Some(etag.as_str()));
        assert_eq!(got.content_length(), Some(data.len() as i64));
        assert_eq!(got.accept_ranges(), Some("bytes"));
        assert!(got.last_modified().is_some());
        let meta = got.metadata().expect("user metadata");
        assert_eq!(meta.get("color").map(String::as_str), Some("blue"));
        assert_eq!(
            meta.get("owner-name").map(String::as_str),
            Some("Ann Example")
        );
        assert_eq!(meta.len(), 2);
        assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);

        let head = s3
            .head_object()
            .bucket("bkt")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
        assert_eq!(head.content_encoding(), Some("gzip"));
        assert_eq!(head.cache_control(), Some("max-age=60"));
        assert_eq!(head.content_length(), Some(data.len() as i64));
        assert_eq!(head.e_tag(), Some(etag.as_str()));
        assert_eq!(
            head.metadata()
                .and_then(|m| m.get("color"))
                .map(String::as_str),
            Some("blue")
        );

        // response-* query parameters override the stored headers on GET.
        let over = s3
            .get_object()
            .bucket("bkt")
            .key(key)
            .response_content_type("application/json")
            .response_content_disposition("inline")
            .response_cache_control("no-cache")
            .response_content_encoding("identity")
            .response_content_language("de")
            .response_expires(DateTime::from_secs(1_000_000_000))
            .send()
            .await
            .unwrap();
        assert_eq!(over.content_type(), Some("application/json"));
        assert_eq!(over.content_disposition(), Some("inline"));
        assert_eq!(over.cache_control(), Some("no-cache"));
        assert_eq!(over.content_encoding(), Some("identity"));
        assert_eq!(over.content_language(), Some("de"));
        assert_eq!(over.expires_string(), Some("Sun, 09 Sep 2001 01:46:40 GMT"));
    }

    // An object without explicit headers gets no invented ones (in particular the SDK's
    // aws-chunked transfer encoding must not leak into Content-Encoding).
    put(&s3, "bkt", "plain", b"abc").await;
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_encoding(), None);
    assert!(got.metadata().is_none_or(|m| m.is_empty()));

    expect_err(
        s3.get_object().bucket("bkt").key("nope").send().await,
        Some("NoSuchKey"),
        404,
    );
    expect_err(
        s3.get_object().bucket("nobucket").key("k").send().await,
        Some("NoSuchBucket"),
        404,
    );
    expect_err(
        s3.head_object().bucket("bkt").key("nope").send().await,
        None,
        404,
    );
    expect_err(
        s3.put_object()
            .bucket("nobucket")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        Some("NoSuchBucket"),
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let small = random_bytes(1000, 1);
    let big = random_bytes(2 * MIB + 123, 2);
    put(&s3, "bkt", "small", &small).await;
    put(&s3, "bkt", "big", &big).await;
    for (key, data) in [("small", &small), ("big", &big)] {
        let n = data.len();
        let cases = [
            ("bytes=10-19".to_string(), 10..20),
            (format!("bytes=5-{}", n + 100), 5..n),
            (format!("bytes={}-", n - 7), n - 7..n),
            ("bytes=-50".to_string(), n - 50..n),
            (format!("bytes=-{}", n + 10), 0..n),
        ];
        for (range, want) in cases {
            let got = s3
                .get_object()
                .bucket("bkt")
                .key(key)
                .range(&range)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{key} {range}: {e:?}"));
            assert_eq!(
                got.content_range(),
                Some(format!("bytes {}-{}/{n}", want.start, want.end - 1).as_str()),
                "{key} {range}"
            );
            assert_eq!(got.content_length(), Some(want.len() as i64));
            let body = got.body.collect().await.unwrap().into_bytes();
            assert_eq!(&body[..], &data[want], "{key} {range}");
        }
        for bad in [format!("bytes={n}-"), format!("bytes={}-{}", n + 5, n + 10)] {
            expect_err(
                s3.get_object()
                    .bucket("bkt")
                    .key(key)
                    .range(&bad)
                    .send()
                    .await,
                Some("InvalidRange"),
                416,
            );
        }
    }
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_reads() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let etag = put(&s3, "bkt", "k", b"conditional").await;
    let head = s3
        .head_object()
        .bucket("bkt")
        .key("k")
        .send()
        .await
        .unwrap();
    let lm = *head.last_modified().unwrap();
    let past = DateTime::from_secs(lm.secs() - 3600);
    let future = DateTime::from_secs(lm.secs() + 3600);
    let get = || s3.get_object().bucket("bkt").key("k");
    let head = || s3.head_object().bucket("bkt").key("k");

    // Conditions that hold.
    get().if_match(&etag).send().await.unwrap();
    get().if_match("*").send().await.unwrap();
    get().if_none_match("\"0123\"").send().await.unwrap();
    get().if_modified_since(past).send().await.unwrap();
    get().if_unmodified_since(future).send().await.unwrap();
    get().if_unmodified_since(lm).send().await.unwrap();
    head().if_match(&etag).send().await.unwrap();

    // 412 Precondition Failed.
    expect_err(
        get().if_match("\"0123\"").send().await,
        Some("PreconditionFailed"),
        412,
    );
    expect_err(
        get().if_unmodified_since(past).send().await,
        Some("PreconditionFailed"),
        412,
    );
    expect_err(head().if_match("\"0123\"").send().await, None, 412);

    // 304 Not Modified (no body, so no error code for the SDK to read).
    let e = get().if_none_match(&etag).send().await.unwrap_err();
    let raw = e.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 304);
    assert_eq!(
        raw.headers().get("etag"),
        Some(etag.as_str()),
        "304 carries the ETag"
    );
    expect_err(get().if_none_match("*").send().await, None, 304);
    expect_err(get().if_modified_since(lm).send().await, None, 304);
    expect_err(get().if_modified_since(future).send().await, None, 304);
    expect_err(head().if_none_match(&etag).send().await, None, 304);
    // On the wire: a 304 has the validators and no body.
    let req = get()
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let resp = http()
        .get(req.uri())
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    assert_eq!(resp.headers().get("etag").unwrap(), etag.as_str());
    assert!(resp.headers().get("last-modified").is_some());
    assert!(resp.headers().get("x-amz-request-id").is_some());
    assert!(resp.bytes().await.unwrap().is_empty());

    // The combinations AWS documents: If-Match true wins over If-Unmodified-Since false (200);
    // If-None-Match false wins over If-Modified-Since true (304).
    get()
        .if_match(&etag)
        .if_unmodified_since(past)
        .send()
        .await
        .unwrap();
    expect_err(
        get()
            .if_none_match(&etag)
            .if_modified_since(past)
            .send()
            .await,
        None,
        304,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    put(&s3, "bkt", "one", b"1").await;
    s3.delete_object()
        .bucket("bkt")
        .key("one")
        .send()
        .await
        .unwrap();
    expect_err(
        s3.get_object().bucket("bkt").key("one").send().await,
        Some("NoSuchKey"),
        404,
    );
    // Deleting a missing key succeeds.
    s3.delete_object()
        .bucket("bkt")
        .key("never-existed")
        .send()
        .await
        .unwrap();
    expect_err(
        s3.delete_object().bucket("nobucket").key("k").send().await,
        Some("NoSuchBucket"),
        404,
    );

    for i in 0..6 {
        put(
            &s3,
            "bkt",
            &format!("d{i}"),
            &random_bytes(70_000 * i, i as u64),
        )
        .await;
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    // Verbose: every key is reported deleted, including one that did not exist.
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(ids(&["d0", "d1", "d2", "ghost"]).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["d0", "d1", "d2", "ghost"]);
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    // Quiet: successes are not reported.
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(ids(&["d3", "d4"]).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty());
    assert!(out.errors().is_empty());
    let left = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let keys: Vec<_> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["d5"]);
    expect_err(
        s3.delete_objects()
            .bucket("nobucket")
            .delete(ids(&["x"]).build().unwrap())
            .send()
            .await,
        Some("NoSuchBucket"),
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_and_copy() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.create_bucket().bucket("cpy").send().await.unwrap();

    let create = |data: &'static [u8]| {
        s3.put_object()
            .bucket("bkt")
            .key("once")
            .if_none_match("*")
            .body(ByteStream::from_static(data))
    };
    create(b"first").send().await.unwrap();
    expect_err(
        create(b"second").send().await,
        Some("PreconditionFailed"),
        412,
    );
    assert_eq!(get(&s3, "bkt", "once").await, b"first");

    let data = random_bytes(200_000, 9);
    let src_etag = s3
        .put_object()
        .bucket("bkt")
        .key("src key+ü")
        .body(ByteStream::from(data.clone()))
        .content_type("image/png")
        .cache_control("private")
        .metadata("a", "1")
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string();
    // The copy source is URL-encoded by the caller.
    let source = "bkt/src%20key%2B%C3%BC";

    // COPY (the default) keeps headers and metadata.
    let out = s3
        .copy_object()
        .bucket("cpy")
        .key("copy")
        .copy_source(source)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.copy_object_result().and_then(|r| r.e_tag()),
        Some(src_etag.as_str())
    );
    let got = s3
        .get_object()
        .bucket("cpy")
        .key("copy")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("image/png"));
    assert_eq!(got.cache_control(), Some("private"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("a")).map(String::as_str),
        Some("1")
    );
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);

    // REPLACE takes headers and metadata from the request only: what it does not name is gone.
    s3.copy_object()
        .bucket("cpy")
        .key("replaced")
        .copy_source(source)
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/csv")
        .metadata("b", "2")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("cpy")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/csv"));
    assert_eq!(head.cache_control(), None);
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("b").map(String::as_str), Some("2"));
    assert!(!meta.contains_key("a"));
    assert_eq!(get(&s3, "cpy", "replaced").await, data);

    // Copy-source conditions that fail are 412s.
    expect_err(
        s3.copy_object()
            .bucket("cpy")
            .key("x")
            .copy_source(source)
            .copy_source_if_match("\"0123\"")
            .send()
            .await,
        Some("PreconditionFailed"),
        412,
    );
    expect_err(
        s3.copy_object()
            .bucket("cpy")
            .key("x")
            .copy_source(source)
            .copy_source_if_none_match(&src_etag)
            .send()
            .await,
        Some("PreconditionFailed"),
        412,
    );
    s3.copy_object()
        .bucket("cpy")
        .key("x")
        .copy_source(source)
        .copy_source_if_match(&src_etag)
        .send()
        .await
        .unwrap();

    // Onto itself: only with new metadata.
    expect_err(
        s3.copy_object()
            .bucket("bkt")
            .key("src key+ü")
            .copy_source(source)
            .send()
            .await,
        Some("InvalidRequest"),
        400,
    );
    s3.copy_object()
        .bucket("bkt")
        .key("src key+ü")
        .copy_source(source)
        .metadata_directive(MetadataDirective::Replace)
        .metadata("a", "changed")
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("bkt")
        .key("src key+ü")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().and_then(|m| m.get("a")).map(String::as_str),
        Some("changed")
    );
    assert_eq!(get(&s3, "bkt", "src key+ü").await, data);

    expect_err(
        s3.copy_object()
            .bucket("cpy")
            .key("x")
            .copy_source("bkt/missing")
            .send()
            .await,
        Some("NoSuchKey"),
        404,
    );
    expect_err(
        s3.copy_object()
            .bucket("cpy")
            .key("x")
            .copy_source("nobucket/k")
            .send()
            .await,
        Some("NoSuchBucket"),
        404,
    );
    expect_err(
        s3.copy_object()
            .bucket("nobucket")
            .key("x")
            .copy_source(source)
            .send()
            .await,
        Some("NoSuchBucket"),
        404,
    );
    t.fleet.stop().await;
}

// ---- listing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let mut all: Vec<String> = (0..25).map(|i| format!("page/k{i:02}")).collect();
    all.extend(
        [
            "dir/a",
            "dir/b",
            "dir/sub/c",
            "other/x",
            "top1",
            "with space.txt",
        ]
        .map(String::from),
    );
    for k in &all {
        put(&s3, "bkt", k, k.as_bytes()).await;
    }
    all.sort();
    let page_keys: Vec<String> = all
        .iter()
        .filter(|k| k.starts_with("page/"))
        .cloned()
        .collect();

    // v2: pages of 7 with continuation tokens.
    let mut token = None;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let out = s3
            .list_objects_v2()
            .bucket("bkt")
            .prefix("page/")
            .max_keys(7)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.max_keys(), Some(7));
        assert_eq!(out.prefix(), Some("page/"));
        assert_eq!(out.key_count(), Some(out.contents().len() as i32));
        assert_eq!(out.continuation_token(), token.as_deref());
        pages.push(out.contents().len());
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        assert!(out.contents().iter().all(|o| o.owner().is_none()));
        if out.is_truncated() == Some(true) {
            token = Some(out.next_continuation_token().expect("token").to_string());
        } else {
            assert!(out.next_continuation_token().is_none());
            break;
        }
    }
    assert_eq!(pages, [7, 7, 7, 4]);
    assert_eq!(seen, page_keys);

    // v2 at the root with a delimiter: common prefixes and top-level keys.
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["dir/", "other/", "page/"]);
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["top1", "with space.txt"]);
    assert_eq!(out.key_count(), Some(5));
    assert_eq!(out.delimiter(), Some("/"));
    assert_eq!(out.is_truncated(), Some(false));

    // ... and one level down.
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .prefix("dir/")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["dir/a", "dir/b"]);
    let prefixes: Vec<_> = out
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["dir/sub/"]);
    let obj = &out.contents()[0];
    assert_eq!(obj.size(), Some(5));
    assert_eq!(
        obj.e_tag(),
        Some(format!("\"{}\"", md5_hex(b"dir/a")).as_str())
    );
    assert!(obj.last_modified().is_some());
    assert_eq!(obj.storage_class().map(|s| s.as_str()), Some("STANDARD"));

    // start-after, and fetch-owner.
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .prefix("page/")
        .start_after("page/k20")
        .fetch_owner(true)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["page/k21", "page/k22", "page/k23", "page/k24"]);
    assert_eq!(out.start_after(), Some("page/k20"));
    assert!(
        out.contents()
            .iter()
            .all(|o| o.owner().and_then(|w| w.id()).is_some())
    );

    // v1: pages by marker (the last key; no NextMarker without a delimiter).
    let mut marker: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let out = s3
            .list_objects()
            .bucket("bkt")
            .max_keys(7)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.marker().filter(|m| !m.is_empty()), marker.as_deref());
        assert!(out.next_marker().is_none());
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = seen.last().cloned();
    }
    assert_eq!(seen, all);

    // v1 with a delimiter: NextMarker, also after a common prefix.
    let mut marker: Option<String> = None;
    let mut entries = Vec::new();
    let mut markers = Vec::new();
    loop {
        let out = s3
            .list_objects()
            .bucket("bkt")
            .delimiter("/")
            .max_keys(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        entries.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        entries.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = Some(out.next_marker().expect("NextMarker").to_string());
        markers.push(marker.clone().unwrap());
    }
    assert_eq!(
        entries,
        ["dir/", "other/", "page/", "top1", "with space.txt"]
    );
    assert_eq!(markers, ["other/", "top1"]);
    let out = s3
        .list_objects()
        .bucket("bkt")
        .prefix("page/")
        .marker("page/k22")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["page/k23", "page/k24"]);
    assert!(
        out.contents().iter().all(|o| o.owner().is_some()),
        "v1 always lists owners"
    );

    // encoding-type=url: the SDK returns what the server sent, still encoded.
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .prefix("with ")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.encoding_type(), Some(&EncodingType::Url));
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["with%20space.txt"]);
    assert_eq!(out.prefix(), Some("with%20"));
    let out = s3
        .list_objects()
        .bucket("bkt")
        .prefix("with")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["with%20space.txt"]);
    expect_err(
        s3.list_objects_v2()
            .bucket("bkt")
            .encoding_type(EncodingType::from("base64"))
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );

    // max-keys 0 lists nothing; a token that is not one of ours is rejected.
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert!(out.contents().is_empty());
    expect_err(
        s3.list_objects_v2()
            .bucket("bkt")
            .continuation_token("!!not a token!!")
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );
    expect_err(
        s3.list_objects_v2().bucket("nobucket").send().await,
        Some("NoSuchBucket"),
        404,
    );
    expect_err(
        s3.list_objects().bucket("nobucket").send().await,
        Some("NoSuchBucket"),
        404,
    );
    t.fleet.stop().await;
}

// ---- multipart ----

async fn upload_part(
    s3: &aws_sdk_s3::Client,
    key: &str,
    upload_id: &str,
    n: i32,
    data: &[u8],
) -> String {
    s3.upload_part()
        .bucket("bkt")
        .key(key)
        .upload_id(upload_id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("part {n}: {e:?}"))
        .e_tag()
        .expect("part etag")
        .to_string()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

async fn create_upload(s3: &aws_sdk_s3::Client, key: &str) -> String {
    s3.create_multipart_upload()
        .bucket("bkt")
        .key(key)
        .content_type("application/x-test")
        .metadata("m", "v")
        .send()
        .await
        .unwrap()
        .upload_id()
        .expect("upload id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let source = random_bytes(6 * MIB, 40);
    put(&s3, "bkt", "source", &source).await;

    let id = create_upload(&s3, "mp").await;
    let p1 = random_bytes(5 * MIB, 41);
    let p2 = random_bytes(5 * MIB, 42);
    let p4 = random_bytes(1024, 44);
    let e1 = upload_part(&s3, "mp", &id, 1, &p1).await;
    let e2 = upload_part(&s3, "mp", &id, 2, &p2).await;
    let e4 = upload_part(&s3, "mp", &id, 4, &p4).await;
    assert_eq!(e1, format!("\"{}\"", md5_hex(&p1)));
    let (first, last) = (1000usize, 1000 + 5 * MIB - 1);
    let p3 = &source[first..=last];
    let copied = s3
        .upload_part_copy()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .part_number(3)
        .copy_source("bkt/source")
        .copy_source_range(format!("bytes={first}-{last}"))
        .send()
        .await
        .unwrap();
    let e3 = copied
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .expect("copy part etag")
        .to_string();
    assert_eq!(e3, format!("\"{}\"", md5_hex(p3)));
    expect_err(
        s3.upload_part_copy()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .part_number(5)
            .copy_source("bkt/source")
            .copy_source_range(format!("bytes=0-{}", source.len()))
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );

    let parts = s3
        .list_parts()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let listed: Vec<_> = parts
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, 5 * MIB as i64, e1.as_str()),
            (2, 5 * MIB as i64, e2.as_str()),
            (3, 5 * MIB as i64, e3.as_str()),
            (4, 1024, e4.as_str()),
        ]
    );
    assert_eq!(parts.is_truncated(), Some(false));
    let page = s3
        .list_parts()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .max_parts(2)
        .part_number_marker("1")
        .send()
        .await
        .unwrap();
    let numbers: Vec<_> = page
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [2, 3]);
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("3"));

    let other = create_upload(&s3, "other").await;
    let uploads = s3
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    let listed: Vec<_> = uploads
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    assert_eq!(listed, [("mp", id.as_str()), ("other", other.as_str())]);
    let uploads = s3
        .list_multipart_uploads()
        .bucket("bkt")
        .prefix("ot")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1);

    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2), (3, &e3), (4, &e4)]))
        .send()
        .await
        .unwrap();
    let etag = done.e_tag().unwrap();
    let mut md5s = Vec::new();
    for p in [&p1[..], &p2[..], p3, &p4[..]] {
        md5s.extend_from_slice(Md5::checksum(p).as_ref());
    }
    assert_eq!(etag, format!("\"{}-4\"", md5_hex(&md5s)));
    let mut whole = Vec::new();
    for p in [&p1[..], &p2[..], p3, &p4[..]] {
        whole.extend_from_slice(p);
    }
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("mp")
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag(), Some(etag));
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(
        got.metadata().and_then(|m| m.get("m")).map(String::as_str),
        Some("v")
    );
    assert_eq!(got.content_length(), Some(whole.len() as i64));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body == whole, "multipart object differs");
    // A range across the part boundary.
    let r = s3
        .get_object()
        .bucket("bkt")
        .key("mp")
        .range(format!("bytes={}-{}", 5 * MIB - 10, 5 * MIB + 9))
        .send()
        .await
        .unwrap();
    let body = r.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &whole[5 * MIB - 10..5 * MIB + 10]);
    // The upload is gone once completed.
    expect_err(
        s3.list_parts()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        Some("NoSuchUpload"),
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_errors() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();

    // Abort, then the upload is gone.
    let id = create_upload(&s3, "aborted").await;
    upload_part(&s3, "aborted", &id, 1, b"part").await;
    s3.abort_multipart_upload()
        .bucket("bkt")
        .key("aborted")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    expect_err(
        s3.upload_part()
            .bucket("bkt")
            .key("aborted")
            .upload_id(&id)
            .part_number(2)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        Some("NoSuchUpload"),
        404,
    );
    expect_err(
        s3.abort_multipart_upload()
            .bucket("bkt")
            .key("aborted")
            .upload_id(&id)
            .send()
            .await,
        Some("NoSuchUpload"),
        404,
    );
    expect_err(
        s3.complete_multipart_upload()
            .bucket("bkt")
            .key("aborted")
            .upload_id("0123456789abcdef")
            .multipart_upload(completed(&[(1, "\"x\"")]))
            .send()
            .await,
        Some("NoSuchUpload"),
        404,
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket("bkt")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());

    let id = create_upload(&s3, "k").await;
    let small1 = upload_part(&s3, "k", &id, 1, &random_bytes(1024, 1)).await;
    let small2 = upload_part(&s3, "k", &id, 2, &random_bytes(1024, 2)).await;
    let complete = |parts: CompletedMultipartUpload| {
        s3.complete_multipart_upload()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .multipart_upload(parts)
            .send()
    };
    expect_err(
        complete(completed(&[(1, &small1), (2, &small2)])).await,
        Some("EntityTooSmall"),
        400,
    );
    expect_err(
        complete(completed(&[(2, &small2), (1, &small1)])).await,
        Some("InvalidPartOrder"),
        400,
    );
    expect_err(
        complete(completed(&[(1, "\"00000000000000000000000000000000\"")])).await,
        Some("InvalidPart"),
        400,
    );
    expect_err(
        complete(completed(&[(7, &small2)])).await,
        Some("InvalidPart"),
        400,
    );
    expect_err(
        s3.upload_part()
            .bucket("bkt")
            .key("k")
            .upload_id(&id)
            .part_number(10_001)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );
    // The failed attempts left the upload intact: a single small part completes.
    let done = complete(completed(&[(2, &small2)])).await.unwrap();
    assert!(done.e_tag().unwrap().ends_with("-1\""));
    assert_eq!(get(&s3, "bkt", "k").await, random_bytes(1024, 2));
    t.fleet.stop().await;
}

// ---- checksums ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = random_bytes(100_000, 5);

    // The SDK's default: a CRC32 it computes itself.
    let out = s3
        .put_object()
        .bucket("bkt")
        .key("default")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.checksum_crc32(), Some(b64::<Crc32>(&data).as_str()));
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("default")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc32(), Some(b64::<Crc32>(&data).as_str()));
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);

    for (alg, want) in [
        (ChecksumAlgorithm::Sha256, b64::<Sha256>(&data)),
        (ChecksumAlgorithm::Crc32C, b64::<Crc32c>(&data)),
    ] {
        let key = format!("explicit-{}", alg.as_str());
        let out = s3
            .put_object()
            .bucket("bkt")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("bkt")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let head = s3
            .head_object()
            .bucket("bkt")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let (put_v, get_v, head_v) = match alg {
            ChecksumAlgorithm::Sha256 => (
                out.checksum_sha256(),
                got.checksum_sha256(),
                head.checksum_sha256(),
            ),
            _ => (
                out.checksum_crc32_c(),
                got.checksum_crc32_c(),
                head.checksum_crc32_c(),
            ),
        };
        assert_eq!(put_v, Some(want.as_str()), "{key}");
        assert_eq!(get_v, Some(want.as_str()), "{key}");
        assert_eq!(head_v, Some(want.as_str()), "{key}");
        assert_eq!(got.body.collect().await.unwrap().into_bytes(), data);
    }

    // A listing shows each object's size and checksum algorithm, and its ETag: also of a small
    // object, whose data the index keeps inline in the record the listing reads.
    s3.put_object()
        .bucket("bkt")
        .key("small")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    let listed = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let shown: Vec<_> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap(), o.size(), o.checksum_algorithm().to_vec()))
        .collect();
    assert_eq!(
        shown,
        [
            ("default", Some(100_000), vec![ChecksumAlgorithm::Crc32]),
            (
                "explicit-CRC32C",
                Some(100_000),
                vec![ChecksumAlgorithm::Crc32C]
            ),
            (
                "explicit-SHA256",
                Some(100_000),
                vec![ChecksumAlgorithm::Sha256]
            ),
            ("small", Some(4), vec![ChecksumAlgorithm::Sha256]),
        ]
    );
    assert_eq!(
        listed.contents()[3].e_tag(),
        Some(format!("\"{}\"", md5_hex(b"tiny")).as_str())
    );

    // Wrong values are rejected and nothing is stored.
    expect_err(
        s3.put_object()
            .bucket("bkt")
            .key("bad")
            .checksum_crc32("AAAAAA==")
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        Some("BadDigest"),
        400,
    );
    expect_err(
        s3.put_object()
            .bucket("bkt")
            .key("bad")
            .content_md5(B64.encode(Md5::checksum(b"other").as_ref()))
            .body(ByteStream::from(data.clone()))
            .send()
            .await,
        Some("BadDigest"),
        400,
    );
    expect_err(
        s3.head_object().bucket("bkt").key("bad").send().await,
        None,
        404,
    );

    // A streaming body from a file: the SDK sends it aws-chunked with a CRC32 trailer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    let file_data = random_bytes(2 * MIB + 333, 6);
    std::fs::write(&path, &file_data).unwrap();
    let seen = SeenHeaders::default();
    let out = s3
        .put_object()
        .bucket("bkt")
        .key("streamed")
        .body(ByteStream::from_path(&path).await.unwrap())
        .customize()
        .interceptor(seen.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        seen.get("x-amz-content-sha256"),
        ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"],
        "the body went aws-chunked with signed chunks and trailer"
    );
    assert_eq!(seen.get("x-amz-trailer"), ["x-amz-checksum-crc32"]);
    assert_eq!(seen.get("content-encoding"), ["aws-chunked"]);
    assert_eq!(
        out.checksum_crc32(),
        Some(b64::<Crc32>(&file_data).as_str())
    );
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("streamed")
        .send()
        .await
        .unwrap();
    // aws-chunked is how the body travelled, not how it is stored.
    assert_eq!(got.content_encoding(), None);
    assert_eq!(got.content_length(), Some(file_data.len() as i64));
    assert!(got.body.collect().await.unwrap().into_bytes() == file_data);
    t.fleet.stop().await;
}

/// A streamed upload with its own Content-Encoding: the SDK sends `Content-Encoding: gzip` and
/// `Content-Encoding: aws-chunked` as two header fields, which s3s alone would reject; the server
/// folds them into one and the stored encoding is `gzip`, as S3 stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_with_content_encoding() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body");
    std::fs::write(&path, random_bytes(100_000, 8)).unwrap();
    s3.put_object()
        .bucket("bkt")
        .key("gz")
        .content_encoding("gzip")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("bkt")
        .key("gz")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_encoding(), Some("gzip"));
    t.fleet.stop().await;
}

// ---- auth ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_presigning() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    let http = http();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    put(&s3, "bkt", "k", b"secret data").await;

    // Presigned GET through a plain HTTP client.
    let req = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let resp = http.get(req.uri()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"secret data");

    // Presigned PUT.
    let req = s3
        .put_object()
        .bucket("bkt")
        .key("uploaded")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let mut put_req = http.put(req.uri()).body("via presigned put");
    for (name, value) in req.headers() {
        put_req = put_req.header(name, value);
    }
    let resp = put_req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    assert_eq!(get(&s3, "bkt", "uploaded").await, b"via presigned put");

    // A presigned URL with a bad signature.
    let uri = req.uri();
    let at = uri.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if uri[at..].starts_with('0') { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &uri[..at], &uri[at + 1..]);
    let resp = http.put(tampered).body("x").send().await.unwrap();
    expect_raw_err(resp, "SignatureDoesNotMatch", 403).await;

    // Expired.
    let req = s3
        .get_object()
        .bucket("bkt")
        .key("k")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1)).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resp = http.get(req.uri()).send().await.unwrap();
    expect_raw_err(resp, "AccessDenied", 403).await;

    // Anonymous.
    let resp = http
        .get(format!("{}/bkt/k", t.endpoint()))
        .send()
        .await
        .unwrap();
    expect_raw_err(resp, "AccessDenied", 403).await;
    let resp = http.get(format!("{}/", t.endpoint())).send().await.unwrap();
    expect_raw_err(resp, "AccessDenied", 403).await;

    // Wrong secret, unknown key.
    let wrong = client(&t.endpoint(), &t.fleet.secrets.access_key, "not-the-secret");
    expect_err(
        wrong.list_buckets().send().await,
        Some("SignatureDoesNotMatch"),
        403,
    );
    expect_err(
        wrong.get_object().bucket("bkt").key("k").send().await,
        Some("SignatureDoesNotMatch"),
        403,
    );
    let unknown = client(&t.endpoint(), "AKIDUNKNOWN000000000", "whatever");
    expect_err(
        unknown.list_buckets().send().await,
        Some("InvalidAccessKeyId"),
        403,
    );
    expect_err(
        unknown
            .put_object()
            .bucket("bkt")
            .key("k")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        Some("InvalidAccessKeyId"),
        403,
    );
    assert_eq!(get(&s3, "bkt", "k").await, b"secret data");

    // Errors carry the request id in the header and the body; the SDK exposes it.
    let err = s3
        .get_object()
        .bucket("bkt")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    use aws_sdk_s3::operation::RequestId;
    let header = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-request-id"))
        .map(str::to_string);
    assert!(header.is_some());
    assert_eq!(err.request_id().map(str::to_string), header);
    let req = s3
        .get_object()
        .bucket("bkt")
        .key("missing")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let resp = http.get(req.uri()).send().await.unwrap();
    expect_raw_err(resp, "NoSuchKey", 404).await;
    t.fleet.stop().await;
}

// ---- edges ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let mut keys: Vec<String> = [
        "a b",
        "a+b",
        "ü/ö",
        "a&b<c>\"'",
        "a%2Fb",
        "q?x=1#frag",
        "a//b",
        "dir/",
        "~tilde",
        "emoji😀",
        "semi;colon,comma=eq",
        &"k".repeat(1024),
    ]
    .map(String::from)
    .to_vec();
    for k in &keys {
        put(&s3, "bkt", k, k.as_bytes()).await;
        assert_eq!(get(&s3, "bkt", k).await, k.as_bytes(), "{k}");
    }
    keys.sort();
    let out = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let listed: Vec<_> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(listed, keys);
    let out = s3
        .list_objects_v2()
        .bucket("bkt")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let decoded: Vec<_> = out
        .contents()
        .iter()
        .map(|o| decode_key(o.key().unwrap()))
        .collect();
    assert_eq!(decoded, keys);
    assert!(
        out.contents()
            .iter()
            .all(|o| !o.key().unwrap().contains(['&', '<', ' ', '?'])),
        "encoded keys keep no reserved characters"
    );

    // Copy between odd keys (the copy source is URL-encoded).
    s3.copy_object()
        .bucket("bkt")
        .key("copy of a&b")
        .copy_source(format!("bkt/{}", encode_key("a&b<c>\"'")))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "bkt", "copy of a&b").await, b"a&b<c>\"'");
    keys.push("copy of a&b".into());

    // Too long a key, and a zero-byte object.
    expect_err(
        s3.put_object()
            .bucket("bkt")
            .key("k".repeat(1025))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await,
        Some("KeyTooLongError"),
        400,
    );
    put(&s3, "bkt", "empty", b"").await;
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(0));
    assert_eq!(got.e_tag(), Some(format!("\"{}\"", md5_hex(b"")).as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes().is_empty());
    keys.push("empty".into());

    // DeleteObjects round-trips every key through XML.
    let out = s3
        .delete_objects()
        .bucket("bkt")
        .delete(
            Delete::builder()
                .set_objects(Some(
                    keys.iter()
                        .map(|k| ObjectIdentifier::builder().key(k).build().unwrap())
                        .collect(),
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out
        .deleted()
        .iter()
        .map(|d| d.key().unwrap().to_string())
        .collect();
    deleted.sort();
    keys.sort();
    assert_eq!(deleted, keys);
    let out = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert!(out.contents().is_empty());

    // At most 1000 keys per DeleteObjects.
    let many: Vec<_> = (0..1001)
        .map(|i| {
            ObjectIdentifier::builder()
                .key(format!("k{i}"))
                .build()
                .unwrap()
        })
        .collect();
    expect_err(
        s3.delete_objects()
            .bucket("bkt")
            .delete(Delete::builder().set_objects(Some(many)).build().unwrap())
            .send()
            .await,
        Some("MalformedXML"),
        400,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_conditions_and_limits() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let etag = put(&s3, "bkt", "k", b"v1").await;
    // Conditional overwrite (If-Match).
    expect_err(
        s3.put_object()
            .bucket("bkt")
            .key("k")
            .if_match("\"00000000000000000000000000000000\"")
            .body(ByteStream::from_static(b"v2"))
            .send()
            .await,
        Some("PreconditionFailed"),
        412,
    );
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "bkt", "k").await, b"v2");

    // User metadata is limited to 2 KB, before any data is stored.
    let big = "x".repeat(2100);
    expect_err(
        s3.put_object()
            .bucket("bkt")
            .key("meta")
            .metadata("big", &big)
            .body(ByteStream::from_static(b"v"))
            .send()
            .await,
        Some("MetadataTooLarge"),
        400,
    );
    expect_err(
        s3.create_multipart_upload()
            .bucket("bkt")
            .key("meta")
            .metadata("big", &big)
            .send()
            .await,
        Some("MetadataTooLarge"),
        400,
    );
    expect_err(
        s3.copy_object()
            .bucket("bkt")
            .key("meta")
            .copy_source("bkt/k")
            .metadata_directive(MetadataDirective::Replace)
            .metadata("big", &big)
            .send()
            .await,
        Some("MetadataTooLarge"),
        400,
    );
    s3.put_object()
        .bucket("bkt")
        .key("meta")
        .metadata("fits", "x".repeat(2000))
        .body(ByteStream::from_static(b"v"))
        .send()
        .await
        .unwrap();
    expect_err(
        s3.get_object().bucket("bkt").key("nope").send().await,
        Some("NoSuchKey"),
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_checksums_parts_and_paging() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    expect_err(
        s3.create_multipart_upload()
            .bucket("nobucket")
            .key("k")
            .send()
            .await,
        Some("NoSuchBucket"),
        404,
    );
    expect_err(
        s3.list_parts()
            .bucket("bkt")
            .key("k")
            .upload_id("nope")
            .send()
            .await,
        Some("NoSuchUpload"),
        404,
    );

    // A composite CRC32C checksum.
    let id = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let p1 = random_bytes(5 * MIB, 61);
    let p2 = random_bytes(100, 62);
    let mut done_parts = Vec::new();
    for (n, data) in [(1, &p1), (2, &p2)] {
        let out = s3
            .upload_part()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.checksum_crc32_c(),
            Some(b64::<Crc32c>(data).as_str()),
            "part {n}"
        );
        done_parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .checksum_crc32_c(out.checksum_crc32_c().unwrap())
                .build(),
        );
    }
    let parts = s3
        .list_parts()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(parts.checksum_algorithm(), Some(&ChecksumAlgorithm::Crc32C));
    let sums: Vec<_> = parts
        .parts()
        .iter()
        .map(|p| p.checksum_crc32_c().unwrap())
        .collect();
    assert_eq!(sums, [b64::<Crc32c>(&p1), b64::<Crc32c>(&p2)]);
    // A part checksum that does not match the stored one.
    let mut wrong = done_parts.clone();
    wrong[1] = CompletedPart::builder()
        .part_number(2)
        .e_tag(done_parts[1].e_tag().unwrap())
        .checksum_crc32_c("AAAAAA==")
        .build();
    expect_err(
        s3.complete_multipart_upload()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(wrong))
                    .build(),
            )
            .send()
            .await,
        Some("InvalidPart"),
        400,
    );
    let done = s3
        .complete_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done_parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut raw = Vec::new();
    raw.extend_from_slice(Crc32c::checksum(&p1).as_ref());
    raw.extend_from_slice(Crc32c::checksum(&p2).as_ref());
    let composite = format!("{}-2", b64::<Crc32c>(&raw));
    assert_eq!(done.checksum_crc32_c(), Some(composite.as_str()));
    let got = s3
        .get_object()
        .bucket("bkt")
        .key("mp")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(got.checksum_crc32_c(), Some(composite.as_str()));
    assert_eq!(got.checksum_type(), Some(&ChecksumType::Composite));
    let mut whole = p1.clone();
    whole.extend_from_slice(&p2);
    assert!(got.body.collect().await.unwrap().into_bytes() == whole);

    // GET and HEAD by part number.
    let part = s3
        .get_object()
        .bucket("bkt")
        .key("mp")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part.parts_count(), Some(2));
    assert_eq!(part.content_length(), Some(100));
    assert_eq!(
        part.content_range(),
        Some(format!("bytes {}-{}/{}", 5 * MIB, 5 * MIB + 99, whole.len()).as_str())
    );
    assert_eq!(part.body.collect().await.unwrap().into_bytes(), p2);
    let head = s3
        .head_object()
        .bucket("bkt")
        .key("mp")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.parts_count(), Some(2));
    assert_eq!(head.content_length(), Some(5 * MIB as i64));
    expect_err(
        s3.get_object()
            .bucket("bkt")
            .key("mp")
            .part_number(3)
            .send()
            .await,
        Some("InvalidPartNumber"),
        416,
    );

    // Complete with If-None-Match: * onto an existing key.
    let id = create_upload(&s3, "mp").await;
    let e = upload_part(&s3, "mp", &id, 1, b"tiny").await;
    expect_err(
        s3.complete_multipart_upload()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .if_none_match("*")
            .multipart_upload(completed(&[(1, &e)]))
            .send()
            .await,
        Some("PreconditionFailed"),
        412,
    );
    // UploadPartCopy source conditions and ranges.
    expect_err(
        s3.upload_part_copy()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .part_number(2)
            .copy_source("bkt/mp")
            .copy_source_if_match("\"0123\"")
            .send()
            .await,
        Some("PreconditionFailed"),
        412,
    );
    expect_err(
        s3.upload_part_copy()
            .bucket("bkt")
            .key("mp")
            .upload_id(&id)
            .part_number(2)
            .copy_source("bkt/mp")
            .copy_source_range("bytes=10-")
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );
    s3.abort_multipart_upload()
        .bucket("bkt")
        .key("mp")
        .upload_id(&id)
        .send()
        .await
        .unwrap();

    // ListMultipartUploads pages by (key, upload id).
    let mut all = Vec::new();
    for key in ["u1", "u2", "u2", "u3", "u2"] {
        all.push((key.to_string(), create_upload(&s3, key).await));
    }
    all.sort();
    let (mut key_marker, mut id_marker) = (None, None);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let out = s3
            .list_multipart_uploads()
            .bucket("bkt")
            .max_uploads(2)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        seen.extend(out.uploads().iter().map(|u| {
            (
                u.key().unwrap().to_string(),
                u.upload_id().unwrap().to_string(),
            )
        }));
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_string);
        id_marker = out.next_upload_id_marker().map(str::to_string);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
    t.fleet.stop().await;
}

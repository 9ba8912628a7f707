//! Bucket versioning through the official `aws-sdk-s3` client: version ids on every write, reads
//! and copies of old versions byte for byte, delete markers, permanent deletes (whose shards the
//! garbage collector really frees), the `null` version of suspended buckets, ListObjectVersions
//! paging across thousands of versions, and the admin API's versioning switch.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
    VersioningConfiguration,
};
use common::*;

const KIB: usize = 1024;

// ---- helpers ----

/// Asserts an SDK call failed with HTTP `status` (and S3 error `code` when the response has a
/// body); returns the raw response headers.
#[track_caller]
fn expect_err<T: Debug, E: ProvideErrorMetadata + Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
    code: Option<&str>,
    status: u16,
) -> http::HeaderMap {
    let err = r.expect_err("the request should fail");
    let raw = err
        .raw_response()
        .unwrap_or_else(|| panic!("no HTTP response: {err:?}"));
    assert_eq!(raw.status().as_u16(), status, "status of {err:?}");
    if let Some(code) = code {
        assert_eq!(err.code(), Some(code), "code of {err:?}");
    }
    let mut h = http::HeaderMap::new();
    for (k, v) in raw.headers() {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn set_versioning(s3: &aws_sdk_s3::Client, bucket: &str, status: BucketVersioningStatus) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .expect("put bucket versioning");
}

/// Puts `data` and returns the version id the gateway answered.
async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> Option<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
        .version_id()
        .map(str::to_string)
}

/// The bytes and version id of a GET (of `version`, or the current version).
async fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> (Vec<u8>, Option<String>) {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key} {version:?}: {e:?}"));
    let v = out.version_id().map(str::to_string);
    let body = out.body.collect().await.unwrap().into_bytes().to_vec();
    (body, v)
}

/// One row of a version listing: (key, version id, latest, delete marker).
type Row = (String, String, bool, bool);

/// Every version of the bucket under `prefix`, fetched in pages of `page`, in listing order
/// (delete markers merged back into place by the order rule: per key, newest first). Checks the
/// page invariants on the way.
async fn all_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    page: i32,
) -> (Vec<Row>, Vec<String>, usize) {
    let mut rows = Vec::new();
    let mut prefixes = Vec::new();
    let mut pages = 0;
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .max_keys(page)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .expect("list object versions");
        pages += 1;
        let mut here: Vec<Row> = Vec::new();
        for v in out.versions() {
            here.push((
                v.key().unwrap().to_string(),
                v.version_id().unwrap().to_string(),
                v.is_latest().unwrap(),
                false,
            ));
        }
        for m in out.delete_markers() {
            here.push((
                m.key().unwrap().to_string(),
                m.version_id().unwrap().to_string(),
                m.is_latest().unwrap(),
                true,
            ));
        }
        let n = here.len() + out.common_prefixes().len();
        assert!(n <= page as usize, "page of {n} entries, max {page}");
        // The XML lists versions and markers apart; restore the listing order: by key, then the
        // latest, then by the sequence in the version id, newest first.
        here.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| b.2.cmp(&a.2))
                .then_with(|| seq_of(&b.1).cmp(&seq_of(&a.1)))
        });
        rows.extend(here);
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_string()),
        );
        if !out.is_truncated().unwrap() {
            assert!(out.next_key_marker().is_none());
            break;
        }
        key_marker = out.next_key_marker().map(str::to_string);
        version_marker = out.next_version_id_marker().map(str::to_string);
        assert!(
            key_marker.is_some(),
            "a truncated page names where to resume"
        );
        assert!(pages < 100_000, "listing does not end");
    }
    (rows, prefixes, pages)
}

/// The sequence part of one of Cairn's version ids (`null` sorts as 0).
fn seq_of(id: &str) -> u64 {
    if id == "null" {
        0
    } else {
        u64::from_str_radix(&id[..16], 16).unwrap()
    }
}

/// Object ids with shards on any node.
fn shard_objects(t: &TestFleet) -> BTreeSet<String> {
    t.fleet
        .nodes
        .iter()
        .flat_map(|n| shard_files(&n.data_dir))
        .map(|(id, _, _)| id)
        .collect()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_overwrites_keep_every_version_byte_exact() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    let status = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), None, "a new bucket is unversioned");
    set_versioning(&s3, "ver", BucketVersioningStatus::Enabled).await;
    let status = s3
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));

    // Inline and erasure-coded bodies, overwritten in turn.
    let bodies: Vec<Vec<u8>> = vec![
        random_bytes(10, 1),
        random_bytes(300 * KIB, 2),
        random_bytes(5, 3),
        random_bytes(1100 * KIB, 4),
    ];
    let mut ids = Vec::new();
    for b in &bodies {
        let id = put(&s3, "ver", "doc", b).await.expect("a version id");
        assert!(!ids.contains(&id), "fresh id");
        ids.push(id);
    }
    // Overwrites free nothing: after the GC delay every version still reads back exactly.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (b, id) in bodies.iter().zip(&ids) {
        let (got, v) = get(&s3, "ver", "doc", Some(id)).await;
        assert!(got == *b, "version {id} differs");
        assert_eq!(v.as_deref(), Some(id.as_str()));
        let head = s3
            .head_object()
            .bucket("ver")
            .key("doc")
            .version_id(id)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(b.len() as i64));
        assert_eq!(head.version_id(), Some(id.as_str()));
    }
    let (cur, v) = get(&s3, "ver", "doc", None).await;
    assert!(cur == bodies[3]);
    assert_eq!(v.as_deref(), Some(ids[3].as_str()));
    // A ranged read of an old erasure-coded version.
    let part = s3
        .get_object()
        .bucket("ver")
        .key("doc")
        .version_id(&ids[1])
        .range("bytes=1000-1999")
        .send()
        .await
        .unwrap();
    let part = part.body.collect().await.unwrap().into_bytes();
    assert!(part[..] == bodies[1][1000..2000]);

    let (rows, _, _) = all_versions(&s3, "ver", "", None, 1000).await;
    let want: Vec<Row> = ids
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| ("doc".to_string(), id.clone(), i == 0, false))
        .collect();
    assert_eq!(rows, want);

    // Restoring an old version is a copy of it: a new current version with the old bytes.
    let copied = s3
        .copy_object()
        .bucket("ver")
        .key("doc")
        .copy_source(format!("ver/doc?versionId={}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(copied.copy_source_version_id(), Some(ids[1].as_str()));
    let restored = copied
        .version_id()
        .expect("copy makes a version")
        .to_string();
    let (cur, v) = get(&s3, "ver", "doc", None).await;
    assert!(cur == bodies[1]);
    assert_eq!(v, Some(restored.clone()));

    // Multipart uploads make versions too.
    let up = s3
        .create_multipart_upload()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap();
    let part_body = random_bytes(20 * KIB, 9);
    let p = s3
        .upload_part()
        .bucket("ver")
        .key("doc")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from(part_body.clone()))
        .send()
        .await
        .unwrap();
    let done = s3
        .complete_multipart_upload()
        .bucket("ver")
        .key("doc")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(p.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mp = done
        .version_id()
        .expect("complete makes a version")
        .to_string();
    assert!(get(&s3, "ver", "doc", None).await.0 == part_body);
    assert!(get(&s3, "ver", "doc", Some(&ids[3])).await.0 == bodies[3]);

    // A permanent delete of an erasure-coded version frees its shards, and only its.
    let before = shard_objects(&t);
    let del = s3
        .delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&ids[3])
        .send()
        .await
        .unwrap();
    assert_eq!(del.version_id(), Some(ids[3].as_str()));
    assert_eq!(del.delete_marker(), None);
    expect_err(
        s3.get_object()
            .bucket("ver")
            .key("doc")
            .version_id(&ids[3])
            .send()
            .await,
        Some("NoSuchVersion"),
        404,
    );
    wait_for("the deleted version's shards are collected", || {
        shard_objects(&t).len() + 1 == before.len()
    })
    .await;
    assert!(get(&s3, "ver", "doc", Some(&ids[1])).await.0 == bodies[1]);
    assert!(get(&s3, "ver", "doc", Some(&restored)).await.0 == bodies[1]);
    let (rows, _, _) = all_versions(&s3, "ver", "", None, 2).await;
    let listed: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        listed,
        vec![
            mp.as_str(),
            restored.as_str(),
            ids[2].as_str(),
            ids[1].as_str(),
            ids[0].as_str()
        ]
    );

    // Deleting the current version permanently makes the next one current.
    s3.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&mp)
        .send()
        .await
        .unwrap();
    let (cur, v) = get(&s3, "ver", "doc", None).await;
    assert!(cur == bodies[1]);
    assert_eq!(v, Some(restored));

    // Ids that are not Cairn's are a client error; well-formed unknown ones are missing versions.
    expect_err(
        s3.get_object()
            .bucket("ver")
            .key("doc")
            .version_id("not-a-version")
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );
    expect_err(
        s3.get_object()
            .bucket("ver")
            .key("doc")
            .version_id("00000000000000ff0000000000000000")
            .send()
            .await,
        Some("NoSuchVersion"),
        404,
    );
    // Deleting a version that does not exist succeeds, as in S3.
    s3.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id("00000000000000ff0000000000000000")
        .send()
        .await
        .unwrap();
    // A versioned bucket with versions left is not empty.
    expect_err(
        s3.delete_bucket().bucket("ver").send().await,
        Some("BucketNotEmpty"),
        409,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_markers_hide_and_unhide() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("mark").send().await.unwrap();
    set_versioning(&s3, "mark", BucketVersioningStatus::Enabled).await;
    let v1 = put(&s3, "mark", "dir/a", b"first").await.unwrap();
    put(&s3, "mark", "keep", b"kept").await.unwrap();

    // A delete without a version id makes a delete marker.
    let del = s3
        .delete_object()
        .bucket("mark")
        .key("dir/a")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del
        .version_id()
        .expect("the marker's version id")
        .to_string();
    assert_ne!(marker, v1);

    // The key is hidden: GET and HEAD are 404 and say a delete marker is why.
    let h = expect_err(
        s3.get_object().bucket("mark").key("dir/a").send().await,
        Some("NoSuchKey"),
        404,
    );
    assert_eq!(header(&h, "x-amz-delete-marker"), Some("true"));
    assert_eq!(header(&h, "x-amz-version-id"), Some(marker.as_str()));
    let h = expect_err(
        s3.head_object().bucket("mark").key("dir/a").send().await,
        None,
        404,
    );
    assert_eq!(header(&h, "x-amz-delete-marker"), Some("true"));
    // ...in listings too, including the common prefix only it made.
    let l = s3
        .list_objects_v2()
        .bucket("mark")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = l.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(keys, vec!["keep"]);
    assert!(l.common_prefixes().is_empty(), "{:?}", l.common_prefixes());
    let l = s3.list_objects().bucket("mark").send().await.unwrap();
    assert_eq!(l.contents().len(), 1);
    // GET of the marker itself is 405; the older version is still there.
    let h = expect_err(
        s3.get_object()
            .bucket("mark")
            .key("dir/a")
            .version_id(&marker)
            .send()
            .await,
        Some("MethodNotAllowed"),
        405,
    );
    assert_eq!(header(&h, "x-amz-delete-marker"), Some("true"));
    assert!(header(&h, "last-modified").is_some());
    assert_eq!(get(&s3, "mark", "dir/a", Some(&v1)).await.0, b"first");
    // The version listing shows the marker as latest.
    let lv = s3
        .list_object_versions()
        .bucket("mark")
        .prefix("dir/")
        .send()
        .await
        .unwrap();
    assert_eq!(lv.delete_markers().len(), 1);
    assert_eq!(lv.delete_markers()[0].version_id(), Some(marker.as_str()));
    assert_eq!(lv.delete_markers()[0].is_latest(), Some(true));
    assert_eq!(lv.versions().len(), 1);
    assert_eq!(lv.versions()[0].is_latest(), Some(false));
    // Copying from the hidden key fails; naming the marker as the source is refused.
    expect_err(
        s3.copy_object()
            .bucket("mark")
            .key("c")
            .copy_source("mark/dir/a")
            .send()
            .await,
        Some("NoSuchKey"),
        404,
    );
    expect_err(
        s3.copy_object()
            .bucket("mark")
            .key("c")
            .copy_source(format!("mark/dir/a?versionId={marker}"))
            .send()
            .await,
        Some("InvalidRequest"),
        400,
    );
    // A second delete stacks a second marker.
    let marker2 = s3
        .delete_object()
        .bucket("mark")
        .key("dir/a")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();

    // Deleting the markers by version id un-hides the object.
    let del = s3
        .delete_objects()
        .bucket("mark")
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("dir/a")
                        .version_id(&marker2)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(del.deleted()[0].version_id(), Some(marker2.as_str()));
    assert_eq!(del.deleted()[0].delete_marker(), Some(true));
    expect_err(
        s3.get_object().bucket("mark").key("dir/a").send().await,
        Some("NoSuchKey"),
        404,
    );
    let del = s3
        .delete_object()
        .bucket("mark")
        .key("dir/a")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some(marker.as_str()));
    let (body, v) = get(&s3, "mark", "dir/a", None).await;
    assert_eq!(body, b"first");
    assert_eq!(v, Some(v1.clone()));
    let l = s3
        .list_objects_v2()
        .bucket("mark")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    assert_eq!(l.common_prefixes()[0].prefix(), Some("dir/"));

    // DeleteObjects without version ids makes markers and reports their ids.
    let del = s3
        .delete_objects()
        .bucket("mark")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("keep").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let d = &del.deleted()[0];
    assert_eq!(d.delete_marker(), Some(true));
    assert!(d.delete_marker_version_id().is_some());
    expect_err(
        s3.head_object().bucket("mark").key("keep").send().await,
        None,
        404,
    );
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_pages_through_thousands_of_versions() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("many").send().await.unwrap();
    set_versioning(&s3, "many", BucketVersioningStatus::Enabled).await;
    // 2,000 versions (and some delete markers) of five keys, one writer per key so each key's
    // version order is known; a few keys under a "dir/" for delimiter listings.
    let keys = ["a", "b", "dir/c", "dir/d", "e"];
    let per_key = 400;
    let mut tasks = Vec::new();
    for (ki, key) in keys.iter().enumerate() {
        let s3 = s3.clone();
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..per_key {
                if i % 97 == 96 {
                    let id = s3
                        .delete_object()
                        .bucket("many")
                        .key(&key)
                        .send()
                        .await
                        .unwrap()
                        .version_id()
                        .unwrap()
                        .to_string();
                    ids.push((id, true));
                } else {
                    let body = format!("{key}:{i}:{ki}");
                    ids.push((
                        put(&s3, "many", &key, body.as_bytes()).await.unwrap(),
                        false,
                    ));
                }
            }
            (key, ids)
        }));
    }
    let mut expected: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for task in tasks {
        let (key, ids) = task.await.unwrap();
        expected.insert(key, ids);
    }
    let want: Vec<Row> = expected
        .iter()
        .flat_map(|(k, ids)| {
            ids.iter()
                .rev()
                .enumerate()
                .map(move |(i, (id, marker))| (k.clone(), id.clone(), i == 0, *marker))
        })
        .collect();
    assert_eq!(want.len(), keys.len() * per_key);

    // Every page size visits every version once, in order, across key boundaries.
    for page in [1000, 333, 7] {
        let started = Instant::now();
        let (rows, prefixes, pages) = all_versions(&s3, "many", "", None, page).await;
        println!(
            "ListObjectVersions of {} versions in {pages} pages of {page}: {:?}",
            rows.len(),
            started.elapsed()
        );
        assert!(prefixes.is_empty());
        assert_eq!(rows.len(), want.len(), "page size {page}");
        assert!(rows == want, "page size {page}: the listing differs");
        assert_eq!(pages, want.len().div_ceil(page as usize));
    }
    // Prefix and delimiter.
    let (rows, _, _) = all_versions(&s3, "many", "dir/", None, 250).await;
    assert_eq!(rows.len(), 2 * per_key);
    assert!(rows.iter().all(|r| r.0.starts_with("dir/")));
    let (rows, prefixes, _) = all_versions(&s3, "many", "", Some("/"), 150).await;
    assert_eq!(prefixes, vec!["dir/"]);
    assert_eq!(rows.len(), 3 * per_key);
    // Resuming at an arbitrary version.
    let mid = &want[1234];
    let out = s3
        .list_object_versions()
        .bucket("many")
        .key_marker(&mid.0)
        .version_id_marker(&mid.1)
        .max_keys(3)
        .send()
        .await
        .unwrap();
    let mut next: Vec<String> = out
        .versions()
        .iter()
        .map(|v| v.version_id().unwrap().to_string())
        .chain(
            out.delete_markers()
                .iter()
                .map(|m| m.version_id().unwrap().to_string()),
        )
        .collect();
    next.sort_by_key(|id| std::cmp::Reverse(seq_of(id)));
    assert_eq!(
        next,
        vec![
            want[1235].1.clone(),
            want[1236].1.clone(),
            want[1237].1.clone()
        ]
    );
    // A version-id marker needs a key marker; junk markers are refused.
    expect_err(
        s3.list_object_versions()
            .bucket("many")
            .version_id_marker(&mid.1)
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );
    expect_err(
        s3.list_object_versions()
            .bucket("many")
            .key_marker("a")
            .version_id_marker("junk")
            .send()
            .await,
        Some("InvalidArgument"),
        400,
    );

    // Lists of current objects read one entry per key however many versions each has.
    let started = Instant::now();
    let l = s3.list_objects_v2().bucket("many").send().await.unwrap();
    println!("ListObjectsV2 over 2,000 versions: {:?}", started.elapsed());
    let live: Vec<String> = expected
        .iter()
        .filter(|(_, ids)| !ids.last().unwrap().1)
        .map(|(k, _)| k.clone())
        .collect();
    let listed: Vec<String> = l
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(listed, live);
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_bucket_null_version_semantics() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    s3.create_bucket().bucket("susp").send().await.unwrap();
    // Written before versioning: the null version, with no version header.
    assert_eq!(put(&s3, "susp", "k", b"original").await, None);
    set_versioning(&s3, "susp", BucketVersioningStatus::Enabled).await;
    let (_, v) = get(&s3, "susp", "k", None).await;
    assert_eq!(v.as_deref(), Some("null"));
    let v1 = put(&s3, "susp", "k", b"versioned").await.unwrap();
    assert_eq!(get(&s3, "susp", "k", Some("null")).await.0, b"original");
    assert_eq!(get(&s3, "susp", "k", Some(&v1)).await.0, b"versioned");

    set_versioning(&s3, "susp", BucketVersioningStatus::Suspended).await;
    let status = s3
        .get_bucket_versioning()
        .bucket("susp")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Suspended));
    // A write in a suspended bucket is the null version, and replaces the old null version.
    let big = random_bytes(200 * KIB, 5);
    assert_eq!(put(&s3, "susp", "k", &big).await.as_deref(), Some("null"));
    let (body, v) = get(&s3, "susp", "k", Some("null")).await;
    assert!(body == big);
    assert_eq!(v.as_deref(), Some("null"));
    assert_eq!(get(&s3, "susp", "k", Some(&v1)).await.0, b"versioned");
    let (rows, _, _) = all_versions(&s3, "susp", "", None, 1000).await;
    let ids: Vec<(&str, bool)> = rows.iter().map(|r| (r.1.as_str(), r.2)).collect();
    assert_eq!(ids, vec![("null", true), (v1.as_str(), false)]);
    // Overwriting the null version again frees the replaced one's shards.
    let before = shard_objects(&t);
    assert_eq!(
        put(&s3, "susp", "k", b"small").await.as_deref(),
        Some("null")
    );
    wait_for("the replaced null version is collected", || {
        shard_objects(&t).len() + 1 == before.len()
    })
    .await;

    // A delete in a suspended bucket makes a null delete marker, which replaces the null version.
    let del = s3
        .delete_object()
        .bucket("susp")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(del.version_id(), Some("null"));
    let h = expect_err(
        s3.get_object().bucket("susp").key("k").send().await,
        Some("NoSuchKey"),
        404,
    );
    assert_eq!(header(&h, "x-amz-delete-marker"), Some("true"));
    assert_eq!(header(&h, "x-amz-version-id"), Some("null"));
    let lv = s3
        .list_object_versions()
        .bucket("susp")
        .send()
        .await
        .unwrap();
    assert_eq!(lv.delete_markers().len(), 1);
    assert_eq!(lv.delete_markers()[0].version_id(), Some("null"));
    assert_eq!(lv.versions().len(), 1);
    assert_eq!(lv.versions()[0].version_id(), Some(v1.as_str()));

    // Removing the null marker brings the versioned object back.
    s3.delete_object()
        .bucket("susp")
        .key("k")
        .version_id("null")
        .send()
        .await
        .unwrap();
    assert_eq!(get(&s3, "susp", "k", None).await.0, b"versioned");

    // Re-enabled: new writes get ids again; a null version written while suspended is kept.
    assert_eq!(
        put(&s3, "susp", "n", b"null one").await.as_deref(),
        Some("null")
    );
    set_versioning(&s3, "susp", BucketVersioningStatus::Enabled).await;
    let v2 = put(&s3, "susp", "n", b"with id").await.unwrap();
    assert_ne!(v2, "null");
    assert_eq!(get(&s3, "susp", "n", Some("null")).await.0, b"null one");
    // Versioning never goes back to unversioned.
    let r = s3
        .put_bucket_versioning()
        .bucket("susp")
        .versioning_configuration(VersioningConfiguration::builder().build())
        .send()
        .await;
    expect_err(r, Some("MalformedXML"), 400);
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_switches_versioning_and_empties_versioned_buckets() {
    let t = TestFleet::start().await;
    let s3 = t.client();
    let http = reqwest::Client::new();
    let token = t.fleet.secrets.admin_token.clone();
    let admin = t.admin();
    s3.create_bucket().bucket("adm").send().await.unwrap();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut r = http
            .request(method, format!("{admin}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let r = call(
        reqwest::Method::GET,
        "/admin/v1/buckets/adm/versioning",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "Off"
    );
    // Off on a never-versioned bucket is accepted (nothing to do).
    let r = call(
        reqwest::Method::PUT,
        "/admin/v1/buckets/adm/versioning",
        Some(serde_json::json!({"status": "Off"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = call(
        reqwest::Method::PUT,
        "/admin/v1/buckets/adm/versioning",
        Some(serde_json::json!({"status": "Enabled"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let status = s3
        .get_bucket_versioning()
        .bucket("adm")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));
    for (body, code, status) in [
        (
            serde_json::json!({"status": "Off"}),
            "VersioningIrreversible",
            409,
        ),
        (
            serde_json::json!({"status": "On"}),
            "InvalidVersioningStatus",
            400,
        ),
        (
            serde_json::json!({"state": "Enabled"}),
            "MalformedJSON",
            400,
        ),
    ] {
        let r = call(
            reqwest::Method::PUT,
            "/admin/v1/buckets/adm/versioning",
            Some(body),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), status);
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code);
    }
    let r = call(
        reqwest::Method::PUT,
        "/admin/v1/buckets/nope/versioning",
        Some(serde_json::json!({"status": "Enabled"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);

    // Bucket info counts versions; a forced delete removes every version and its shards.
    let big = random_bytes(100 * KIB, 1);
    for i in 0..3 {
        put(&s3, "adm", "x", &big).await;
        put(&s3, "adm", &format!("y{i}"), b"y").await;
    }
    s3.delete_object()
        .bucket("adm")
        .key("y0")
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = call(reqwest::Method::GET, "/admin/v1/buckets/adm", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["versioning"], "Enabled");
    assert_eq!(info["objects"], 3);
    assert_eq!(info["noncurrent_versions"], 3);
    assert_eq!(info["noncurrent_bytes"], 2 * 100 * KIB as u64 + 1);
    assert_eq!(info["delete_markers"], 1);
    let r = call(reqwest::Method::DELETE, "/admin/v1/buckets/adm", None)
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "not empty");
    let r = call(
        reqwest::Method::DELETE,
        "/admin/v1/buckets/adm?force=true",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    expect_err(s3.head_bucket().bucket("adm").send().await, None, 404);
    wait_for("every version's shards are collected", || {
        shard_objects(&t).is_empty()
    })
    .await;
    t.fleet.stop().await;
}

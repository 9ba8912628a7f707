//! Fault tolerance of the data path, in process: storage nodes going away (up to m = 2 of them
//! keeps every object readable, a third makes erasure-coded reads and all erasure-coded writes fail
//! with 503 and never with wrong bytes), a corrupt shard on disk (the read switches to parity), and
//! the garbage collector (freed shards disappear from the nodes, live ones stay).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_gateway::index::records::{Blob, ObjectData, StoredBlob};
use cairn_storage_node::format::Geometry;
use common::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Upper bound on every test's run time: it catches a hang, and is generous because five fleets
/// share two cores in CI while the node-failure test reads its 25 MiB about ten times over.
const TEST_LIMIT: Duration = Duration::from_secs(480);
/// Upper bound on one S3 call.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// The outcome of a GET: the whole body, or why there is none.
#[derive(Debug)]
enum Got {
    Bytes(Vec<u8>),
    /// An error answer: status and S3 code.
    Status(Option<u16>, Option<String>),
    /// A 2xx answer whose body broke off.
    BodyFailed(String),
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, range: Option<&str>) -> Got {
    let mut req = s3.get_object().bucket(bucket).key(key);
    if let Some(r) = range {
        req = req.range(r);
    }
    match req.send().await {
        Ok(out) => match out.body.collect().await {
            Ok(b) => Got::Bytes(b.into_bytes().to_vec()),
            Err(e) => Got::BodyFailed(e.to_string()),
        },
        Err(e) => {
            let (status, code) = error_status(&e);
            Got::Status(status, code)
        }
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: &[u8]) -> Result<(), Got> {
    match s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let (status, code) = error_status(&e);
            Err(Got::Status(status, code))
        }
    }
}

/// `true` for the answer a read or write must get when too few storage nodes are up.
fn is_unavailable(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(503) && matches!(code, Some("ServiceUnavailable") | Some("SlowDown"))
}

/// Range header values and the byte ranges they select, for an object of `len` bytes.
fn ranges(len: usize) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    if len == 0 {
        return out;
    }
    out.push(("bytes=0-0".into(), 0..1));
    let tail = len.min(100);
    out.push((format!("bytes=-{tail}"), len - tail..len));
    out.push((
        format!("bytes={}-{}", len / 3, 2 * len / 3),
        len / 3..2 * len / 3 + 1,
    ));
    if len > 1000 {
        out.push((format!("bytes={}-", len - 1000), len - 1000..len));
    }
    // Across every stripe boundary the object has (1 MiB stripes).
    let mut boundary = MIB;
    while boundary + 10 < len {
        out.push((
            format!("bytes={}-{}", boundary - 10, boundary + 9),
            boundary - 10..boundary + 10,
        ));
        boundary += MIB;
    }
    out
}

/// Reads every object whole and by ranges; panics on anything but the right bytes.
async fn read_all_exactly(s3: &aws_sdk_s3::Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    for (key, data) in objects {
        match get(s3, bucket, key, None).await {
            Got::Bytes(b) => assert!(
                b == *data,
                "{key}: wrong bytes ({} of {})",
                b.len(),
                data.len()
            ),
            other => panic!("{key}: read failed: {other:?}"),
        }
        for (spec, r) in ranges(data.len()) {
            match get(s3, bucket, key, Some(&spec)).await {
                Got::Bytes(b) => assert!(b == data[r.clone()], "{key} {spec}: wrong bytes"),
                other => panic!("{key} {spec}: read failed: {other:?}"),
            }
        }
    }
}

/// The stored blob of a single-part object.
async fn blob_of(t: &TestFleet, bucket: &str, key: &str) -> StoredBlob {
    let rec = t
        .fleet
        .gateway
        .index
        .get_object(bucket, key)
        .await
        .unwrap()
        .expect("object exists");
    match rec.data {
        ObjectData::Single(Blob::Stored(b)) => b,
        other => panic!("{key} is not one stored blob: {other:?}"),
    }
}

/// Every stored blob of an object (one, or one per part), none if inline.
async fn blobs_of(t: &TestFleet, bucket: &str, key: &str) -> Vec<StoredBlob> {
    let rec = t
        .fleet
        .gateway
        .index
        .get_object(bucket, key)
        .await
        .unwrap()
        .expect("object exists");
    rec.data.stored_blobs().into_iter().cloned().collect()
}

/// Path of shard `index` of `blob` on the node the placement names.
fn shard_path(t: &TestFleet, blob: &StoredBlob, index: usize) -> std::path::PathBuf {
    let node = &blob.placement[index].node;
    let dev = t
        .fleet
        .nodes
        .iter()
        .find(|n| n.id == node.as_str())
        .expect("placement names a dev node");
    let hex = blob.object_id.to_hex();
    dev.data_dir
        .join("shards")
        .join(&hex[..2])
        .join(format!("{hex}.{index}"))
}

/// Object id hex → the (node, shard index) pairs of its shard files on every node.
fn shards_on_disk(t: &TestFleet) -> BTreeMap<String, BTreeSet<(String, u8)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, u8)>> = BTreeMap::new();
    for n in &t.fleet.nodes {
        for (id, idx, _) in shard_files(&n.data_dir) {
            out.entry(id).or_default().insert((n.id.clone(), idx));
        }
    }
    out
}

/// Where each shard of `blob` should be: (node, index) for every index.
fn expected_shards(blob: &StoredBlob) -> BTreeSet<(String, u8)> {
    blob.placement
        .iter()
        .enumerate()
        .map(|(i, e)| (e.node.as_str().to_string(), i as u8))
        .collect()
}

/// The index record of an upload in progress.
async fn upload_record(
    t: &TestFleet,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> cairn_gateway::index::records::UploadRecord {
    t.fleet
        .gateway
        .index
        .get_upload(bucket, key, upload_id)
        .await
        .unwrap()
        .expect("upload in progress")
}

/// Waits until the gateway reports `up` storage nodes (its probes and failed requests mark nodes
/// down).
async fn wait_nodes_up(t: &TestFleet, up: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = metric(&t.endpoint(), "cairn_storage_nodes_up").await;
        if now == up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway still sees {now} nodes up, expected {up}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_failures_are_survived_and_a_third_fails_cleanly() {
    tokio::time::timeout(TEST_LIMIT, node_failures())
        .await
        .expect("test finished in time");
}

async fn node_failures() {
    let mut t = TestFleet::start().await;
    let secrets = t.fleet.secrets.clone();
    let s3 = client_no_retry(
        &t.endpoint(),
        &secrets.access_key,
        &secrets.secret_key,
        CALL_LIMIT,
    );
    let bucket = "faults";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let sizes: [(&str, usize); 10] = [
        ("inline/empty", 0),
        ("inline/1k", KIB),
        ("inline/64k", 64 * KIB),
        ("ec/64k+1", 64 * KIB + 1),
        ("ec/300k", 300 * KIB),
        ("ec/300k+3", 300 * KIB + 3),
        ("ec/3m", 3 * MIB),
        ("ec/3m+17", 3 * MIB + 17),
        ("ec/9m", 9 * MIB),
        ("ec/9m-5", 9 * MIB - 5),
    ];
    let objects: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, (k, len))| (k.to_string(), random_bytes(*len, 100 + i as u64)))
        .collect();
    for (k, v) in &objects {
        put(&s3, bucket, k, v).await.unwrap();
    }
    for (k, _) in objects.iter().filter(|(k, _)| k.starts_with("ec/")) {
        let blob = blob_of(&t, bucket, k).await;
        let nodes: BTreeSet<_> = blob.placement.iter().map(|e| e.node.clone()).collect();
        assert_eq!(
            nodes.len(),
            6,
            "{k}: six shards on six nodes when all are up"
        );
    }
    let started = Instant::now();
    read_all_exactly(&s3, bucket, &objects).await;
    let healthy = started.elapsed();

    // m = 2 nodes down, in two zones: everything still reads, exactly.
    t.fleet.nodes[0].stop().await;
    t.fleet.nodes[3].stop().await;
    let started = Instant::now();
    read_all_exactly(&s3, bucket, &objects).await;
    let first_degraded = started.elapsed();
    let started = Instant::now();
    read_all_exactly(&s3, bucket, &objects).await;
    let second_degraded = started.elapsed();
    println!(
        "reading all {} objects and their ranges: healthy {healthy:?}, with 2 nodes down {first_degraded:?} (again: {second_degraded:?})",
        objects.len()
    );
    let started = Instant::now();
    for _ in 0..3 {
        assert!(
            matches!(get(&s3, bucket, "ec/9m", None).await, Got::Bytes(b) if b == objects[8].1)
        );
    }
    println!(
        "9 MiB GET with 2 nodes down: {:?} per read",
        started.elapsed() / 3
    );

    // Writes with 2 nodes down still succeed (4 nodes hold the 6 shards) and read back.
    wait_nodes_up(&t, 4.0).await;
    let written_degraded = random_bytes(3 * MIB + 5, 999);
    put(&s3, bucket, "ec/written-with-2-down", &written_degraded)
        .await
        .expect("a write with 2 of 6 nodes down succeeds");
    let mut readable = objects.clone();
    readable.push(("ec/written-with-2-down".into(), written_degraded.clone()));
    read_all_exactly(&s3, bucket, &readable).await;

    // A third node down: erasure-coded objects written with all nodes up cannot be read (3 of 6
    // shards left), and the answer is a 503, never bytes.
    t.fleet.nodes[4].stop().await;
    let started = Instant::now();
    let mut refused = 0;
    for (key, data) in &objects {
        let inline = key.starts_with("inline/");
        let mut attempts = vec![(None, 0..data.len())];
        attempts.extend(ranges(data.len()).into_iter().map(|(s, r)| (Some(s), r)));
        for (spec, r) in attempts {
            match get(&s3, bucket, key, spec.as_deref()).await {
                Got::Bytes(b) if inline => assert!(b == data[r], "{key} {spec:?}: wrong bytes"),
                Got::Bytes(b) => panic!(
                    "{key} {spec:?}: a read with 3 of 6 shards answered {} bytes (right: {})",
                    b.len(),
                    b == data[r]
                ),
                Got::Status(status, code) => {
                    assert!(
                        !inline,
                        "{key} {spec:?}: inline read failed: {status:?} {code:?}"
                    );
                    assert!(
                        is_unavailable(status, code.as_deref()),
                        "{key} {spec:?}: expected 503, got {status:?} {code:?}"
                    );
                    refused += 1;
                }
                Got::BodyFailed(e) => {
                    // A failure, not wrong data; but the gateway checks the first stripe before
                    // answering, so this only happens for a range starting in a readable stripe.
                    assert!(!inline, "{key} {spec:?}: inline body failed: {e}");
                    refused += 1;
                }
            }
        }
    }
    println!(
        "with 3 nodes down: {refused} erasure-coded reads refused in {:?}",
        started.elapsed()
    );
    assert!(refused > 30);

    // The object written over 4 nodes may or may not be readable now, but never wrongly.
    match get(&s3, bucket, "ec/written-with-2-down", None).await {
        Got::Bytes(b) => assert!(b == written_degraded, "wrong bytes"),
        Got::Status(status, code) => assert!(is_unavailable(status, code.as_deref())),
        Got::BodyFailed(_) => {}
    }

    // Erasure-coded writes fail with 503 and leave nothing visible, whether or not the gateway
    // already knows the nodes are down.
    for (i, len) in [300 * KIB, 3 * MIB, 9 * MIB].into_iter().enumerate() {
        let key = format!("new/{i}");
        let data = random_bytes(len, 7000 + i as u64);
        match put(&s3, bucket, &key, &data).await {
            Ok(()) => panic!("{key}: a {len}-byte write with 3 of 6 nodes down succeeded"),
            Err(Got::Status(status, code)) => assert!(
                is_unavailable(status, code.as_deref()),
                "{key}: expected 503, got {status:?} {code:?}"
            ),
            Err(other) => panic!("{other:?}"),
        }
        let head = s3.head_object().bucket(bucket).key(&key).send().await;
        let (status, _) = error_status(&head.expect_err("no object after a failed write"));
        assert_eq!(status, Some(404), "{key}");
    }
    wait_nodes_up(&t, 3.0).await;
    let data = random_bytes(3 * MIB, 8000);
    match put(&s3, bucket, "new/known-down", &data).await {
        Ok(()) => panic!("a write with 3 of 6 nodes known down succeeded"),
        Err(Got::Status(status, code)) => assert!(
            is_unavailable(status, code.as_deref()),
            "expected 503, got {status:?} {code:?}"
        ),
        Err(other) => panic!("{other:?}"),
    }
    // A failed overwrite keeps the previous object.
    match put(&s3, bucket, "inline/1k", &data).await {
        Ok(()) => panic!("an overwrite with 3 of 6 nodes down succeeded"),
        Err(Got::Status(status, code)) => assert!(is_unavailable(status, code.as_deref())),
        Err(other) => panic!("{other:?}"),
    }
    assert!(
        matches!(get(&s3, bucket, "inline/1k", None).await, Got::Bytes(b) if b == objects[1].1)
    );
    let list = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let keys: Vec<_> = list.contents().iter().filter_map(|o| o.key()).collect();
    let mut expected: Vec<_> = readable.iter().map(|(k, _)| k.as_str()).collect();
    expected.sort();
    assert_eq!(keys, expected, "failed writes left no visible object");
    t.fleet.stop().await;
}

/// Flips `n` bytes of a file at `offset`.
fn flip(path: &std::path::Path, offset: u64, n: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, offset).unwrap();
    for b in &mut buf {
        *b ^= 0xa5;
    }
    f.write_all_at(&buf, offset).unwrap();
    f.sync_all().unwrap();
}

/// (header length, payload length, block length) of shard files of `blob`.
fn shard_layout(blob: &StoredBlob, path: &std::path::Path) -> (u64, u64, u64) {
    let g = Geometry {
        data_shards: blob.profile.data_shards(),
        stripe_size: u64::from(blob.stripe_size),
        object_length: blob.length,
    };
    let payload = g.shard_payload_len();
    let file = std::fs::metadata(path).unwrap().len();
    (file - payload, payload, g.full_block_len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_shards_are_read_around() {
    tokio::time::timeout(TEST_LIMIT, corruption())
        .await
        .expect("test finished in time");
}

async fn corruption() {
    let mut t = TestFleet::start().await;
    let secrets = t.fleet.secrets.clone();
    let s3 = client_no_retry(
        &t.endpoint(),
        &secrets.access_key,
        &secrets.secret_key,
        CALL_LIMIT,
    );
    let bucket = "corrupt";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let a = random_bytes(3 * MIB, 1);
    let b = random_bytes(3 * MIB + 17, 2);
    put(&s3, bucket, "a", &a).await.unwrap();
    put(&s3, bucket, "b", &b).await.unwrap();
    let objects = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
    read_all_exactly(&s3, bucket, &objects).await;
    let endpoint = t.endpoint();
    let degraded_before = metric(&endpoint, "cairn_degraded_reads_total").await;
    let reconstructed_before = metric(&endpoint, "cairn_reconstructions_total").await;
    assert_eq!(
        reconstructed_before, 0.0,
        "a healthy fleet reads without decoding"
    );

    // a: data shard 1, in the middle of its payload (block 1 of 3).
    let blob_a = blob_of(&t, bucket, "a").await;
    let path = shard_path(&t, &blob_a, 1);
    let (header, payload, _) = shard_layout(&blob_a, &path);
    flip(&path, header + payload / 2, 64);
    // b: data shard 0 in block 0 (the stripe checked before the answer), data shard 3 in its last
    // block: each stripe still has five good shards.
    let blob_b = blob_of(&t, bucket, "b").await;
    let path = shard_path(&t, &blob_b, 0);
    let (header, _, _) = shard_layout(&blob_b, &path);
    flip(&path, header + 1000, 16);
    let path = shard_path(&t, &blob_b, 3);
    let (header, payload, _) = shard_layout(&blob_b, &path);
    flip(&path, header + payload - 5, 4);

    let started = Instant::now();
    read_all_exactly(&s3, bucket, &objects).await;
    println!("reads around corrupt shards: {:?}", started.elapsed());
    let degraded_after = metric(&endpoint, "cairn_degraded_reads_total").await;
    let reconstructed_after = metric(&endpoint, "cairn_reconstructions_total").await;
    println!(
        "cairn_degraded_reads_total {degraded_before} -> {degraded_after}, cairn_reconstructions_total {reconstructed_before} -> {reconstructed_after}"
    );
    assert!(degraded_after > degraded_before, "degraded reads counted");
    // Whole reads alone reconstruct stripes 1 and 2 of a and all 3 stripes of b.
    assert!(
        reconstructed_after >= reconstructed_before + 5.0,
        "reconstructions counted"
    );

    // Corruption plus a node down: the holder of b's parity shard 4. b's last stripe then needs
    // data shard 0 again, whose only bad block is block 0: a shard that broke off at one stripe
    // must be usable again for later ones. Still at most two failures per stripe, still exact.
    let holder = blob_b.placement[4].node.as_str().to_string();
    let i = t.fleet.nodes.iter().position(|n| n.id == holder).unwrap();
    t.fleet.nodes[i].stop().await;
    read_all_exactly(&s3, bucket, &objects).await;
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_frees_old_shards_and_keeps_live_ones() {
    tokio::time::timeout(TEST_LIMIT, garbage_collection())
        .await
        .expect("test finished in time");
}

async fn garbage_collection() {
    let t = TestFleet::start().await;
    let secrets = t.fleet.secrets.clone();
    let s3 = client_no_retry(
        &t.endpoint(),
        &secrets.access_key,
        &secrets.secret_key,
        CALL_LIMIT,
    );
    let bucket = "gc-test";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut current: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut freed: Vec<StoredBlob> = Vec::new();
    let mut seed = 0;
    let mut data = |len: usize| {
        seed += 1;
        random_bytes(len, 5000 + seed)
    };

    for (k, len) in [
        ("keep/3m", 3 * MIB),
        ("keep/300k", 300 * KIB),
        ("keep/1k", KIB),
    ] {
        let d = data(len);
        put(&s3, bucket, k, &d).await.unwrap();
        current.insert(k.into(), d);
    }
    // Overwrites: erasure-coded by erasure-coded, erasure-coded by inline.
    for (k, first, second) in [
        ("over/ec", 3 * MIB, 3 * MIB + 5),
        ("over/to-inline", 300 * KIB, KIB),
        ("over/twice", 300 * KIB, 200 * KIB),
    ] {
        put(&s3, bucket, k, &data(first)).await.unwrap();
        let old = blob_of(&t, bucket, k).await;
        assert_eq!(
            shards_on_disk(&t).get(&old.object_id.to_hex()),
            Some(&expected_shards(&old)),
            "{k}: the first version's shards were written"
        );
        freed.push(old);
        let d = data(second);
        put(&s3, bucket, k, &d).await.unwrap();
        current.insert(k.into(), d);
    }
    freed.push(blob_of(&t, bucket, "over/twice").await);
    let d = data(100 * KIB);
    put(&s3, bucket, "over/twice", &d).await.unwrap();
    current.insert("over/twice".into(), d);
    // Deletes: one by DeleteObject, one by DeleteObjects.
    for (k, len) in [("del/one", 300 * KIB), ("del/batch", 3 * MIB)] {
        put(&s3, bucket, k, &data(len)).await.unwrap();
        freed.push(blob_of(&t, bucket, k).await);
    }
    s3.delete_object()
        .bucket(bucket)
        .key("del/one")
        .send()
        .await
        .unwrap();
    s3.delete_objects()
        .bucket(bucket)
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("del/batch")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // A copy is its own blob: deleting the source frees only the source's shards.
    let d = data(2 * MIB);
    put(&s3, bucket, "copy/source", &d).await.unwrap();
    freed.push(blob_of(&t, bucket, "copy/source").await);
    s3.copy_object()
        .bucket(bucket)
        .key("copy/target")
        .copy_source(format!("{bucket}/copy/source"))
        .send()
        .await
        .unwrap();
    current.insert("copy/target".into(), d);
    s3.delete_object()
        .bucket(bucket)
        .key("copy/source")
        .send()
        .await
        .unwrap();
    // Multipart: an aborted upload frees its parts; a completed one frees the parts it leaves out.
    let up = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("mp/aborted")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap().to_string();
    s3.upload_part()
        .bucket(bucket)
        .key("mp/aborted")
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from(data(300 * KIB)))
        .send()
        .await
        .unwrap();
    for p in t
        .fleet
        .gateway
        .index
        .list_parts(
            &upload_record(&t, bucket, "mp/aborted", &upload_id).await,
            0,
            100,
        )
        .await
        .unwrap()
    {
        freed.extend(p.blob.stored().cloned());
    }
    s3.abort_multipart_upload()
        .bucket(bucket)
        .key("mp/aborted")
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
    let up = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key("mp/done")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap().to_string();
    let parts = [data(5 * MIB), data(300 * KIB), data(200 * KIB)];
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key("mp/done")
            .upload_id(&upload_id)
            .part_number(i as i32 + 1)
            .body(ByteStream::from(p.clone()))
            .send()
            .await
            .unwrap();
        etags.push(out.e_tag().unwrap().to_string());
    }
    let part3 = t
        .fleet
        .gateway
        .index
        .list_parts(
            &upload_record(&t, bucket, "mp/done", &upload_id).await,
            2,
            1,
        )
        .await
        .unwrap();
    freed.extend(part3[0].blob.stored().cloned());
    let completed = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            (0..2)
                .map(|i| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(i + 1)
                        .e_tag(&etags[i as usize])
                        .build()
                })
                .collect(),
        ))
        .build();
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key("mp/done")
        .upload_id(&upload_id)
        .multipart_upload(completed)
        .send()
        .await
        .unwrap();
    current.insert("mp/done".into(), [&parts[0][..], &parts[1][..]].concat());

    // The live blobs are exactly those of the current objects.
    let mut live: BTreeMap<String, StoredBlob> = BTreeMap::new();
    for k in current.keys() {
        for b in blobs_of(&t, bucket, k).await {
            live.insert(b.object_id.to_hex(), b);
        }
    }
    let freed_ids: BTreeSet<String> = freed.iter().map(|b| b.object_id.to_hex()).collect();
    assert_eq!(freed_ids.len(), freed.len());
    assert!(freed_ids.iter().all(|id| !live.contains_key(id)));
    let expected: BTreeMap<String, BTreeSet<(String, u8)>> = live
        .iter()
        .map(|(id, b)| (id.clone(), expected_shards(b)))
        .collect();

    // After the GC delay (200 ms, rounds every 200 ms) the disks hold exactly the live shards.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let on_disk = shards_on_disk(&t);
        if on_disk == expected {
            break;
        }
        if Instant::now() > deadline {
            let extra: Vec<_> = on_disk
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !on_disk.contains_key(*k))
                .collect();
            panic!(
                "shard files did not converge to the live set: extra objects {extra:?} (freed: {freed_ids:?}), missing {missing:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} freed blobs collected within {:?} of the last free",
        freed.len(),
        started.elapsed()
    );
    let collected = metric(&t.endpoint(), "cairn_gc_blobs_freed_total").await;
    assert!(collected >= freed.len() as f64, "gc metric: {collected}");
    // More rounds do not touch live shards, and every current object reads back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(shards_on_disk(&t), expected);
    let objects: Vec<(String, Vec<u8>)> = current.into_iter().collect();
    read_all_exactly(&s3, bucket, &objects).await;
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_does_not_hang_requests() {
    tokio::time::timeout(TEST_LIMIT, hung_node())
        .await
        .expect("test finished in time");
}

/// A storage node that accepts connections and never answers (a hung process, a stuck disk): a
/// write under way when it hangs finishes without it, and once the gateway has marked it down,
/// reads and writes no longer wait for it.
async fn hung_node() {
    let mut t = TestFleet::start().await;
    let secrets = t.fleet.secrets.clone();
    let s3 = client_no_retry(
        &t.endpoint(),
        &secrets.access_key,
        &secrets.secret_key,
        Duration::from_secs(150),
    );
    let bucket = "hung";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, len) in [KIB, 300 * KIB, 3 * MIB, 3 * MIB + 1, 5 * MIB + 3, 9 * MIB]
        .into_iter()
        .enumerate()
    {
        let key = format!("obj/{i}");
        let data = random_bytes(len, 300 + i as u64);
        put(&s3, bucket, &key, &data).await.unwrap();
        objects.push((key, data));
    }
    // Node 2 hangs: its port accepts and holds connections, reads nothing, answers nothing.
    t.fleet.nodes[2].stop().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", t.fleet.nodes[2].port))
        .await
        .unwrap();
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    // Writes placed on the hung node before the gateway knows: acknowledged without its shard,
    // whether the hung node's socket buffers fill up (3 MiB: 768 KiB shards) or take the whole
    // shard and the writer waits for an answer that never comes (300 KiB: 75 KiB shards).
    let writes = [("during-hang/3m", 3 * MIB), ("during-hang/300k", 300 * KIB)].map(|(k, len)| {
        let data = random_bytes(len, 400 + len as u64);
        let s3 = s3.clone();
        async move {
            let started = Instant::now();
            let r = put(&s3, bucket, k, &data).await;
            (k, data, r, started.elapsed())
        }
    });
    for (key, data, r, took) in futures_util::future::join_all(writes).await {
        println!("PUT {key} with a shard on the hung node: {took:?}, {r:?}");
        r.unwrap_or_else(|e| panic!("{key}: a write with one hung node failed: {e:?}"));
        assert!(
            took < Duration::from_secs(60),
            "{key}: the write waited {took:?}"
        );
        objects.push((key.to_string(), data));
    }

    // Once the probes mark it down, nothing waits for it.
    wait_nodes_up(&t, 5.0).await;
    let started = Instant::now();
    for (key, data) in &objects {
        let one = Instant::now();
        match get(&s3, bucket, key, None).await {
            Got::Bytes(b) => assert!(b == *data, "{key}: wrong bytes"),
            other => panic!("{key}: {other:?}"),
        }
        assert!(
            one.elapsed() < Duration::from_secs(5),
            "{key}: a read waited {:?} for a node known to be down",
            one.elapsed()
        );
    }
    println!(
        "{} reads with a hung node known down: {:?}",
        objects.len(),
        started.elapsed()
    );
    let started = Instant::now();
    put(&s3, bucket, "after-hang", &random_bytes(3 * MIB, 401))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    // The garbage collector keeps working: blobs freed one after the other lose their shards on
    // the healthy nodes (the hung node's shard waits for it to come back).
    let hung_id = t.fleet.nodes[2].id.clone();
    for key in ["obj/1", "obj/2"] {
        let blob = blob_of(&t, bucket, key).await;
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let id = blob.object_id.to_hex();
        let started = Instant::now();
        loop {
            let left: BTreeSet<(String, u8)> = shards_on_disk(&t)
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .filter(|(node, _)| *node != hung_id)
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{key}: shards on healthy nodes not collected: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("{key}: freed shards collected in {:?}", started.elapsed());
    }
    hung.abort();
    t.fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_leaves_nothing_and_marks_no_node_down() {
    tokio::time::timeout(TEST_LIMIT, abandoned_upload())
        .await
        .expect("test finished in time");
}

/// A client that goes away in the middle of a PUT: no object, its shards are collected, and the
/// storage nodes (which did nothing wrong) stay up for everyone else's writes.
async fn abandoned_upload() {
    use tokio::io::AsyncWriteExt;
    let t = TestFleet::start().await;
    let secrets = t.fleet.secrets.clone();
    let s3 = client_no_retry(
        &t.endpoint(),
        &secrets.access_key,
        &secrets.secret_key,
        CALL_LIMIT,
    );
    let bucket = "abandoned";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    // A presigned PUT (unsigned payload) announcing 3 MiB, of which 1 MiB is sent.
    let presigned = s3
        .put_object()
        .bucket(bucket)
        .key("cut-short")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap(),
        )
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let mut head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
        uri.path_and_query().unwrap(),
        uri.authority().unwrap(),
        3 * MIB
    );
    for (name, value) in presigned.headers() {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut socket = tokio::net::TcpStream::connect(uri.authority().unwrap().as_str())
        .await
        .unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&random_bytes(MIB, 9)).await.unwrap();
    socket.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);

    // The nodes stay up (the probes would only bring them back after up to 2 s).
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let up = metric(&t.endpoint(), "cairn_storage_nodes_up").await;
        assert_eq!(up, 6.0, "an abandoned upload marked storage nodes down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let head = s3
        .head_object()
        .bucket(bucket)
        .key("cut-short")
        .send()
        .await;
    assert_eq!(error_status(&head.expect_err("no object")).0, Some(404));
    let data = random_bytes(3 * MIB, 10);
    put(&s3, bucket, "after", &data).await.unwrap();
    // The abandoned blob's shards are collected; only the new object's remain.
    let live = blob_of(&t, bucket, "after").await;
    let expected = BTreeMap::from([(live.object_id.to_hex(), expected_shards(&live))]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while shards_on_disk(&t) != expected {
        assert!(
            Instant::now() < deadline,
            "shards of the abandoned upload left: {:?}",
            shards_on_disk(&t).keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(get(&s3, bucket, "after", None).await, Got::Bytes(b) if b == data));
    t.fleet.stop().await;
}

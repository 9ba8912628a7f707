//! The attacks of the trust-boundary issue, against a real fleet of processes (two gateways
//! sharing a replicated index, six storage nodes), each refused (docs/security.md):
//! internal APIs without the fleet credential, a forged shard, a scoped key reaching another
//! bucket through a copy, an anonymous form upload, half-sent requests, signature edge cases,
//! secrets in clear on disk, metrics on the public port, and a spray of unknown access keys.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use cairn_e2e::fleet::FleetFile;
use cairn_storage_node::client::NodeClient;
use cairn_storage_node::ids::{ObjectId, ShardIndex};
use cairn_transport::{FleetClient, Secret};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn base_port() -> u16 {
    24_000 + (std::process::id() % 100) as u16 * 20
}

fn fleet_client(f: &FleetFile) -> FleetClient {
    FleetClient::with_secret(&Secret::new("fleet", &f.fleet_secret, 32).unwrap())
}

async fn admin(
    f: &FleetFile,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", f.gateways[0].admin))
        .bearer_auth(&f.admin_token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
}

/// The value of the first metric line starting with `prefix` on gateway `g`'s admin port.
async fn metric(f: &FleetFile, g: usize, prefix: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", f.gateways[g].admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn s3_addr(f: &FleetFile) -> String {
    f.gateways[0].s3.trim_start_matches("http://").to_string()
}

/// Sends raw bytes to `addr` (as many as it takes before answering) and reads what comes back
/// within `wait` (empty if nothing).
async fn raw(addr: &str, request: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for chunk in request.chunks(64 << 10) {
        if s.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

fn python(script: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs (scripts/setup.sh installs boto3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_attacks_of_the_trust_boundary_issue_are_refused() {
    let Some(bin_dir) = fleet_binaries("security") else {
        return;
    };
    let mut dir = FleetDir::new();
    let args = ["--header-timeout=2s", "--stall-timeout=5s"]
        .map(String::from)
        .to_vec();
    let f = fleet_of(&dir, bin_dir, 2, base_port(), args);
    let s3 = client(&f.gateways[0].s3, &f);
    leader(&f, &[0, 1]).await;
    let http = reqwest::Client::new();

    // --- Internal APIs: only the fleet credential opens them, once, for the right gateway.
    let read_index = format!("{}/internal/v1/index/read-index", f.gateways[0].admin);
    let r = http.post(&read_index).json(&()).send().await.unwrap();
    assert_eq!(r.status(), 401, "unsigned internal call");
    let r = http
        .post(&read_index)
        .bearer_auth(&f.admin_token)
        .json(&())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the admin token opens /internal/v1");
    let fleet = fleet_client(&f);
    let ok = fleet
        .send("1", fleet.http().post(&read_index).json(&()))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the fleet credential opens it");
    let r = fleet
        .send("2", fleet.http().post(&read_index).json(&()))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a request for gateway 2 sent to gateway 1");
    // A captured request sent again.
    let captured = fleet.http().post(&read_index).json(&()).build().unwrap();
    let mut headers = captured.headers().clone();
    fleet.signer().sign(
        captured.method(),
        captured.url().path(),
        None,
        "1",
        Some(cairn_transport::signing::sha256(b"null")),
        &mut headers,
    );
    let first = http
        .post(&read_index)
        .headers(headers.clone())
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let replay = http
        .post(&read_index)
        .headers(headers)
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401, "a replayed internal request");
    // The fleet credential does not open the admin API.
    let buckets = format!("{}/admin/v1/buckets", f.gateways[0].admin);
    let r = fleet.send("1", fleet.http().get(&buckets)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        metric(
            &f,
            0,
            "cairn_internal_auth_rejected_total{reason=\"missing\"}"
        )
        .await
            >= 2.0
    );
    assert!(
        metric(
            &f,
            0,
            "cairn_internal_auth_rejected_total{reason=\"replayed\"}"
        )
        .await
            >= 1.0
    );

    // --- The admin API: the operator signs with the admin token; a signature by another
    // token, or one sent again, is refused.
    let admin_signer =
        cairn_transport::Signer::new(&Secret::new("admin", &f.admin_token, 32).unwrap());
    let signed_get = |signer: &cairn_transport::Signer| {
        let mut h = reqwest::header::HeaderMap::new();
        let url = reqwest::Url::parse(&buckets).unwrap();
        signer.sign(
            &reqwest::Method::GET,
            url.path(),
            None,
            "admin",
            Some(cairn_transport::signing::sha256(b"")),
            &mut h,
        );
        h
    };
    let h = signed_get(&admin_signer);
    let r = http.get(&buckets).headers(h.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200, "a request signed with the admin token");
    let r = http.get(&buckets).headers(h).send().await.unwrap();
    assert_eq!(r.status(), 401, "the same signed admin request again");
    let wrong = cairn_transport::Signer::new(&Secret::new("x", &"w".repeat(48), 32).unwrap());
    let r = http
        .get(&buckets)
        .headers(signed_get(&wrong))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "signed with another token");

    // --- A storage node answers nobody without the fleet credential.
    let node = &f.nodes[0];
    let r = http
        .get(format!("{}/v1/shards", node.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // --- A forged shard: the gateway returns the bytes written, never the forgery.
    s3.create_bucket().bucket("forged").send().await.unwrap();
    let original: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket("forged")
        .key("doc")
        .body(ByteStream::from(original.clone()))
        .send()
        .await
        .unwrap();
    let nodes: Vec<NodeClient> = f
        .nodes
        .iter()
        .map(|n| NodeClient::new(fleet.clone(), n.id.parse().unwrap(), n.endpoint.clone()))
        .collect();
    let mut shards: Vec<(usize, ObjectId, ShardIndex)> = Vec::new();
    for (i, c) in nodes.iter().enumerate() {
        for k in c.list_shards(None, 1000).await.unwrap().shards {
            shards.push((i, k.object_id, k.shard_index));
        }
    }
    assert_eq!(shards.len(), 6, "one blob of RS(4,2): {shards:?}");
    let forge = |n: usize| {
        let (i, object, index) = shards
            .iter()
            .find(|s| s.2.0 as usize == n)
            .copied()
            .unwrap();
        let c = nodes[i].clone();
        async move {
            let spec = c.head_shard(object, index).await.unwrap().unwrap();
            let len = spec.geometry().shard_payload_len() as usize;
            // Well-formed (the node computes fresh checksums for it), but wrong.
            c.put_shard(&spec, vec![0x5a; len].into()).await.unwrap();
        }
    };
    forge(1).await;
    let before = metric(&f, 0, "cairn_integrity_failures_total").await;
    // Read with a plain HTTP client: the SDK checks a response's checksum itself, and what is
    // tested here is what the gateway sends.
    let url = s3
        .get_object()
        .bucket("forged")
        .key("doc")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(600)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_string();
    let got = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(
        got.as_ref() == original.as_slice(),
        "the forged shard's bytes were served"
    );
    assert!(metric(&f, 0, "cairn_integrity_failures_total").await > before);
    assert!(metric(&f, 0, "cairn_degraded_reads_total").await >= 1.0);
    // Three forged shards of six: no four honest ones are left; the read fails, never lies.
    forge(0).await;
    forge(4).await;
    let read = http.get(&url).send().await.unwrap();
    let status = read.status();
    if status.is_success()
        && let Ok(bytes) = read.bytes().await
    {
        panic!("served {} bytes of a stripe nobody wrote", bytes.len());
    }

    // --- A bucket-scoped key copies only from its own buckets.
    for b in ["tenant-a", "tenant-b"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    s3.put_object()
        .bucket("tenant-b")
        .key("secret.txt")
        .body(ByteStream::from_static(b"b's secret"))
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("tenant-a")
        .key("mine.txt")
        .body(ByteStream::from_static(b"a's own"))
        .send()
        .await
        .unwrap();
    let key = admin(
        &f,
        reqwest::Method::POST,
        "/admin/v1/keys",
        serde_json::json!({"name": "tenant-a", "buckets": ["tenant-a"]}),
    )
    .await;
    assert_eq!(key.status(), 201);
    let key: serde_json::Value = key.json().await.unwrap();
    let scoped = {
        let mut scoped = f.clone();
        scoped.access_key = key["access_key_id"].as_str().unwrap().into();
        scoped.secret_key = key["secret_key"].as_str().unwrap().into();
        client(&f.gateways[0].s3, &scoped)
    };
    let copy = scoped
        .copy_object()
        .bucket("tenant-a")
        .key("stolen.txt")
        .copy_source("tenant-b/secret.txt")
        .send()
        .await;
    let e = copy.expect_err("CopyObject from another tenant's bucket");
    assert_eq!(e.into_service_error().meta().code(), Some("AccessDenied"));
    let upload = scoped
        .create_multipart_upload()
        .bucket("tenant-a")
        .key("stolen-parts")
        .send()
        .await
        .unwrap();
    let part = scoped
        .upload_part_copy()
        .bucket("tenant-a")
        .key("stolen-parts")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .copy_source("/tenant-b/secret.txt")
        .send()
        .await;
    let e = part.expect_err("UploadPartCopy from another tenant's bucket");
    assert_eq!(e.into_service_error().meta().code(), Some("AccessDenied"));
    scoped
        .copy_object()
        .bucket("tenant-a")
        .key("copy.txt")
        .copy_source("tenant-a/mine.txt")
        .send()
        .await
        .expect("a copy inside its own bucket works");

    // --- An anonymous 2 GiB form upload is refused before its body is read.
    let pid = f.gateways[0].pid;
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let rss_before = rss();
    let head = format!(
        "POST /tenant-a HTTP/1.1\r\nhost: {}\r\ncontent-type: multipart/form-data; boundary=x\r\ncontent-length: 2147483648\r\n\r\n",
        s3_addr(&f)
    );
    let mut request = head.into_bytes();
    request.extend(vec![b'x'; 8 << 20]);
    let answer = raw(&s3_addr(&f), &request, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer:?}");
    assert!(answer.contains("NotImplemented"), "{answer}");
    let grew = rss().saturating_sub(rss_before);
    assert!(
        grew < 64 << 20,
        "the gateway grew {grew} bytes on a refused upload"
    );

    // --- Half-sent requests are closed after the header timeout; others are served meanwhile.
    let mut half_open = Vec::new();
    for addr in [
        s3_addr(&f),
        f.gateways[0]
            .admin
            .trim_start_matches("http://")
            .to_string(),
    ] {
        for _ in 0..150 {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            half_open.push(s);
        }
    }
    s3.put_object()
        .bucket("tenant-a")
        .key("during-slowloris")
        .body(ByteStream::from_static(b"still served"))
        .send()
        .await
        .expect("served while 300 connections hang");
    let started = Instant::now();
    for mut s in half_open {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "a half-sent request was still open after {:?}",
            started.elapsed()
        );
    }

    // --- Signature edge cases: presigned URLs live a week at most; SigV2 is refused.
    let (endpoint, ak, sk) = (&f.gateways[0].s3, &f.access_key, &f.secret_key);
    let ten_years = python(&format!(
        "import boto3; from botocore.config import Config; \
         c = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{ak}', \
         aws_secret_access_key='{sk}', region_name='us-east-1', \
         config=Config(signature_version='s3v4', s3={{'addressing_style': 'path'}})); \
         print(c.generate_presigned_url('get_object', Params={{'Bucket': 'tenant-a', 'Key': 'mine.txt'}}, ExpiresIn=315360000))"
    ));
    let r = http.get(&ten_years).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("AuthorizationQueryParametersError")
    );
    let week = ten_years.replace("X-Amz-Expires=315360000", "X-Amz-Expires=604800");
    assert_ne!(http.get(&week).send().await.unwrap().status(), 400);
    let v2 = python(&format!(
        "import base64, hmac, hashlib; d = 'Mon, 01 Jan 2001 00:00:00 GMT'; \
         s = base64.b64encode(hmac.new(b'{sk}', ('GET\\n\\n\\n' + d + '\\n/tenant-a/mine.txt').encode(), hashlib.sha1).digest()).decode(); \
         print(d + '|AWS {ak}:' + s)"
    ));
    let (date, auth) = v2.split_once('|').unwrap();
    let r = http
        .get(format!("{endpoint}/tenant-a/mine.txt"))
        .header("date", date)
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a SigV2 request dated 2001");
    assert!(r.text().await.unwrap().contains("InvalidRequest"));

    // --- Secrets are not in clear in the index (RocksDB files, Raft log), the ids are.
    s3.put_bucket_versioning()
        .bucket("tenant-a")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let replication_secret = "ReplicaSecretKeyThatMustNotLeak0123456789";
    let r = admin(
        &f,
        reqwest::Method::PUT,
        "/admin/v1/buckets/tenant-a/replication",
        serde_json::json!({"Role": "", "Rules": [{"ID": "r", "Status": "Enabled", "Priority": 1,
            "Filter": {"Prefix": ""}, "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": "arn:aws:s3:::elsewhere", "Endpoint": "http://127.0.0.1:1",
                "Credentials": {"AccessKeyId": "REPLICAKEYID", "SecretAccessKey": replication_secret}}}]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut haystack = Vec::new();
    for g in &f.gateways {
        for entry in walk(&g.data_dir) {
            haystack.extend(std::fs::read(entry).unwrap_or_default());
        }
    }
    let contains = |needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        contains(key["access_key_id"].as_str().unwrap()),
        "the index files were read"
    );
    assert!(contains("REPLICAKEYID"));
    assert!(
        !contains(key["secret_key"].as_str().unwrap()),
        "an access-key secret in clear"
    );
    assert!(
        !contains(replication_secret),
        "a replication secret in clear"
    );

    // --- The public port does not serve metrics (they name buckets); the admin port does.
    let r = http
        .get(format!("{}/metrics", f.gateways[0].s3))
        .send()
        .await
        .unwrap();
    assert!(!r.text().await.unwrap().contains("cairn_s3_requests_total"));
    assert!(metric(&f, 0, "cairn_s3_requests_total").await > 0.0);

    // --- A spray of unknown access keys reads the index at most 50 times a second.
    let reads_before = metric(&f, 1, "cairn_s3_key_lookups_total{result=\"read\"}").await;
    let sprayed = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (f, endpoint) = (f.clone(), f.gateways[1].s3.clone());
        tasks.spawn(async move {
            let mut refused = 0;
            for i in (worker..300).step_by(16) {
                let mut stranger = f.clone();
                stranger.access_key = format!("AKSPRAY{i:013}");
                let r = client(&endpoint, &stranger)
                    .head_bucket()
                    .bucket("tenant-a")
                    .send()
                    .await;
                refused += usize::from(r.is_err());
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r.unwrap();
    }
    assert_eq!(refused, 300);
    let reads = metric(&f, 1, "cairn_s3_key_lookups_total{result=\"read\"}").await - reads_before;
    let allowed = 50.0 * (1.0 + sprayed.elapsed().as_secs_f64());
    assert!(reads <= allowed, "{reads} index reads for 300 unknown keys");
    assert!(metric(&f, 1, "cairn_s3_key_lookups_total{result=\"throttled\"}").await > 0.0);

    dir.down();
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

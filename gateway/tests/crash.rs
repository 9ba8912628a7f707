//! Crash consistency of the real binary: `cairn-gateway dev` (six storage nodes and the gateway in
//! one process) is killed with SIGKILL while several clients write, then restarted on the same
//! directory. Every acknowledged PUT must read back exactly; every listed object must be one whose
//! PUT was attempted, complete, with the ETag of what was sent; no temporary shard file may be
//! left; and the shards of the uploads the crash cut short must be collected.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_gateway::s3::checksums::hex;
use common::*;
use s3s::crypto::{Checksum, Md5};
use tokio::sync::Mutex;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const WRITERS: usize = 4;
/// Each writer stops after this many PUTs (or on its first error).
const PUTS_PER_WRITER: usize = 100;
/// The crash comes after this many acknowledged PUTs.
const ACKED_BEFORE_CRASH: usize = 40;
/// Intents (shards of uploads that never commit) are due this long after the upload began.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a writer sent for a key: enough to regenerate the body.
#[derive(Debug, Clone, Copy)]
struct Sent {
    len: usize,
    seed: u64,
}

impl Sent {
    fn body(&self) -> Vec<u8> {
        random_bytes(self.len, self.seed)
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex(Md5::checksum(data).as_ref())
}

/// One run of `cairn-gateway dev` on `data`, its log in `log`.
struct Fleet {
    child: Child,
    endpoint: String,
}

fn spawn(data: &Path, base: u16, log: &Path) -> Fleet {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-gateway"))
        .arg("dev")
        .arg("--data")
        .arg(data)
        .args(["--node-base-port", &base.to_string()])
        .args(["--listen", &format!("127.0.0.1:{}", base + 6)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", base + 7)])
        .args(["--gc-delay", "1s", "--gc-interval", "500ms"])
        .args([
            "--upload-timeout",
            &format!("{}s", UPLOAD_TIMEOUT.as_secs()),
        ])
        .args(["--scrub-interval", "24h"])
        // The test reads the garbage collector's metrics on the S3 port.
        .arg("--public-metrics")
        .env("RUST_LOG", "warn")
        .env_remove("CAIRN_ROOT_ACCESS_KEY")
        .env_remove("CAIRN_ROOT_SECRET_KEY")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cairn-gateway starts");
    Fleet {
        child,
        endpoint: format!("http://127.0.0.1:{}", base + 6),
    }
}

impl Fleet {
    /// Waits until the S3 port accepts connections.
    async fn wait_ready(&mut self, log: &Path) {
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "cairn-gateway exited with {status} before listening:\n{}",
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

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn credentials(data: &Path) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    (
        v["access_key"].as_str().unwrap().to_string(),
        v["secret_key"].as_str().unwrap().to_string(),
    )
}

fn node_dirs(data: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// Shard files on every node, as object id hex → count.
fn shard_objects(data: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in node_dirs(data) {
        for (id, _, _) in shard_files(&d) {
            *out.entry(id).or_default() += 1;
        }
    }
    out
}

#[derive(Default)]
struct Log {
    /// Every key a PUT was sent for.
    attempted: BTreeMap<String, Sent>,
    /// Keys whose PUT was acknowledged.
    acked: BTreeSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_kill_9() {
    tokio::time::timeout(Duration::from_secs(300), crash())
        .await
        .expect("test finished in time");
}

async fn crash() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let base = free_ports(8);
    let log1 = tmp.path().join("run1.log");
    let mut fleet = spawn(&data, base, &log1);
    fleet.wait_ready(&log1).await;
    let (ak, sk) = credentials(&data);
    let endpoint = fleet.endpoint.clone();
    let s3 = client_no_retry(&endpoint, &ak, &sk, Duration::from_secs(30));
    s3.create_bucket().bucket("crash").send().await.unwrap();

    let log = Arc::new(Mutex::new(Log::default()));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (s3, log, acked) = (s3.clone(), log.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..PUTS_PER_WRITER {
                let key = format!("w{w}/{i:03}");
                let sent = Sent {
                    len: (100 * KIB + rand::random::<u64>() % (2 * MIB - 100 * KIB + 1)) as usize,
                    seed: rand::random(),
                };
                log.lock().await.attempted.insert(key.clone(), sent);
                let r = s3
                    .put_object()
                    .bucket("crash")
                    .key(&key)
                    .body(ByteStream::from(sent.body()))
                    .send()
                    .await;
                match r {
                    Ok(out) => {
                        let etag = out
                            .e_tag()
                            .unwrap_or_default()
                            .trim_matches('"')
                            .to_string();
                        assert_eq!(
                            etag,
                            md5_hex(&sent.body()),
                            "{key}: PUT answered a wrong ETag"
                        );
                        log.lock().await.acked.insert(key);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => return i,
                }
            }
            PUTS_PER_WRITER
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < ACKED_BEFORE_CRASH {
        assert!(
            Instant::now() < deadline,
            "too few PUTs acknowledged in 2 minutes"
        );
        assert!(
            !writers.iter().all(|w| w.is_finished()),
            "every writer stopped before the crash"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Kill while shards are being written (a temporary shard file exists), so the crash cuts
    // uploads short mid-body; give up waiting for that after 3 s.
    let dirs = node_dirs(&data);
    let writing = || {
        dirs.iter()
            .any(|d| std::fs::read_dir(d.join("tmp")).is_ok_and(|mut r| r.next().is_some()))
    };
    let wait_until = Instant::now() + Duration::from_secs(3);
    while !writing() && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_micros(200));
    }
    fleet.kill();
    let killed_at = Instant::now();
    for w in writers {
        w.await.expect("writer task");
    }
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner();
    println!(
        "killed after {} acknowledged PUTs ({} attempted)",
        log.acked.len(),
        log.attempted.len()
    );
    // Before the restart: what the crash left in the shard directories.
    let tmp_files: usize = node_dirs(&data)
        .iter()
        .map(|d| {
            std::fs::read_dir(d.join("tmp"))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum();
    println!("temporary shard files left by the crash: {tmp_files}");

    let log2 = tmp.path().join("run2.log");
    let mut fleet = spawn(&data, base, &log2);
    fleet.wait_ready(&log2).await;
    println!("restarted in {:?} after the kill", killed_at.elapsed());
    let s3 = client_no_retry(&fleet.endpoint, &ak, &sk, Duration::from_secs(30));

    // No temporary files after the restart.
    for d in node_dirs(&data) {
        let left: Vec<_> = std::fs::read_dir(d.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "temporary files after restart: {left:?}");
    }

    // Every listed object was attempted, is complete and has the ETag of what was sent.
    let mut listed = BTreeMap::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("crash")
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            listed.insert(
                o.key().unwrap().to_string(),
                (
                    o.size().unwrap_or(-1),
                    o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                ),
            );
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    for (key, (size, etag)) in &listed {
        let sent = log
            .attempted
            .get(key)
            .unwrap_or_else(|| panic!("{key} is listed but was never written"));
        let body = sent.body();
        assert_eq!(*size, body.len() as i64, "{key}: listed size");
        assert_eq!(*etag, md5_hex(&body), "{key}: listed ETag");
        let got = s3.get_object().bucket("crash").key(key).send().await;
        let got = got.unwrap_or_else(|e| panic!("{key}: listed but GET fails: {e:?}"));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes[..] == body[..],
            "{key}: wrong bytes after the restart"
        );
    }
    // Every acknowledged object is there (and so was checked above).
    for key in &log.acked {
        assert!(listed.contains_key(key), "acknowledged {key} is lost");
    }
    let in_flight = listed.len() - log.acked.len();
    println!(
        "after restart: {} objects listed = {} acknowledged + {in_flight} committed but not acknowledged before the kill",
        listed.len(),
        log.acked.len()
    );

    // Each interrupted upload left an intent in the garbage queue (the gauge is set by every
    // collector round, one per 500 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = metric(&fleet.endpoint, "cairn_gc_queue").await as usize;
    let interrupted = log.attempted.len() - listed.len();
    println!("garbage records after the restart: {queued} ({interrupted} uploads interrupted)");
    assert!(
        queued <= interrupted,
        "more garbage than interrupted uploads"
    );

    // The fleet works after the restart.
    let body = random_bytes(300 * KIB as usize, 42);
    s3.put_object()
        .bucket("crash")
        .key("after-restart")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("crash")
        .key("after-restart")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes()[..] == body[..]);

    // The shards of uploads the crash interrupted are garbage once their intent is due. Every
    // object here is erasure-coded (100 KiB and up; the inline threshold is 64 KiB) and reads back,
    // so the disks hold each listed object's blob; once they hold exactly that many blobs, six
    // shards each, nothing else is left.
    listed.insert("after-restart".into(), (body.len() as i64, md5_hex(&body)));
    let at_restart = shard_objects(&data);
    println!(
        "blobs on disk after the restart: {} for {} objects",
        at_restart.len(),
        listed.len()
    );
    let started = Instant::now();
    let deadline = started + UPLOAD_TIMEOUT + Duration::from_secs(30);
    loop {
        let on_disk = shard_objects(&data);
        let partial: Vec<_> = on_disk.iter().filter(|(_, n)| **n != 6).collect();
        if on_disk.len() == listed.len() && partial.is_empty() {
            break;
        }
        assert!(
            on_disk.len() >= listed.len(),
            "fewer blobs on disk ({}) than objects ({})",
            on_disk.len(),
            listed.len()
        );
        assert!(
            Instant::now() < deadline,
            "shards of interrupted uploads never collected: {} blobs for {} objects, partial: {partial:?}",
            on_disk.len(),
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The queue drains once the intents are due.
    loop {
        if metric(&fleet.endpoint, "cairn_gc_queue").await == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the garbage queue never drained");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let freed = metric(&fleet.endpoint, "cairn_gc_blobs_freed_total").await as usize;
    assert_eq!(freed, queued, "every intent collected");
    println!(
        "interrupted uploads collected {:?} after the restart",
        started.elapsed()
    );
    // ... and the collector took nothing live.
    for (key, (_, etag)) in &listed {
        let got = s3
            .get_object()
            .bucket("crash")
            .key(key)
            .send()
            .await
            .unwrap();
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert_eq!(md5_hex(&bytes), *etag, "{key} after garbage collection");
    }
    fleet.kill();
}

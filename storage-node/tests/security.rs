//! Attacks on storage nodes, against real node processes (docs/security.md): unsigned, forged,
//! misdirected and replayed requests; shard headers pointing repair at addresses outside the
//! fleet; a peer that never answers; stalled uploads and readers that never read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn_storage_node::ids::ShardIndex;
use cairn_transport::signing::sha256;
use cairn_transport::{Secret, Signer};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fleet_secret() -> Secret {
    Secret::new("fleet", FLEET_SECRET, 32).unwrap()
}

/// A request to `node` signed by `signer` for `target`, as raw headers.
fn signed(
    signer: &Signer,
    method: reqwest::Method,
    url: &str,
    target: &str,
    body: &[u8],
) -> reqwest::header::HeaderMap {
    let parsed = reqwest::Url::parse(url).unwrap();
    let mut h = reqwest::header::HeaderMap::new();
    signer.sign(
        &method,
        parsed.path(),
        parsed.query(),
        target,
        Some(sha256(body)),
        &mut h,
    );
    h
}

/// `GET /v1/status` of the node at `base`, signed by `signer` for `target`; also the headers
/// sent (to replay them).
async fn get_status(
    http: &reqwest::Client,
    base: &str,
    signer: &Signer,
    target: &str,
) -> (reqwest::Response, reqwest::header::HeaderMap) {
    let url = format!("{base}/v1/status");
    let h = signed(signer, reqwest::Method::GET, &url, target, b"");
    let resp = http.get(&url).headers(h.clone()).send().await.unwrap();
    (resp, h)
}

async fn metric(node: &NodeProcess, name_and_labels: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", node.endpoint()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_refuses_unsigned_forged_misdirected_and_replayed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("node-a1", "a", &dir.path().join("a1"), &[]);
    node.wait_ready().await;
    let http = reqwest::Client::new();
    let base = node.endpoint();
    let shard_url = format!("{base}/v1/shards/{}/0", object_id(1));

    // Unsigned: listing, reading, overwriting, deleting shards, scrubbing, status: all 401.
    let unsigned = [
        http.get(format!("{base}/v1/shards")),
        http.get(&shard_url),
        http.head(&shard_url),
        http.put(&shard_url).body(vec![0u8; 10]),
        http.delete(&shard_url),
        http.post(format!("{base}/v1/scrub")),
        http.get(format!("{base}/v1/status")),
        http.put(format!("{base}/v1/peers")).body("{\"nodes\":[]}"),
    ];
    for req in unsigned {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{:?}", resp.url());
    }
    // Health and metrics stay open (probes and Prometheus carry no credential).
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Signed with another secret: 401.
    let stranger = Signer::new(&Secret::new("x", &"x".repeat(32), 32).unwrap());
    let (resp, _) = get_status(&http, &base, &stranger, "node-a1").await;
    assert_eq!(resp.status(), 401);

    // Signed by the fleet but for another node: 403.
    let fleet = Signer::new(&fleet_secret());
    let (resp, _) = get_status(&http, &base, &fleet, "node-b1").await;
    assert_eq!(resp.status(), 403);

    // A signed request whose path was changed after signing: 401.
    let h = signed(&fleet, reqwest::Method::DELETE, &shard_url, "node-a1", b"");
    let other = format!("{base}/v1/shards/{}/1", object_id(1));
    let resp = http.delete(&other).headers(h).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // A valid signed request works once; the same request captured and sent again is refused.
    let (first, h) = get_status(&http, &base, &fleet, "node-a1").await;
    assert_eq!(first.status(), 200);
    let replay = http
        .get(format!("{base}/v1/status"))
        .headers(h)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert!(replay.text().await.unwrap().contains("replay"));

    // A body that does not match its signed hash: 401.
    let h = signed(
        &fleet,
        reqwest::Method::PUT,
        &format!("{base}/v1/peers"),
        "node-a1",
        b"{\"nodes\":[]}",
    );
    let resp = http
        .put(format!("{base}/v1/peers"))
        .headers(h)
        .body("{\"nodes\":[{\"node\":\"evil\",\"endpoint\":\"http://10.0.0.66:1\"}]}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        node.client().status().await.is_ok(),
        "the fleet's own client works"
    );

    for reason in [
        "missing",
        "unknown_key",
        "wrong_target",
        "bad_signature",
        "replayed",
        "payload_mismatch",
    ] {
        let n = metric(
            &node,
            &format!("cairn_node_auth_rejected_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert!(n >= 1.0, "no refusal counted as {reason}");
    }
}

/// A TCP listener that counts connections and never answers.
async fn silent_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, count)
}

async fn scrub_once(
    node: &NodeProcess,
    within: Duration,
) -> cairn_storage_node::scrubber::PassStats {
    let c = node.client();
    let before = c.scrub_status().await.unwrap().passes_completed;
    assert!(c.start_scrub().await.unwrap());
    let deadline = Instant::now() + within;
    loop {
        let s = c.scrub_status().await.unwrap();
        if !s.running() && s.passes_completed > before {
            return s.last.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "scrub of {} did not finish in {within:?}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_dials_only_registered_peers_and_gives_up_on_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--repair-grace",
        "0s",
        "--scrub-interval",
        "1h",
        "--peer-timeout",
        "1s",
    ];
    let nodes: Vec<NodeProcess> = ["node-a1", "node-b1", "node-c1"]
        .iter()
        .map(|id| NodeProcess::start(id, &id[5..6], &dir.path().join(id), &args))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    introduce(&nodes).await;
    let (trap, dialled) = silent_listener().await;

    // An RS(2,1) object on the three nodes whose shard headers name the right node ids but
    // endpoints an attacker chose. Shard 1 is missing: node-a1's scrub rebuilds it on node-b1.
    let forged_placement: Vec<(String, String)> =
        nodes.iter().map(|n| (n.id.clone(), trap.clone())).collect();
    let obj = encode_object(
        object_id(7),
        random_bytes(100_000, 7),
        2,
        1,
        32 * 1024,
        &forged_placement,
    );
    for i in [0usize, 2] {
        nodes[i]
            .client()
            .put_shard(&obj.specs[i], reqwest::Body::from(obj.payloads[i].clone()))
            .await
            .unwrap();
    }
    let stats = scrub_once(&nodes[0], Duration::from_secs(30)).await;
    assert_eq!(stats.repaired, 1, "{stats:?}");
    let rebuilt = nodes[1]
        .client()
        .get_shard_bytes(obj.specs[1].object_id, ShardIndex(1), None)
        .await
        .unwrap();
    assert_eq!(rebuilt, obj.payloads[1]);
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "repair dialled an address from a shard header"
    );

    // A shard naming a node the fleet does not know is not repaired from or onto it.
    let stranger = vec![
        ("node-a1".to_string(), nodes[0].endpoint()),
        ("evil".to_string(), trap.clone()),
        ("node-c1".to_string(), nodes[2].endpoint()),
    ];
    let obj = encode_object(
        object_id(8),
        random_bytes(70_000, 8),
        2,
        1,
        32 * 1024,
        &stranger,
    );
    nodes[0]
        .client()
        .put_shard(&obj.specs[0], reqwest::Body::from(obj.payloads[0].clone()))
        .await
        .unwrap();
    scrub_once(&nodes[0], Duration::from_secs(30)).await;
    assert_eq!(dialled.load(Ordering::SeqCst), 0);

    // A registered peer that accepts connections and never answers: the scrub still finishes.
    let mut peers = cairn_storage_node::api::Peers {
        nodes: nodes
            .iter()
            .map(|n| cairn_storage_node::format::PlacementEntry {
                node: n.id.parse().unwrap(),
                endpoint: n.endpoint(),
            })
            .collect(),
    };
    peers.nodes[1].endpoint = trap.clone();
    nodes[0].client().put_peers(&peers).await.unwrap();
    let obj = encode_object(
        object_id(9),
        random_bytes(70_000, 9),
        2,
        1,
        32 * 1024,
        &forged_placement,
    );
    nodes[0]
        .client()
        .put_shard(&obj.specs[0], reqwest::Body::from(obj.payloads[0].clone()))
        .await
        .unwrap();
    let started = Instant::now();
    scrub_once(&nodes[0], Duration::from_secs(60)).await;
    assert!(
        dialled.load(Ordering::SeqCst) >= 1,
        "the registered (silent) peer was asked"
    );
    eprintln!(
        "scrub with a silent peer finished in {:?}",
        started.elapsed()
    );
}

/// The request head of a signed shard PUT of `len` bytes.
fn put_head(
    signer: &Signer,
    node: &NodeProcess,
    spec: &cairn_storage_node::format::ShardSpec,
) -> String {
    let path = format!("/v1/shards/{}/{}", spec.object_id, spec.shard_index);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "x-cairn-k",
        spec.profile.data_shards().to_string().parse().unwrap(),
    );
    h.insert(
        "x-cairn-m",
        spec.profile.parity_shards().to_string().parse().unwrap(),
    );
    h.insert(
        "x-cairn-stripe-size",
        spec.stripe_size.to_string().parse().unwrap(),
    );
    h.insert(
        "x-cairn-object-length",
        spec.object_length.to_string().parse().unwrap(),
    );
    h.insert(
        "x-cairn-placement",
        cairn_storage_node::api::placement_header(&spec.placement)
            .parse()
            .unwrap(),
    );
    signer.sign(&reqwest::Method::PUT, &path, None, &node.id, None, &mut h);
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
        node.endpoint().trim_start_matches("http://"),
        spec.geometry().shard_payload_len()
    );
    for (k, v) in &h {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    head.push_str("\r\n");
    head
}

/// Writes 20 shards of 300 KB and reads each back, byte-exact, within `within`.
async fn still_serves(node: &NodeProcess, place: &[(String, String)], within: Duration) {
    let c = node.client();
    let served = async {
        for i in 0..20u64 {
            let obj = encode_object(
                object_id(5000 + i),
                random_bytes(300_000, i),
                2,
                1,
                64 * 1024,
                place,
            );
            c.put_shard(&obj.specs[0], reqwest::Body::from(obj.payloads[0].clone()))
                .await
                .unwrap();
            let back = c
                .get_shard_bytes(obj.specs[0].object_id, ShardIndex(0), None)
                .await
                .unwrap();
            assert_eq!(back, obj.payloads[0]);
        }
    };
    tokio::time::timeout(within, served)
        .await
        .expect("the node stopped serving while clients stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_fail_after_the_stall_timeout_and_hold_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("node-a1", "a", dir.path(), &["--stall-timeout", "3s"]);
    node.wait_ready().await;
    let fleet = Signer::new(&fleet_secret());
    let place = vec![("node-a1".to_string(), node.endpoint())];
    let addr = node.endpoint().trim_start_matches("http://").to_string();
    // 300 uploads that send their head and a few bytes, then nothing (each used to hold a
    // blocking thread reading its socket).
    let mut stalled = Vec::new();
    for i in 0..300u64 {
        let obj = encode_object(
            object_id(1000 + i),
            random_bytes(200_000, i),
            2,
            1,
            64 * 1024,
            &place,
        );
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(put_head(&fleet, &node, &obj.specs[0]).as_bytes())
            .await
            .unwrap();
        s.write_all(&obj.payloads[0][..100]).await.unwrap();
        stalled.push(s);
    }
    still_serves(&node, &place, Duration::from_secs(60)).await;
    // Each stalled upload is answered 408 after the stall timeout; none is stored.
    let mut timed_out = 0;
    for mut s in stalled {
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
            Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).contains(" 408 ") => timed_out += 1,
            Ok(_) => timed_out += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        timed_out, 300,
        "stalled uploads still held after their timeout"
    );
    let listed = node.client().list_shards(None, 10_000).await.unwrap();
    assert_eq!(
        listed.shards.len(),
        20,
        "only the complete shards are stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_hold_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    // The default stall timeout (60 s): what is tested here is that a reader holds no thread
    // while it stalls, not that the stall ends it.
    let node = NodeProcess::start("node-a1", "a", dir.path(), &[]);
    node.wait_ready().await;
    let fleet = Signer::new(&fleet_secret());
    let place = vec![("node-a1".to_string(), node.endpoint())];
    let addr = node.endpoint().trim_start_matches("http://").to_string();
    // A shard of 8 MiB in 64 KiB blocks.
    let big = encode_object(
        object_id(20),
        random_bytes(16 << 20, 20),
        2,
        1,
        128 * 1024,
        &place,
    );
    node.client()
        .put_shard(&big.specs[0], reqwest::Body::from(big.payloads[0].clone()))
        .await
        .unwrap();
    // 700 reads of it whose clients never read a byte of the answer (with a small receive
    // window, so the answer cannot sit in socket buffers): more than the 512 blocking threads
    // a node has, each of which such a reader used to park until its client read.
    let mut unread = Vec::new();
    let path = format!("/v1/shards/{}/0", big.specs[0].object_id);
    for _ in 0..700 {
        let mut h = reqwest::header::HeaderMap::new();
        fleet.sign(
            &reqwest::Method::GET,
            &path,
            None,
            &node.id,
            Some(sha256(b"")),
            &mut h,
        );
        let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (k, v) in &h {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        head.push_str("\r\n");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        unread.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Served well before the stall timeout would free anything.
    still_serves(&node, &place, Duration::from_secs(30)).await;
    drop(unread);
}

//! The storage-node HTTP API against a real process: happy paths, paging, and every kind of bad input.

mod common;

use cairn_storage_node::ids::ShardIndex;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_api_round_trips_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("node-a1", "a", dir.path(), &[]);
    node.wait_ready().await;
    let c = node.client();
    let nodes = vec![("node-a1".to_string(), node.endpoint())];
    let obj = encode_object(
        object_id(1),
        random_bytes(700_000, 1),
        4,
        2,
        256 * 1024,
        &nodes,
    );

    for (spec, payload) in obj.specs.iter().zip(&obj.payloads) {
        let reply = c.put_shard(spec, payload.clone().into()).await.unwrap();
        assert_eq!(reply.bytes, payload.len() as u64);
    }
    let id = obj.specs[0].object_id;
    // Whole shards and ranges (within a block, across blocks, to the end) come back byte-exact.
    for i in 0..6u8 {
        let p = &obj.payloads[i as usize];
        assert_eq!(
            &c.get_shard_bytes(id, ShardIndex(i), None).await.unwrap(),
            p
        );
        for (a, b) in [(0u64, 1u64), (65_000, 70_000), (1000, p.len() as u64)] {
            let got = c
                .get_shard_bytes(id, ShardIndex(i), Some((a, b)))
                .await
                .unwrap();
            assert_eq!(got, p[a as usize..b as usize]);
        }
    }
    assert_eq!(
        c.head_shard(id, ShardIndex(3)).await.unwrap().unwrap(),
        obj.specs[3]
    );
    // Any 4 of the 6 shards rebuild the object.
    let shards: Vec<Option<Vec<u8>>> = (0..6)
        .map(|i| (i != 1 && i != 4).then(|| obj.payloads[i].clone()))
        .collect();
    assert_eq!(decode_object(&obj.specs[0], &shards), obj.data);

    // Paged listing sees each shard exactly once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = c.list_shards(after.as_ref(), 4).await.unwrap();
        seen.extend(page.shards.iter().map(|k| k.shard_index.0));
        after = page.shards.last().cloned();
        if page.next.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);

    // Bad input (signed with the fleet credential): 4xx with a JSON error code, never a panic.
    let fleet = fleet_client();
    let http = fleet.http().clone();
    let base = node.endpoint();
    let cases = [
        (
            http.get(format!("{base}/v1/shards/not-hex/0")),
            400,
            "InvalidObjectId",
        ),
        (
            http.get(format!("{base}/v1/shards/{id}/999")),
            400,
            "InvalidShardIndex",
        ),
        (
            http.get(format!("{base}/v1/shards/{}/0", object_id(99))),
            404,
            "NoSuchShard",
        ),
        (
            http.get(format!("{base}/v1/shards/{id}/0"))
                .header("range", "bytes=99999999-"),
            416,
            "InvalidRange",
        ),
        (
            http.put(format!("{base}/v1/shards/{id}/0")).body("x"),
            400,
            "InvalidRequest",
        ),
        (
            http.get(format!("{base}/v1/shards?limit=0")),
            400,
            "InvalidRequest",
        ),
        (
            http.get(format!("{base}/v1/shards?after=zz")),
            400,
            "InvalidRequest",
        ),
    ];
    for (req, status, code) in cases {
        let resp = fleet.send(&node.id, req).await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Index out of range for the profile, and bodies of the wrong length.
    let mut bad = obj.specs[0].clone();
    bad.shard_index = ShardIndex(6);
    let err = c.put_shard(&bad, vec![0u8; 10].into()).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidShardSpec"));
    let mut other = obj.specs[0].clone();
    other.object_id = object_id(2);
    let short = reqwest::Body::from(obj.payloads[0][..100].to_vec());
    assert!(c.put_shard(&other, short).await.is_err());
    assert!(
        c.head_shard(other.object_id, ShardIndex(0))
            .await
            .unwrap()
            .is_none()
    );
    let request = http
        .put(format!("{base}/v1/shards/{}/0", other.object_id))
        .header("x-cairn-k", "0")
        .header("x-cairn-m", "2");
    let resp = fleet.send(&node.id, request).await.unwrap();
    assert_eq!(resp.status(), 400);

    // Delete, then it is gone.
    assert!(c.delete_shard(id, ShardIndex(5)).await.unwrap());
    assert!(!c.delete_shard(id, ShardIndex(5)).await.unwrap());
    assert!(c.head_shard(id, ShardIndex(5)).await.unwrap().is_none());

    // A corrupt block on disk: the read fails instead of returning the bad bytes; the intact
    // range before it is still served.
    let path = node.shard_path(id, 2);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(c.get_shard_bytes(id, ShardIndex(2), None).await.is_err());
    assert_eq!(
        c.get_shard_bytes(id, ShardIndex(2), Some((0, 1000)))
            .await
            .unwrap(),
        obj.payloads[2][..1000]
    );

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "cairn_shards_written_total 6",
        "cairn_corrupt_reads_total",
        "cairn_disk_free_bytes",
        "cairn_node_http_requests_total",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
}

//! kill -9 a node in the middle of many shard writes: after restart every acknowledged shard is
//! intact and no partial shard is visible.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_storage_node::ids::{ObjectId, ShardIndex};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start("node-a1", "a", dir.path(), &[]);
    node.wait_ready().await;
    let nodes = vec![("node-a1".to_string(), node.endpoint())];

    // Every shard we attempted, by object id: its payload. Acknowledged ones separately.
    let sent: Arc<Mutex<HashMap<ObjectId, Vec<u8>>>> = Default::default();
    let acked: Arc<Mutex<Vec<ObjectId>>> = Default::default();
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (c, sent, acked, nodes) = (node.client(), sent.clone(), acked.clone(), nodes.clone());
        writers.push(tokio::spawn(async move {
            // Bounded: at most 400 writes per writer; the kill ends it much sooner.
            for i in 0..400u64 {
                let seed = w * 1000 + i + 1;
                let len = 1000 + (seed * 7919 % 900_000) as usize;
                let obj = encode_object(
                    object_id(seed),
                    random_bytes(len, seed),
                    2,
                    1,
                    128 * 1024,
                    &nodes,
                );
                let (spec, payload) = (&obj.specs[0], obj.payloads[0].clone());
                sent.lock().unwrap().insert(spec.object_id, payload.clone());
                match c.put_shard(spec, payload.into()).await {
                    Ok(_) => acked.lock().unwrap().push(spec.object_id),
                    Err(_) => return, // the node died under us
                }
            }
        }));
    }
    // Let a good number of writes land, then pull the plug while others are in flight.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    node.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "too few writes acknowledged before the kill: {}",
        acked.len()
    );
    assert!(
        sent.len() > acked.len(),
        "no write was in flight at the kill"
    );

    node.restart().await;
    let c = node.client();
    for id in &acked {
        let got = c
            .get_shard_bytes(*id, ShardIndex(0), None)
            .await
            .expect("acknowledged shard lost");
        assert_eq!(&got, &sent[id], "acknowledged shard {id} differs");
    }
    // Whatever is listed is complete and correct, acknowledged or not.
    let listed = c.list_shards(None, 10_000).await.unwrap().shards;
    assert!(listed.len() >= acked.len());
    for k in &listed {
        let expected = sent
            .get(&k.object_id)
            .expect("listed shard that was never sent");
        let got = c
            .get_shard_bytes(k.object_id, k.shard_index, None)
            .await
            .expect("listed shard unreadable");
        assert_eq!(
            &got, expected,
            "partial or wrong shard {} visible",
            k.object_id
        );
    }
    let tmp_left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "temporary files survived the restart");
    eprintln!(
        "acknowledged {}, attempted {}, visible after restart {}",
        acked.len(),
        sent.len(),
        listed.len()
    );
}

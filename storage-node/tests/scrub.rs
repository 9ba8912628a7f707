//! Scrubbing and peer repair across six real node processes in three zones: corrupt blocks and a
//! deleted shard are rebuilt byte-exactly; with more than m shards of a stripe damaged, the scrub
//! reports the shard unrepairable and changes nothing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_storage_node::ids::{ObjectId, ShardIndex};
use cairn_storage_node::scrubber::{PassStats, ScrubStatus};
use common::*;

const SCRUB_ARGS: &[&str] = &["--repair-grace", "0s", "--scrub-interval", "1h"];

/// Flips one byte in the middle of block `block` of a shard file.
fn corrupt_block(path: &PathBuf, header_len: u64, block_offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (header_len + block_offset + 100) as usize;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

async fn scrub_everywhere(nodes: &[NodeProcess]) -> Vec<ScrubStatus> {
    for n in nodes {
        assert!(n.client().start_scrub().await.unwrap(), "{} was busy", n.id);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = Vec::new();
    for n in nodes {
        loop {
            let s = n.client().scrub_status().await.unwrap();
            if !s.running() && s.passes_completed >= 1 {
                done.push(s);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "scrub on {} did not finish",
                n.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    done
}

fn total(statuses: &[ScrubStatus], f: impl Fn(&PassStats) -> u64) -> u64 {
    statuses.iter().map(|s| f(s.last.as_ref().unwrap())).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_repairs_what_it_can_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for (i, zone) in ["a", "a", "b", "b", "c", "c"].iter().enumerate() {
        let id = format!("node-{zone}{}", i % 2 + 1);
        nodes.push(NodeProcess::start(
            &id,
            zone,
            &dir.path().join(&id),
            SCRUB_ARGS,
        ));
    }
    for n in &nodes {
        n.wait_ready().await;
    }
    introduce(&nodes).await;
    let placement: Vec<(String, String)> =
        nodes.iter().map(|n| (n.id.clone(), n.endpoint())).collect();

    // Two RS(4,2) objects of five 64 KiB stripes each; shard i on node i.
    let objects: Vec<EncodedObject> = (1..=2)
        .map(|seed| {
            encode_object(
                object_id(seed),
                random_bytes(300 * 1024, seed),
                4,
                2,
                64 * 1024,
                &placement,
            )
        })
        .collect();
    for obj in &objects {
        for (i, (spec, payload)) in obj.specs.iter().zip(&obj.payloads).enumerate() {
            nodes[i]
                .client()
                .put_shard(spec, payload.clone().into())
                .await
                .unwrap();
        }
    }
    let (a, b) = (&objects[0], &objects[1]);
    let (a_id, b_id) = (a.specs[0].object_id, b.specs[0].object_id);
    let files = |id: ObjectId| -> Vec<PathBuf> {
        (0..6).map(|i| nodes[i].shard_path(id, i as u8)).collect()
    };
    let header_len = a.specs[0].header_len();
    let g = a.specs[0].geometry();
    let originals: Vec<Vec<u8>> = files(a_id)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();

    // Object A, repairable: stripe 0 loses shards 0 and 5, stripe 2 loses shards 1 and 5.
    corrupt_block(&files(a_id)[0], header_len, g.block_offset(0));
    corrupt_block(&files(a_id)[1], header_len, g.block_offset(2));
    std::fs::remove_file(&files(a_id)[5]).unwrap();
    // Object B, beyond repair: stripe 1 loses shards 0, 1 and 2 (m + 1 = 3).
    corrupt_block(&files(b_id)[0], header_len, g.block_offset(1));
    corrupt_block(&files(b_id)[1], header_len, g.block_offset(1));
    std::fs::remove_file(&files(b_id)[2]).unwrap();
    let damaged_b: HashMap<usize, Vec<u8>> = files(b_id)
        .iter()
        .enumerate()
        .filter_map(|(i, p)| std::fs::read(p).ok().map(|bytes| (i, bytes)))
        .collect();
    assert_eq!(damaged_b.len(), 5);

    let statuses = scrub_everywhere(&nodes).await;

    // A: every shard file is byte-identical to the original again, and the object decodes.
    for (i, path) in files(a_id).iter().enumerate() {
        let now = std::fs::read(path).unwrap_or_default();
        assert!(now == originals[i], "shard {i} of A differs after repair");
    }
    let mut shards = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let bytes = n
            .client()
            .get_shard_bytes(a_id, ShardIndex(i as u8), None)
            .await
            .unwrap();
        shards.push(Some(bytes));
    }
    assert_eq!(decode_object(&a.specs[0], &shards), a.data);

    // B: nothing changed, nothing was created.
    for (i, path) in files(b_id).iter().enumerate() {
        match damaged_b.get(&i) {
            Some(before) => assert!(
                &std::fs::read(path).unwrap() == before,
                "shard {i} of B changed"
            ),
            None => assert!(!path.exists(), "missing shard {i} of B was recreated"),
        }
    }

    // The counters say exactly what happened: 4 bad blocks in 4 own shards; A.0 and A.1 rebuilt
    // by their holders, A.5 by its predecessor; B.0, B.1 (own) and B.2 (by node 1) unrepairable.
    assert_eq!(total(&statuses, |p| p.corrupt_blocks), 4);
    assert_eq!(total(&statuses, |p| p.corrupt_shards), 4);
    assert_eq!(total(&statuses, |p| p.broken_peer_shards), 2);
    assert_eq!(total(&statuses, |p| p.repaired), 3);
    assert_eq!(total(&statuses, |p| p.unrepairable), 3);
    assert_eq!(total(&statuses, |p| p.shards_checked), 12 - 2);
    let mut repaired_metric = 0;
    for n in &nodes {
        let text = reqwest::get(format!("{}/metrics", n.endpoint()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        repaired_metric += metric(&text, "cairn_scrub_shards_repaired_total");
        assert!(metric(&text, "cairn_scrub_last_pass_completed_timestamp_seconds") > 0);
    }
    assert_eq!(repaired_metric, 3);

    // The pass's result survives a restart.
    let before = nodes[4].client().scrub_status().await.unwrap();
    nodes[4].restart().await;
    assert_eq!(nodes[4].client().scrub_status().await.unwrap(), before);
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("metric {name} missing")) as u64
}

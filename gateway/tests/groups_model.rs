//! Random put / delete / list / split / merge sequences against a replicated index (one gateway
//! forming its own Raft groups over RocksDB), checked against a `BTreeMap` model: every split of
//! the map splits a Raft group at the same key and every merge merges the two groups, so groups
//! and partitions stay one to one; the groups' ranges always cover the index exactly once, and
//! lists through the groups return exactly the model's keys, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::index::keys::{self, KEY_LAYOUT};
use cairn_gateway::index::records::BucketRecord;
use cairn_gateway::index::schema::{IndexSchema, Routes};
use cairn_gateway::index::{Deleted, Index, IndexOptions, Stamp, WriteCondition};
use cairn_gateway::metrics::GatewayMetrics;
use cairn_kv::KeyRanges;
use cairn_kv::RocksEngine;
use cairn_raft::{Consensus, ConsensusConfig};
use proptest::prelude::*;

mod common;
use common::{index_keys as list, inline_record as record};

#[derive(Debug, Clone)]
enum Op {
    Put(String, u8),
    Delete(String),
    List {
        prefix: String,
        page: usize,
    },
    /// Split the partition holding this key there.
    Split(String),
    /// Merge the `n`th object partition (modulo their count) with its right neighbour.
    Merge(usize),
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(vec!["a", "b", "/", "ü"]), 1..5)
        .prop_map(|p| p.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => (prop::sample::select(vec!["", "a", "b/"]), 1usize..5)
            .prop_map(|(p, page)| Op::List { prefix: p.to_string(), page }),
        2 => key().prop_map(Op::Split),
        1 => (0usize..6).prop_map(Op::Merge),
    ]
}

/// A gateway that is the only member of its replicated index, over `dir`.
async fn replicated(dir: &std::path::Path) -> (Index, Arc<Consensus>) {
    let engine = Arc::new(RocksEngine::open(&dir.join("index"), KEY_LAYOUT).unwrap());
    let cfg = ConsensusConfig {
        id: 1,
        peers: BTreeMap::from([(1, "http://127.0.0.1:9".to_string())]),
        snapshot_every: 1000,
        zone: "a".into(),
        replicas: 1,
        replica_grace: Duration::from_secs(60),
    };
    let metrics = Arc::new(GatewayMetrics::new());
    let consensus = Consensus::start(
        cfg,
        engine.clone(),
        cairn_transport::FleetClient::with_secret(
            &cairn_transport::Secret::new("fleet", &"f".repeat(32), 32).unwrap(),
        ),
        Arc::new(IndexSchema),
        metrics.raft.clone(),
    )
    .await
    .unwrap();
    let index = Index::replicated(engine, consensus.clone(), IndexOptions::default());
    (index, consensus)
}

/// The groups' ranges (once a new group has started) cover every key exactly once; every partition of the map starts a group
/// (the meta partition aside), so the partitions' groups are where the splits put them; every
/// model key is in the engine, in the group owning its route.
async fn check_groups(consensus: &Consensus, idx: &Index, model: &BTreeMap<String, u8>) {
    // The group a split creates starts a moment after the split is applied.
    let covered = |groups: &[(u64, KeyRanges)]| {
        let all = groups
            .iter()
            .fold(KeyRanges::new(Vec::new()), |u, (_, r)| u.union(r));
        all == KeyRanges::everything()
    };
    for _ in 0..500 {
        if covered(&consensus.host().directory()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let groups = consensus.host().directory();
    let mut union = KeyRanges::new(Vec::new());
    for (id, ranges) in &groups {
        assert!(!union.overlaps(ranges), "group {id} overlaps another");
        union = union.union(ranges);
    }
    assert_eq!(union, KeyRanges::everything(), "the groups cover the index");
    let map = idx.partition_map();
    for p in map.partitions.iter().filter(|p| !p.is_meta()) {
        let owner = consensus.host().owner_of(&p.start).unwrap();
        let starts = groups
            .iter()
            .find(|(g, _)| *g == owner)
            .and_then(|(_, r)| r.object_routes())
            .map(|(start, _)| start);
        assert_eq!(
            starts.as_deref(),
            Some(p.start.as_slice()),
            "partition {} has a group starting where it starts",
            p.id
        );
    }
    // And every data group serves a partition of its own: groups merge when partitions do.
    let starts: Vec<&[u8]> = map.partitions.iter().map(|p| p.start.as_slice()).collect();
    for (id, ranges) in &groups {
        if let Some((start, _)) = ranges.object_routes()
            && *id != consensus.group()
        {
            assert!(
                starts.contains(&start.as_slice()),
                "group {id} (from {}) serves no partition of its own: {:?}",
                keys::readable(&start),
                map.partitions
                    .iter()
                    .map(|p| keys::readable(&p.start))
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                consensus.host().frozen_of(*id),
                None,
                "group {id} stays frozen"
            );
        }
    }
    for k in model.keys() {
        assert!(consensus.host().owner_of(&keys::object("b", k)).is_some());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn splits_through_raft_groups_keep_every_key_once_and_in_order(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (idx, consensus) = replicated(dir.path()).await;
            idx.create_bucket(BucketRecord::new("b", "o", 0)).await.unwrap();
            // A neighbouring bucket whose keys must never show up.
            idx.create_bucket(BucketRecord::new("b-x", "o", 0)).await.unwrap();
            idx.put_object("b-x", "a", record(0), WriteCondition::None, vec![], Stamp::now())
                .await
                .unwrap();
            // The first tick hands the object keys to a group of their own.
            idx.rebalance_once().await.unwrap();
            let mut model: BTreeMap<String, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let w = idx
                            .put_object("b", &k, record(v), WriteCondition::None, vec![], Stamp::now())
                            .await
                            .unwrap();
                        let before = model.insert(k, v).map(|v| format!("{v:02x}"));
                        assert_eq!(w.previous.map(|r| r.etag), before);
                    }
                    Op::Delete(k) => {
                        let d = idx.delete_object("b", &k, WriteCondition::None, Stamp::now()).await.unwrap();
                        let Deleted::Removed(old) = d else { panic!("a marker in an unversioned bucket") };
                        assert_eq!(old.is_some(), model.remove(&k).is_some());
                    }
                    Op::List { prefix, page } => {
                        let want: Vec<String> =
                            model.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
                        assert_eq!(list(&idx, &prefix, page).await, want, "prefix {prefix:?} page {page}");
                    }
                    Op::Split(k) => {
                        let at = keys::object("b", &k);
                        let p = idx.partition_map().lookup(&at).clone();
                        let done = idx.split_partition(p.id, at.clone()).await;
                        assert_eq!(done.is_ok(), at != p.start, "{done:?}");
                        check_groups(&consensus, &idx, &model).await;
                    }
                    Op::Merge(n) => {
                        let map = idx.partition_map();
                        let objects: Vec<_> = map.partitions.iter().filter(|p| !p.is_meta()).collect();
                        let left = objects[n % objects.len()];
                        let done = idx.merge_partitions(left.id).await;
                        assert_eq!(done.is_ok(), left.end.is_some(), "{done:?}");
                        // The groups follow (one merge per tick).
                        for _ in 0..4 {
                            idx.rebalance_once().await.unwrap();
                        }
                        check_groups(&consensus, &idx, &model).await;
                    }
                }
            }
            check_groups(&consensus, &idx, &model).await;
            let want: Vec<String> = model.keys().cloned().collect();
            assert_eq!(list(&idx, "", 1000).await, want);
            assert_eq!(list(&idx.clone(), "", 3).await, want);
            consensus.shutdown().await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}

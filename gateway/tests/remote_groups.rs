//! A gateway serves keys owned by an index group it runs no replica of: three gateways in one
//! process (each its own RocksDB, Raft groups and index, their internal routes served on
//! loopback), one of which stops its replica of a data group. Everything through that gateway
//! (reads, conditional writes, deletes and lists crossing from its own group into the remote
//! one) must behave as through the others, and guarded writes racing through two gateways must
//! still conflict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::index::keys::{self, KEY_LAYOUT};
use cairn_gateway::index::records::BucketRecord;
use cairn_gateway::index::schema::IndexSchema;
use cairn_gateway::index::{Deleted, Index, IndexError, IndexOptions, Stamp, WriteCondition};
use cairn_gateway::metrics::GatewayMetrics;
use cairn_kv::RocksEngine;
use cairn_raft::layout;
use cairn_raft::store::GroupId;
use cairn_raft::{Consensus, ConsensusConfig, rpc};

mod common;
use common::{index_keys, inline_record as record, stored_blob};

struct Gateway {
    engine: Arc<RocksEngine>,
    index: Index,
    consensus: Arc<Consensus>,
    metrics: Arc<GatewayMetrics>,
}

/// Three gateways forming one replicated index, their internal routes served on loopback.
async fn three_gateways(dir: &std::path::Path) -> Vec<Gateway> {
    three_gateways_with(dir, IndexOptions::default()).await
}

/// As [`three_gateways`], each index with `options`.
async fn three_gateways_with(dir: &std::path::Path, options: IndexOptions) -> Vec<Gateway> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, format!("http://{}", l.local_addr().unwrap()));
        listeners.push(l);
    }
    let mut out = Vec::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        let engine = Arc::new(RocksEngine::open(&dir.join(format!("g{id}")), KEY_LAYOUT).unwrap());
        let cfg = ConsensusConfig {
            id,
            peers: peers.clone(),
            snapshot_every: 1000,
            zone: ["a", "b", "c"][id as usize - 1].into(),
            replicas: 3,
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
        let routes: axum::Router = rpc::router(consensus.clone());
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let index = Index::replicated(engine.clone(), consensus.clone(), options.clone());
        out.push(Gateway {
            engine,
            index,
            consensus,
            metrics,
        });
    }
    out
}

/// Waits for a meta leader, creates bucket "b" through it, gives the object keys a group of
/// their own and waits until every gateway runs it. Returns the meta leader's place in `gws`
/// and the data group.
async fn one_data_group(gws: &[Gateway]) -> (usize, GroupId) {
    until("a meta leader is elected", async || {
        gws.iter().all(|g| g.consensus.leader().is_some())
    })
    .await;
    let meta = gws.iter().position(|g| g.consensus.is_leader()).unwrap();
    let lead = &gws[meta].index;
    lead.create_bucket(BucketRecord::new("b", "o", 0))
        .await
        .unwrap();
    lead.rebalance_once().await.unwrap();
    let first = keys::object("b", "");
    let data = lead.partition_map().lookup(&first).id.0;
    until("every gateway runs the data group", async || {
        gws.iter()
            .all(|g| g.consensus.host().owner_of(&first) == Some(data))
    })
    .await;
    (meta, data)
}

/// As [`one_data_group`], then splits the data group at "b/m" and waits until every gateway
/// runs both data groups. Returns the meta leader's place in `gws` and the left and right
/// data groups.
async fn two_data_groups(gws: &[Gateway]) -> (usize, GroupId, GroupId) {
    let (meta, _) = one_data_group(gws).await;
    let lead = &gws[meta].index;
    let at = keys::object("b", "m");
    let p = lead.partition_map().lookup(&at).clone();
    lead.split_partition(p.id, at.clone()).await.unwrap();
    let right = lead.partition_map().lookup(&at).id.0;
    let left = lead.partition_map().lookup(&keys::object("b", "a")).id.0;
    until("every gateway runs both data groups", async || {
        gws.iter()
            .all(|g| g.consensus.host().owner_of(&at) == Some(right))
    })
    .await;
    (meta, left, right)
}

/// Waits until a gateway leads `group`; returns its place in `gws`.
async fn group_leader(gws: &[Gateway], group: GroupId) -> usize {
    let mut lead = None;
    until("the group has a leader", async || {
        lead = gws.iter().position(|g| g.consensus.is_leader_of(group));
        lead.is_some()
    })
    .await;
    lead.unwrap()
}

/// Waits until `check` holds (polling for up to 20 s).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_serves_keys_of_a_group_it_does_not_run_through_the_groups_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (_, _, right) = two_data_groups(&gws).await;
    let at = keys::object("b", "m");
    for k in ["a", "l", "m", "z"] {
        gws[0]
            .index
            .put_object(
                "b",
                k,
                record(1),
                WriteCondition::None,
                vec![],
                Stamp::now(),
            )
            .await
            .unwrap();
    }

    // Gateway 3 stops its replica of the right group: keys from "m" on are remote there.
    let far = &gws[2];
    far.consensus.host().stop(right).await;
    assert_eq!(far.consensus.host().owner_of(&at), None);

    // Reads.
    let got = far.index.get_object("b", "z").await.unwrap().expect("z");
    assert_eq!(got.etag, "01");
    assert!(far.index.get_object("b", "y").await.unwrap().is_none());
    assert!(far.metrics.raft.remote_reads.get() > 0, "read remotely");
    // Writes, unconditional and conditional, seen at once through another gateway.
    far.index
        .put_object(
            "b",
            "q",
            record(2),
            WriteCondition::None,
            vec![],
            Stamp::now(),
        )
        .await
        .unwrap();
    let q = gws[0].index.get_object("b", "q").await.unwrap().expect("q");
    assert_eq!(q.etag, "02");
    let refused = far
        .index
        .put_object(
            "b",
            "z",
            record(3),
            WriteCondition::IfAbsent,
            vec![],
            Stamp::now(),
        )
        .await;
    assert!(
        matches!(refused, Err(IndexError::PreconditionFailed)),
        "{refused:?}"
    );
    far.index
        .put_object(
            "b",
            "z",
            record(4),
            WriteCondition::IfEtag("01".into()),
            vec![],
            Stamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        gws[1]
            .index
            .get_object("b", "z")
            .await
            .unwrap()
            .unwrap()
            .etag,
        "04"
    );
    let deleted = far
        .index
        .delete_object("b", "m", WriteCondition::None, Stamp::now())
        .await
        .unwrap();
    assert!(matches!(deleted, Deleted::Removed(Some(_))), "{deleted:?}");
    assert!(gws[1].index.get_object("b", "m").await.unwrap().is_none());

    // Lists cross from the local group into the remote one, in any page size.
    let want = vec!["a", "l", "q", "z"];
    for page in [1, 2, 1000] {
        assert_eq!(index_keys(&far.index, "", page).await, want, "page {page}");
        assert_eq!(
            index_keys(&gws[0].index, "", page).await,
            want,
            "page {page}"
        );
    }

    // Guarded writes racing through a gateway running the group and one that does not: exactly
    // one of each pair commits.
    for round in 0..8 {
        let key = format!("race-{round}");
        let near = gws[0].index.clone();
        let remote = far.index.clone();
        let (k1, k2) = (key.clone(), key.clone());
        let a = tokio::spawn(async move {
            near.put_object(
                "b",
                &k1,
                record(5),
                WriteCondition::IfAbsent,
                vec![],
                Stamp::now(),
            )
            .await
        });
        let b = tokio::spawn(async move {
            remote
                .put_object(
                    "b",
                    &k2,
                    record(6),
                    WriteCondition::IfAbsent,
                    vec![],
                    Stamp::now(),
                )
                .await
        });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {a:?} / {b:?}");
        for r in [&a, &b] {
            assert!(
                matches!(r, Ok(_) | Err(IndexError::PreconditionFailed)),
                "round {round}: {r:?}"
            );
        }
        let stored = far.index.get_object("b", &key).await.unwrap().unwrap();
        let winner = if a.is_ok() { "05" } else { "06" };
        assert_eq!(stored.etag, winner, "round {round}");
    }
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_whose_replica_was_moved_away_reroutes_its_reads_and_writes() {
    use openraft::ChangeMembers;
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (_, _, right) = two_data_groups(&gws).await;
    gws[0]
        .index
        .put_object(
            "b",
            "z",
            record(1),
            WriteCondition::None,
            vec![],
            Stamp::now(),
        )
        .await
        .unwrap();
    let lead = group_leader(&gws, right).await;
    // The leader takes another gateway out of the group without that gateway learning of it
    // (as when a replica is moved while its gateway is busy): it still runs its replica.
    let far = &gws[(lead + 1) % 3];
    let gone = std::collections::BTreeSet::from([far.consensus.id()]);
    let raft = gws[lead].consensus.host().get(right).await.unwrap();
    raft.change_membership(ChangeMembers::RemoveVoters(gone.clone()), true)
        .await
        .unwrap();
    raft.change_membership(ChangeMembers::RemoveNodes(gone), false)
        .await
        .unwrap();
    assert!(far.consensus.host().runs(right));
    // Its read barrier is refused (not a member); it drops the replica and reads and writes
    // where the group runs, instead of failing.
    let got = far.index.get_object("b", "z").await.unwrap().expect("z");
    assert_eq!(got.etag, "01");
    assert!(!far.consensus.host().runs(right));
    far.index
        .put_object(
            "b",
            "z",
            record(2),
            WriteCondition::IfEtag("01".into()),
            vec![],
            Stamp::now(),
        )
        .await
        .unwrap();
    let z = gws[lead]
        .index
        .get_object("b", "z")
        .await
        .unwrap()
        .expect("z");
    assert_eq!(z.etag, "02");
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_splits_on_its_groups_leader_by_the_load_the_other_gateways_report_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = IndexOptions::default();
    // Over 2 writes/s (decayed) splits; reads never do.
    options.split.write_threshold = 2.0;
    options.split.read_threshold = 1e9;
    options.split.min_samples = 16;
    options.split.cooldown_ms = 0;
    let gws = three_gateways_with(dir.path(), options).await;
    // Object keys go to a group of their own, led by another gateway.
    let (meta, data) = one_data_group(&gws).await;
    let first = keys::object("b", "");
    let (leader, third) = ((meta + 1) % 3, (meta + 2) % 3);
    let to = gws[leader].consensus.id();
    until("another gateway leads the data group", async || {
        let c = &gws[meta].consensus;
        match c.leader_of(data) {
            Some(l) if l == to => true,
            Some(l) if l == c.id() => {
                let _ = c.hand_over(data, to).await;
                false
            }
            _ => false,
        }
    })
    .await;
    // The meta leader stops its replica: it knows the partition only by the leader's reports.
    gws[meta].consensus.host().stop(data).await;
    // The writes go through the two gateways not leading the group: its leader serves none.
    // Out of key order, or the policy would take them for an append stream and cut after the
    // newest.
    let names: Vec<String> = (0..120).map(|i| format!("k{i:03}")).collect();
    for i in 0..names.len() {
        let name = &names[i * 37 % names.len()];
        gws[[meta, third][i % 2]]
            .index
            .put_object(
                "b",
                name,
                record(1),
                WriteCondition::None,
                vec![],
                Stamp::now(),
            )
            .await
            .unwrap();
    }
    let partition = gws[meta].index.partition_map().lookup(&first).clone();
    let writes_on = |g: usize| {
        gws[g]
            .index
            .partition_stats()
            .into_iter()
            .find(|s| s.id == partition.id)
            .map_or(0.0, |s| s.writes_per_second)
    };
    // The meta leader measured its share of the writes over the threshold, but decides no
    // split of a partition it does not lead.
    assert!(writes_on(meta) > 2.0, "{}", writes_on(meta));
    assert_eq!(gws[meta].index.rebalance_once().await.unwrap(), None);
    assert_eq!(
        gws[meta].index.partition_map(),
        gws[leader].index.partition_map()
    );
    // The group's leader heard of no write until the others report them to it.
    assert_eq!(writes_on(leader), 0.0);
    until(
        "the group's leader splits the partition by load",
        async || {
            for g in &gws {
                g.index.report_load().await.unwrap();
            }
            matches!(
                gws[leader].index.rebalance_once().await,
                Ok(Some(cairn_gateway::index::Rebalanced::Split {
                    reason: cairn_gateway::index::SplitReason::Load,
                    ..
                }))
            )
        },
    )
    .await;
    let map = gws[leader].index.partition_map();
    let right = map.lookup(&keys::object("b", "k119")).clone();
    assert_ne!(right.id, partition.id);
    assert!(right.start > keys::object("b", "k000"));
    // The leader made the split in the group too (no other gateway's tick needed).
    until("the leader's replicas split the group", async || {
        gws[leader].consensus.host().owner_of(&right.start) == Some(right.id.0)
            && gws[third].consensus.host().owner_of(&right.start) == Some(right.id.0)
    })
    .await;
    // The right half's new group is led by the gateway leading nothing (the third), which
    // was handed the right half's load as measured so far: no request reached it since.
    let mut new_leader = None;
    until("the right half's group has a leader", async || {
        new_leader = gws[leader].consensus.leader_of(right.id.0);
        new_leader.is_some()
    })
    .await;
    assert_eq!(new_leader, Some(gws[third].consensus.id()));
    until("the new leader has the right half's load", async || {
        let _ = gws[third].index.refresh_partition_map().await;
        gws[third]
            .index
            .partition_stats()
            .iter()
            .any(|s| s.id == right.id && s.writes_per_second > 1.0 && s.sampled_keys > 0)
    })
    .await;
    // It tells the meta leader what it measures of the partitions it leads (which weighs the
    // leaderships there, and keeps hot partitions from merging): the left half kept its share
    // of the load (the meta leader's own count of it restarted with the split's new epoch).
    until("the meta leader hears the leader's figures", async || {
        gws[leader].index.report_load().await.unwrap();
        let _ = gws[meta].index.refresh_partition_map().await;
        gws[meta].consensus.learn_remote_groups().await;
        gws[meta]
            .index
            .group_pressure()
            .get(&data)
            .is_some_and(|p| *p > 0.0)
    })
    .await;
    for g in &gws {
        assert_eq!(index_keys(&g.index, "", 1000).await, names);
    }
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_handing_its_group_over_hands_over_the_load_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = IndexOptions::default();
    options.split.write_threshold = 1e9;
    let gws = three_gateways_with(dir.path(), options).await;
    let (meta, group) = one_data_group(&gws).await;
    let data = gws[meta]
        .index
        .partition_map()
        .lookup(&keys::object("b", ""))
        .id;
    let lead = group_leader(&gws, group).await;
    let (writer, heir) = ((lead + 1) % 3, (lead + 2) % 3);
    // Writes through one gateway, reported to the leader; the heir serves none.
    for i in 0..60 {
        gws[writer]
            .index
            .put_object(
                "b",
                &format!("k{:03}", i * 37 % 60),
                record(1),
                WriteCondition::None,
                vec![],
                Stamp::now(),
            )
            .await
            .unwrap();
    }
    gws[writer].index.report_load().await.unwrap();
    let writes_on = |g: usize| {
        gws[g]
            .index
            .partition_stats()
            .into_iter()
            .find(|s| s.id == data)
            .map_or(0.0, |s| s.writes_per_second)
    };
    assert!(writes_on(lead) > 1.0, "{}", writes_on(lead));
    assert_eq!(writes_on(heir), 0.0);
    let to = gws[heir].consensus.id();
    until("the heir leads the data group", async || {
        let _ = gws[lead].consensus.hand_over(group, to).await;
        gws[heir].consensus.is_leader_of(group)
    })
    .await;
    until("the heir has the load measured so far", async || {
        writes_on(heir) > 1.0
    })
    .await;
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_group_leader_collects_its_own_groups_garbage_and_runs_its_buckets_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (meta, left, right) = two_data_groups(&gws).await;
    let lead = &gws[meta].index;
    // The two data groups led by two different gateways.
    until("the data groups have different leaders", async || {
        let c = &gws[0].consensus;
        match (c.leader_of(left), c.leader_of(right)) {
            (Some(l), Some(r)) if l != r => true,
            (Some(l), Some(_)) => {
                let to = (l % 3) + 1;
                let g = &gws[l as usize - 1].consensus;
                let _ = g.hand_over(right, to).await;
                false
            }
            _ => false,
        }
    })
    .await;
    // One failed upload's blob per object; each becomes garbage in its object's group.
    // Each bucket's lifecycle runs on exactly one gateway: the leader of the group holding the
    // bucket's first keys.
    lead.create_bucket(BucketRecord::new("c", "o", 0))
        .await
        .unwrap();
    until("the new leaders have taken over", async || {
        [left, right].iter().all(|g| {
            let leaders: Vec<u64> = gws
                .iter()
                .filter(|gw| gw.consensus.is_leader_of(*g))
                .map(|gw| gw.consensus.id())
                .collect();
            leaders.len() == 1 && gws[0].consensus.leader_of(*g) == Some(leaders[0])
        })
    })
    .await;
    for bucket in ["b", "c"] {
        let owner = gws[0]
            .consensus
            .host()
            .owner_of(&keys::objects_of(bucket))
            .unwrap();
        let leader = gws[0].consensus.leader_of(owner).unwrap();
        let runs: Vec<u64> = gws
            .iter()
            .filter(|g| g.index.runs_lifecycle_of(bucket))
            .map(|g| g.consensus.id())
            .collect();
        assert_eq!(runs, vec![leader], "bucket {bucket}");
    }
    assert_ne!(
        gws[0].consensus.leader_of(left),
        gws[0].consensus.leader_of(right)
    );
    let objects = [("a", 1u8), ("l", 2), ("q", 3), ("z", 4)];
    for (key, n) in objects {
        gws[n as usize % 3]
            .index
            .record_intent("b", key, &stored_blob(n), 0)
            .await
            .unwrap();
    }
    // Each gateway sees exactly the garbage of the groups it leads, read from its own replica.
    let mut seen = Vec::new();
    for g in &gws {
        let mine: Vec<u8> = objects
            .iter()
            .filter(|(key, _)| {
                let owner = g.consensus.host().owner_of(&keys::object("b", key));
                owner.is_some_and(|o| g.consensus.is_leader_of(o))
            })
            .map(|(_, n)| *n)
            .collect();
        let before = g.metrics.raft.remote_reads.get();
        let mut found = Vec::new();
        for scope in g.index.garbage_scopes() {
            let due = g
                .index
                .due_garbage_in(scope, u64::MAX - 1, 100, None, usize::MAX)
                .await
                .unwrap();
            found.extend(due.due.iter().map(|(_, r)| r.blob.object_id.as_bytes()[0]));
        }
        found.sort();
        assert_eq!(found, mine, "gateway {}", g.consensus.id());
        assert_eq!(g.metrics.raft.remote_reads.get(), before, "read locally");
        assert_eq!(g.index.garbage_len(100).await.unwrap(), mine.len());
        seen.extend(found);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![1, 2, 3, 4],
        "every record has exactly one collector"
    );
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_learns_where_groups_run_from_the_layout_recorded_in_the_meta_group() {
    use cairn_gateway::metrics::DirectorySourceLabels;
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (meta, left, right) = two_data_groups(&gws).await;
    let lead = &gws[meta].index;
    for k in ["a", "z"] {
        lead.put_object(
            "b",
            k,
            record(1),
            WriteCondition::None,
            vec![],
            Stamp::now(),
        )
        .await
        .unwrap();
    }
    // Another gateway stops both data groups: it has no group-mates left to ask.
    let far = &gws[(meta + 1) % 3];
    far.consensus.host().stop(left).await;
    far.consensus.host().stop(right).await;
    let learns = |source: &str| {
        far.metrics
            .raft
            .directory_learns
            .get_or_create(&DirectorySourceLabels {
                source: source.into(),
            })
            .get()
    };
    let asked = || far.metrics.raft.directory_peers_asked.get();
    // The meta leader records where the data groups run in the meta group, which every gateway
    // replicates: each group's members and leader.
    until("the layout is recorded on every replica", async || {
        let recorded = layout::read(far.engine.as_ref()).unwrap();
        [left, right].iter().all(|g| {
            recorded.get(g).is_some_and(|r| {
                r.leader.is_some()
                    && r.leader == gws[meta].consensus.leader_of(*g)
                    && r.voters.len() == 3
            })
        })
    })
    .await;
    let (from_layout, from_all, peers) = (learns("meta_group"), learns("every_peer"), asked());
    // Left alone, it learns every 3 s from its own replica, asking no gateway at all.
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let from_layout = learns("meta_group") - from_layout;
    assert!(
        from_layout >= 2,
        "learned {from_layout} times from the recorded layout"
    );
    // Every peer is asked only should this gateway become the meta leader (an election on a
    // loaded machine): at most once here.
    let from_all = learns("every_peer") - from_all;
    assert!(from_all <= 1, "asked every peer {from_all} times");
    assert_eq!(asked() - peers, 2 * from_all, "no gateway asked");
    // The recorded layout routes reads of both groups, without asking every peer.
    let all_before = learns("every_peer");
    for k in ["a", "z"] {
        assert_eq!(
            far.index.get_object("b", k).await.unwrap().unwrap().etag,
            "01"
        );
    }
    assert_eq!(learns("every_peer"), all_before);
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_groups_leader_records_where_its_group_runs_and_the_meta_leader_only_sweeps_now_and_then()
{
    use cairn_gateway::metrics::DirectorySourceLabels;
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (meta, left, _) = two_data_groups(&gws).await;
    let sweeps = || {
        gws[meta]
            .metrics
            .raft
            .directory_learns
            .get_or_create(&DirectorySourceLabels {
                source: "every_peer".into(),
            })
            .get()
    };
    let recorded_leader = |g: &Gateway| {
        layout::read(g.engine.as_ref())
            .unwrap()
            .get(&left)
            .and_then(|r| r.leader)
    };
    // The meta leader's first sweep of every peer records the layout; the next is 30 s later.
    until("the meta leader asked every peer", async || sweeps() >= 1).await;
    let swept = sweeps();
    // The left group's leadership moves to a gateway that leads neither it nor the meta group.
    let mut led_by = None;
    until("the left group's leader is recorded", async || {
        led_by = gws.iter().position(|g| g.consensus.is_leader_of(left));
        led_by.is_some() && recorded_leader(&gws[meta]) == led_by.map(|i| gws[i].consensus.id())
    })
    .await;
    let new_leader = &gws[(0..3).find(|i| *i != meta && Some(*i) != led_by).unwrap()];
    let to = new_leader.consensus.id();
    until("another gateway leads the left group", async || {
        match gws.iter().find(|g| g.consensus.is_leader_of(left)) {
            Some(g) if g.consensus.id() == to => true,
            Some(g) => {
                let _ = g.consensus.hand_over(left, to).await;
                false
            }
            _ => false,
        }
    })
    .await;
    // Its new leader records that, on every replica of the meta group, long before the meta
    // leader's next sweep of every peer.
    until("the new leader is recorded everywhere", async || {
        gws.iter().all(|g| recorded_leader(g) == Some(to))
    })
    .await;
    assert!(new_leader.metrics.raft.layout_publications.get() >= 1);
    assert_eq!(
        sweeps(),
        swept,
        "recorded without the meta leader asking every peer"
    );
    // Idle for 7 s, the meta leader asks every peer at most once more (30 s apart; once if
    // this window holds the one due).
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let more = sweeps() - swept;
    assert!(
        more <= 1,
        "the meta leader asked every peer {more} more times"
    );
    assert_eq!(recorded_leader(&gws[meta]), Some(to), "no sweep undid it");
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_groups_leader_coalesces_concurrent_writes_and_each_gets_its_own_outcome() {
    use cairn_gateway::metrics::OutcomeLabels;
    let dir = tempfile::tempdir().unwrap();
    let gws = three_gateways(dir.path()).await;
    let (_, data) = one_data_group(&gws).await;
    let lead = &gws[group_leader(&gws, data).await];
    let applied = |g: &Gateway| {
        g.metrics
            .raft
            .proposals
            .get_or_create(&OutcomeLabels {
                outcome: "applied".into(),
            })
            .get()
    };
    let (entries_before, applied_before) =
        (lead.metrics.raft.proposal_entries.get(), applied(lead));
    // 48 writes of distinct keys and 8 creations of one key, all at once through the leader.
    let names: Vec<String> = (0..48).map(|i| format!("k{i:02}")).collect();
    let puts = names.iter().map(|name| {
        lead.index.put_object(
            "b",
            name,
            record(1),
            WriteCondition::None,
            vec![],
            Stamp::now(),
        )
    });
    let creations = (0..8).map(|_| {
        lead.index.put_object(
            "b",
            "once",
            record(2),
            WriteCondition::IfAbsent,
            vec![],
            Stamp::now(),
        )
    });
    let (puts, creations) = tokio::join!(
        futures_util::future::join_all(puts),
        futures_util::future::join_all(creations)
    );
    for p in puts {
        p.unwrap();
    }
    let created = creations.iter().filter(|c| c.is_ok()).count();
    assert_eq!(created, 1, "exactly one creation wins: {creations:?}");
    assert!(
        creations
            .iter()
            .all(|c| matches!(c, Ok(_) | Err(IndexError::PreconditionFailed))),
        "{creations:?}"
    );
    // Fewer entries than proposals: rounds coalesced them.
    let entries = lead.metrics.raft.proposal_entries.get() - entries_before;
    let proposals = applied(lead) - applied_before;
    assert!(proposals >= 49, "{proposals} proposals applied");
    assert!(
        entries < proposals,
        "{entries} entries for {proposals} proposals: nothing coalesced"
    );
    eprintln!("{proposals} proposals applied in {entries} entries");
    // Every write is on every gateway.
    for g in &gws {
        for name in &names {
            let got = g.index.get_object("b", name).await.unwrap();
            assert_eq!(got.expect("written").etag, "01");
        }
        assert_eq!(
            g.index.get_object("b", "once").await.unwrap().unwrap().etag,
            "02"
        );
    }
    for g in &gws {
        g.consensus.shutdown().await;
    }
}

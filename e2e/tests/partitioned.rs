//! The index cut into partitions that are Raft groups of their own, as real processes (three
//! gateways): a hot prefix of sequential keys splits the index, the new partitions' leaders
//! spread over the gateways, and the groups merge back once the load is gone; killing the leader of the partition a stream of PUTs writes to loses
//! no acknowledged write, as does a merge coordinator crashing between freeze and absorb; and
//! deleting a bucket while other gateways write into it never leaves an object behind its
//! bucket; each bucket's lifecycle runs on the leader of the group holding its first keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_e2e::fleet::{self, FleetFile};

mod common;
use common::*;

/// The first port of this suite's fleets: each test's fleet takes 12 ports from its own
/// offset (0, 20, 40, 60, 80), below the ephemeral range.
fn base_port() -> u16 {
    26_000 + (std::process::id() % 30) as u16 * 100
}

/// Every index group as gateway `g` sees it (`replication.groups` of the admin API).
async fn groups(f: &FleetFile, g: usize) -> Vec<serde_json::Value> {
    replication(f, g)
        .await
        .and_then(|r| r["groups"].as_array().cloned())
        .unwrap_or_default()
}

/// The group owning object `key` of [`BUCKET`] on gateway `g` (object keys are shown as
/// `bucket/key`, which sort as the keys do for ASCII keys).
fn owner_of<'a>(groups: &'a [serde_json::Value], key: &str) -> Option<&'a serde_json::Value> {
    let name = format!("{BUCKET}/{key}");
    groups.iter().find(|g| {
        g["objects_from"]
            .as_str()
            .is_some_and(|from| from <= name.as_str())
            && g["objects_to"].as_str().is_none_or(|to| name.as_str() < to)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_prefix_splits_into_partitions_led_by_different_gateways() {
    let Some(bin_dir) = fleet_binaries("hot prefix") else {
        return;
    };
    let mut dir = FleetDir::new();
    let args = [
        "--split-write-threshold=10",
        "--split-cooldown=2s",
        "--partition-load-half-life=2s",
        "--merge-quiet-period=3s",
    ]
    .map(String::from)
    .to_vec();
    let f = fleet_of(&dir, bin_dir, 3, base_port(), args);
    let all = [0, 1, 2];
    leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[0].create_bucket().bucket(BUCKET).send().await.unwrap();

    // Sequential timestamp keys, as in S3's request-rate guide: every write lands at the end of
    // the keyspace, in the last partition (bounded: 300 keys, two minutes).
    let started = Instant::now();
    let mut acked = BTreeSet::new();
    for i in 0..300 {
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        let key = format!("logs/2026-12-06T10:{:02}:{:02}.{i:04}", i / 60, i % 60);
        assert!(put(&s3[i % 3], &key).await.is_ok(), "PUT {key}");
        acked.insert(key);
    }
    // Once the splits settle, every gateway hosts the same groups, several lead some.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leaders = loop {
        let seen = groups(&f, 0).await;
        let data: Vec<_> = seen
            .iter()
            .filter(|g| g["objects_from"].is_string())
            .collect();
        let leaders: BTreeMap<u64, u64> = data
            .iter()
            .filter_map(|g| Some((g["group"].as_u64()?, g["leader"].as_u64()?)))
            .collect();
        let distinct: BTreeSet<u64> = leaders.values().copied().collect();
        if data.len() >= 3 && leaders.len() == data.len() && distinct.len() >= 3 {
            break leaders;
        }
        assert!(
            Instant::now() < deadline,
            "the hot prefix did not spread over the gateways: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("data groups and their leaders after the stream: {leaders:?}");
    // Every gateway lists every key once, in order, and agrees on the groups.
    let attempted = acked.clone();
    check_everything(&f, &all, &acked, &attempted).await;
    let ids = |gs: Vec<serde_json::Value>| -> BTreeSet<u64> {
        gs.iter().filter_map(|g| g["group"].as_u64()).collect()
    };
    let hosted = ids(groups(&f, 0).await);
    for g in [1, 2] {
        assert_eq!(ids(groups(&f, g).await), hosted, "gateway {g}'s groups");
    }

    // Once the load is gone the partitions merge back, and their groups with them (a group
    // frozen, then absorbed by its left neighbour on every replica); nothing is lost.
    let peak = leaders.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    let merged = loop {
        let map = partition_map(&f, 0).await;
        let partitions = map["partitions"].as_array().unwrap().len() - 1;
        let data: Vec<u64> = groups(&f, 0)
            .await
            .iter()
            .filter(|g| g["objects_from"].is_string())
            .filter_map(|g| g["group"].as_u64())
            .collect();
        if data.len() < peak && data.len() == partitions {
            break data;
        }
        assert!(
            Instant::now() < deadline,
            "groups never merged back: {partitions} object partitions, data groups {data:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("after the merges: data groups {merged:?} (peak {peak})");
    check_everything(&f, &all, &acked, &attempted).await;
    dir.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_of_the_written_partition_loses_no_acknowledged_write() {
    let Some(bin_dir) = fleet_binaries("partition leader kill") else {
        return;
    };
    let mut dir = FleetDir::new();
    let f = fleet_of(&dir, bin_dir, 3, base_port() + 20, Vec::new());
    let all = [0, 1, 2];
    let meta_leader = leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[0].create_bucket().bucket(BUCKET).send().await.unwrap();
    // A partition of its own for the keys the stream writes: its group is led by the gateway
    // leading the fewest groups, not the meta group's leader.
    let body = serde_json::json!({"bucket": BUCKET, "key": "stream/"});
    let split = post_partitions(&f, 0, "2/split".into(), body).await;
    assert!(split.is_success(), "split: HTTP {split}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (group, victim) = loop {
        let seen = groups(&f, meta_leader).await;
        if let Some(g) = owner_of(&seen, "stream/0000")
            && g["objects_from"] == format!("{BUCKET}/stream/")
            && let Some(l) = g["leader"].as_u64()
        {
            break (g["group"].as_u64().unwrap(), l as usize - 1);
        }
        assert!(
            Instant::now() < deadline,
            "no group for the stream: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(
        victim, meta_leader,
        "the split-off group is led by another gateway than the meta group"
    );
    eprintln!("group {group} (stream/) led by gateway {victim}; meta leader {meta_leader}");

    let survivors: Vec<usize> = all.iter().copied().filter(|&g| g != victim).collect();
    let acks_so_far = Arc::new(AtomicUsize::new(0));
    let writer = {
        let clients: Vec<_> = survivors.iter().map(|&g| s3[g].clone()).collect();
        let acks_so_far = acks_so_far.clone();
        tokio::spawn(async move {
            let (mut acks, mut tried) = (BTreeMap::new(), BTreeSet::new());
            let started = Instant::now();
            for i in 0..300 {
                if started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let key = format!("stream/{i:04}");
                tried.insert(key.clone());
                if put(&clients[i % clients.len()], &key).await.is_ok() {
                    acks.insert(key, Instant::now());
                    acks_so_far.fetch_add(1, Ordering::SeqCst);
                }
            }
            (acks, tried)
        })
    };
    let wait_from = Instant::now();
    while acks_so_far.load(Ordering::SeqCst) < 60 {
        assert!(
            wait_from.elapsed() < Duration::from_secs(60),
            "the PUT stream stalled before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    fleet::signal(f.gateways[victim].pid, "KILL");
    let (acks, tried) = writer.await.unwrap();
    let after = acks.values().filter(|t| **t > killed_at).count();
    let mut times: Vec<&Instant> = acks.values().collect();
    times.sort();
    let pause = times
        .windows(2)
        .map(|w| w[1].duration_since(*w[0]))
        .max()
        .unwrap();
    let new_leader = groups(&f, survivors[0])
        .await
        .into_iter()
        .find(|g| g["group"] == group)
        .and_then(|g| g["leader"].as_u64());
    eprintln!(
        "{} of {} acknowledged, {after} after the kill; longest pause {pause:?}; group {group} now led by {new_leader:?}",
        acks.len(),
        tried.len()
    );
    assert!(after >= 150, "only {after} PUTs succeeded after the kill");
    let acked: BTreeSet<String> = acks.into_keys().collect();
    // Object by object: every acknowledged write is there, byte-exact, once; nothing else.
    check_everything(&f, &survivors, &acked, &tried).await;
    for &g in &survivors {
        for key in &acked {
            let got = s3[g]
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("gateway {g}: {key}: {e:?}"));
            let body = got.body.collect().await.unwrap().into_bytes();
            assert!(body == body_of(key), "gateway {g}: {key} differs");
        }
    }
    dir.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_bucket_under_writes_through_other_gateways_leaves_no_object_behind() {
    let Some(bin_dir) = fleet_binaries("bucket deletion race") else {
        return;
    };
    let mut dir = FleetDir::new();
    let f = fleet_of(&dir, bin_dir, 3, base_port() + 40, Vec::new());
    let all = [0, 1, 2];
    leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    // The raced buckets' keys span two groups: partition 2 split at "race-…/m".
    let started = Instant::now();
    let (mut deleted, mut refused) = (0, 0);
    for round in 0..12 {
        if started.elapsed() > Duration::from_secs(90) {
            break;
        }
        let bucket = format!("race-{round:02}");
        s3[0].create_bucket().bucket(&bucket).send().await.unwrap();
        split_last(&f, 0, &bucket, "m").await;
        // Writers on two gateways PUT and DELETE their keys on both sides of the split, so
        // the bucket is empty now and then; the third gateway deletes the bucket meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|g| {
                let (s3, bucket) = (s3[g].clone(), bucket.clone());
                let (stop, written) = (stop.clone(), written.clone());
                tokio::spawn(async move {
                    let mut puts = 0;
                    for i in 0..400 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let key = format!("{}/{g}-{i}", ["a", "z"][i % 2]);
                        let put = s3
                            .put_object()
                            .bucket(&bucket)
                            .key(&key)
                            .body(ByteStream::from_static(b"x"))
                            .send()
                            .await;
                        if put.is_err() {
                            break; // the bucket is gone
                        }
                        puts += 1;
                        written.fetch_add(1, Ordering::SeqCst);
                        let _ = s3.delete_object().bucket(&bucket).key(&key).send().await;
                    }
                    puts
                })
            })
            .collect();
        // The deletions start once both writers are under way.
        let wait_from = Instant::now();
        while written.load(Ordering::SeqCst) < 10 && wait_from.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut gone = false;
        for _ in 0..200 {
            match s3[0].delete_bucket().bucket(&bucket).send().await {
                Ok(_) => {
                    gone = true;
                    break;
                }
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| {
                        use aws_sdk_s3::error::ProvideErrorMetadata;
                        s.code().map(str::to_string)
                    });
                    assert!(
                        matches!(code.as_deref(), Some("BucketNotEmpty" | "OperationAborted")),
                        "DeleteBucket: {e:?}"
                    );
                    refused += 1;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        let mut puts = 0;
        for w in writers {
            puts += w.await.unwrap();
        }
        if !gone {
            continue;
        }
        deleted += 1;
        // Anything a writer committed after the emptiness checks would now outlive the bucket:
        // created again, the bucket must be empty on every gateway.
        s3[0].create_bucket().bucket(&bucket).send().await.unwrap();
        for (g, c) in s3.iter().enumerate() {
            let listed = c.list_objects_v2().bucket(&bucket).send().await.unwrap();
            assert_eq!(
                listed.key_count(),
                Some(0),
                "round {round}: objects outlived their bucket, through gateway {g}: {:?}",
                listed.contents()
            );
        }
        eprintln!("round {round}: deleted under {puts} PUTs");
    }
    eprintln!("{deleted} buckets deleted under writes, {refused} deletions refused");
    assert!(deleted >= 3, "only {deleted} deletions succeeded");
    replicas_identical(&f, &all).await;
    dir.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merging_two_partitions_under_writes_loses_and_refuses_nothing() {
    let Some(bin_dir) = fleet_binaries("merge under writes") else {
        return;
    };
    let mut dir = FleetDir::new();
    let f = fleet_of(&dir, bin_dir, 3, base_port() + 60, Vec::new());
    let all = [0, 1, 2];
    leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[0].create_bucket().bucket(BUCKET).send().await.unwrap();
    split_in_two_groups(&f, 0, "m").await;

    // Writers on every gateway, keys on both sides of the boundary, until 20 each after the
    // groups have merged (bounded: 400 each).
    let acks = Arc::new(AtomicUsize::new(0));
    let merged = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|g| {
            let (s3, acks, merged) = (s3[g].clone(), acks.clone(), merged.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut written = Vec::new();
                let mut after = 0;
                for i in 0..400 {
                    if merged.load(Ordering::SeqCst) {
                        after += 1;
                        if after > 20 {
                            break;
                        }
                    }
                    let key = format!("{}/{g}-{i:03}", ["a", "z"][i % 2]);
                    let began = Instant::now();
                    if put(&s3, &key).await.is_ok() {
                        acks.fetch_add(1, Ordering::SeqCst);
                        written.push((key, began.elapsed()));
                    } else {
                        failed.push(key);
                    }
                }
                (written, failed)
            })
        })
        .collect();
    let wait_from = Instant::now();
    while acks.load(Ordering::SeqCst) < 60 {
        assert!(
            wait_from.elapsed() < Duration::from_secs(60),
            "writes stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let map = partition_map(&f, 0).await;
    let left = map["partitions"][1]["id"].clone();
    let merge = post_partitions(&f, 0, format!("{left}/merge"), serde_json::Value::Null).await;
    assert!(merge.is_success(), "merge: HTTP {merge}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_groups(&f, 0).await != 1 {
        assert!(Instant::now() < deadline, "the groups never merged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acks_at_merge = acks.load(Ordering::SeqCst);
    merged.store(true, Ordering::SeqCst);
    let (mut acked, mut refused, mut slowest) = (BTreeSet::new(), Vec::new(), Duration::ZERO);
    for w in writers {
        let (written, failed) = w.await.unwrap();
        for (key, took) in written {
            slowest = slowest.max(took);
            acked.insert(key);
        }
        refused.extend(failed);
    }
    assert!(
        refused.is_empty(),
        "writes refused during the merge: {refused:?}"
    );
    eprintln!(
        "{} writes, all acknowledged: {acks_at_merge} before the groups had merged; slowest {slowest:?}",
        acked.len()
    );
    assert!(acked.len() > acks_at_merge, "no write after the merge");
    let attempted = acked.clone();
    check_everything(&f, &all, &acked, &attempted).await;
    dir.down();
}

/// How many groups each gateway leads, as gateway `g` sees them (every group with a leader).
async fn leaderships(f: &FleetFile, g: usize) -> BTreeMap<u64, usize> {
    let mut led = BTreeMap::new();
    for group in groups(f, g).await {
        if let Some(l) = group["leader"].as_u64() {
            *led.entry(l).or_insert(0) += 1;
        }
    }
    led
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaderships_spread_again_when_a_killed_gateway_returns() {
    let Some(bin_dir) = fleet_binaries("leadership balance") else {
        return;
    };
    let mut dir = FleetDir::new();
    let mut f = fleet_of(&dir, bin_dir, 3, base_port() + 80, Vec::new());
    let all = [0, 1, 2];
    let meta_leader = leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[0].create_bucket().bucket(BUCKET).send().await.unwrap();
    // Five object partitions, each a group: six groups with the meta group, two per gateway.
    for key in ["f", "k", "p", "u"] {
        split_last(&f, 0, BUCKET, key).await;
    }
    let spread = |led: &BTreeMap<u64, usize>, gateways: usize| {
        led.len() == gateways
            && led.values().sum::<usize>() == 6
            && led.values().max().unwrap() - led.values().min().unwrap() <= 1
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let led = leaderships(&f, meta_leader).await;
        if spread(&led, 3) {
            eprintln!("leaderships after the splits: {led:?}");
            break;
        }
        assert!(Instant::now() < deadline, "splits never spread: {led:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A gateway other than the meta leader dies: its groups elect leaders among the others.
    let victim = (meta_leader + 1) % 3;
    fleet::signal(f.gateways[victim].pid, "KILL");
    let survivors: Vec<usize> = all.iter().copied().filter(|&g| g != victim).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let led = leaderships(&f, meta_leader).await;
        if led.values().sum::<usize>() == 6 && !led.contains_key(&(victim as u64 + 1)) {
            eprintln!("leaderships with gateway {} down: {led:?}", victim + 1);
            break;
        }
        assert!(Instant::now() < deadline, "groups stay leaderless: {led:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (i, key) in ["a", "g", "l", "q", "v"].iter().enumerate() {
        assert!(
            put(&s3[survivors[i % 2]], key).await.is_ok(),
            "PUT {key} with a gateway down"
        );
    }

    // It comes back: leaderships move to it, one at a time, until spread again.
    fleet::restart_gateway(dir.path(), &mut f, victim).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let led = leaderships(&f, meta_leader).await;
        if spread(&led, 3) {
            eprintln!("leaderships once it is back: {led:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaderships never spread again: {led:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let acked: BTreeSet<String> = ["a", "g", "l", "q", "v"].map(String::from).into();
    let s3 = client(&f.gateways[victim].s3, &f);
    assert_eq!(
        list_all(&s3).await,
        acked.iter().cloned().collect::<Vec<_>>()
    );
    check_everything(&f, &all, &acked, &acked).await;
    dir.down();
}

/// The coordinator of a merge (the meta leader, which runs every group of three gateways) crashes between the merge's freeze and
/// its absorb (a failpoint), while writers on every gateway PUT on both sides: the frozen group
/// is thawed by the next coordinator, the merge is made again once the crashed gateway is back,
/// and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_coordinator_crashing_between_freeze_and_absorb_loses_nothing() {
    let Some(bin_dir) = fleet_binaries("merge coordinator crash") else {
        return;
    };
    let mut dir = FleetDir::new();
    // Apart from the suite's other fleets (same pid, another hundred).
    let base = 17_000 + (std::process::id() % 30) as u16 * 100;
    let failpoint = dir.path().join("merge-crash");
    let args = vec![
        "--failpoint-merge-crash-file".to_string(),
        failpoint.display().to_string(),
    ];
    let mut f = fleet_of(&dir, bin_dir, 3, base, args);
    let all = [0, 1, 2];
    // The merge's coordinator is the left group's leader, which leader balancing may move: the
    // writes and the merge go through the meta leader's neighbour, and whichever gateway
    // coordinates when the merge comes crashes.
    let via = (leader(&f, &all).await + 1) % 3;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[via].create_bucket().bucket(BUCKET).send().await.unwrap();
    split_in_two_groups(&f, via, "m").await;

    // Writers on every gateway, keys on both sides, until 20 each after the groups merged
    // (bounded: 600 each). A write may fail (its gateway crashed, or a group is electing); it is
    // then only attempted, never counted as acknowledged.
    let merged = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = all
        .iter()
        .map(|&g| {
            let (s3, acks, merged) = (s3[g].clone(), acks.clone(), merged.clone());
            tokio::spawn(async move {
                let (mut acked, mut attempted, mut after) = (Vec::new(), Vec::new(), 0);
                for i in 0..600 {
                    if merged.load(Ordering::SeqCst) {
                        after += 1;
                        if after > 20 {
                            break;
                        }
                    }
                    let key = format!("{}/{g}-{i:03}", ["a", "z"][i % 2]);
                    attempted.push(key.clone());
                    if put(&s3, &key).await.is_ok() {
                        acks.fetch_add(1, Ordering::SeqCst);
                        acked.push(key);
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                (acked, attempted)
            })
        })
        .collect();
    let wait_from = Instant::now();
    while acks.load(Ordering::SeqCst) < 40 {
        assert!(
            wait_from.elapsed() < Duration::from_secs(60),
            "writes stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&failpoint, b"once").unwrap();
    let map = partition_map(&f, via).await;
    let left = map["partitions"][1]["id"].clone();
    let merge = post_partitions(&f, via, format!("{left}/merge"), serde_json::Value::Null).await;
    assert!(merge.is_success(), "merge: HTTP {merge}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let coordinator = loop {
        let dead: Vec<usize> = all
            .iter()
            .copied()
            .filter(|g| !fleet::alive(f.gateways[*g].pid))
            .collect();
        if let [g] = dead.as_slice() {
            break *g;
        }
        assert!(dead.is_empty(), "gateways {dead:?} died");
        assert!(
            Instant::now() < deadline,
            "the coordinator never reached the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!failpoint.exists(), "the failpoint did not fire");
    let acks_at_crash = acks.load(Ordering::SeqCst);
    eprintln!(
        "coordinator {coordinator} crashed between freeze and absorb after {acks_at_crash} acknowledged writes"
    );
    // The survivors keep writing on both sides: the frozen group is thawed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(Ordering::SeqCst) < acks_at_crash + 40 {
        assert!(
            Instant::now() < deadline,
            "writes stalled after the crash (a frozen group never thawed?)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet::restart_gateway(dir.path(), &mut f, coordinator).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while data_groups(&f, via).await != 1 || data_groups(&f, coordinator).await != 1 {
        assert!(Instant::now() < deadline, "the groups never merged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acks_at_merge = acks.load(Ordering::SeqCst);
    merged.store(true, Ordering::SeqCst);
    let (mut acked, mut attempted) = (BTreeSet::new(), BTreeSet::new());
    for w in writers {
        let (a, t) = w.await.unwrap();
        acked.extend(a);
        attempted.extend(t);
    }
    eprintln!(
        "{} of {} writes acknowledged, {acks_at_merge} before the groups had merged",
        acked.len(),
        attempted.len()
    );
    assert!(acked.len() > acks_at_merge, "no write after the merge");
    check_everything(&f, &all, &acked, &attempted).await;
    dir.down();
}

/// Once the object keys have a group of their own, splits partition 2 at `key` of [`BUCKET`]
/// through gateway `g` and waits until gateway `g` hosts the two groups.
async fn split_in_two_groups(f: &FleetFile, g: usize, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_groups(f, g).await < 1 {
        assert!(Instant::now() < deadline, "no data group");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = serde_json::json!({"bucket": BUCKET, "key": key});
    let split = post_partitions(f, g, "2/split".into(), body).await;
    assert!(split.is_success(), "split: HTTP {split}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_groups(f, g).await < 2 {
        assert!(Instant::now() < deadline, "the split never made a group");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `cairn_lifecycle_expired_total` for `bucket` on gateway `g` (0 before any).
async fn expired_on(f: &FleetFile, g: usize, bucket: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", f.gateways[g].admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("cairn_lifecycle_expired_total{{bucket=\"{bucket}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_buckets_lifecycle_runs_on_the_leader_of_its_group() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let Some(bin_dir) = fleet_binaries("lifecycle per group leader") else {
        return;
    };
    let mut dir = FleetDir::new();
    let base = 17_020 + (std::process::id() % 30) as u16 * 100;
    let args = vec!["--lifecycle-day-length=2s".to_string()];
    let f = fleet_of(&dir, bin_dir, 3, base, args);
    let all = [0, 1, 2];
    leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    let buckets = ["lc-a", "lc-b"];
    for b in buckets {
        s3[0].create_bucket().bucket(b).send().await.unwrap();
    }
    // Bucket lc-b gets a group of its own.
    while data_groups(&f, 0).await < 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    split_last(&f, 0, "lc-b", "").await;
    // Once leader balancing settles (a group per gateway), the two buckets' groups are led by
    // different gateways.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leaders = loop {
        let seen = groups(&f, 0).await;
        let leader_of = |bucket: &str| {
            let first = format!("{bucket}/");
            seen.iter()
                .find(|g| {
                    g["objects_from"]
                        .as_str()
                        .is_some_and(|s| s <= first.as_str())
                        && g["objects_to"].as_str().is_none_or(|e| first.as_str() < e)
                })
                .and_then(|g| g["leader"].as_u64())
        };
        if let (Some(a), Some(b)) = (leader_of("lc-a"), leader_of("lc-b"))
            && a != b
            && seen.len() == 3
        {
            break [a, b];
        }
        assert!(Instant::now() < deadline, "groups not spread: {seen:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "lc-a's group led by gateway {}, lc-b's by {}",
        leaders[0], leaders[1]
    );
    for (i, b) in buckets.iter().enumerate() {
        for k in ["old/1", "old/2", "old/3", "keep/1"] {
            let body = ByteStream::from(body_of(k));
            s3[i]
                .put_object()
                .bucket(*b)
                .key(k)
                .body(body)
                .send()
                .await
                .unwrap();
        }
        // Objects under old/ expire one (2 s) day after they were written.
        let rule = LifecycleRule::builder()
            .id("old")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("old/").build())
            .expiration(LifecycleExpiration::builder().days(1).build())
            .build()
            .unwrap();
        let conf = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .unwrap();
        s3[2]
            .put_bucket_lifecycle_configuration()
            .bucket(*b)
            .lifecycle_configuration(conf)
            .send()
            .await
            .unwrap();
    }
    // Every gateway sees the old objects gone and the others kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    for b in buckets {
        for s in &s3 {
            loop {
                let keys: Vec<String> = s
                    .list_objects_v2()
                    .bucket(b)
                    .send()
                    .await
                    .unwrap()
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .collect();
                if keys == ["keep/1"] {
                    break;
                }
                assert!(Instant::now() < deadline, "{b}: {keys:?}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    // Each bucket's three expirations were made once, by the leader of its group.
    for (b, leader) in buckets.iter().zip(leaders) {
        let mut by_gateway = Vec::new();
        for g in all {
            by_gateway.push(expired_on(&f, g, b).await);
        }
        assert_eq!(by_gateway.iter().sum::<u64>(), 3, "{b}: {by_gateway:?}");
        assert_eq!(by_gateway[leader as usize - 1], 3, "{b}: {by_gateway:?}");
    }
    dir.down();
}

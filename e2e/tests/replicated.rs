//! Three gateways sharing one replicated index, as real processes: what one acknowledges the
//! others serve at once; killing the Raft leader in the middle of a stream of PUTs loses no
//! acknowledged write; restarting every gateway brings every entry back; a leader paused past an
//! election serves no stale read when it wakes; drains and re-replication keep a quorum. Every
//! test ends by checking that the surviving replicas hold identical records.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_e2e::fleet::{self, FleetFile, FleetSpec};

mod common;
use common::*;

fn base_port() -> u16 {
    // Below the ephemeral range, apart from the other fleet test's ports.
    29_000 + (std::process::id() % 150) as u16 * 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_one_index_survive_leader_loss_and_full_restart() {
    let Some(bin_dir) = fleet_binaries("replicated index") else {
        return;
    };
    let mut dir = FleetDir::new();
    let mut f = fleet::up(&FleetSpec {
        dir: dir.path().to_path_buf(),
        bin_dir,
        gateways: 3,
        zones: 3,
        nodes_per_zone: 2,
        base_port: base_port(),
        // Snapshots every 20 entries of a group: the killed leader, down while 300 PUTs commit
        // (spread over the groups the stream splits off), must catch up from a snapshot, the log
        // behind it being purged. Partitions split past 10 writes/s,
        // so the stream of sequential keys below splits the index while the leader changes.
        gateway_args: [
            "--raft-snapshot-every=20",
            "--split-write-threshold=10",
            "--split-cooldown=2s",
            "--partition-load-half-life=2s",
        ]
        .map(String::from)
        .to_vec(),
    })
    .unwrap();
    let all = [0, 1, 2];
    let first_leader = leader(&f, &all).await;
    eprintln!("leader: gateway {first_leader}");
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[1].create_bucket().bucket(BUCKET).send().await.unwrap();

    // 1. Write through one gateway, read and list through the others at once.
    let mut acked = BTreeSet::new();
    for i in 0..30 {
        let key = format!("a/{i:04}");
        s3[i % 3]
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(body_of(&key)))
            .send()
            .await
            .unwrap();
        let got = s3[(i + 1) % 3]
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} not readable through the next gateway: {e:?}"));
        assert!(got.body.collect().await.unwrap().into_bytes() == body_of(&key));
        let listed = s3[(i + 2) % 3]
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("a/")
            .send()
            .await
            .unwrap();
        assert_eq!(
            listed.key_count(),
            Some(i as i32 + 1),
            "list through gateway {}",
            (i + 2) % 3
        );
        acked.insert(key);
    }
    // A delete through one is seen by the others.
    s3[2]
        .delete_object()
        .bucket(BUCKET)
        .key("a/0000")
        .send()
        .await
        .unwrap();
    acked.remove("a/0000");
    assert!(
        s3[0]
            .head_object()
            .bucket(BUCKET)
            .key("a/0000")
            .send()
            .await
            .is_err()
    );

    // Racing conditional creates of one key through all three gateways: exactly one wins. Each
    // gateway checks "absent" on its own replica; the guard on the committed batch is what
    // refuses the losers.
    let racers: Vec<_> = (0..24)
        .map(|i| {
            let c = s3[i % 3].clone();
            tokio::spawn(async move {
                c.put_object()
                    .bucket(BUCKET)
                    .key("race")
                    .if_none_match("*")
                    .body(ByteStream::from(format!("writer {i}").into_bytes()))
                    .send()
                    .await
                    .map(|_| i)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(status, Some(412), "a losing conditional create: {e:?}");
            }
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let got = s3[0]
        .get_object()
        .bucket(BUCKET)
        .key("race")
        .send()
        .await
        .unwrap();
    let text = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(text.as_ref(), format!("writer {}", winners[0]).as_bytes());
    s3[1]
        .delete_object()
        .bucket(BUCKET)
        .key("race")
        .send()
        .await
        .unwrap();
    let mut attempted = acked.clone();

    // 2. Kill -9 the leader during a stream of PUTs through the other two.
    let survivors: Vec<usize> = all.iter().copied().filter(|&g| g != first_leader).collect();
    let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let clients: Vec<_> = survivors.iter().map(|&g| s3[g].clone()).collect();
        let acked_so_far = acked_so_far.clone();
        tokio::spawn(async move {
            let mut acks: BTreeMap<String, Instant> = BTreeMap::new();
            let mut tried = BTreeSet::new();
            let started = Instant::now();
            for i in 0..400 {
                if started.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let key = format!("b/{i:04}");
                tried.insert(key.clone());
                let put = clients[i % clients.len()]
                    .put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .body(ByteStream::from(body_of(&key)))
                    .send()
                    .await;
                if put.is_ok() {
                    acks.insert(key, Instant::now());
                    acked_so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            (acks, tried)
        })
    };
    let wait_from = Instant::now();
    while acked_so_far.load(std::sync::atomic::Ordering::SeqCst) < 100 {
        assert!(
            wait_from.elapsed() < Duration::from_secs(60),
            "the PUT stream stalled before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = Instant::now();
    fleet::signal(f.gateways[first_leader].pid, "KILL");
    let (acks, tried) = writer.await.unwrap();
    let after = acks.values().filter(|t| **t > killed_at).count();
    assert!(
        after >= 200,
        "only {after} PUTs succeeded after the leader was killed"
    );
    // The longest pause between two acknowledgements: the election and the clients' retries.
    let mut times: Vec<&Instant> = acks.values().collect();
    times.sort();
    let pause = times
        .windows(2)
        .map(|w| w[1].duration_since(*w[0]))
        .max()
        .unwrap();
    let new_leader = leader(&f, &survivors).await;
    eprintln!(
        "leader {first_leader} killed after 100 acknowledged PUTs: {} of {} acknowledged in all, {after} after the kill; longest pause {pause:?}; new leader {new_leader}",
        acks.len(),
        tried.len()
    );
    assert_ne!(new_leader, first_leader);
    acked.extend(acks.into_keys());
    attempted.extend(tried);
    check_everything(&f, &survivors, &acked, &attempted).await;
    // The stream of sequential keys split the index, and the survivors agree on the map (once
    // the decaying write rate stops splitting).
    let mut map = partition_map(&f, new_leader).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = partition_map(&f, new_leader).await;
        if again == map {
            break;
        }
        map = again;
    }
    let parts = map["partitions"].as_array().unwrap().len();
    eprintln!(
        "partitions after the stream: {parts} (map version {})",
        map["version"]
    );
    assert!(parts >= 3, "the hot prefix did not split the index: {map}");
    for &g in &survivors {
        assert_eq!(partition_map(&f, g).await, map, "gateway {g}'s map");
    }

    // The killed gateway comes back, catches up and serves everything. The log it missed was
    // purged behind the survivors' snapshots (in the group the stream wrote most to), so it
    // caught up from one.
    let survivor = replication(&f, new_leader).await.unwrap();
    let (busiest, purged) = survivor["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].clone(), g["purged_index"].as_u64().unwrap_or(0)))
        .max_by_key(|(_, purged)| *purged)
        .unwrap();
    let before = replication(&f, first_leader).await;
    assert!(before.is_none(), "the killed gateway still answers");
    fleet::restart_gateway(dir.path(), &mut f, first_leader).unwrap();
    check_everything(&f, &[first_leader], &acked, &attempted).await;
    assert_eq!(
        partition_map(&f, first_leader).await,
        map,
        "the restarted gateway's map"
    );
    // Its reads were already served (through replicas of the groups it had not caught up in);
    // the snapshot of the busiest group may still be on its way (a group born while it was down
    // is created here only once its leader notices the missing replica): wait for it, bounded.
    let snapshot_of = |back: &serde_json::Value| {
        back["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == busiest)
            .and_then(|g| g["snapshot_index"].as_u64())
            .unwrap_or(0)
    };
    let waiting = Instant::now();
    let mut back = replication(&f, first_leader).await.unwrap();
    while snapshot_of(&back) < purged && waiting.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        back = replication(&f, first_leader).await.unwrap();
    }
    let back_snapshot = snapshot_of(&back);
    eprintln!(
        "group {busiest}: the survivors' log purged up to {purged}; the restarted gateway's snapshot: {back_snapshot}"
    );
    assert!(purged >= 20, "the survivors purged only up to {purged}");
    assert!(
        back_snapshot >= purged,
        "the restarted gateway did not install a snapshot of group {busiest}: {back}"
    );

    // 3. Restart every gateway: the group re-forms and every entry is back.
    for g in all {
        fleet::signal(f.gateways[g].pid, "KILL");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for g in all {
        fleet::restart_gateway(dir.path(), &mut f, g).unwrap();
    }
    leader(&f, &all).await;
    check_everything(&f, &all, &acked, &attempted).await;
    for g in all {
        assert_eq!(
            partition_map(&f, g).await,
            map,
            "gateway {g}'s map after the restart"
        );
    }

    // Reads served by a gateway reach the load figures of the leaders of the partitions they
    // read (which drive the read splits those leaders decide).
    leader(&f, &all).await;
    let load = partition_load(&f, 0).await;
    for l in &load {
        assert_eq!(l["replicas"], serde_json::json!([1, 2, 3]), "{l}");
        assert!(l["leader"].as_u64().is_some(), "{l}");
    }
    // Each partition (id) with its leader's place in the fleet, as gateway 0 sees it now.
    let led_by = || async {
        partition_load(&f, 0)
            .await
            .iter()
            .filter_map(|l| Some((l["id"].as_u64()?, l["leader"].as_u64()? as usize - 1)))
            .collect::<Vec<(u64, usize)>>()
    };
    // The reads go through the gateway leading the fewest partitions: the others count them.
    let leaders = led_by().await;
    let reader = *all
        .iter()
        .min_by_key(|g| leaders.iter().filter(|(_, l)| l == *g).count())
        .unwrap();
    let leaders_reads = || async {
        let mut total = 0.0;
        for (id, l) in led_by().await {
            let figures = partition_load(&f, l).await;
            let mine = figures.iter().find(|p| p["id"].as_u64() == Some(id));
            total += mine.map_or(0.0, |p| p["readsPerSecond"].as_f64().unwrap());
        }
        total
    };
    let quiet_by = Instant::now() + Duration::from_secs(60);
    while leaders_reads().await > 1.0 {
        assert!(
            Instant::now() < quiet_by,
            "the leaders' read rates never decayed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for key in acked.iter().take(300) {
        s3[reader]
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    // Reports go out every second (the rebalancer's tick).
    let reported_by = Instant::now() + Duration::from_secs(10);
    let reported = loop {
        let reported = leaders_reads().await;
        if reported > 10.0 || Instant::now() > reported_by {
            break reported;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "the leaders' read rates after 300 HEADs through gateway {reader} (leading {} of {} partitions): {reported:.1}/s",
        leaders.iter().filter(|(_, l)| *l == reader).count(),
        leaders.len()
    );
    assert!(
        reported > 10.0,
        "the reads never reached the partitions' leaders"
    );

    dir.down();
}

async fn voters(f: &FleetFile, g: usize) -> Option<Vec<u64>> {
    members(f, g).await.map(|(v, _)| v.into_iter().collect())
}

/// Waits until the leader among `alive` reports exactly `want` as voters.
async fn wait_for_voters(f: &FleetFile, alive: &[usize], want: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = leader(f, alive).await;
        let got = voters(f, l).await;
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "voters stay {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `args` with its `--peer` list replaced by gateways 1..=n at `admin_urls`.
fn with_peers(args: &[String], admin_urls: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--peer" {
            it.next();
        } else {
            out.push(a.clone());
        }
    }
    for (i, url) in admin_urls.iter().enumerate() {
        out.push("--peer".into());
        out.push(format!("{}={url}", i + 1));
    }
    out
}

fn replace_arg(args: &mut [String], flag: &str, value: &str) {
    let at = args.iter().position(|a| a == flag).expect("flag present") + 1;
    args[at] = value.to_string();
}

/// Stops gateway `g` (SIGTERM, waiting for it to exit) and starts it with `args`.
async fn roll(dir: &std::path::Path, f: &mut FleetFile, g: usize, args: Vec<String>) {
    let pid = f.gateways[g].pid;
    fleet::signal(pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet::alive(pid) {
        assert!(Instant::now() < deadline, "gateway {g} ignores SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.gateways[g].args = args;
    fleet::restart_gateway(dir, f, g).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_the_gateway_list_changes_the_group_membership() {
    let Some(bin_dir) = fleet_binaries("membership") else {
        return;
    };
    let mut dir = FleetDir::new();
    // Its own range (below the ephemeral ports), apart from every other test's.
    let base = 12_000 + (std::process::id() % 400) as u16 * 20;
    // Every listed gateway votes here (at most five), so scaling changes the voters.
    let mut f = fleet_of(&dir, bin_dir, 3, base, vec!["--index-replicas=5".into()]);
    wait_for_voters(&f, &[0, 1, 2], &[1, 2, 3]).await;
    let s3 = client(&f.gateways[0].s3, &f);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for i in 0..20 {
        let key = format!("k{i:02}");
        s3.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(body_of(&key)))
            .send()
            .await
            .unwrap();
    }

    // A split and a merge first: the new gateway rebuilds groups whose history holds a group
    // (the merged one) that no longer runs anywhere.
    split_and_merge_back(&f, "k10").await;

    // Scale up: a fourth gateway, then every gateway restarted (one at a time) with four peers.
    let (s3_4, admin_4) = (
        format!("127.0.0.1:{}", base + 12),
        format!("127.0.0.1:{}", base + 13),
    );
    let mut admins: Vec<String> = f.gateways.iter().map(|g| g.admin.clone()).collect();
    admins.push(format!("http://{admin_4}"));
    let mut args4 = with_peers(&f.gateways[0].args, &admins);
    replace_arg(&mut args4, "--listen", &s3_4);
    replace_arg(&mut args4, "--admin-listen", &admin_4);
    replace_arg(&mut args4, "--gateway-id", "4");
    let data4 = dir.path().join("gateways").join("gw-3");
    replace_arg(&mut args4, "--data", &data4.display().to_string());
    let mut fourth = f.gateways[0].clone();
    (
        fourth.s3,
        fourth.admin,
        fourth.data_dir,
        fourth.args,
        fourth.pid,
    ) = (
        format!("http://{s3_4}"),
        format!("http://{admin_4}"),
        data4,
        args4,
        0,
    );
    f.gateways.push(fourth);
    fleet::restart_gateway(dir.path(), &mut f, 3).unwrap();
    for g in 0..3 {
        let args = with_peers(&f.gateways[g].args, &admins);
        roll(dir.path(), &mut f, g, args).await;
    }
    wait_for_voters(&f, &[0, 1, 2, 3], &[1, 2, 3, 4]).await;
    eprintln!("scaled up to voters [1, 2, 3, 4]");
    let s3_new = client(&f.gateways[3].s3, &f);
    let listed = list_all(&s3_new).await;
    assert_eq!(listed.len(), 20, "the new gateway lists {listed:?}");
    replicas_identical(&f, &[0, 1, 2, 3]).await;
    s3_new
        .put_object()
        .bucket(BUCKET)
        .key("from-4")
        .body(ByteStream::from(body_of("from-4")))
        .send()
        .await
        .unwrap();
    s3.head_object()
        .bucket(BUCKET)
        .key("from-4")
        .send()
        .await
        .unwrap();

    // Scale down: every remaining gateway restarted with three peers; the fourth leaves.
    admins.pop();
    for g in 0..3 {
        let args = with_peers(&f.gateways[g].args, &admins);
        roll(dir.path(), &mut f, g, args).await;
    }
    wait_for_voters(&f, &[0, 1, 2], &[1, 2, 3]).await;
    eprintln!("scaled down to voters [1, 2, 3]");
    fleet::signal(f.gateways[3].pid, "KILL");
    // With the fourth really gone from the group, two of three is a quorum: losing one more
    // gateway still leaves the index writable (with four voters it would not be).
    let l = leader(&f, &[0, 1, 2]).await;
    let victim = (l + 1) % 3;
    fleet::signal(f.gateways[victim].pid, "KILL");
    let through = client(&f.gateways[l].s3, &f);
    through
        .put_object()
        .bucket(BUCKET)
        .key("after")
        .body(ByteStream::from(body_of("after")))
        .send()
        .await
        .unwrap();
    assert_eq!(list_all(&through).await.len(), 22);
    dir.down();
}

/// Splits the last partition at `key` of [`BUCKET`], waits for its group to split off, then
/// merges the two back and waits for the groups to merge (as gateway 0 sees them).
async fn split_and_merge_back(f: &FleetFile, key: &str) {
    let wait_for = |want: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while data_groups(f, 0).await != want {
            assert!(Instant::now() < deadline, "never {want} data groups");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for(1).await;
    let last = split_last(f, 0, BUCKET, key).await;
    wait_for(2).await;
    let merge = post_partitions(f, 0, format!("{last}/merge"), serde_json::Value::Null).await;
    assert!(merge.is_success(), "merge: HTTP {merge}");
    wait_for(1).await;
}

/// Waits until the leader among `alive` reports members for which `done` holds; returns them.
async fn wait_for_members(
    f: &FleetFile,
    alive: &[usize],
    what: &str,
    done: impl Fn(&BTreeSet<u64>, &BTreeSet<u64>) -> bool,
) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let l = leader(f, alive).await;
        let got = members(f, l).await;
        if let Some((voters, learners)) = &got
            && done(voters, learners)
        {
            return (voters.clone(), learners.clone());
        }
        assert!(Instant::now() < deadline, "never {what}: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Four gateways in zones a, b, c, a with `args`, once three of them vote, one per zone; the
/// fleet, the voters and the learner.
async fn four_gateways_three_voting(
    dir: &FleetDir,
    bin_dir: std::path::PathBuf,
    base_port: u16,
    gateway_args: Vec<String>,
) -> (FleetFile, BTreeSet<u64>, BTreeSet<u64>) {
    let f = fleet_of(dir, bin_dir, 4, base_port, gateway_args);
    let zone = |id: u64| (id - 1) % 3;
    let (voters, learners) =
        wait_for_members(&f, &[0, 1, 2, 3], "three voters in three zones", |v, l| {
            v.len() == 3
                && l.len() == 1
                && v.iter().map(|id| zone(*id)).collect::<BTreeSet<_>>().len() == 3
        })
        .await;
    (f, voters, learners)
}

/// PUTs `keys` through `s3` (each must be acknowledged) and returns them.
async fn put_all(s3: &aws_sdk_s3::Client, keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut done = Vec::new();
    for key in keys {
        s3.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(body_of(&key)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
        done.push(key);
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_gone_past_the_grace_period_hands_its_vote_to_a_live_gateway() {
    let Some(bin_dir) = fleet_binaries("re-replication") else {
        return;
    };
    let mut dir = FleetDir::new();
    let base = 16_000 + (std::process::id() % 400) as u16 * 20;
    let all = [0, 1, 2, 3];
    let (f, voters, learners) =
        four_gateways_three_voting(&dir, bin_dir, base, vec!["--replica-grace=3s".into()]).await;
    eprintln!("voters {voters:?}, learners {learners:?}");
    let spare = *learners.first().unwrap();

    let l = leader(&f, &all).await;
    let s3 = client(&f.gateways[l].s3, &f);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut acked = put_all(&s3, (0..20).map(|i| format!("before/{i:03}"))).await;
    // The learner serves what the voters committed, at once.
    let learner = client(&f.gateways[spare as usize - 1].s3, &f);
    assert_eq!(
        list_all(&learner).await,
        acked,
        "listed through the learner"
    );
    let last = acked.last().unwrap();
    let got = learner
        .get_object()
        .bucket(BUCKET)
        .key(last)
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == body_of(last));

    // A voter other than the leader dies; two of three still commit.
    let first_victim = *voters.iter().find(|id| **id as usize - 1 != l).unwrap();
    fleet::signal(f.gateways[first_victim as usize - 1].pid, "KILL");
    acked.extend(put_all(&s3, (0..20).map(|i| format!("during/{i:03}"))).await);
    // Past the grace period the spare votes in its place.
    let alive: Vec<usize> = all
        .iter()
        .copied()
        .filter(|g| *g as u64 + 1 != first_victim)
        .collect();
    let (voters, _) = wait_for_members(&f, &alive, "the spare voting", |v, l| {
        v.len() == 3
            && v.contains(&spare)
            && !v.contains(&first_victim)
            && l.contains(&first_victim)
    })
    .await;
    eprintln!("after gateway {first_victim} was gone: voters {voters:?}");
    // Every data group (each lives on three gateways only) has replaced it too.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let l = leader(&f, &alive).await;
        let groups = fleet_groups(&f, l).await;
        let repaired = !groups.is_empty()
            && groups.iter().all(|g| {
                let voters = id_set(g, "voters").unwrap_or_default();
                voters.len() == 3 && !voters.contains(&first_victim)
            });
        if repaired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the groups never replaced gateway {first_victim}: {groups:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second voter dies. Without the hand-over, two of the three voters would now be down and
    // nothing could commit; with it, the leader and the spare still form a majority.
    let l = leader(&f, &alive).await;
    let second_victim = *voters
        .iter()
        .find(|id| **id as usize - 1 != l && **id != spare)
        .unwrap();
    fleet::signal(f.gateways[second_victim as usize - 1].pid, "KILL");
    let s3 = client(&f.gateways[l].s3, &f);
    acked.extend(put_all(&s3, (0..20).map(|i| format!("after/{i:03}"))).await);

    // Everything acknowledged is there, through both survivors.
    let acked: BTreeSet<String> = acked.into_iter().collect();
    check_everything(&f, &[l, spare as usize - 1], &acked, &acked).await;
    dir.down();
}

/// `PUT /admin/v1/index/retiring` through gateway `g` (as the operator drains before a
/// scale-down); its replication status after, if it answers.
async fn retire(f: &FleetFile, g: usize, ids: &BTreeSet<u64>) -> Option<serde_json::Value> {
    let resp = reqwest::Client::new()
        .put(format!("{}/admin/v1/index/retiring", f.gateways[g].admin))
        .bearer_auth(&f.admin_token)
        .json(&serde_json::json!({ "ids": ids }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    assert!(
        resp.status().is_success(),
        "retiring: HTTP {}",
        resp.status()
    );
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_gateways_hand_their_votes_and_the_leadership_to_the_others() {
    let Some(bin_dir) = fleet_binaries("drain") else {
        return;
    };
    let mut dir = FleetDir::new();
    let base = 4_000 + (std::process::id() % 400) as u16 * 20;
    // The grace period stays at its default (minutes), so nothing but the drain moves a vote.
    let all = [0, 1, 2, 3];
    let (mut f, voters, learners) = four_gateways_three_voting(&dir, bin_dir, base, vec![]).await;
    let l = leader(&f, &all).await as u64 + 1;
    // Drain the leader and one other voter: without the drain, killing them leaves one of three
    // voters and nothing commits.
    let other = *voters.iter().find(|id| **id != l).unwrap();
    let retiring = BTreeSet::from([l, other]);
    let staying: Vec<usize> = all
        .iter()
        .copied()
        .filter(|g| !retiring.contains(&(*g as u64 + 1)))
        .collect();
    eprintln!("voters {voters:?}, learners {learners:?}, leader {l}; retiring {retiring:?}");

    let s3 = client(&f.gateways[staying[0]].s3, &f);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut acked = put_all(&s3, (0..10).map(|i| format!("before/{i:03}"))).await;
    // Writes go on during the drain (bounded: 60 keys).
    let writer = {
        let s3 = s3.clone();
        tokio::spawn(async move { put_all(&s3, (0..60).map(|i| format!("during/{i:03}"))).await })
    };
    // Said once, through a staying gateway: the set is committed in the index, so it needs no
    // repeating (the operator repeats it anyway).
    let told = retire(&f, staying[1], &retiring)
        .await
        .expect("the retiring set is committed");
    assert_eq!(id_set(&told, "retiring"), Some(retiring.clone()));
    // That gateway crashes and comes back mid-drain: it still holds the set, and so does
    // whichever gateway leads after the hand-over.
    fleet::signal(f.gateways[staying[1]].pid, "KILL");
    fleet::restart_gateway(dir.path(), &mut f, staying[1]).expect("restarts");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = replication(&f, staying[1]).await;
        // In the meta group and every other group: none of the retiring votes or leads. The
        // groups this gateway runs and those only peers run (it may have just dropped a replica
        // that was moved, and not have it back yet).
        let drained = |g: &serde_json::Value| {
            id_set(g, "voters").is_some_and(|v| v.is_disjoint(&retiring))
                && g["leader"].as_u64().is_some_and(|l| !retiring.contains(&l))
        };
        let all_drained = |groups: Option<&Vec<serde_json::Value>>| {
            groups.is_some_and(|groups| groups.iter().all(drained))
        };
        let no_groups = Vec::new();
        if let Some(s) = &status
            && drained(s)
            && all_drained(s["groups"].as_array())
            && all_drained(s["remote_groups"].as_array().or(Some(&no_groups)))
        {
            assert_eq!(id_set(s, "retiring"), Some(retiring.clone()));
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "drain never finished: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("drained: {status:?}");
    // The new leader tells Prometheus how many gateways are draining.
    let l = leader(&f, &staying).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{}/metrics", f.gateways[l].admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sample = text
            .lines()
            .find_map(|line| line.strip_prefix("cairn_index_raft_retiring_peers "))
            .map(str::trim);
        if sample == Some("2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retiring gauge on the leader: {sample:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    acked.extend(writer.await.unwrap());

    // The drained gateways die at once (a StatefulSet scale-down); the others still commit.
    for id in &retiring {
        fleet::signal(f.gateways[*id as usize - 1].pid, "KILL");
    }
    let s3 = client(&f.gateways[staying[1]].s3, &f);
    acked.extend(put_all(&s3, (0..10).map(|i| format!("after/{i:03}"))).await);
    let acked: BTreeSet<String> = acked.into_iter().collect();
    check_everything(&f, &staying, &acked, &acked).await;
    dir.down();
}

/// GET of `key` through `s3`: its body, or `None` if there is no such key.
async fn get_body(s3: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket(BUCKET).key(key).send().await {
        Ok(got) => Some(got.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(e) => panic!("GET {key}: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_serves_no_stale_reads_when_it_wakes() {
    let Some(bin_dir) = fleet_binaries("paused leader") else {
        return;
    };
    let mut dir = FleetDir::new();
    let base = 8_000 + (std::process::id() % 400) as u16 * 20;
    let f = fleet_of(&dir, bin_dir, 3, base, Vec::new());
    let all = [0, 1, 2];
    let l = leader(&f, &all).await;
    let a = (l + 1) % 3;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[a].create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut acked: BTreeSet<String> = put_all(&s3[a], (0..10).map(|i| format!("before/{i:03}")))
        .await
        .into_iter()
        .collect();
    let mut attempted = acked.clone();

    // PUTs through the leader's own gateway are in flight when it stops (as in a long GC pause,
    // or a partition that heals): each may or may not be acknowledged.
    let in_flight: Vec<String> = (0..5).map(|i| format!("inflight/{i:03}")).collect();
    attempted.extend(in_flight.iter().cloned());
    let writer = {
        let s3 = s3[l].clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for key in in_flight {
                let put = s3
                    .put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .body(ByteStream::from(body_of(&key)))
                    .send()
                    .await;
                if put.is_ok() {
                    done.push(key);
                }
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    fleet::signal(f.gateways[l].pid, "STOP");

    // The others elect a leader among themselves and go on: new keys, an overwrite, a delete.
    let paused: Vec<String> = (0..20).map(|i| format!("paused/{i:03}")).collect();
    attempted.extend(paused.iter().cloned());
    acked.extend(put_all(&s3[a], paused.into_iter()).await);
    let overwritten = "before/001";
    s3[a]
        .put_object()
        .bucket(BUCKET)
        .key(overwritten)
        .body(ByteStream::from_static(
            b"written while the old leader slept",
        ))
        .send()
        .await
        .unwrap();
    let deleted = "before/002";
    s3[a]
        .delete_object()
        .bucket(BUCKET)
        .key(deleted)
        .send()
        .await
        .unwrap();
    acked.remove(deleted);
    attempted.remove(deleted);
    let new_leader = leader(&f, &[a, (l + 2) % 3]).await;
    assert_ne!(new_leader, l, "the paused gateway cannot still lead");

    // The old leader wakes believing it leads, with these reads already waiting for it. They
    // must see all of that: a read barrier needs a quorum's confirmation, which it no longer gets.
    let early_reads = [overwritten, deleted].map(|key| {
        let s3 = s3[l].clone();
        tokio::spawn(async move { get_body(&s3, key).await })
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    fleet::signal(f.gateways[l].pid, "CONT");
    let [got_overwritten, got_deleted] = early_reads;
    assert_eq!(
        got_overwritten.await.unwrap().as_deref(),
        Some(&b"written while the old leader slept"[..]),
        "the woken gateway served the overwritten value"
    );
    assert_eq!(
        got_deleted.await.unwrap(),
        None,
        "the woken gateway served a deleted key"
    );
    let listed: BTreeSet<String> = list_all(&s3[l]).await.into_iter().collect();
    let missing: Vec<_> = acked.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "the woken gateway lists without keys acknowledged meanwhile: {missing:?}"
    );
    acked.extend(writer.await.unwrap());
    // It writes again, through whichever gateway leads now.
    acked.extend(put_all(&s3[l], (0..5).map(|i| format!("after/{i:03}"))).await);
    attempted.extend((0..5).map(|i| format!("after/{i:03}")));

    // The overwritten key was checked by value above (its body is no longer `body_of` it).
    acked.remove(overwritten);
    check_everything(&f, &all, &acked, &attempted).await;
    dir.down();
}

/// Gateway `g`'s storage nodes (`GET /admin/v1/nodes`): id → (endpoint, state).
async fn nodes_of(f: &FleetFile, g: usize) -> Option<BTreeMap<String, (String, String)>> {
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/v1/nodes", f.gateways[g].admin))
        .bearer_auth(&f.admin_token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let body: Vec<serde_json::Value> = resp.json().await.ok()?;
    Some(
        body.iter()
            .map(|n| {
                let s = |k: &str| n[k].as_str().unwrap().to_string();
                (s("id"), (s("endpoint"), s("state")))
            })
            .collect(),
    )
}

/// How many shards storage node `node` of fleet `f` holds (its `GET /v1/status`, signed with
/// the fleet credential).
async fn shards_on(f: &FleetFile, node: &fleet::NodeEntry) -> u64 {
    let secret = cairn_transport::Secret::new("fleet", &f.fleet_secret, 32).unwrap();
    let client = cairn_storage_node::client::NodeClient::new(
        cairn_transport::FleetClient::with_secret(&secret),
        node.id.parse().unwrap(),
        node.endpoint.clone(),
    );
    client.status().await.unwrap().shards
}

/// Waits until gateway `g` knows `want` storage nodes, `id` among them and up.
async fn wait_for_node(f: &FleetFile, g: usize, id: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = nodes_of(f, g).await.unwrap_or_default();
        if nodes.len() == want && nodes.get(id).is_some_and(|(_, state)| state == "up") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway {g} never learnt of {id}: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_node_registered_through_one_gateway_serves_every_gateway() {
    let Some(bin_dir) = fleet_binaries("storage-node registry") else {
        return;
    };
    let mut dir = FleetDir::new();
    // Below every other test's range (and above the privileged ports).
    let base = 1_100 + (std::process::id() % 140) as u16 * 20;
    let mut f = fleet_of(&dir, bin_dir, 3, base, Vec::new());
    let all = [0, 1, 2];
    leader(&f, &all).await;
    // The fleet's six nodes, three gateways' ports, then the new node's.
    let node = fleet::add_node(dir.path(), &mut f, "node-a9", "a", base + 12).unwrap();
    let register = |g: usize, id: &str, body: serde_json::Value| {
        let url = format!("{}/admin/v1/nodes/{id}", f.gateways[g].admin);
        let token = f.admin_token.clone();
        async move {
            reqwest::Client::new()
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let body = serde_json::json!({"zone": "a", "endpoint": node.endpoint});
    assert_eq!(register(0, &node.id, body.clone()).await, 201);
    assert_eq!(register(0, &node.id, body.clone()).await, 200);
    let bad = serde_json::json!({"zone": "a", "endpoint": "ftp://x"});
    assert_eq!(register(0, "node-a8", bad).await, 400);
    let nameless = serde_json::json!({"zone": "", "endpoint": node.endpoint});
    assert_eq!(register(0, "node-a8", nameless).await, 400);
    // The others take it from the index's registry.
    for g in all {
        wait_for_node(&f, g, &node.id, 7).await;
    }

    // Gateway 2 restarted without any --node flag learns all seven from the index.
    let mut args = f.gateways[2].args.clone();
    while let Some(at) = args.iter().position(|a| a == "--node") {
        args.drain(at..at + 2);
    }
    roll(dir.path(), &mut f, 2, args).await;
    wait_for_node(&f, 2, &node.id, 7).await;

    // Writes through it place shards on the new node, and read back through the others.
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[2].create_bucket().bucket(BUCKET).send().await.unwrap();
    let keys = put_all(&s3[2], (0..24).map(|i| format!("spread/{i:02}0"))).await;
    let shards = shards_on(&f, &node).await;
    assert!(shards > 0, "no shard reached the registered node");
    for g in [0, 1] {
        for key in &keys {
            assert_eq!(
                get_body(&s3[g], key).await.as_deref(),
                Some(body_of(key).as_slice()),
                "{key} through gateway {g}"
            );
        }
    }
    eprintln!("the registered node holds {shards} shards after 24 PUTs through gateway 2");

    // Removed through gateway 1: every gateway drops it (none lists it in its flags) and places
    // no new shard on it, and the blobs on it still read from the endpoint they recorded.
    let remove = || {
        let req = reqwest::Client::new()
            .delete(format!(
                "{}/admin/v1/nodes/{}",
                f.gateways[1].admin, node.id
            ))
            .bearer_auth(&f.admin_token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(remove().await, 204);
    assert_eq!(remove().await, 404);
    let deadline = Instant::now() + Duration::from_secs(60);
    for g in all {
        loop {
            let nodes = nodes_of(&f, g).await.unwrap_or_default();
            if nodes.len() == 6 && !nodes.contains_key(&node.id) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateway {g} keeps {}: {nodes:?}",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    put_all(&s3[2], (0..12).map(|i| format!("after/{i:02}0"))).await;
    assert_eq!(
        shards_on(&f, &node).await,
        shards,
        "shards placed on a removed node"
    );
    for key in &keys {
        assert_eq!(
            get_body(&s3[2], key).await.as_deref(),
            Some(body_of(key).as_slice()),
            "{key} through gateway 2 after the removal"
        );
    }
    dir.down();
}

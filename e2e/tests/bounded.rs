//! Data groups live on three of five gateways (real processes): the meta leader spreads their
//! replicas over all five, every gateway serves every key (those it holds no replica of through
//! the groups' replicas), a killed gateway's replicas are rebuilt elsewhere after the grace
//! period, and partitions merge back even when their groups live on different gateways.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_e2e::fleet::{self, FleetFile};

mod common;
use common::*;

/// This suite's ports (5 gateways and 6 storage nodes: 16 ports), below the ephemeral range.
fn base_port() -> u16 {
    30_000 + (std::process::id() % 100) as u16 * 20
}

/// The data groups (every group but the meta group) as gateway `g` sees the fleet.
async fn data_groups_of(f: &FleetFile, g: usize) -> Vec<serde_json::Value> {
    fleet_groups(f, g)
        .await
        .into_iter()
        .filter(|g| g["objects_from"].is_string())
        .collect()
}

/// Waits (up to `secs`) until the leader among `alive` sees data groups for which `done` holds.
async fn wait_for_groups(
    f: &FleetFile,
    alive: &[usize],
    secs: u64,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let l = leader(f, alive).await;
        let groups = data_groups_of(f, l).await;
        if !groups.is_empty() && done(&groups) {
            return groups;
        }
        assert!(Instant::now() < deadline, "never {what}: {groups:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether every group votes on three gateways and is not changing (no learners), none of them
/// in `not_on`.
fn on_three(groups: &[serde_json::Value], not_on: &BTreeSet<u64>) -> bool {
    groups.iter().all(|g| {
        let voters = id_set(g, "voters").unwrap_or_default();
        voters.len() == 3
            && voters.is_disjoint(not_on)
            && id_set(g, "learners").is_some_and(|l| l.is_empty())
    })
}

async fn put_through(s3: &aws_sdk_s3::Client, key: &str) {
    put(s3, key)
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_groups_live_on_three_of_five_gateways_and_every_gateway_serves_them() {
    let Some(bin_dir) = fleet_binaries("bounded groups") else {
        return;
    };
    let mut dir = FleetDir::new();
    let f = fleet_of(
        &dir,
        bin_dir,
        5,
        base_port(),
        vec!["--replica-grace=3s".into()],
    );
    let all = [0, 1, 2, 3, 4];
    let started = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s: {what}", started.elapsed().as_secs_f64());
    leader(&f, &all).await;
    let s3: Vec<_> = f.gateways.iter().map(|g| client(&g.s3, &f)).collect();
    s3[0].create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        let key = format!("k{i:02}");
        put_through(&s3[i % 5], &key).await;
        acked.insert(key);
    }

    // Four data groups; their replicas spread from the first three gateways over all five.
    for at in ["k05", "k10", "k15"] {
        split_last(&f, 0, BUCKET, at).await;
    }
    let none = BTreeSet::new();
    let groups = wait_for_groups(&f, &all, 180, "4 data groups spread over 5 gateways", |g| {
        let hosts: BTreeSet<u64> = g
            .iter()
            .flat_map(|g| id_set(g, "voters").unwrap_or_default())
            .collect();
        g.len() == 4 && on_three(g, &none) && hosts.len() == 5
    })
    .await;
    phase("spread");
    eprintln!("spread: {groups:#?}");
    // Each gateway runs exactly the data groups it is a member of (a replica moved away is
    // dropped), as the leader sees them at the time.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = leader(&f, &all).await;
        let now = data_groups_of(&f, l).await;
        let mut mismatched = Vec::new();
        for g in 0..f.gateways.len() {
            let id = gw_id(g);
            let member_of: BTreeSet<u64> = now
                .iter()
                .filter(|x| {
                    let mut m = id_set(x, "voters").unwrap_or_default();
                    m.extend(id_set(x, "learners").unwrap_or_default());
                    m.contains(&id)
                })
                .filter_map(|x| x["group"].as_u64())
                .collect();
            let runs = data_groups_hosted(&f, g).await;
            if runs != member_of {
                mismatched.push((id, runs, member_of));
            }
        }
        if mismatched.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateways run other groups than they are members of: {mismatched:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    phase("every gateway runs exactly its groups");
    // Writes and reads through every gateway, whether it holds the key's group or not.
    for i in 20..60 {
        let key = format!("k{i:02}");
        put_through(&s3[i % 5], &key).await;
        acked.insert(key);
    }
    check_everything(&f, &all, &acked, &acked).await;
    phase("written and read through every gateway");

    // A gateway holding data groups (not the meta leader) dies: past the grace period its
    // replicas are rebuilt on the others, and writes go on meanwhile.
    let l = leader(&f, &all).await;
    let victim = (0..5)
        .find(|g| {
            *g != l
                && groups
                    .iter()
                    .any(|x| id_set(x, "voters").unwrap_or_default().contains(&gw_id(*g)))
        })
        .expect("a gateway holding data groups");
    fleet::signal(f.gateways[victim].pid, "KILL");
    let alive: Vec<usize> = all.iter().copied().filter(|g| *g != victim).collect();
    for i in 0..20 {
        let key = format!("after/{i:02}");
        put_through(&s3[alive[i % alive.len()]], &key).await;
        acked.insert(key);
    }
    phase("written with a gateway down");
    let gone = BTreeSet::from([gw_id(victim)]);
    wait_for_groups(
        &f,
        &alive,
        180,
        "the dead gateway's replicas rebuilt",
        |g| g.len() == 4 && on_three(g, &gone),
    )
    .await;
    phase("the dead gateway's replicas rebuilt");
    check_everything(&f, &alive, &acked, &acked).await;

    // Merge the partitions back into one: groups on different gateways move together first.
    let map = partition_map(&f, alive[0]).await;
    let first = map["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .find(|id| *id != 1)
        .expect("a data partition");
    for _ in 0..3 {
        let merged = post_partitions(
            &f,
            alive[0],
            format!("{first}/merge"),
            serde_json::Value::Null,
        )
        .await;
        assert!(merged.is_success(), "merge: HTTP {merged}");
    }
    wait_for_groups(&f, &alive, 240, "one data group again", |g| {
        g.len() == 1 && on_three(g, &gone)
    })
    .await;
    phase("merged back");
    check_everything(&f, &alive, &acked, &acked).await;
    dir.down();
}

/// The gateway id of fleet gateway `g` (ids start at 1).
fn gw_id(g: usize) -> u64 {
    g as u64 + 1
}

/// The data groups gateway `g` runs a replica of.
async fn data_groups_hosted(f: &FleetFile, g: usize) -> BTreeSet<u64> {
    replication(f, g)
        .await
        .and_then(|r| r["groups"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|x| x["objects_from"].is_string())
        .filter_map(|x| x["group"].as_u64())
        .collect()
}

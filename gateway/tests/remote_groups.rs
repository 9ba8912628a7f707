//! A gateway serves keys owned by an index group it runs no replica of: three gateways in one
//! process (each its own RocksDB, Raft groups and index, their internal routes served on
//! loopback), one of which stops its replica of a data group. Everything through that gateway
//! (reads, conditional writes, deletes and lists crossing from its own group into the remote
//! one) must behave as through the others, and guarded writes racing through two gateways must
//! still conflict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::consensus::{Consensus, ConsensusConfig, rpc};
use cairn_gateway::index::engine::RocksEngine;
use cairn_gateway::index::keys;
use cairn_gateway::index::records::BucketRecord;
use cairn_gateway::index::{Deleted, Index, IndexError, IndexOptions, Stamp, WriteCondition};
use cairn_gateway::metrics::GatewayMetrics;

mod common;
use common::{index_keys, inline_record as record};

struct Gateway {
    index: Index,
    consensus: Arc<Consensus>,
    metrics: Arc<GatewayMetrics>,
}

/// Three gateways forming one replicated index, their internal routes served on loopback.
async fn three_gateways(dir: &std::path::Path) -> Vec<Gateway> {
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, format!("http://{}", l.local_addr().unwrap()));
        listeners.push(l);
    }
    let mut out = Vec::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        let engine = Arc::new(RocksEngine::open(&dir.join(format!("g{id}"))).unwrap());
        let cfg = ConsensusConfig {
            id,
            peers: peers.clone(),
            token: "t".into(),
            snapshot_every: 1000,
            zone: ["a", "b", "c"][id as usize - 1].into(),
            replicas: 3,
            replica_grace: Duration::from_secs(60),
        };
        let metrics = Arc::new(GatewayMetrics::new());
        let consensus =
            Consensus::start(cfg, engine.clone(), reqwest::Client::new(), metrics.clone())
                .await
                .unwrap();
        let routes: axum::Router = rpc::router(consensus.clone());
        tokio::spawn(async move { axum::serve(listener, routes).await });
        let index = Index::replicated(engine, consensus.clone(), IndexOptions::default());
        out.push(Gateway {
            index,
            consensus,
            metrics,
        });
    }
    out
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
    until("a meta leader is elected", async || {
        gws[0].consensus.leader().is_some()
    })
    .await;
    gws[0]
        .index
        .create_bucket(BucketRecord::new("b", "o", 0))
        .await
        .unwrap();
    // Object keys go to a group of their own, which is then split at "m".
    let leader = gws
        .iter()
        .position(|g| g.consensus.is_leader())
        .expect("a leader");
    let lead = &gws[leader].index;
    lead.rebalance_once().await.unwrap();
    let at = keys::object("b", "m");
    let p = lead.partition_map().lookup(&at).clone();
    lead.split_partition(p.id, at.clone()).await.unwrap();
    let right = lead.partition_map().lookup(&at).id.0;
    until("every gateway runs both data groups", async || {
        gws.iter()
            .all(|g| g.consensus.host().owner_of(&at) == Some(right))
    })
    .await;
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

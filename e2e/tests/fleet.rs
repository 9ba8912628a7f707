//! The launcher starts real processes that serve S3, and `down` stops every one of them.
//! It runs the binaries next to the test executable: `cargo test --workspace` builds them fresh.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use cairn_e2e::fleet::{self, FleetSpec};

fn base_port() -> u16 {
    // Below the ephemeral range; spread by pid so parallel runs do not collide.
    21_000 + (std::process::id() % 400) as u16 * 20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_s3_and_down_stops_everything() {
    let bin_dir = fleet::default_bin_dir();
    if !bin_dir.join("cairn-gateway").exists() || !bin_dir.join("cairn-storage-node").exists() {
        // `cargo test --workspace` builds every binary first; a lone `-p cairn-e2e` may not.
        eprintln!(
            "SKIPPED fleet test: {} lacks the cairn binaries (run cargo test --workspace)",
            bin_dir.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = |gateways| FleetSpec {
        dir: dir.path().to_path_buf(),
        bin_dir: fleet::default_bin_dir(),
        gateways,
        zones: 3,
        nodes_per_zone: 2,
        base_port: base_port(),
        gateway_args: Vec::new(),
    };
    assert!(fleet::up(&spec(0)).is_err(), "a fleet needs a gateway");
    let f = fleet::up(&spec(1)).unwrap();
    assert_eq!(f.nodes.len(), 6);
    assert_eq!(
        fleet::read(dir.path()).unwrap().gateways[0].pid,
        f.gateways[0].pid
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&f.gateways[0].s3)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &f.access_key,
            &f.secret_key,
            None,
            None,
            "t",
        ))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    s3.create_bucket().bucket("fleet").send().await.unwrap();
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    s3.put_object()
        .bucket("fleet")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("fleet")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
    // The six shards landed on the nodes' disks.
    let shard_files: usize = f
        .nodes
        .iter()
        .map(|n| walk(&n.data_dir.join("shards")))
        .sum();
    assert_eq!(shard_files, 6);

    // `cairn-fleet add-node` starts a seventh node and registers it: the gateway lists it.
    let out = std::process::Command::new(fleet::default_bin_dir().join("cairn-fleet"))
        .args(["add-node", "--zone", "a", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "add-node: {out:?}");
    let f = fleet::read(dir.path()).unwrap();
    assert_eq!(f.nodes.len(), 7);
    assert_eq!(f.nodes[6].id, "node-a3");
    let listed: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{}/admin/v1/nodes", f.gateways[0].admin))
        .bearer_auth(&f.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed
            .iter()
            .any(|n| n["id"] == "node-a3" && n["endpoint"] == f.nodes[6].endpoint),
        "{listed:?}"
    );

    fleet::down(dir.path(), Duration::from_secs(10)).unwrap();
    for pid in f.nodes.iter().map(|n| n.pid).chain([f.gateways[0].pid]) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z"),
            "pid {pid} still runs"
        );
    }
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

//! Starts real `cairn-storage-node` processes on 127.0.0.1 for integration tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_storage_node::client::NodeClient;
use cairn_storage_node::codec::{Codec, ErasureProfile};
use cairn_storage_node::format::{Geometry, PlacementEntry, ShardSpec};
use cairn_storage_node::ids::{ObjectId, ShardIndex};

/// The fleet credential every test node is started with.
pub const FLEET_SECRET: &str = "test-fleet-secret-0123456789abcdef";

/// A client signing with [`FLEET_SECRET`].
pub fn fleet_client() -> cairn_transport::FleetClient {
    cairn_transport::FleetClient::with_secret(
        &cairn_transport::Secret::new("fleet", FLEET_SECRET, 32).unwrap(),
    )
}

/// One running node process; killed on drop.
pub struct NodeProcess {
    pub id: String,
    pub zone: String,
    pub data_dir: PathBuf,
    pub port: u16,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

/// A free port below the kernel's ephemeral range (32768+ by default), so that no outgoing
/// connection can take a killed node's port before the node restarts on it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Wrapping inside 20000..32000: a port in the ephemeral range could be taken by any
    // outgoing connection between this check and the node's bind (seen as AddrInUse).
    let offset = (std::process::id() % 1000) as u16 * 12;
    loop {
        let port = 20_000 + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl NodeProcess {
    pub fn start(id: &str, zone: &str, data_dir: &Path, extra_args: &[&str]) -> Self {
        let mut n = NodeProcess {
            id: id.into(),
            zone: zone.into(),
            data_dir: data_dir.into(),
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-storage-node"))
            .args(["--node-id", &self.id, "--zone", &self.zone, "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(if self.extra_args.iter().any(|a| a == "--min-free-bytes") {
                &[][..]
            } else {
                &["--min-free-bytes", "0"][..]
            })
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .env("CAIRN_FLEET_SECRET", FLEET_SECRET)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn cairn-storage-node");
        self.child = Some(child);
    }

    /// The process id of the running node.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client signing with the fleet secret, for this node.
    pub fn client(&self) -> NodeClient {
        NodeClient::new(fleet_client(), self.id.parse().unwrap(), self.endpoint())
    }

    pub async fn wait_ready(&self) {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ready().await {
            assert!(
                Instant::now() < deadline,
                "node {} did not become ready",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to clean up, like a power cut of the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }

    pub fn shard_path(&self, object: ObjectId, index: u8) -> PathBuf {
        let hex = object.to_hex();
        self.data_dir
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{index}"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Gives every node the list of all of them (as the gateways do): repair asks only these.
pub async fn introduce(nodes: &[NodeProcess]) {
    let peers = cairn_storage_node::api::Peers {
        nodes: nodes
            .iter()
            .map(|n| PlacementEntry {
                node: n.id.parse().unwrap(),
                endpoint: n.endpoint(),
            })
            .collect(),
    };
    for n in nodes {
        n.client().put_peers(&peers).await.unwrap();
    }
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    // xorshift: deterministic, fast, no shared RNG state between tests.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn object_id(seed: u64) -> ObjectId {
    let b = random_bytes(16, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    ObjectId::from_bytes(b.try_into().unwrap())
}

/// An object erasure-coded into k+m shard payloads, with the specs to store them under.
pub struct EncodedObject {
    pub data: Vec<u8>,
    pub specs: Vec<ShardSpec>,
    pub payloads: Vec<Vec<u8>>,
}

pub fn encode_object(
    id: ObjectId,
    data: Vec<u8>,
    k: u8,
    m: u8,
    stripe: u32,
    nodes: &[(String, String)],
) -> EncodedObject {
    let profile = ErasureProfile::new(k, m).unwrap();
    let mut codec = Codec::new(profile);
    let n = profile.total_shards();
    let mut payloads = vec![Vec::new(); n];
    for chunk in data.chunks(stripe as usize) {
        for (i, shard) in codec.encode_stripe(chunk).unwrap().into_iter().enumerate() {
            payloads[i].extend_from_slice(&shard);
        }
    }
    let placement: Vec<PlacementEntry> = (0..n)
        .map(|i| PlacementEntry {
            node: nodes[i % nodes.len()].0.parse().unwrap(),
            endpoint: nodes[i % nodes.len()].1.clone(),
        })
        .collect();
    let specs = (0..n)
        .map(|i| ShardSpec {
            object_id: id,
            shard_index: ShardIndex(i as u8),
            profile,
            stripe_size: stripe,
            object_length: data.len() as u64,
            placement: placement.clone(),
        })
        .collect();
    EncodedObject {
        data,
        specs,
        payloads,
    }
}

/// Rebuilds the object from whichever shard payloads are given (None = missing).
pub fn decode_object(spec: &ShardSpec, shards: &[Option<Vec<u8>>]) -> Vec<u8> {
    let g: Geometry = spec.geometry();
    let mut codec = Codec::new(spec.profile);
    let mut out = Vec::new();
    for b in 0..g.block_count() {
        let (off, len) = (g.block_offset(b) as usize, g.block_len(b) as usize);
        let mut stripe: Vec<Option<Vec<u8>>> = shards
            .iter()
            .map(|s| s.as_ref().map(|p| p[off..off + len].to_vec()))
            .collect();
        out.extend(
            codec
                .decode_stripe(&mut stripe, g.stripe_data_len(b) as usize)
                .unwrap(),
        );
    }
    out
}

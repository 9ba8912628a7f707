//! Command-line and environment configuration of `cairn-gateway`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_storage_node::config::parse_byte_size;
use clap::{Args, Parser, Subcommand};

use crate::data::nodes::{NodeConfig, parse_node};
use crate::storage_class::{StorageClassSpec, parse_storage_class};

/// Cairn gateway: the S3 API over erasure-coded storage nodes.
#[derive(Debug, Parser)]
#[command(name = "cairn-gateway", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// `--log-format text|json` (`CAIRN_LOG_FORMAT`).
    #[command(flatten)]
    pub log: cairn_logging::LogArgs,
}

/// `CAIRN_STORAGE_CLASSES` unless it is set but empty (no class besides STANDARD): clap would
/// hand the empty string to the parser, which refuses it.
fn storage_classes_env() -> Option<&'static str> {
    const VAR: &str = "CAIRN_STORAGE_CLASSES";
    std::env::var_os(VAR)
        .is_none_or(|v| !v.is_empty())
        .then_some(VAR)
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A whole fleet on one machine: a gateway and six storage nodes in three zones.
    Dev(DevArgs),
    /// A gateway against remote storage nodes (what the Kubernetes pods run).
    Serve(ServeArgs),
}

impl GatewayArgs {
    /// When index partitions split and merge.
    pub fn split_policy(&self) -> crate::index::partition::policy::SplitPolicy {
        crate::index::partition::policy::SplitPolicy {
            write_threshold: self.split_write_threshold,
            read_threshold: self.split_read_threshold,
            size_limit: self.split_size_limit,
            cooldown_ms: self.split_cooldown.as_millis() as u64,
            quiet_ms: self.merge_quiet_period.as_millis() as u64,
            half_life_ms: self.partition_load_half_life.as_millis() as u64,
            ..Default::default()
        }
    }
}

/// Settings shared by `dev` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Address of the S3 API.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Address of the admin API.
    #[arg(long, env = "CAIRN_ADMIN_LISTEN", default_value = "127.0.0.1:9001")]
    pub admin_listen: SocketAddr,
    /// Objects and parts up to this size are kept in the index instead of on storage nodes.
    #[arg(long, env = "CAIRN_INLINE_THRESHOLD", default_value = "64K", value_parser = parse_byte_size)]
    pub inline_threshold: u64,
    /// Object bytes per erasure-coded stripe.
    #[arg(long, env = "CAIRN_STRIPE_SIZE", default_value = "1M", value_parser = parse_byte_size)]
    pub stripe_size: u64,
    /// Data shards (k) of the erasure profile.
    #[arg(long, env = "CAIRN_DATA_SHARDS", default_value_t = 4)]
    pub data_shards: u8,
    /// Parity shards (m) of the erasure profile.
    #[arg(long, env = "CAIRN_PARITY_SHARDS", default_value_t = 2)]
    pub parity_shards: u8,
    /// A storage class besides STANDARD (whose profile is --data-shards/--parity-shards), as
    /// `NAME=K+M[:stripe=SIZE][:zone=ZONE]`, e.g. `STANDARD_IA=6+3` or `GLACIER_IR=8+4:stripe=4M`;
    /// repeat for each (or comma-separate in `CAIRN_STORAGE_CLASSES`).
    /// An empty `CAIRN_STORAGE_CLASSES` means none.
    #[arg(long = "storage-class", env = storage_classes_env(), value_delimiter = ',', value_parser = parse_storage_class)]
    pub storage_classes: Vec<StorageClassSpec>,
    /// The length of a lifecycle "day": lifecycle rules count days of this length, and lifecycle
    /// passes run ten times per day (at least every hour). Shorten it for tests and demos.
    #[arg(long, env = "CAIRN_LIFECYCLE_DAY_LENGTH", default_value = "24h", value_parser = humantime::parse_duration)]
    pub lifecycle_day_length: Duration,
    /// Most versions and uploads a lifecycle run evaluates per second (0: no limit).
    #[arg(long, env = "CAIRN_LIFECYCLE_RATE", default_value_t = 1000)]
    pub lifecycle_rate: u32,
    /// Failpoint for crash tests: a merge coordinator that finds this file deletes it and aborts
    /// the process between the merge's freeze and its absorb (the file makes it fire once).
    #[arg(long, hide = true)]
    pub failpoint_merge_crash_file: Option<PathBuf>,
    /// Freed shards are deleted this long after their object was overwritten or deleted, so that
    /// reads already under way can finish.
    #[arg(long, env = "CAIRN_GC_DELAY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub gc_delay: Duration,
    /// How often the garbage collector runs.
    #[arg(long, env = "CAIRN_GC_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub gc_interval: Duration,
    /// Shards of an upload that never commits (a crashed gateway) are collected this long after
    /// the upload began.
    #[arg(long, env = "CAIRN_UPLOAD_TIMEOUT", default_value = "6h", value_parser = humantime::parse_duration)]
    pub upload_timeout: Duration,
    /// Region reported to clients.
    #[arg(long, env = "CAIRN_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Base domain for virtual-hosted-style requests (`bucket.DOMAIN`), with the port if not 80.
    /// Requests to other host names and to IP addresses are path-style.
    #[arg(long, env = "CAIRN_DOMAIN")]
    pub domain: Option<String>,
    /// PEM certificate chain: the S3 API is served over HTTPS (with `--tls-key`). The admin API
    /// stays plain HTTP (in-cluster, token-protected). Read at start; restart to rotate.
    #[arg(long, env = "CAIRN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "CAIRN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Split an index partition taking more committed writes per second than this.
    #[arg(long, env = "CAIRN_SPLIT_WRITE_THRESHOLD", default_value_t = 3500.0)]
    pub split_write_threshold: f64,
    /// Split an index partition serving more reads per second than this.
    #[arg(long, env = "CAIRN_SPLIT_READ_THRESHOLD", default_value_t = 5500.0)]
    pub split_read_threshold: f64,
    /// Split an index partition larger than this on disk.
    #[arg(long, env = "CAIRN_SPLIT_SIZE_LIMIT", default_value = "512M", value_parser = parse_byte_size)]
    pub split_size_limit: u64,
    /// A partition just split or merged is left alone this long.
    #[arg(long, env = "CAIRN_SPLIT_COOLDOWN", default_value = "30s", value_parser = humantime::parse_duration)]
    pub split_cooldown: Duration,
    /// Neighbouring partitions below a tenth of the thresholds merge after staying so this long.
    #[arg(long, env = "CAIRN_MERGE_QUIET_PERIOD", default_value = "10m", value_parser = humantime::parse_duration)]
    pub merge_quiet_period: Duration,
    /// Half-life of the measured partition rates.
    #[arg(long, env = "CAIRN_PARTITION_LOAD_HALF_LIFE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub partition_load_half_life: Duration,
    /// Connections open at once on each of the S3 and admin ports; more are closed on accept.
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// A request head must arrive within this (also closes idle kept-alive connections, and
    /// bounds TLS handshakes).
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails with `RequestTimeout`; a client
    /// that reads nothing of its response for this long loses its connection.
    #[arg(long, env = "CAIRN_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
    /// Accept AWS Signature Version 2 (deprecated; refused by default).
    #[arg(long, env = "CAIRN_ALLOW_SIGV2")]
    pub allow_sigv2: bool,
    /// Also serve `/metrics` on the S3 port to anyone (it names buckets; the admin port always
    /// serves it).
    #[arg(long, env = "CAIRN_PUBLIC_METRICS")]
    pub public_metrics: bool,
}

impl GatewayArgs {
    /// The bounds of the S3 and admin listeners.
    pub fn listener_limits(&self) -> cairn_transport::listener::Limits {
        cairn_transport::listener::Limits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            handshake_timeout: self.header_timeout,
            write_stall_timeout: self.stall_timeout,
            ..Default::default()
        }
    }
}

/// `cairn-gateway dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Directory for the index, the storage nodes' shards and the generated credentials.
    #[arg(long, env = "CAIRN_DATA", default_value = "./cairn-data")]
    pub data: PathBuf,
    /// First of six consecutive loopback ports for the embedded storage nodes.
    #[arg(long, env = "CAIRN_NODE_BASE_PORT", default_value_t = 9100)]
    pub node_base_port: u16,
    /// Scrubber read rate of each embedded node, bytes per second.
    #[arg(long, env = "CAIRN_SCRUB_RATE", default_value = "32M", value_parser = parse_byte_size)]
    pub scrub_rate: u64,
    /// Pause between scrub passes of each embedded node.
    #[arg(long, env = "CAIRN_SCRUB_INTERVAL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub scrub_interval: Duration,
    /// Gateway settings.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

impl ServeArgs {
    /// The replicated index settings, if `--gateway-id` and `--peer` are given.
    pub fn replication(&self) -> Option<cairn_raft::ConsensusConfig> {
        let id = self.gateway_id?;
        Some(cairn_raft::ConsensusConfig {
            id,
            peers: self.peers.iter().cloned().collect(),
            snapshot_every: self.raft_snapshot_every,
            zone: self.zone.clone(),
            replicas: self.index_replicas as usize,
            replica_grace: self.replica_grace,
        })
    }
}

/// `cairn-gateway serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory for the index.
    #[arg(long, env = "CAIRN_DATA", default_value = "./cairn-gateway-data")]
    pub data: PathBuf,
    /// A storage node as `id@zone=http://host:port`; repeat for each node (or comma-separate in
    /// `CAIRN_NODES`). The gateway registers them in the index, and writes to every node
    /// registered there too, so a gateway with `--peer` may start without any.
    #[arg(long = "node", env = "CAIRN_NODES", value_delimiter = ',', value_parser = parse_node, required_unless_present = "peers")]
    pub nodes: Vec<NodeConfig>,
    /// This gateway's id in the replicated index (with `--peer`; unique, stable across restarts;
    /// on Kubernetes the StatefulSet pod's ordinal).
    #[arg(long, env = "CAIRN_GATEWAY_ID", requires = "peers")]
    pub gateway_id: Option<u64>,
    /// Every gateway sharing the replicated index, this one included, as `ID=ADMIN_URL`
    /// (e.g. `1=http://10.0.0.1:9001`); repeat for each (or comma-separate in `CAIRN_PEERS`).
    /// Without it the gateway keeps its index alone.
    #[arg(long = "peer", env = "CAIRN_PEERS", value_delimiter = ',', value_parser = cairn_raft::parse_peer, requires = "gateway_id")]
    pub peers: Vec<(u64, String)>,
    /// The replicated index takes a snapshot every this many log entries and purges the log
    /// before it (a replica further behind catches up from the snapshot).
    #[arg(long, env = "CAIRN_RAFT_SNAPSHOT_EVERY", default_value_t = 50_000)]
    pub raft_snapshot_every: u64,
    /// This gateway's zone (on Kubernetes, the node's `topology.kubernetes.io/zone`): the index
    /// group's voters are spread over zones.
    #[arg(long, env = "CAIRN_ZONE", default_value = "")]
    pub zone: String,
    /// How many gateways vote in the replicated index (the others hold a replica as learners):
    /// three tolerate one failure, five two; more than the listed gateways means all of them.
    #[arg(long, env = "CAIRN_INDEX_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub index_replicas: u64,
    /// How long a voting gateway may be unreachable before another gateway takes its vote (a
    /// restart within it changes nothing).
    #[arg(long, env = "CAIRN_REPLICA_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub replica_grace: Duration,
    /// Gateway settings.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_and_serve_parse() {
        let c = Cli::try_parse_from(["g", "dev", "--data", "/tmp/x", "--inline-threshold", "0"])
            .unwrap();
        match c.command {
            Command::Dev(d) => {
                assert_eq!(d.gateway.inline_threshold, 0);
                assert_eq!(d.gateway.data_shards, 4);
                assert!(d.gateway.storage_classes.is_empty());
                assert_eq!(d.gateway.lifecycle_day_length, Duration::from_secs(86_400));
            }
            _ => panic!("dev expected"),
        }
        let c = Cli::try_parse_from([
            "g",
            "dev",
            "--storage-class",
            "COLD=2+1",
            "--storage-class",
            "GLACIER_IR=8+4:stripe=4M",
            "--lifecycle-day-length",
            "10s",
        ])
        .unwrap();
        match c.command {
            Command::Dev(d) => {
                let names: Vec<&str> = d
                    .gateway
                    .storage_classes
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                assert_eq!(names, ["COLD", "GLACIER_IR"]);
                assert_eq!(d.gateway.lifecycle_day_length, Duration::from_secs(10));
            }
            _ => panic!("dev expected"),
        }
        assert!(Cli::try_parse_from(["g", "dev", "--storage-class", "cold=2+1"]).is_err());
        let c = Cli::try_parse_from([
            "g",
            "serve",
            "--node",
            "n1@a=http://127.0.0.1:1",
            "--node",
            "n2@b=http://127.0.0.1:2",
        ])
        .unwrap();
        match c.command {
            Command::Serve(s) => {
                assert_eq!(s.nodes.len(), 2);
                assert_eq!(s.gateway_id, None);
                assert!(s.peers.is_empty());
            }
            _ => panic!("serve expected"),
        }
        assert!(Cli::try_parse_from(["g", "serve"]).is_err());
        // A replicated gateway may learn its storage nodes from the index.
        let c = Cli::try_parse_from(["g", "serve", "--gateway-id", "1", "--peer", "1=http://h1"]);
        match c.unwrap().command {
            Command::Serve(s) => assert!(s.nodes.is_empty()),
            _ => panic!("serve expected"),
        }
        let node = ["--node", "n1@a=http://127.0.0.1:1"];
        let c = Cli::try_parse_from(
            [
                "g",
                "serve",
                "--gateway-id",
                "2",
                "--peer",
                "1=http://h1:9001/",
            ]
            .into_iter()
            .chain(["--peer", "2=http://h2:9001"])
            .chain(node),
        )
        .unwrap();
        match c.command {
            Command::Serve(s) => {
                assert_eq!(s.gateway_id, Some(2));
                assert_eq!(
                    s.peers,
                    [
                        (1, "http://h1:9001".to_string()),
                        (2, "http://h2:9001".into())
                    ]
                );
                let r = s.replication().unwrap();
                assert_eq!((r.replicas, r.zone.as_str()), (3, ""));
                assert_eq!(r.replica_grace, Duration::from_secs(300));
            }
            _ => panic!("serve expected"),
        }
        let placed = ["g", "serve", "--gateway-id", "1", "--peer", "1=http://h1"];
        let c = Cli::try_parse_from(
            placed
                .into_iter()
                .chain([
                    "--zone",
                    "b",
                    "--index-replicas",
                    "5",
                    "--replica-grace",
                    "30s",
                ])
                .chain(node),
        )
        .unwrap();
        match c.command {
            Command::Serve(s) => {
                let r = s.replication().unwrap();
                assert_eq!((r.replicas, r.zone.as_str()), (5, "b"));
                assert_eq!(r.replica_grace, Duration::from_secs(30));
            }
            _ => panic!("serve expected"),
        }
        // A group needs a voter.
        let none = placed
            .into_iter()
            .chain(["--index-replicas", "0"])
            .chain(node);
        assert!(Cli::try_parse_from(none).is_err());
        // An id without peers, peers without an id, and malformed peers are refused.
        assert!(
            Cli::try_parse_from(["g", "serve", "--gateway-id", "1"].into_iter().chain(node))
                .is_err()
        );
        assert!(
            Cli::try_parse_from(
                ["g", "serve", "--peer", "1=http://h"]
                    .into_iter()
                    .chain(node)
            )
            .is_err()
        );
        for bad in ["x=http://h", "-1=http://h", "1=h:9001", "1"] {
            assert!(cairn_raft::parse_peer(bad).is_err(), "{bad}");
        }
    }
}

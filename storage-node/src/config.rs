//! Command-line and environment configuration of `cairn-storage-node`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_transport::Secret;
use cairn_transport::secret::parse_secret;
use clap::Parser;

use crate::ids::NodeId;

/// A Cairn storage node: keeps erasure-coded shards on disk with per-block checksums.
#[derive(Debug, Clone, Parser)]
#[command(name = "cairn-storage-node", version)]
pub struct NodeConfig {
    /// Stable name of this node (in Kubernetes, the pod name). Recorded in shard placements.
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: NodeId,
    /// Failure zone of this node (Kubernetes `topology.kubernetes.io/zone`).
    #[arg(long, env = "CAIRN_ZONE", default_value = "default")]
    pub zone: String,
    /// Directory holding the shard files.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-node-data")]
    pub data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// Free space always kept on the data filesystem; writes that would cross it fail with 507.
    #[arg(long, env = "CAIRN_MIN_FREE_BYTES", default_value = "64M", value_parser = parse_byte_size)]
    pub min_free_bytes: u64,
    /// Scrubber read rate in bytes per second (e.g. `32M`); 0 means unlimited.
    #[arg(long, env = "CAIRN_SCRUB_RATE", default_value = "32M", value_parser = parse_byte_size)]
    pub scrub_rate: u64,
    /// Time from the end of one scrub pass to the start of the next (e.g. `24h`, `30m`).
    /// `POST /v1/scrub` starts a pass at any time.
    #[arg(long, env = "CAIRN_SCRUB_INTERVAL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub scrub_interval: Duration,
    /// Shards younger than this are not checked against their peers by the scrubber, because the
    /// object's writer may still be storing the other shards.
    #[arg(long, env = "CAIRN_REPAIR_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub repair_grace: Duration,
    /// The fleet credential (at least 32 characters, shared by the fleet's gateways and nodes):
    /// `/v1` answers only requests signed with it, and repairs sign with it.
    #[arg(long, env = "CAIRN_FLEET_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub fleet_secret: Secret,
    /// The previous fleet credential, still accepted while a rotation rolls out.
    #[arg(long, env = "CAIRN_FLEET_SECRET_PREVIOUS", value_parser = parse_secret, hide_env_values = true)]
    pub fleet_secret_previous: Option<Secret>,
    /// Deadline of a repair's calls to a peer that move no data (and the fixed part of a block
    /// fetch's deadline, which adds a second per MiB).
    #[arg(long, env = "CAIRN_PEER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub peer_timeout: Duration,
    /// Connections open at once on the API port; more are closed on accept.
    #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// A request head must arrive within this (also closes idle kept-alive connections).
    #[arg(long, env = "CAIRN_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// A shard body that sends nothing for this long, or a reader that takes nothing for this
    /// long, loses its request.
    #[arg(long, env = "CAIRN_STALL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

impl NodeConfig {
    /// The fleet secrets accepted: the current one, then the previous one.
    pub fn fleet_secrets(&self) -> Vec<Secret> {
        std::iter::once(self.fleet_secret.clone())
            .chain(self.fleet_secret_previous.clone())
            .collect()
    }
}

/// Parses `123`, `64K`, `32M`, `2G` (powers of 1024).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a byte size: {s:?}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("byte size too large: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("64K"), Ok(64 << 10));
        assert_eq!(parse_byte_size("32M"), Ok(32 << 20));
        assert_eq!(parse_byte_size("2g"), Ok(2 << 30));
        assert!(parse_byte_size("x").is_err());
        assert!(parse_byte_size("-1").is_err());
        assert!(parse_byte_size("99999999999T").is_err());
    }

    #[test]
    fn flags_parse() {
        let c = NodeConfig::try_parse_from([
            "n",
            "--node-id",
            "node-a1",
            "--zone",
            "a",
            "--min-free-bytes",
            "1M",
            "--scrub-interval",
            "30m",
            "--fleet-secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .unwrap();
        assert_eq!(format!("{:?}", c.fleet_secret), "<redacted>");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert_eq!(c.min_free_bytes, 1 << 20);
        assert_eq!(c.scrub_interval, Duration::from_secs(1800));
        assert_eq!(c.scrub_rate, 32 << 20);
        assert!(NodeConfig::try_parse_from(["n", "--node-id", "Bad Id"]).is_err());
        // The fleet secret is required, and not short.
        assert!(NodeConfig::try_parse_from(["n", "--node-id", "a"]).is_err());
        assert!(
            NodeConfig::try_parse_from(["n", "--node-id", "a", "--fleet-secret", "short"]).is_err()
        );
    }
}

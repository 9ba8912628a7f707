//! The storage nodes the gateway writes to, and whether each is up: probed in the background and
//! marked down at once when a request to it fails to connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_storage_node::client::{ClientError, NodeClient};
use cairn_storage_node::ids::NodeId;
use serde::Serialize;

use super::placement::Candidate;

/// `true` when `e` says the node could not be reached at all (the connection failed), the only
/// failure that marks a node down. A transfer that broke off (the node aborts a read at a corrupt
/// block, a write stream aborted by the gateway itself) says nothing about the node being up.
pub fn unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport { source, .. } if source.is_connect())
}

/// A storage node from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Its id.
    pub id: NodeId,
    /// Its zone.
    pub zone: String,
    /// Base URL of its API.
    pub endpoint: String,
}

/// Parses `id@zone=http://host:port`.
pub fn parse_node(s: &str) -> Result<NodeConfig, String> {
    let (id_zone, endpoint) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not id@zone=http://host:port"))?;
    let (id, zone) = id_zone
        .split_once('@')
        .ok_or_else(|| format!("{s:?} is not id@zone=http://host:port"))?;
    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
        return Err(format!("{endpoint:?} is not an http(s) URL"));
    }
    Ok(NodeConfig {
        id: id.parse().map_err(|e| format!("{e}"))?,
        zone: zone.to_string(),
        endpoint: endpoint.trim_end_matches('/').to_string(),
    })
}

struct Entry {
    config: NodeConfig,
    client: NodeClient,
    up: AtomicBool,
    available_bytes: AtomicU64,
    total_bytes: AtomicU64,
    shard_bytes: AtomicU64,
}

/// What the admin API shows of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Node id.
    pub id: String,
    /// Zone.
    pub zone: String,
    /// API address.
    pub endpoint: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// Bytes free for shards, at the last probe.
    pub available_bytes: u64,
    /// Size of its data filesystem, at the last probe.
    pub total_bytes: u64,
    /// Bytes of shard files, at the last probe.
    pub used_bytes: u64,
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct NodeRegistry {
    entries: Arc<Vec<Entry>>,
}

/// Writes are not placed on a node with less than this free.
const FULL_BELOW_BYTES: u64 = 64 << 20;

impl NodeRegistry {
    /// A registry of `nodes`, all assumed up until a probe says otherwise.
    pub fn new(nodes: Vec<NodeConfig>, http: reqwest::Client) -> Self {
        let entries = nodes
            .into_iter()
            .map(|config| Entry {
                client: NodeClient::new(http.clone(), config.endpoint.clone()),
                config,
                up: AtomicBool::new(true),
                available_bytes: AtomicU64::new(u64::MAX),
                total_bytes: AtomicU64::new(0),
                shard_bytes: AtomicU64::new(0),
            })
            .collect();
        Self {
            entries: Arc::new(entries),
        }
    }

    /// The configured nodes.
    pub fn configs(&self) -> Vec<NodeConfig> {
        self.entries.iter().map(|e| e.config.clone()).collect()
    }

    /// Every node as placement sees it, in configuration order.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.entries
            .iter()
            .map(|e| Candidate {
                id: e.config.id.clone(),
                zone: e.config.zone.clone(),
                usable: e.up.load(Ordering::Relaxed)
                    && e.available_bytes.load(Ordering::Relaxed) >= FULL_BELOW_BYTES,
            })
            .collect()
    }

    /// The client of the `i`-th node.
    pub fn client_at(&self, i: usize) -> &NodeClient {
        &self.entries[i].client
    }

    /// The client of node `id`, if configured; else one for `fallback_endpoint`.
    pub fn client_for(&self, id: &NodeId, fallback_endpoint: &str) -> NodeClient {
        match self.entries.iter().find(|e| &e.config.id == id) {
            Some(e) => e.client.clone(),
            None => NodeClient::new(reqwest::Client::new(), fallback_endpoint),
        }
    }

    /// Position of node `id` in the registry.
    pub fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| &e.config.id == id)
    }

    /// Whether node `i` is believed up.
    pub fn is_up(&self, i: usize) -> bool {
        self.entries[i].up.load(Ordering::Relaxed)
    }

    /// Whether node `id` is believed up (a node not in the registry is assumed up).
    pub fn is_node_up(&self, id: &NodeId) -> bool {
        self.position(id).is_none_or(|i| self.is_up(i))
    }

    /// Marks a node down after a failed connection; the next successful probe brings it back.
    pub fn mark_down(&self, id: &NodeId) {
        if let Some(e) = self.entries.iter().find(|e| &e.config.id == id)
            && e.up.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(node = %id, "storage node marked down");
        }
    }

    /// Number of nodes up.
    pub fn up_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.up.load(Ordering::Relaxed))
            .count()
    }

    /// Node states for the admin API.
    pub fn report(&self) -> Vec<NodeReport> {
        self.entries
            .iter()
            .map(|e| NodeReport {
                id: e.config.id.to_string(),
                zone: e.config.zone.clone(),
                endpoint: e.config.endpoint.clone(),
                state: if e.up.load(Ordering::Relaxed) {
                    "up"
                } else {
                    "down"
                },
                available_bytes: e.available_bytes.load(Ordering::Relaxed),
                total_bytes: e.total_bytes.load(Ordering::Relaxed),
                used_bytes: e.shard_bytes.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Probes every node once: its status endpoint decides up/down and free space.
    pub async fn probe_all(&self) {
        let probes = self.entries.iter().map(|e| async move {
            let status = tokio::time::timeout(Duration::from_secs(2), e.client.status()).await;
            match status {
                Ok(Ok(s)) => {
                    e.available_bytes.store(s.available_bytes, Ordering::Relaxed);
                    e.total_bytes.store(s.total_bytes, Ordering::Relaxed);
                    e.shard_bytes.store(s.shard_bytes, Ordering::Relaxed);
                    if !e.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(node = %e.config.id, "storage node is up");
                    }
                }
                _ => {
                    if e.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(node = %e.config.id, "storage node does not answer; marked down");
                    }
                }
            }
        });
        futures_util::future::join_all(probes).await;
    }

    /// Probes every `interval` until `shutdown` turns true.
    pub async fn probe_loop(
        self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.probe_all().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_flags_parse() {
        let n = parse_node("node-a1@a=http://10.0.0.1:7000/").unwrap();
        assert_eq!(n.id.as_str(), "node-a1");
        assert_eq!(n.zone, "a");
        assert_eq!(n.endpoint, "http://10.0.0.1:7000");
        assert!(parse_node("node-a1=http://x").is_err());
        assert!(parse_node("node-a1@a=ftp://x").is_err());
        assert!(parse_node("Bad@a=http://x").is_err());
    }
}

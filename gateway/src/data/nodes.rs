//! The storage nodes the gateway writes to, and whether each is up: probed in the background and
//! marked down at once when a request to it fails to connect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_storage_node::api::Peers;
use cairn_storage_node::client::{ClientError, NodeClient};
use cairn_storage_node::format::PlacementEntry;
use cairn_storage_node::ids::NodeId;
use cairn_transport::FleetClient;

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
pub use cairn_admin_api::NodeReport;

/// What [`NodeRegistry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The node was known exactly so.
    Unchanged,
    /// A new node, now a placement candidate.
    Added,
    /// A known node with a new zone or endpoint.
    Updated,
}

/// The registry: a copy-on-write list, so a request works on one consistent view while nodes are
/// registered or removed. A node removed takes no new shards; blobs that name it read it from the
/// endpoint they recorded. Cheap to clone.
#[derive(Clone)]
pub struct NodeRegistry {
    entries: Arc<RwLock<Arc<Vec<Arc<Entry>>>>>,
    fleet: FleetClient,
}

/// Writes are not placed on a node with less than this free.
const FULL_BELOW_BYTES: u64 = 64 << 20;

impl Entry {
    fn new(config: NodeConfig, fleet: &FleetClient) -> Self {
        Self {
            client: NodeClient::new(fleet.clone(), config.id.clone(), config.endpoint.clone()),
            config,
            up: AtomicBool::new(true),
            available_bytes: AtomicU64::new(u64::MAX),
            total_bytes: AtomicU64::new(0),
            shard_bytes: AtomicU64::new(0),
        }
    }
}

impl NodeRegistry {
    /// A registry of `nodes`, all assumed up until a probe says otherwise; nodes are called
    /// with `fleet`.
    pub fn new(nodes: Vec<NodeConfig>, fleet: FleetClient) -> Self {
        let registry = Self {
            entries: Arc::default(),
            fleet,
        };
        for n in nodes {
            registry.register(n);
        }
        registry
    }

    fn list(&self) -> Arc<Vec<Arc<Entry>>> {
        self.entries.read().expect("node registry lock").clone()
    }

    /// Adds node `config`, or updates the zone and endpoint of the node with its id (a new
    /// endpoint gets a new client; the node is assumed up until the next probe).
    pub fn register(&self, config: NodeConfig) -> Registered {
        let mut entries = self.entries.write().expect("node registry lock");
        let at = entries.iter().position(|e| e.config.id == config.id);
        if at.is_some_and(|i| entries[i].config == config) {
            return Registered::Unchanged;
        }
        let mut list = entries.as_ref().clone();
        let entry = Arc::new(Entry::new(config.clone(), &self.fleet));
        let done = match at {
            Some(i) => {
                list[i] = entry;
                Registered::Updated
            }
            None => {
                list.push(entry);
                Registered::Added
            }
        };
        *entries = Arc::new(list);
        tracing::info!(node = %config.id, zone = %config.zone, endpoint = %config.endpoint, ?done, "storage node registered");
        done
    }

    /// Drops every node whose id `keep` refuses. Returns the ids dropped. Blobs on a dropped
    /// node are still read from the endpoint they recorded.
    pub fn retain(&self, keep: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
        let mut entries = self.entries.write().expect("node registry lock");
        let (kept, dropped): (Vec<_>, Vec<_>) =
            entries.iter().cloned().partition(|e| keep(&e.config.id));
        if dropped.is_empty() {
            return Vec::new();
        }
        *entries = Arc::new(kept);
        let dropped: Vec<NodeId> = dropped.iter().map(|e| e.config.id.clone()).collect();
        for id in &dropped {
            tracing::info!(node = %id, "storage node no longer registered: no new shards go to it");
        }
        dropped
    }

    /// The known nodes.
    pub fn configs(&self) -> Vec<NodeConfig> {
        self.list().iter().map(|e| e.config.clone()).collect()
    }

    /// Every node as placement sees it, with its configuration, from one view of the registry.
    pub fn placement_view(&self) -> Vec<(Candidate, NodeConfig)> {
        self.list()
            .iter()
            .map(|e| {
                let candidate = Candidate {
                    id: e.config.id.clone(),
                    zone: e.config.zone.clone(),
                    usable: e.up.load(Ordering::Relaxed)
                        && e.available_bytes.load(Ordering::Relaxed) >= FULL_BELOW_BYTES,
                };
                (candidate, e.config.clone())
            })
            .collect()
    }

    /// Number of known nodes.
    pub fn len(&self) -> usize {
        self.list().len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// The clients of the nodes believed up.
    pub fn up_clients(&self) -> Vec<NodeClient> {
        self.list()
            .iter()
            .filter(|e| e.up.load(Ordering::Relaxed))
            .map(|e| e.client.clone())
            .collect()
    }

    /// The client of node `id`, if known; else one for `fallback_endpoint`.
    pub fn client_for(&self, id: &NodeId, fallback_endpoint: &str) -> NodeClient {
        match self.list().iter().find(|e| &e.config.id == id) {
            Some(e) => e.client.clone(),
            None => NodeClient::new(self.fleet.clone(), id.clone(), fallback_endpoint),
        }
    }

    /// Whether node `id` is believed up (a node not in the registry is assumed up).
    pub fn is_node_up(&self, id: &NodeId) -> bool {
        self.list()
            .iter()
            .find(|e| &e.config.id == id)
            .is_none_or(|e| e.up.load(Ordering::Relaxed))
    }

    /// Marks a node down after a failed connection; the next successful probe brings it back.
    pub fn mark_down(&self, id: &NodeId) {
        if let Some(e) = self.list().iter().find(|e| &e.config.id == id)
            && e.up.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(node = %id, "storage node marked down");
        }
    }

    /// Number of nodes up.
    pub fn up_count(&self) -> usize {
        self.list()
            .iter()
            .filter(|e| e.up.load(Ordering::Relaxed))
            .count()
    }

    /// Node states for the admin API.
    pub fn report(&self) -> Vec<NodeReport> {
        self.list()
            .iter()
            .map(|e| NodeReport {
                id: e.config.id.to_string(),
                zone: e.config.zone.clone(),
                endpoint: e.config.endpoint.clone(),
                state: if e.up.load(Ordering::Relaxed) {
                    "up"
                } else {
                    "down"
                }
                .to_string(),
                available_bytes: e.available_bytes.load(Ordering::Relaxed),
                total_bytes: e.total_bytes.load(Ordering::Relaxed),
                used_bytes: e.shard_bytes.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The registered nodes as the peer list storage nodes repair from.
    pub fn peers(&self) -> Peers {
        Peers {
            nodes: self
                .list()
                .iter()
                .map(|e| PlacementEntry {
                    node: e.config.id.clone(),
                    endpoint: e.config.endpoint.clone(),
                })
                .collect(),
        }
        .normalized()
    }

    /// Probes every node once: its status endpoint decides up/down and free space. A node
    /// whose peer list differs from the registry is sent the registry's.
    pub async fn probe_all(&self) {
        let list = self.list();
        let peers = self.peers();
        let digest = peers.digest();
        let peers = &peers;
        let probes = list.iter().map(|e| async move {
            let status = tokio::time::timeout(Duration::from_secs(2), e.client.status()).await;
            match status {
                Ok(Ok(s)) => {
                    e.available_bytes.store(s.available_bytes, Ordering::Relaxed);
                    e.total_bytes.store(s.total_bytes, Ordering::Relaxed);
                    e.shard_bytes.store(s.shard_bytes, Ordering::Relaxed);
                    if !e.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(node = %e.config.id, "storage node is up");
                    }
                    if s.peers_digest != digest
                        && let Err(err) = e.client.put_peers(peers).await
                    {
                        tracing::warn!(node = %e.config.id, error = %err, "could not send the peer list");
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

    #[test]
    fn registering_adds_at_the_end_and_updates_in_place() {
        let n = |s: &str| parse_node(s).unwrap();
        let r = NodeRegistry::new(
            vec![n("n1@a=http://127.0.0.1:1"), n("n2@b=http://127.0.0.1:2")],
            FleetClient::with_secret(
                &cairn_transport::Secret::new("t", &"s".repeat(32), 32).unwrap(),
            ),
        );
        let view = r.placement_view();
        assert_eq!(
            r.register(n("n1@a=http://127.0.0.1:1")),
            Registered::Unchanged
        );
        assert_eq!(r.register(n("n3@c=http://127.0.0.1:3")), Registered::Added);
        assert_eq!(
            r.register(n("n1@a=http://127.0.0.1:9")),
            Registered::Updated
        );
        let ids: Vec<_> = r.configs().iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["n1", "n2", "n3"]);
        assert_eq!(r.configs()[0].endpoint, "http://127.0.0.1:9");
        // A view taken before stays as it was.
        assert_eq!(view.len(), 2);
        assert_eq!(view[0].1.endpoint, "http://127.0.0.1:1");
        // An updated node is up again until a probe says otherwise, a down one stays down.
        r.mark_down(&n("n2@b=http://x").id);
        assert!(!r.is_node_up(&n("n2@b=http://x").id));
        assert_eq!(r.up_count(), 2);
        assert_eq!(r.len(), 3);
        // Removed: no longer placed, read from the recorded endpoint.
        let dropped = r.retain(|id| id.as_str() != "n1");
        assert_eq!(dropped, [n("n1@a=http://x").id]);
        assert!(r.retain(|_| true).is_empty());
        assert!(
            r.placement_view()
                .iter()
                .all(|(c, _)| c.id.as_str() != "n1")
        );
        let id = n("n1@a=http://x").id;
        assert_eq!(
            r.client_for(&id, "http://127.0.0.1:5").endpoint(),
            "http://127.0.0.1:5"
        );
    }
}

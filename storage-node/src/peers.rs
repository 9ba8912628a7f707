//! The fleet's storage nodes as this node knows them: pushed by the gateways from their registry
//! (`PUT /v1/peers`) and kept on disk, so repair works after a restart before a gateway calls.
//! Repair asks only these nodes, at these endpoints: a shard header's placement names nodes, but
//! the endpoints it carries are never dialled, so a forged header cannot point this node at
//! anything outside the fleet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::api::Peers;
use crate::ids::NodeId;

const FILE: &str = "peers.json";

/// The peer list, shared by the API (which replaces it) and repair (which reads it).
#[derive(Clone)]
pub struct PeerDirectory {
    path: PathBuf,
    current: Arc<RwLock<Arc<Listed>>>,
}

struct Listed {
    peers: Peers,
    digest: u64,
    by_id: HashMap<NodeId, String>,
}

impl Listed {
    fn new(peers: Peers) -> Self {
        let peers = peers.normalized();
        let by_id = peers
            .nodes
            .iter()
            .map(|p| (p.node.clone(), p.endpoint.clone()))
            .collect();
        let digest = if peers.nodes.is_empty() {
            0
        } else {
            peers.digest()
        };
        Self {
            peers,
            digest,
            by_id,
        }
    }
}

impl PeerDirectory {
    /// Loads the list kept in `data_dir` (none yet: empty, and repair waits for a gateway).
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(FILE);
        let peers = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable peer list; waiting for a gateway to send one");
                Peers::default()
            }),
            Err(_) => Peers::default(),
        };
        Self {
            path,
            current: Arc::new(RwLock::new(Arc::new(Listed::new(peers)))),
        }
    }

    /// The endpoint of registered node `id`.
    pub fn endpoint(&self, id: &NodeId) -> Option<String> {
        self.snapshot().by_id.get(id).cloned()
    }

    /// The digest of the list held (0 when empty).
    pub fn digest(&self) -> u64 {
        self.snapshot().digest
    }

    /// The list held.
    pub fn peers(&self) -> Peers {
        self.snapshot().peers.clone()
    }

    fn snapshot(&self) -> Arc<Listed> {
        self.current.read().expect("peer directory lock").clone()
    }

    /// Replaces the list, on disk first (blocking I/O).
    pub fn replace(&self, peers: Peers) -> std::io::Result<()> {
        let listed = Listed::new(peers);
        if listed.digest == self.digest() {
            return Ok(());
        }
        for p in &listed.peers.nodes {
            p.validate().map_err(std::io::Error::other)?;
        }
        let bytes = serde_json::to_vec_pretty(&listed.peers).expect("peers serialise");
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        tracing::info!(nodes = listed.peers.nodes.len(), "peer list updated");
        *self.current.write().expect("peer directory lock") = Arc::new(listed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::PlacementEntry;

    #[test]
    fn the_list_survives_a_restart_and_bad_endpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = PeerDirectory::open(dir.path());
        assert_eq!(d.digest(), 0);
        let a: NodeId = "node-a1".parse().unwrap();
        let peers = Peers {
            nodes: vec![PlacementEntry {
                node: a.clone(),
                endpoint: "http://10.0.0.1:7000".into(),
            }],
        };
        d.replace(peers.clone()).unwrap();
        assert_eq!(d.endpoint(&a).as_deref(), Some("http://10.0.0.1:7000"));
        let again = PeerDirectory::open(dir.path());
        assert_eq!(again.digest(), peers.digest());
        assert_eq!(again.endpoint(&a).as_deref(), Some("http://10.0.0.1:7000"));
        let bad = Peers {
            nodes: vec![PlacementEntry {
                node: a,
                endpoint: "file:///etc/passwd".into(),
            }],
        };
        assert!(d.replace(bad).is_err());
        assert_eq!(d.digest(), peers.digest());
    }
}

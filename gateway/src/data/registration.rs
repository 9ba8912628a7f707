//! Keeps this gateway's storage-node registry ([`NodeRegistry`]) in step with the registry the
//! index keeps in its meta partition, so every gateway of a fleet writes to the same nodes.
//!
//! At start a gateway registers the nodes it was configured with (its flags are the operator's
//! latest word: a changed endpoint is rolled out by restarting gateways with the new flags); then
//! it reads the index's registry every few seconds and takes every node it finds, so a node
//! registered through any gateway (`PUT /admin/v1/nodes/{id}`), or configured on any gateway,
//! reaches all of them, and a gateway started without `--node` learns the fleet's nodes. A node
//! removed from the index (`DELETE /admin/v1/nodes/{id}`) leaves every gateway that does not
//! list it in its own flags.

use std::time::Duration;

use cairn_storage_node::ids::NodeId;
use tokio::sync::watch;

use super::nodes::{NodeConfig, NodeRegistry, Registered};
use crate::index::records::{self, StorageNodeRecord};
use crate::index::{Index, IndexError, keys};
use cairn_kv::{EngineError, KvEngine};

/// The registration task of one gateway.
pub struct NodeRegistration {
    index: Index,
    registry: NodeRegistry,
    configured: Vec<NodeConfig>,
}

/// The registry entry a record describes, if its id is valid.
pub fn config_of(rec: &StorageNodeRecord) -> Option<NodeConfig> {
    let id = match rec.id.parse::<NodeId>() {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(node = %rec.id, error = %e, "ignoring a registered storage node with an invalid id");
            return None;
        }
    };
    Some(NodeConfig {
        id,
        zone: rec.zone.clone(),
        endpoint: rec.endpoint.clone(),
    })
}

/// The nodes registered in this gateway's copy of the index, as last applied here (no round trip,
/// so possibly behind): what a restarting gateway writes to until its first sync.
pub fn registered_locally(engine: &dyn KvEngine) -> Result<Vec<NodeConfig>, EngineError> {
    let (start, end) = ([keys::tag::STORAGE_NODE], [keys::tag::STORAGE_NODE + 1]);
    Ok(engine
        .scan(&start, &end, usize::MAX)?
        .iter()
        .filter_map(|(_, v)| records::decode::<StorageNodeRecord>(v).ok())
        .filter_map(|r| config_of(&r))
        .collect())
}

/// `configured` followed by the `registered` nodes not among them (by id).
pub fn known_nodes(configured: &[NodeConfig], registered: Vec<NodeConfig>) -> Vec<NodeConfig> {
    let mut known = configured.to_vec();
    for n in registered {
        if !known.iter().any(|k| k.id == n.id) {
            known.push(n);
        }
    }
    known
}

/// The index record registering `config` now.
pub fn record_of(config: &NodeConfig) -> StorageNodeRecord {
    StorageNodeRecord {
        id: config.id.to_string(),
        zone: config.zone.clone(),
        endpoint: config.endpoint.clone(),
        registered_ms: crate::index::now_ms(),
    }
}

impl NodeRegistration {
    /// Registration of `configured` (this gateway's `--node` flags) into `index`, and of the
    /// index's nodes into `registry`.
    pub fn new(index: Index, registry: NodeRegistry, configured: Vec<NodeConfig>) -> Self {
        Self {
            index,
            registry,
            configured,
        }
    }

    /// Writes the configured nodes the index does not hold exactly so. Returns how many.
    pub async fn announce(&self) -> Result<usize, IndexError> {
        let mut written = 0;
        for n in &self.configured {
            if self.index.put_storage_node(record_of(n)).await?
                != crate::index::NodeRegistration::Unchanged
            {
                tracing::info!(node = %n.id, zone = %n.zone, endpoint = %n.endpoint, "storage node registered in the index");
                written += 1;
            }
        }
        Ok(written)
    }

    /// Takes every node of the index's registry into this gateway's, and drops the nodes that
    /// are neither registered there nor configured here (removed through the admin API).
    /// Returns how many nodes were added, changed or dropped here.
    pub async fn sync(&self) -> Result<usize, IndexError> {
        let registered: Vec<NodeConfig> = self
            .index
            .list_storage_nodes()
            .await?
            .iter()
            .filter_map(config_of)
            .collect();
        let changed = registered
            .iter()
            .filter(|c| self.registry.register((*c).clone()) != Registered::Unchanged)
            .count();
        let known = |id: &NodeId| {
            registered.iter().any(|c| &c.id == id) || self.configured.iter().any(|c| &c.id == id)
        };
        Ok(changed + self.registry.retain(known).len())
    }

    /// Announces until that succeeds once, and syncs every `interval`, until `shutdown`.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut announced = false;
        loop {
            if !announced {
                match self.announce().await {
                    Ok(_) => announced = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register the configured storage nodes in the index yet")
                    }
                }
            }
            if let Err(e) = self.sync().await {
                tracing::debug!(error = %e, "cannot read the storage-node registry of the index");
            }
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
    use crate::data::nodes::parse_node;
    use cairn_kv::{MemEngine, WriteOp};

    #[test]
    fn a_restart_starts_from_the_locally_registered_nodes_behind_its_flags() {
        let n = |s: &str| parse_node(s).unwrap();
        let engine = MemEngine::default();
        let put = |c: &NodeConfig| {
            let rec = record_of(c);
            WriteOp::Put(keys::storage_node(&rec.id), records::encode(&rec))
        };
        engine
            .write(vec![
                put(&n("n1@a=http://127.0.0.1:1")),
                put(&n("n2@b=http://127.0.0.1:2")),
                WriteOp::Put(keys::storage_node("junk"), b"not a record".to_vec()),
                WriteOp::Put(keys::access_key("n3"), b"another table".to_vec()),
            ])
            .unwrap();
        let registered = registered_locally(&engine).unwrap();
        assert_eq!(registered.len(), 2);
        let known = known_nodes(&[n("n2@b=http://127.0.0.1:9")], registered);
        let endpoints: Vec<_> = known.iter().map(|c| c.endpoint.as_str()).collect();
        // The flags win over the (older) registration of the same node.
        assert_eq!(endpoints, ["http://127.0.0.1:9", "http://127.0.0.1:1"]);
    }
}

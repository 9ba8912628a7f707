//! The storage-node registry, kept in the meta partition so every gateway writes to the same
//! nodes: a gateway registers the nodes it was configured with, and one registered (or removed)
//! through the admin API reaches every gateway without a restart.

use super::records::{self, StorageNodeRecord};
use super::{Index, IndexError, keys};
use cairn_kv::WriteOp;

/// What registering a storage node changed in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRegistration {
    /// It was not registered.
    Added,
    /// It was, with another zone or endpoint.
    Updated,
    /// It was registered exactly so (nothing written).
    Unchanged,
}

impl Index {
    /// Registers (or re-registers, with a new zone or endpoint) a storage node. Decided by
    /// the index, not by a gateway's copy of the registry, which its periodic read may have
    /// refreshed from this very write.
    pub async fn put_storage_node(
        &self,
        rec: StorageNodeRecord,
    ) -> Result<NodeRegistration, IndexError> {
        self.run(move |i| {
            let k = keys::storage_node(&rec.id);
            let change = match i.get::<StorageNodeRecord>(&k)? {
                None => NodeRegistration::Added,
                Some(old) if old.zone == rec.zone && old.endpoint == rec.endpoint => {
                    return Ok(NodeRegistration::Unchanged);
                }
                Some(_) => NodeRegistration::Updated,
            };
            i.engine
                .write(vec![WriteOp::Put(k, records::encode(&rec))])?;
            Ok(change)
        })
        .await
    }

    /// Removes a storage node's registration; `false` if it was not registered.
    pub async fn delete_storage_node(&self, id: &str) -> Result<bool, IndexError> {
        self.delete_if_present(keys::storage_node(id)).await
    }

    /// Every registered storage node, by id.
    pub async fn list_storage_nodes(&self) -> Result<Vec<StorageNodeRecord>, IndexError> {
        self.list_table(keys::tag::STORAGE_NODE).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index::IndexOptions;
    use cairn_kv::MemEngine;

    #[tokio::test]
    async fn registering_says_whether_the_node_is_new_changed_or_unchanged() {
        let index = Index::new(Arc::new(MemEngine::default()), IndexOptions::default());
        let node = |endpoint: &str| StorageNodeRecord {
            id: "n1".into(),
            zone: "a".into(),
            endpoint: endpoint.into(),
            registered_ms: 0,
        };
        let put = |rec| index.put_storage_node(rec);
        assert_eq!(
            put(node("http://a")).await.unwrap(),
            NodeRegistration::Added
        );
        assert_eq!(
            put(node("http://a")).await.unwrap(),
            NodeRegistration::Unchanged
        );
        assert_eq!(
            put(node("http://b")).await.unwrap(),
            NodeRegistration::Updated
        );
        assert_eq!(
            index.list_storage_nodes().await.unwrap(),
            vec![node("http://b")]
        );
    }
}

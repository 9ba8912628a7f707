//! The storage-node registry, kept in the meta partition so every gateway writes to the same
//! nodes: a gateway registers the nodes it was configured with, and one registered (or removed)
//! through the admin API reaches every gateway without a restart.

use super::engine::WriteOp;
use super::records::{self, StorageNodeRecord};
use super::{Index, IndexError, keys};

impl Index {
    /// Registers (or re-registers, with a new zone or endpoint) a storage node. Returns `false`
    /// when the node was already registered exactly so (nothing written).
    pub async fn put_storage_node(&self, rec: StorageNodeRecord) -> Result<bool, IndexError> {
        self.run(move |i| {
            let k = keys::storage_node(&rec.id);
            let same = i
                .get::<StorageNodeRecord>(&k)?
                .is_some_and(|old| old.zone == rec.zone && old.endpoint == rec.endpoint);
            if !same {
                i.engine
                    .write(vec![WriteOp::Put(k, records::encode(&rec))])?;
            }
            Ok(!same)
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

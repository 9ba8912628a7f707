//! Pure functions that build the Kubernetes objects the controllers apply: no I/O, so every field
//! that matters is unit-tested without a cluster.

pub mod bucket;
pub mod objectstore;
pub mod quantity;

use std::collections::BTreeMap;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "cairn-operator";
/// `app.kubernetes.io/managed-by` value of every object the operator creates.
pub const MANAGED_BY: &str = "cairn-operator";
/// Label with the zone of a storage node.
pub const ZONE_LABEL: &str = "cairn.io/zone";
/// The well-known node label matched against ObjectStore zones.
pub const TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Labels shared by every object of one ObjectStore component.
pub fn labels(store: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "cairn".to_string()),
        ("app.kubernetes.io/instance".to_string(), store.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
    ])
}

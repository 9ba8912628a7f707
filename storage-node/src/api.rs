//! The storage node's wire types: what travels between the node's server and its clients (the
//! gateway, peers, tests). Both sides import them from here.

use serde::{Deserialize, Serialize};

use crate::format::PlacementEntry;
use crate::ids::NodeId;
use crate::store::ShardKey;

/// Header names of shard metadata.
pub mod headers {
    /// Data shards per stripe.
    pub const K: &str = "x-cairn-k";
    /// Parity shards per stripe.
    pub const M: &str = "x-cairn-m";
    /// Object bytes per stripe.
    pub const STRIPE_SIZE: &str = "x-cairn-stripe-size";
    /// Total object bytes.
    pub const OBJECT_LENGTH: &str = "x-cairn-object-length";
    /// `node=endpoint` per shard index, comma separated.
    pub const PLACEMENT: &str = "x-cairn-placement";
    /// Request id echoed on every response.
    pub const REQUEST_ID: &str = "x-request-id";
}

/// JSON body of every error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an error.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Reply of a successful PUT.
#[derive(Debug, Serialize, Deserialize)]
pub struct PutShardReply {
    /// Payload bytes stored.
    pub bytes: u64,
    /// Blocks stored (one per stripe).
    pub blocks: u64,
}

/// Query of a shard listing page.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Return shards after this `object.index` key.
    pub after: Option<String>,
    /// Page size (1..=10000, default 1000).
    pub limit: Option<usize>,
}

/// One page of a shard listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListReply {
    /// Shards in (object, index) order.
    pub shards: Vec<ShardKey>,
    /// Cursor for the next page, absent on the last one.
    pub next: Option<String>,
}

/// Reply of `GET /v1/status`: who the node is and how full it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub node_id: NodeId,
    /// The node's zone.
    pub zone: String,
    /// Bytes free for shards (above the reserve).
    pub available_bytes: u64,
    /// Size of the data filesystem.
    pub total_bytes: u64,
    /// Shard files stored.
    pub shards: u64,
    /// Bytes of shard files stored.
    pub shard_bytes: u64,
    /// [`Peers::digest`] of the peer list the node holds (0: none; nodes of earlier versions do
    /// not say), so a gateway sends the list only when it differs.
    #[serde(default)]
    pub peers_digest: u64,
}

/// Reply of `POST /v1/scrub`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartScrubReply {
    /// `false` when a pass was already running (it goes on; no second one is queued).
    pub started: bool,
}

/// `PUT /v1/peers`: the fleet's storage nodes, from the gateways' registry. Repair talks only to
/// the nodes listed here, at the endpoints listed here, never to addresses a shard header names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// Every registered node (this one included), by id.
    pub nodes: Vec<PlacementEntry>,
}

impl Peers {
    /// The list sorted by node id, as it is stored and hashed.
    pub fn normalized(mut self) -> Self {
        self.nodes.sort_by(|a, b| a.node.cmp(&b.node));
        self.nodes.dedup_by(|a, b| a.node == b.node);
        self
    }

    /// A digest of the normalized list (never 0), to tell whether a node holds the current one.
    pub fn digest(&self) -> u64 {
        let mut bytes = Vec::new();
        for p in &self.nodes {
            bytes.extend_from_slice(p.node.as_str().as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(p.endpoint.as_bytes());
            bytes.push(0);
        }
        let lo = crc32c::crc32c(&bytes);
        let hi = crc32c::crc32c_append(lo ^ 0x5a5a_5a5a, &bytes);
        (u64::from(hi) << 32 | u64::from(lo)).max(1)
    }
}

/// Renders a placement as the `x-cairn-placement` header value.
pub fn placement_header(placement: &[PlacementEntry]) -> String {
    placement
        .iter()
        .map(|p| format!("{}={}", p.node, p.endpoint))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the `x-cairn-placement` header value.
pub fn parse_placement(s: &str) -> Result<Vec<PlacementEntry>, String> {
    s.split(',')
        .map(|entry| {
            let (node, endpoint) = entry
                .split_once('=')
                .ok_or_else(|| format!("placement entry {entry:?} is not node=endpoint"))?;
            Ok(PlacementEntry {
                node: node
                    .parse()
                    .map_err(|e: crate::ids::IdError| e.to_string())?,
                endpoint: endpoint.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, endpoint: &str) -> PlacementEntry {
        PlacementEntry {
            node: node.parse().unwrap(),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn placement_header_round_trips() {
        let p = vec![entry("a", "http://127.0.0.1:1"), entry("b", "http://h:2")];
        assert_eq!(parse_placement(&placement_header(&p)).unwrap(), p);
        assert!(parse_placement("nonsense").is_err());
    }

    #[test]
    fn a_peer_list_digest_ignores_order_and_sees_every_change() {
        let a = Peers {
            nodes: vec![entry("b", "http://h:2"), entry("a", "http://h:1")],
        }
        .normalized();
        let b = Peers {
            nodes: vec![entry("a", "http://h:1"), entry("b", "http://h:2")],
        }
        .normalized();
        assert_eq!(a.digest(), b.digest());
        let moved = Peers {
            nodes: vec![entry("a", "http://h:1"), entry("b", "http://h:3")],
        };
        assert_ne!(a.digest(), moved.digest());
        assert_ne!(Peers::default().digest(), 0);
    }
}

//! Placement: which storage node holds each of an object's k+m shards. Pure functions.
//!
//! Shards are spread evenly over zones (3 zones, 6 shards: 2 per zone), so losing a whole zone
//! loses at most ⌈(k+m)/zones⌉ shards. Within a zone, nodes are ranked by rendezvous hashing of
//! the object id, so placement is stable and spreads load without any shared state; nodes that are
//! down or full are skipped. A zone with no usable node hands its shards to the other zones (the
//! write stays available, at reduced zone tolerance, and says so in a log line).

use std::collections::BTreeMap;

use cairn_storage_node::ids::{NodeId, ObjectId};

/// A storage node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its failure zone.
    pub zone: String,
    /// `false` when down or full.
    pub usable: bool,
}

/// Why no placement could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No node is usable.
    #[error("no storage node is available")]
    NoUsableNode,
    /// Fewer nodes are usable than a blob must be spread over.
    #[error("only {usable} storage nodes are available, {needed} needed")]
    TooFewNodes { usable: usize, needed: usize },
}

/// A placement and whether it had to leave the even zone spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Index into the candidate list for each shard index.
    pub nodes: Vec<usize>,
    /// `true` when some zone had no usable node and its shards went elsewhere.
    pub zone_degraded: bool,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a good avalanche for rendezvous scores.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn score(object: &ObjectId, name: &str) -> u64 {
    // FNV-1a over the object id and the name, then mixed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in object.as_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// Places `total` shards of `object` on `candidates`.
pub fn place(
    object: &ObjectId,
    candidates: &[Candidate],
    total: usize,
) -> Result<Placement, PlacementError> {
    // Zones in an order that rotates per object, so the zones getting an extra shard vary.
    let mut zones: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        zones.entry(c.zone.as_str()).or_default();
        if c.usable {
            zones.get_mut(c.zone.as_str()).expect("inserted").push(i);
        }
    }
    let mut zone_order: Vec<(&str, Vec<usize>)> = zones.into_iter().collect();
    zone_order.sort_by_key(|(z, _)| std::cmp::Reverse(score(object, z)));
    for (_, nodes) in &mut zone_order {
        nodes.sort_by_key(|&i| std::cmp::Reverse(score(object, candidates[i].id.as_str())));
    }
    let live: Vec<&(&str, Vec<usize>)> = zone_order.iter().filter(|(_, n)| !n.is_empty()).collect();
    if live.is_empty() {
        return Err(PlacementError::NoUsableNode);
    }
    let zone_count = zone_order.len();
    let zone_degraded = live.len() < zone_count;
    // Shards per zone as if every zone were up; a dead zone's share goes to the live ones in turn.
    let mut quota: Vec<usize> = (0..zone_count)
        .map(|z| total / zone_count + usize::from(z < total % zone_count))
        .collect();
    let mut spill = 0;
    for (z, (_, nodes)) in zone_order.iter().enumerate() {
        if nodes.is_empty() {
            spill += quota[z];
            quota[z] = 0;
        }
    }
    let live_zones: Vec<usize> = (0..zone_count)
        .filter(|&z| !zone_order[z].1.is_empty())
        .collect();
    for s in 0..spill {
        quota[live_zones[s % live_zones.len()]] += 1;
    }
    let mut nodes = Vec::with_capacity(total);
    for (z, (_, zone_nodes)) in zone_order.iter().enumerate() {
        for j in 0..quota[z] {
            nodes.push(zone_nodes[j % zone_nodes.len()]);
        }
    }
    Ok(Placement {
        nodes,
        zone_degraded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(zones: &[&str], per_zone: usize) -> Vec<Candidate> {
        zones
            .iter()
            .flat_map(|z| {
                (0..per_zone).map(move |i| Candidate {
                    id: format!("node-{z}{i}").parse().unwrap(),
                    zone: z.to_string(),
                    usable: true,
                })
            })
            .collect()
    }

    fn oid(i: u64) -> ObjectId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.to_le_bytes());
        ObjectId::from_bytes(b)
    }

    fn per_zone(c: &[Candidate], p: &Placement) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for &n in &p.nodes {
            *m.entry(c[n].zone.clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn rs42_over_three_zones_puts_two_shards_per_zone_on_distinct_nodes() {
        let c = fleet(&["a", "b", "c"], 2);
        for i in 0..200 {
            let p = place(&oid(i), &c, 6).unwrap();
            assert!(!p.zone_degraded);
            assert!(per_zone(&c, &p).values().all(|&n| n == 2));
            let mut distinct = p.nodes.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 6);
        }
    }

    #[test]
    fn placement_is_stable_and_spreads_load() {
        let c = fleet(&["a", "b", "c"], 4);
        let mut load = vec![0usize; c.len()];
        for i in 0..3000 {
            let p = place(&oid(i), &c, 6).unwrap();
            assert_eq!(p, place(&oid(i), &c, 6).unwrap());
            for n in p.nodes {
                load[n] += 1;
            }
        }
        // 18000 shards over 12 nodes: 1500 each on average.
        assert!(load.iter().all(|&l| (1200..1800).contains(&l)), "{load:?}");
    }

    #[test]
    fn down_nodes_are_skipped_and_a_dead_zone_spills_over() {
        let mut c = fleet(&["a", "b", "c"], 2);
        c[0].usable = false;
        let p = place(&oid(1), &c, 6).unwrap();
        assert!(!p.nodes.contains(&0));
        assert_eq!(per_zone(&c, &p)["a"], 2);
        c[1].usable = false;
        let p = place(&oid(1), &c, 6).unwrap();
        assert!(p.zone_degraded);
        assert_eq!(p.nodes.len(), 6);
        assert!(!per_zone(&c, &p).contains_key("a"));
        for n in &mut c {
            n.usable = false;
        }
        assert_eq!(place(&oid(1), &c, 6), Err(PlacementError::NoUsableNode));
    }

    #[test]
    fn more_shards_than_zones_allow_evenly() {
        let c = fleet(&["a", "b", "c"], 5);
        let p = place(&oid(9), &c, 14).unwrap();
        let counts: Vec<usize> = per_zone(&c, &p).into_values().collect();
        assert_eq!(counts.iter().sum::<usize>(), 14);
        assert!(counts.iter().all(|&n| n == 4 || n == 5));
    }
}

//! Where bounded (data) groups live, beyond repairs: the meta leader moves one replica at a time
//! from the gateway hosting the heaviest replicas to one at least two replicas' weight lighter,
//! and a merge first gives the right group the left one's members (an absorb needs both on the
//! same gateways). A replica weighs as a leadership does ([`super::balance::weight`]: 1, plus
//! more for a group under load, whose writes every replica applies), so an idle fleet evens out
//! counts and the cold groups move off the gateways holding hot ones.
//!
//! Both are asked of the group's leader as an [`Align`] target: for a while, its membership
//! reconciler treats members outside the target as retiring from the group and takes new
//! replicas only from the target, so the usual safe steps (a learner catches up, votes, then the
//! old voter stops and leaves) carry the group there. [`next_move`] is pure and unit tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::GroupStatus;
use super::balance::{Pressure, weight};
use super::store::GroupId;

/// How long a group's leader pursues an align target (a move or a merge asks again while it
/// still wants it).
pub const ALIGN_FOR: Duration = Duration::from_secs(30);

/// Body of `POST /internal/v1/index/{group}/align`: the members the group should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Align {
    /// The gateways that should hold the group's replicas (and vote in it).
    pub members: BTreeSet<u64>,
}

/// An align target as the group's leader holds it.
#[derive(Debug, Default)]
pub struct AlignTarget(std::sync::Mutex<Option<(BTreeSet<u64>, Instant)>>);

impl AlignTarget {
    /// Pursue `members` from now on, for [`ALIGN_FOR`].
    pub fn set(&self, members: BTreeSet<u64>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((members, Instant::now()));
    }

    /// Drops the target (it cannot be reached).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The target, while it is fresh.
    pub fn get(&self) -> Option<BTreeSet<u64>> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.as_ref()
            .filter(|(_, since)| since.elapsed() < ALIGN_FOR)
            .map(|(m, _)| m.clone())
    }
}

/// A gateway as the move planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Its zone, once known.
    pub zone: Option<String>,
    /// Whether it may take a replica (reachable, not gone, not retiring).
    pub live: bool,
}

/// One replica to move: `group` should have `members` (its voters with `from` swapped for `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The group.
    pub group: GroupId,
    /// The member leaving.
    pub from: u64,
    /// The gateway joining.
    pub to: u64,
    /// The target membership.
    pub members: BTreeSet<u64>,
}

/// The move that best evens out the weight of the replicas each live gateway hosts, if one
/// gains: a replica of a data group (not frozen, not the one its leader holds, none with
/// learners: a change is under way) goes from a gateway to a live one lighter by at least twice
/// the replica's weight (so the move never just swaps the imbalance) that keeps the group's
/// zones covered; the largest difference wins, ties to the lowest ids. Without `pressure` every
/// replica weighs 1 and this evens out counts.
pub fn next_move(
    groups: &[GroupStatus],
    gateways: &BTreeMap<u64, Gateway>,
    meta: GroupId,
    pressure: &Pressure,
) -> Option<Move> {
    let mut hosted: BTreeMap<u64, f64> = gateways.keys().map(|id| (*id, 0.0)).collect();
    for g in groups {
        for id in g.voters.iter().chain(&g.learners) {
            *hosted.entry(*id).or_default() += weight(pressure, g.group);
        }
    }
    let zone = |id: &u64| gateways.get(id).and_then(|g| g.zone.clone());
    let mut best: Option<(f64, Move)> = None;
    for g in groups {
        if g.group == meta || g.frozen.is_some() || !g.learners.is_empty() {
            continue;
        }
        let w = weight(pressure, g.group);
        for from in g.voters.iter().filter(|v| g.leader != Some(**v)) {
            let others: BTreeSet<Option<String>> =
                g.voters.iter().filter(|v| *v != from).map(&zone).collect();
            for (to, gw) in gateways {
                if !gw.live || gw.zone.is_none() || g.voters.contains(to) {
                    continue;
                }
                // The zones stay covered: the same zone, or one the group lacked.
                if zone(to) != zone(from) && others.contains(&zone(to)) {
                    continue;
                }
                let gain = hosted[from] - hosted[to];
                // A small tolerance: weights are sums of floats.
                if gain + 1e-9 < 2.0 * w || best.as_ref().is_some_and(|(b, _)| *b >= gain) {
                    continue;
                }
                let mut members: BTreeSet<u64> = g.voters.iter().copied().collect();
                members.remove(from);
                members.insert(*to);
                let m = Move {
                    group: g.group,
                    from: *from,
                    to: *to,
                    members,
                };
                best = Some((gain, m));
            }
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: GroupId, leader: u64, voters: &[u64]) -> GroupStatus {
        GroupStatus {
            group: id,
            leader: Some(leader),
            term: 1,
            applied_index: None,
            voters: voters.to_vec(),
            learners: vec![],
            objects_from: None,
            objects_to: None,
            frozen: None,
            snapshot_index: None,
            purged_index: None,
        }
    }

    fn gateways(zones: &[(u64, &str)]) -> BTreeMap<u64, Gateway> {
        zones
            .iter()
            .map(|(id, z)| {
                let g = Gateway {
                    zone: Some(z.to_string()),
                    live: true,
                };
                (*id, g)
            })
            .collect()
    }

    /// Applies moves until none is left (bounded), returning each gateway's hosted count.
    fn settle(mut groups: Vec<GroupStatus>, gws: &BTreeMap<u64, Gateway>) -> BTreeMap<u64, usize> {
        for _ in 0..50 {
            let Some(m) = next_move(&groups, gws, 1, &Pressure::new()) else {
                let mut hosted: BTreeMap<u64, usize> = gws.keys().map(|id| (*id, 0)).collect();
                for g in &groups {
                    for v in &g.voters {
                        *hosted.get_mut(v).unwrap() += 1;
                    }
                }
                return hosted;
            };
            let g = groups.iter_mut().find(|g| g.group == m.group).unwrap();
            assert!(!g.voters.contains(&m.to) && g.leader != Some(m.from));
            g.voters = m.members.into_iter().collect();
        }
        panic!("moves never stop");
    }

    #[test]
    fn replicas_spread_over_new_gateways_zone_by_zone_until_no_move_gains() {
        // Five gateways in three zones; six data groups all on 1, 2, 3 (led by 1).
        let gws = gateways(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b")]);
        let mut groups = vec![group(1, 1, &[1, 2, 3])];
        groups.extend((2..8).map(|id| group(id, 1, &[1, 2, 3])));
        let first = next_move(&groups, &gws, 1, &Pressure::new()).unwrap();
        // Never the leader's replica, never the meta group; zone b's replica goes to 5.
        assert_eq!((first.from, first.to), (2, 5));
        assert_eq!(first.members, BTreeSet::from([1, 3, 5]));
        let hosted = settle(groups, &gws);
        // 2 and 5 share zone b's replicas; 1 leads them all and keeps its own; 3 is zone c's
        // only gateway.
        assert!(hosted[&2].abs_diff(hosted[&5]) <= 1, "{hosted:?}");
        assert_eq!(
            hosted[&4], 0,
            "zone a's replica is the leader's: {hosted:?}"
        );
        assert_eq!(hosted[&3], 7);
    }

    #[test]
    fn no_move_to_a_dead_gateway_a_group_changing_or_frozen_or_when_it_gains_little() {
        let mut gws = gateways(&[(1, "a"), (2, "b"), (3, "c"), (4, "b")]);
        let groups: Vec<_> = (2..5).map(|id| group(id, 1, &[1, 2, 3])).collect();
        assert!(next_move(&groups, &gws, 1, &Pressure::new()).is_some());
        gws.get_mut(&4).unwrap().live = false;
        assert_eq!(next_move(&groups, &gws, 1, &Pressure::new()), None);
        gws.get_mut(&4).unwrap().live = true;
        let mut busy = groups.clone();
        for g in &mut busy {
            g.learners = vec![4];
        }
        assert_eq!(next_move(&busy, &gws, 1, &Pressure::new()), None);
        let mut frozen = groups.clone();
        for g in &mut frozen {
            g.frozen = Some(9);
        }
        assert_eq!(next_move(&frozen, &gws, 1, &Pressure::new()), None);
        // One group: 2 hosts one, 4 none; moving gains nothing lasting.
        assert_eq!(next_move(&groups[..1], &gws, 1, &Pressure::new()), None);
    }

    #[test]
    fn cold_replicas_move_off_the_gateways_holding_a_hot_group() {
        // Four gateways in one zone; the hot group 2 and the cold 3 and 4 all on 1, 2, 3.
        let gws = gateways(&[(1, "a"), (2, "a"), (3, "a"), (4, "a")]);
        let mut groups = vec![
            group(2, 1, &[1, 2, 3]),
            group(3, 1, &[1, 2, 3]),
            group(4, 1, &[1, 2, 3]),
        ];
        let hot = Pressure::from([(2, 1.0)]);
        // By count the hot group's replica would go first (lowest id).
        assert_eq!(
            next_move(&groups, &gws, 1, &Pressure::new()).unwrap().group,
            2
        );
        for _ in 0..10 {
            let Some(m) = next_move(&groups, &gws, 1, &hot) else {
                break;
            };
            assert_ne!(m.group, 2, "the hot group's replicas stay");
            let g = groups.iter_mut().find(|g| g.group == m.group).unwrap();
            g.voters = m.members.into_iter().collect();
        }
        // Gateway 4 took the cold replicas it could (one of each, the leader's stay on 1).
        let on_4: Vec<GroupId> = groups
            .iter()
            .filter(|g| g.voters.contains(&4))
            .map(|g| g.group)
            .collect();
        assert_eq!(on_4, vec![3, 4], "{groups:?}");
    }
}
